//! `ContactStore` (v1.2): contact requests, contacts and blocks between users.
//!
//! Logic enforces the rules (who may ask whom, what a block prevents); the
//! store keeps the relations consistent: a pair is either contacts, or has
//! pending requests, never both, and a block removes both.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::id::UserId;

/// A pending request of `from` to become contacts with `to`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactRequest {
    /// Who asks.
    pub from: UserId,
    /// Who is asked.
    pub to: UserId,
    /// An optional note to the asked user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When it was (last) asked, Unix ms.
    pub ts: i64,
}

/// One of a user's contacts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    /// The other user.
    pub user_id: UserId,
    /// Since when they are contacts, Unix ms.
    pub since: i64,
}

/// What [`ContactStore::request`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestOutcome {
    /// The request is pending (new, or asked again: its note and time change).
    Pending,
    /// The other user had already asked: the two are contacts now and both
    /// requests are gone.
    Accepted,
    /// They were contacts already; nothing changed.
    AlreadyContacts,
}

/// Which side of a user's pending requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Requests to the user.
    Incoming,
    /// Requests the user made.
    Outgoing,
}

/// How `from` stands with `to`, as the send path needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Reach {
    /// `to` has blocked `from`.
    pub blocked: bool,
    /// The two are contacts.
    pub contacts: bool,
}

/// Contacts, pending requests and blocks.
///
/// Contract (see `testkit::contacts_suite`):
/// - `request(a→b)`: when a and b are contacts, `AlreadyContacts`; when b has
///   a pending request to a, both become contacts (since the request's `ts`)
///   and every request between them is removed: `Accepted`; otherwise the
///   request a→b is stored or replaced: `Pending`. Blocks are not checked
///   here (Logic does, with [`ContactStore::reach`]).
/// - `respond(b, a, accept)` answers the pending request a→b (`NotFound` when
///   none): accepted makes them contacts (since `now`), declined only removes it.
/// - `cancel(a, b)` removes the pending request a→b (`NotFound` when none).
/// - `remove(a, b)` ends the relation for both; `false` when not contacts.
/// - `block(a, b)` records that a blocks b and removes their contact relation
///   and every request between them; `false` when already blocked.
///   `unblock` undoes it (`false` when not blocked); blocks are one-way.
/// - Lists are ordered by the other user's id, ascending, strictly after
///   `after` when set, at most `limit` long.
/// - `reach(&[(from, to)])` answers in order, in one round trip.
#[async_trait]
pub trait ContactStore: Send + Sync + 'static {
    /// Asks to become contacts (see the contract).
    async fn request(&self, request: &ContactRequest) -> Result<RequestOutcome>;

    /// `user` accepts or declines the pending request of `from`.
    async fn respond(&self, user: UserId, from: UserId, accept: bool, now: i64) -> Result<()>;

    /// `from` withdraws its pending request to `to`.
    async fn cancel(&self, from: UserId, to: UserId) -> Result<()>;

    /// Ends the contact relation of `user` and `other` (both sides).
    async fn remove(&self, user: UserId, other: UserId) -> Result<bool>;

    /// A page of `user`'s contacts.
    async fn contacts(
        &self,
        user: UserId,
        after: Option<UserId>,
        limit: usize,
    ) -> Result<Vec<Contact>>;

    /// A page of `user`'s pending requests, ordered by the other party's id.
    async fn requests(
        &self,
        user: UserId,
        direction: Direction,
        after: Option<UserId>,
        limit: usize,
    ) -> Result<Vec<ContactRequest>>;

    /// `user` blocks `other` (see the contract).
    async fn block(&self, user: UserId, other: UserId, now: i64) -> Result<bool>;

    /// `user` unblocks `other`.
    async fn unblock(&self, user: UserId, other: UserId) -> Result<bool>;

    /// A page of the users `user` blocks.
    async fn blocked(
        &self,
        user: UserId,
        after: Option<UserId>,
        limit: usize,
    ) -> Result<Vec<UserId>>;

    /// For each `(from, to)`, in order: whether `to` blocks `from` and whether
    /// they are contacts.
    async fn reach(&self, pairs: &[(UserId, UserId)]) -> Result<Vec<Reach>>;
}
