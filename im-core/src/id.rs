//! Identifiers: typed 64-bit ids, conversation ids, and the snowflake generator.
//!
//! Every 64-bit id travels on the wire as a canonical decimal string (no sign,
//! no leading zeros) because JavaScript cannot hold 64-bit integers. Parsing is
//! strict: anything else is rejected with [`IdError`].

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a string is not a valid id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdError {
    /// Not a canonical unsigned decimal (empty, sign, leading zero, non-digit, overflow).
    #[error("`{0}` is not a canonical decimal id")]
    NotCanonical(String),
    /// Not of the form `u:{a}:{b}` with `a < b`, or `g:{id}`.
    #[error("`{0}` is not a conversation id (expected `u:{{a}}:{{b}}` with a < b, or `g:{{id}}`)")]
    BadConversation(String),
    /// A 1:1 conversation with oneself.
    #[error("a conversation needs two different users")]
    SelfConversation,
}

/// Parses a canonical decimal id: digits only, no leading zero (except `"0"`).
pub fn parse_canonical_u64(s: &str) -> Result<u64, IdError> {
    let bytes = s.as_bytes();
    let canonical = !bytes.is_empty()
        && bytes.len() <= 20
        && bytes.iter().all(u8::is_ascii_digit)
        && (bytes[0] != b'0' || bytes.len() == 1);
    if !canonical {
        return Err(IdError::NotCanonical(truncate(s)));
    }
    s.parse::<u64>()
        .map_err(|_| IdError::NotCanonical(truncate(s)))
}

fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(pub u64);

        impl $name {
            /// The raw integer.
            pub const fn get(self) -> u64 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                parse_canonical_u64(s).map($name)
            }
        }

        impl From<u64> for $name {
            fn from(v: u64) -> Self {
                $name(v)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_str(IdVisitor).map($name)
            }
        }
    };
}

struct IdVisitor;

impl serde::de::Visitor<'_> for IdVisitor {
    type Value = u64;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a canonical decimal id string")
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<u64, E> {
        parse_canonical_u64(v).map_err(E::custom)
    }
}

typed_id!(
    /// A user account.
    UserId
);
typed_id!(
    /// A group.
    GroupId
);
typed_id!(
    /// A message (a snowflake id; unique across the cluster).
    MessageId
);
typed_id!(
    /// One WebSocket session on a connect node (unique per node).
    SessionId
);

/// A conversation: `u:{a}:{b}` (1:1, `a < b`) or `g:{group}`.
///
/// The 1:1 id is the same whichever of the two users sends.
///
/// ```
/// use im_core::id::{ConversationId, UserId};
/// let ab = ConversationId::direct(UserId(7), UserId(3)).unwrap();
/// let ba = ConversationId::direct(UserId(3), UserId(7)).unwrap();
/// assert_eq!(ab, ba);
/// assert_eq!(ab.to_string(), "u:3:7");
/// assert_eq!("u:3:7".parse::<ConversationId>().unwrap(), ab);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConversationId {
    /// A 1:1 conversation; the first user id is the smaller one.
    Direct(UserId, UserId),
    /// A group conversation.
    Group(GroupId),
}

impl ConversationId {
    /// The 1:1 conversation of two distinct users, whichever order they come in.
    pub fn direct(a: UserId, b: UserId) -> Result<Self, IdError> {
        match a.cmp(&b) {
            std::cmp::Ordering::Less => Ok(ConversationId::Direct(a, b)),
            std::cmp::Ordering::Greater => Ok(ConversationId::Direct(b, a)),
            std::cmp::Ordering::Equal => Err(IdError::SelfConversation),
        }
    }

    /// The conversation of a group.
    pub fn group(g: GroupId) -> Self {
        ConversationId::Group(g)
    }

    /// Whether `user` is one of the two parties of a 1:1 conversation
    /// (always false for a group; group membership lives in the group store).
    pub fn is_direct_party(&self, user: UserId) -> bool {
        matches!(self, ConversationId::Direct(a, b) if *a == user || *b == user)
    }

    /// The other party of a 1:1 conversation, if `me` is one of them.
    pub fn peer_of(&self, me: UserId) -> Option<UserId> {
        match self {
            ConversationId::Direct(a, b) if *a == me => Some(*b),
            ConversationId::Direct(a, b) if *b == me => Some(*a),
            _ => None,
        }
    }

    /// A stable 64-bit hash, used to pick a queue shard.
    pub fn shard_hash(&self) -> u64 {
        let (tag, a, b) = match self {
            ConversationId::Direct(a, b) => (1u64, a.0, b.0),
            ConversationId::Group(g) => (2u64, g.0, 0),
        };
        // splitmix64 over the three words: cheap and well mixed.
        let mut x = tag ^ a.rotate_left(17) ^ b.rotate_left(41);
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    }
}

impl fmt::Display for ConversationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConversationId::Direct(a, b) => write!(f, "u:{a}:{b}"),
            ConversationId::Group(g) => write!(f, "g:{g}"),
        }
    }
}

impl FromStr for ConversationId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        let bad = || IdError::BadConversation(truncate(s));
        if let Some(rest) = s.strip_prefix("u:") {
            let (a, b) = rest.split_once(':').ok_or_else(bad)?;
            let a = parse_canonical_u64(a).map_err(|_| bad())?;
            let b = parse_canonical_u64(b).map_err(|_| bad())?;
            if a < b {
                Ok(ConversationId::Direct(UserId(a), UserId(b)))
            } else {
                Err(bad())
            }
        } else if let Some(g) = s.strip_prefix("g:") {
            Ok(ConversationId::Group(GroupId(
                parse_canonical_u64(g).map_err(|_| bad())?,
            )))
        } else {
            Err(bad())
        }
    }
}

impl Serialize for ConversationId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ConversationId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = ConversationId;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a conversation id string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ConversationId, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

/// A source of wall-clock time in Unix milliseconds (injectable for tests).
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
}

/// The system wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
}

/// Current Unix time in milliseconds from the system clock.
pub fn now_ms() -> i64 {
    SystemClock.now_ms() as i64
}

/// Milliseconds of the project epoch (2024-01-01T00:00:00Z) in Unix time.
pub const SNOWFLAKE_EPOCH_MS: u64 = 1_704_067_200_000;
const WORKER_BITS: u32 = 10;
const SEQ_BITS: u32 = 12;
/// Largest valid worker id (1023).
pub const MAX_WORKER_ID: u16 = (1 << WORKER_BITS) - 1;
const MAX_SEQ: u64 = (1 << SEQ_BITS) - 1;

/// Why a snowflake generator could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SnowflakeError {
    /// The worker id does not fit in 10 bits.
    #[error("worker id {0} is out of range 0..=1023")]
    WorkerOutOfRange(u16),
}

/// Snowflake ids: 41 bits of milliseconds since [`SNOWFLAKE_EPOCH_MS`], 10 bits
/// of worker id, 12 bits of sequence.
///
/// One generator never issues a duplicate or a smaller id than before: when
/// more than 4,096 ids are asked for within one millisecond it borrows the next
/// millisecond, and when the wall clock steps backwards it keeps counting from
/// the last millisecond it used (it never sleeps and never goes back).
///
/// ```
/// use im_core::id::Snowflake;
/// let gen = Snowflake::new(1).unwrap();
/// let a = gen.next_id();
/// let b = gen.next_id();
/// assert!(b > a);
/// ```
pub struct Snowflake {
    worker: u64,
    clock: Arc<dyn Clock>,
    state: Mutex<(u64, u64)>, // (last ms since epoch, last seq)
}

impl fmt::Debug for Snowflake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snowflake")
            .field("worker", &self.worker)
            .finish()
    }
}

impl Snowflake {
    /// A generator for `worker` (0..=1023) on the system clock.
    pub fn new(worker: u16) -> Result<Self, SnowflakeError> {
        Self::with_clock(worker, Arc::new(SystemClock))
    }

    /// A generator for `worker` on an injected clock.
    pub fn with_clock(worker: u16, clock: Arc<dyn Clock>) -> Result<Self, SnowflakeError> {
        if worker > MAX_WORKER_ID {
            return Err(SnowflakeError::WorkerOutOfRange(worker));
        }
        Ok(Snowflake {
            worker: u64::from(worker),
            clock,
            state: Mutex::new((0, MAX_SEQ)),
        })
    }

    /// The next id.
    pub fn next_id(&self) -> MessageId {
        let now = self.clock.now_ms().saturating_sub(SNOWFLAKE_EPOCH_MS);
        let mut st = self.state.lock();
        let (last_ms, last_seq) = *st;
        let (ms, seq) = if now > last_ms {
            (now, 0)
        } else if last_seq < MAX_SEQ {
            (last_ms, last_seq + 1)
        } else {
            (last_ms + 1, 0)
        };
        *st = (ms, seq);
        drop(st);
        MessageId(
            ((ms & ((1 << 41) - 1)) << (WORKER_BITS + SEQ_BITS)) | (self.worker << SEQ_BITS) | seq,
        )
    }

    /// The worker id embedded in an id.
    pub fn worker_of(id: MessageId) -> u16 {
        ((id.0 >> SEQ_BITS) & u64::from(MAX_WORKER_ID)) as u16
    }

    /// The Unix milliseconds embedded in an id.
    pub fn unix_ms_of(id: MessageId) -> u64 {
        (id.0 >> (WORKER_BITS + SEQ_BITS)) + SNOWFLAKE_EPOCH_MS
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    struct FakeClock(AtomicU64);
    impl Clock for FakeClock {
        fn now_ms(&self) -> u64 {
            self.0.load(Ordering::SeqCst)
        }
    }

    #[test]
    fn more_than_4096_in_one_millisecond_stays_unique_and_increasing() {
        let clock = Arc::new(FakeClock(AtomicU64::new(SNOWFLAKE_EPOCH_MS + 1_000)));
        let gen = Snowflake::with_clock(5, clock).unwrap();
        let mut last = MessageId(0);
        for _ in 0..10_000 {
            let id = gen.next_id();
            assert!(id > last, "{id} after {last}");
            assert_eq!(Snowflake::worker_of(id), 5);
            last = id;
        }
    }

    #[test]
    fn clock_stepping_backwards_never_yields_smaller_ids() {
        let clock = Arc::new(FakeClock(AtomicU64::new(SNOWFLAKE_EPOCH_MS + 50_000)));
        let gen = Snowflake::with_clock(1, clock.clone()).unwrap();
        let mut seen = std::collections::HashSet::new();
        let mut last = MessageId(0);
        for step in 0..3_000u64 {
            // Jump backwards by up to 10 s every few ids, then forward again.
            let t = if step % 7 == 0 {
                SNOWFLAKE_EPOCH_MS + 40_000
            } else {
                SNOWFLAKE_EPOCH_MS + 50_000 + step / 10
            };
            clock.0.store(t, Ordering::SeqCst);
            let id = gen.next_id();
            assert!(id > last);
            assert!(seen.insert(id));
            last = id;
        }
    }

    #[test]
    fn worker_range_is_checked() {
        assert!(Snowflake::new(1023).is_ok());
        assert_eq!(
            Snowflake::new(1024).unwrap_err(),
            SnowflakeError::WorkerOutOfRange(1024)
        );
    }

    #[test]
    fn canonical_ids_only() {
        assert_eq!("42".parse::<UserId>().unwrap(), UserId(42));
        assert_eq!("0".parse::<UserId>().unwrap(), UserId(0));
        for bad in [
            "",
            "+1",
            "-1",
            "01",
            " 1",
            "1.0",
            "18446744073709551616",
            "x",
        ] {
            assert!(bad.parse::<UserId>().is_err(), "{bad:?}");
        }
        assert!(serde_json::from_str::<UserId>("42").is_err());
        assert_eq!(
            serde_json::from_str::<UserId>("\"42\"").unwrap(),
            UserId(42)
        );
        assert_eq!(
            serde_json::to_string(&UserId(u64::MAX)).unwrap(),
            "\"18446744073709551615\""
        );
    }

    #[test]
    fn conversation_ids() {
        assert!("u:7:3".parse::<ConversationId>().is_err());
        assert!("u:3:3".parse::<ConversationId>().is_err());
        assert!("u:03:4".parse::<ConversationId>().is_err());
        assert_eq!(
            "g:9".parse::<ConversationId>().unwrap(),
            ConversationId::Group(GroupId(9))
        );
        assert_eq!(
            ConversationId::direct(UserId(1), UserId(1)),
            Err(IdError::SelfConversation)
        );
        let c = ConversationId::direct(UserId(9), UserId(2)).unwrap();
        assert_eq!(c.peer_of(UserId(2)), Some(UserId(9)));
        assert_eq!(c.peer_of(UserId(3)), None);
    }
}
