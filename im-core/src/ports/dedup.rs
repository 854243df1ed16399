//! `DedupStore`: idempotency keys of sends, with expiry.

use std::time::Duration;

use async_trait::async_trait;

use crate::error::Result;
use crate::id::UserId;

/// The idempotency key of a send: MurmurHash3 (x64, 128 bit) of
/// `(sender, client_msg_id)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DedupKey(pub u128);

impl DedupKey {
    /// The key of a send by `sender` with `client_msg_id`.
    ///
    /// ```
    /// use im_core::{id::UserId, ports::DedupKey};
    /// assert_eq!(DedupKey::of_send(UserId(1), "a"), DedupKey::of_send(UserId(1), "a"));
    /// assert_ne!(DedupKey::of_send(UserId(1), "a"), DedupKey::of_send(UserId(2), "a"));
    /// ```
    pub fn of_send(sender: UserId, client_msg_id: &str) -> DedupKey {
        let mut buf = Vec::with_capacity(9 + client_msg_id.len());
        buf.extend_from_slice(&sender.0.to_be_bytes());
        buf.push(0);
        buf.extend_from_slice(client_msg_id.as_bytes());
        let mut cursor = std::io::Cursor::new(buf);
        DedupKey(murmur3::murmur3_x64_128(&mut cursor, 0x1d_5e_7a_11).unwrap_or_default())
    }

    /// A key derived from any bytes (e.g. a content hash policy).
    pub fn of_bytes(bytes: &[u8]) -> DedupKey {
        let mut cursor = std::io::Cursor::new(bytes);
        DedupKey(murmur3::murmur3_x64_128(&mut cursor, 0x1d_5e_7a_11).unwrap_or_default())
    }

    /// Lower-case hex, 32 characters (used in backend keys).
    pub fn to_hex(self) -> String {
        format!("{:032x}", self.0)
    }
}

/// Claimable keys with values and expiry.
///
/// Contract: the first `claim` of a key stores its value and returns `None`;
/// while the key lives, a later claim stores nothing and returns the stored
/// value; `put` overwrites; `release` deletes; a key vanishes after its TTL.
#[async_trait]
pub trait DedupStore: Send + Sync + 'static {
    /// Claims many keys at once; for each, `None` if claimed now, or the value
    /// already stored.
    async fn claim(
        &self,
        entries: &[(DedupKey, String)],
        ttl: Duration,
    ) -> Result<Vec<Option<String>>>;

    /// Overwrites the values of keys (with a fresh TTL).
    async fn put(&self, entries: &[(DedupKey, String)], ttl: Duration) -> Result<()>;

    /// Deletes keys (a send that failed is not remembered).
    async fn release(&self, keys: &[DedupKey]) -> Result<()>;
}
