//! One SQL core, three dialects: the stores of users, groups, messages,
//! conversation lists, contacts and devices written once over an [`Engine`]
//! (MySQL / MariaDB, SQLite or PostgreSQL), and [`AnyStore`], which picks the
//! engine from a URL.
//!
//! - `engine`: the [`Dialect`] (the SQL fragments that differ) and the
//!   sealed [`Engine`] trait (binding, placeholders, column decoding).
//! - the stores: [`SqlUserStore`], [`SqlGroupStore`], [`SqlMessageStore`],
//!   [`SqlConversationStore`], [`SqlContactStore`], [`SqlDeviceStore`], all
//!   generic over the engine; `im_store::mysql::MySqlUserStore` and the like
//!   are these types on one engine.
//! - [`SqlStore`]: a pool of one engine and its store accessors (the
//!   engines' modules add connecting and migrating).
//! - here: error mapping, the column encodings of targets, kinds and bodies,
//!   and the fixed batch shapes.

mod any;
mod contacts;
mod conversations;
pub(crate) mod db;
mod devices;
mod engine;
mod groups;
mod messages;
mod store;
mod users;

pub use any::{connect_sql, AnyStore};
pub use contacts::SqlContactStore;
pub use conversations::SqlConversationStore;
pub use devices::SqlDeviceStore;
pub use engine::{Arg, Dialect, Engine};
pub use groups::SqlGroupStore;
pub use messages::SqlMessageStore;
pub(crate) use store::engine_stores;
pub(crate) use store::run_migrations;
pub use store::{SqlConfig, SqlStore};
pub use users::SqlUserStore;

use im_core::id::{ConversationId, GroupId, MessageId, UserId};
use im_core::model::{Mentions, Message, MessageKind, Target};
use im_core::Error;

/// Rows per multi-row statement. A batch is cut into chunks of these sizes
/// and a short tail is padded (by repeating its last row, which `INSERT
/// IGNORE` / `IN (…)` absorb), so each statement has one of five shapes and
/// sqlx caches at most five prepared statements per query per connection.
/// 500 rows × 12 columns stays far under the 65,535 placeholders of MySQL
/// and PostgreSQL (and SQLite's 32,766).
pub(crate) const SHAPES: [usize; 5] = [500, 100, 20, 5, 1];

/// Cuts `n` items into `(start, len, shape)` chunks: full chunks of 500, 100
/// and 20 rows, then a tail (< 20) padded up to the smallest shape that holds
/// it (1, 5 or 20). At most nine statements below 500 rows, and at most 15
/// padded rows.
pub(crate) fn chunks(n: usize) -> Vec<(usize, usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    for &shape in &SHAPES[..3] {
        while n - start >= shape {
            out.push((start, shape, shape));
            start += shape;
        }
    }
    let left = n - start;
    if left > 0 {
        let shape = SHAPES
            .iter()
            .rev()
            .copied()
            .find(|&s| s >= left)
            .unwrap_or(SHAPES[2]);
        out.push((start, left, shape));
    }
    out
}

/// [`chunks`] for a multi-row upsert on `d`: unpadded where an upsert may
/// not list one key twice (PostgreSQL), so the tail keeps its own shape.
pub(crate) fn upsert_chunks(d: Dialect, n: usize) -> Vec<(usize, usize, usize)> {
    let mut out = chunks(n);
    if !d.pads_upserts() {
        for c in &mut out {
            c.2 = c.1;
        }
    }
    out
}

/// `(?, ?, …)` repeated `rows` times with `cols` placeholders each.
pub(crate) fn values_list(rows: usize, cols: usize) -> String {
    let row = format!("({})", vec!["?"; cols].join(","));
    vec![row; rows].join(",")
}

/// `?, ?, …` with `n` placeholders (an `IN (…)` list).
pub(crate) fn placeholders(n: usize) -> String {
    vec!["?"; n].join(",")
}

/// Maps a sqlx failure of `what` onto the core error.
pub(crate) fn map_err(engine: &str, what: &str, e: sqlx::Error) -> Error {
    use sqlx::error::ErrorKind;
    match &e {
        sqlx::Error::PoolTimedOut => Error::Timeout(format!("{engine} {what}: no connection free")),
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => {
            Error::unavailable(format!("{engine} unavailable ({what})"), e)
        }
        sqlx::Error::Database(db) => match db.kind() {
            ErrorKind::UniqueViolation => Error::Conflict(format!("{what}: already exists")),
            ErrorKind::ForeignKeyViolation => Error::NotFound(format!("{what}: no such parent")),
            _ => match db.code().as_deref() {
                // MySQL: lock wait timeout; deadlock, too many connections,
                // server shutting down.
                Some("1205") => Error::Timeout(format!("{engine} {what}: {db}")),
                Some("1213" | "1040" | "1053") => {
                    Error::unavailable(format!("{engine} unavailable ({what})"), e)
                }
                // MySQL: data too long for a column.
                Some("1406") => Error::InvalidArgument(format!("{what}: a value is too long")),
                // SQLite: busy, locked.
                Some("5" | "6" | "517" | "262") => {
                    Error::unavailable(format!("{engine} busy ({what})"), e)
                }
                // PostgreSQL: deadlock, serialization failure, too many
                // connections, admin / crash shutdown, cannot connect now,
                // read-only (a standby).
                Some("40P01" | "40001" | "53300" | "57P01" | "57P02" | "57P03" | "25006") => {
                    Error::unavailable(format!("{engine} unavailable ({what})"), e)
                }
                // PostgreSQL: lock not available, statement timeout.
                Some("55P03" | "57014") => Error::Timeout(format!("{engine} {what}: {db}")),
                // PostgreSQL: a value too long for its column.
                Some("22001") => Error::InvalidArgument(format!("{what}: a value is too long")),
                _ => Error::backend(format!("{engine} {what} failed"), e),
            },
        },
        _ => Error::backend(format!("{engine} {what} failed"), e),
    }
}

/// The stored form of a target: `u:<id>` or `g:<id>`.
pub(crate) fn encode_target(t: Target) -> String {
    match t {
        Target::User(u) => format!("u:{u}"),
        Target::Group(g) => format!("g:{g}"),
    }
}

fn decode_target(s: &str) -> Option<Target> {
    let (tag, id) = s.split_once(':')?;
    let id: u64 = id.parse().ok()?;
    match tag {
        "u" => Some(Target::User(UserId(id))),
        "g" => Some(Target::Group(GroupId(id))),
        _ => None,
    }
}

/// The stored form of a body: its JSON text (`null` once recalled).
pub(crate) fn encode_body(m: &Message) -> Result<String, Error> {
    serde_json::to_string(&m.body)
        .map_err(|e| Error::Internal(format!("body does not serialize: {e}")))
}

/// The stored form of mentions: their JSON text (`"all"` or an array of ids).
pub(crate) fn encode_mentions(m: &Message) -> Result<Option<String>, Error> {
    m.mentions
        .as_ref()
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| Error::Internal(format!("mentions do not serialize: {e}")))
}

/// Rejects messages that do not fit the columns.
pub(crate) fn check_message(m: &Message) -> Result<(), Error> {
    if m.client_msg_id.len() > 255 {
        return Err(Error::InvalidArgument(
            "client_msg_id longer than 255 bytes".into(),
        ));
    }
    Ok(())
}

/// The columns of one stored message, in table order.
pub(crate) const MESSAGE_COLUMNS: &str =
    "msg_id, conversation_id, seq, sender, target, kind, body, \
     client_msg_id, ts, recalled, edited_at, mentions";

/// How many columns [`MESSAGE_COLUMNS`] names.
pub(crate) const MESSAGE_COLUMN_COUNT: usize = 12;

/// A stored row's fields, as decoded by either engine.
pub(crate) struct MessageRow {
    pub msg_id: u64,
    pub conversation_id: String,
    pub seq: u64,
    pub sender: u64,
    pub target: String,
    pub kind: String,
    pub body: String,
    pub client_msg_id: String,
    pub ts: i64,
    pub recalled: bool,
    pub edited_at: Option<i64>,
    pub mentions: Option<String>,
}

impl MessageRow {
    /// The message, or a `Backend` error naming the corrupt column.
    pub(crate) fn into_message(self) -> Result<Message, Error> {
        let corrupt = |col: &str, v: &str| Error::Backend {
            message: format!("corrupt {col} {v:?} in message {}", self.msg_id),
            source: None,
        };
        Ok(Message {
            msg_id: MessageId(self.msg_id),
            conversation_id: self
                .conversation_id
                .parse::<ConversationId>()
                .map_err(|_| corrupt("conversation_id", &self.conversation_id))?,
            seq: self.seq,
            from: UserId(self.sender),
            to: decode_target(&self.target).ok_or_else(|| corrupt("target", &self.target))?,
            kind: MessageKind::parse(&self.kind).ok_or_else(|| corrupt("kind", &self.kind))?,
            body: serde_json::from_str(&self.body).map_err(|_| corrupt("body", &self.body))?,
            client_msg_id: self.client_msg_id,
            ts: self.ts,
            recalled: self.recalled,
            edited_at: self.edited_at,
            mentions: match &self.mentions {
                None => None,
                Some(text) => Some(
                    serde_json::from_str::<Mentions>(text)
                        .map_err(|_| corrupt("mentions", text))?,
                ),
            },
        })
    }
}

/// A stored push token, or a `Backend` error naming a corrupt platform.
pub(crate) fn device_row(
    platform: &str,
    token: String,
    device: String,
    registered_at: i64,
) -> Result<im_core::ports::PushToken, Error> {
    let platform = im_core::ports::Platform::parse(platform).ok_or_else(|| Error::Backend {
        message: format!("corrupt platform {platform:?} of device {device:?}"),
        source: None,
    })?;
    Ok(im_core::ports::PushToken {
        platform,
        token,
        device,
        registered_at,
    })
}

/// What `ConversationStore::record` writes for a batch.
pub(crate) struct Recorded<'a> {
    /// The message with the highest seq of each conversation of the batch,
    /// sorted by conversation id (one lock order for concurrent recorders).
    pub lasts: Vec<(String, &'a Message)>,
    /// `(user, conversation)` of both parties of every 1:1 conversation of
    /// the batch, sorted and without repeats.
    pub parties: Vec<(UserId, String)>,
}

/// Groups a batch by conversation for `record`.
pub(crate) fn recorded(batch: &[Message]) -> Recorded<'_> {
    use std::collections::BTreeMap;
    let mut lasts: BTreeMap<String, &Message> = BTreeMap::new();
    let mut parties: BTreeMap<(UserId, String), ()> = BTreeMap::new();
    for m in batch {
        let c = m.conversation_id.to_string();
        if let ConversationId::Direct(a, b) = m.conversation_id {
            parties.insert((a, c.clone()), ());
            parties.insert((b, c.clone()), ());
        }
        lasts
            .entry(c)
            .and_modify(|l| {
                if m.seq > l.seq {
                    *l = m;
                }
            })
            .or_insert(m);
    }
    Recorded {
        lasts: lasts.into_iter().collect(),
        parties: parties.into_keys().collect(),
    }
}

/// The mentions of a batch, as `record` indexes them.
pub(crate) struct MentionRows {
    /// `(conversation, user, highest seq)` of every mention by id, sorted.
    pub users: Vec<(String, UserId, u64)>,
    /// `(conversation, seq, sender)` of each conversation's latest `all`
    /// mention in the batch, sorted by conversation.
    pub all: Vec<(String, u64, UserId)>,
}

/// Collects the mentions of a batch (highest seq per key).
pub(crate) fn mention_rows(batch: &[Message]) -> MentionRows {
    use std::collections::BTreeMap;
    let mut users: BTreeMap<(String, UserId), u64> = BTreeMap::new();
    let mut all: BTreeMap<String, (u64, UserId)> = BTreeMap::new();
    for m in batch {
        match &m.mentions {
            None => {}
            Some(Mentions::Users(ids)) => {
                for u in ids {
                    let seq = users
                        .entry((m.conversation_id.to_string(), *u))
                        .or_insert(0);
                    *seq = (*seq).max(m.seq);
                }
            }
            Some(Mentions::All) => {
                let slot = all
                    .entry(m.conversation_id.to_string())
                    .or_insert((m.seq, m.from));
                if m.seq > slot.0 {
                    *slot = (m.seq, m.from);
                }
            }
        }
    }
    MentionRows {
        users: users.into_iter().map(|((c, u), seq)| (c, u, seq)).collect(),
        all: all
            .into_iter()
            .map(|(c, (seq, from))| (c, seq, from))
            .collect(),
    }
}

/// The indexes of one chunk of [`chunks`], its tail padded by repeating the
/// last index up to the shape.
pub(crate) fn padded(start: usize, len: usize, shape: usize) -> impl Iterator<Item = usize> {
    (start..start + len).chain(std::iter::repeat_n(start + len - 1, shape - len))
}

/// The columns `record` writes into `conversations`, in bind order.
pub(crate) const CONVERSATION_COLUMNS: &str = "conversation_id, last_seq, last_msg_id, last_ts";

/// `rows` rows of `(user_id, conversation_id)` listed with no read cursor:
/// `(?, ?, 0, TRUE), …` for `(user_id, conversation_id, read_seq, listed)`.
pub(crate) fn party_values(rows: usize) -> String {
    vec!["(?, ?, 0, TRUE)"; rows].join(",")
}

/// The conversation-list query (every engine): one user's listed
/// conversations that have a recorded message, newest last message first,
/// with that message (by `(conversation_id, seq)`, so a recall shows) and the
/// count of messages from others above the user's read cursor. The page is
/// picked first (in a derived table), so the last messages are read and the
/// unread messages counted for the page's rows only.
///
/// Binds, in order: the user (for the unread count), the user (for the
/// list), then with `cursor` its `ts` and conversation id, then the limit.
pub(crate) fn list_query(cursor: bool) -> String {
    let after = if cursor {
        "AND (c.last_ts, c.conversation_id) < (?, ?)"
    } else {
        ""
    };
    format!(
        "SELECT p.read_seq, \
           m.msg_id, m.conversation_id, m.seq, m.sender, m.target, m.kind, m.body, \
           m.client_msg_id, m.ts, m.recalled, m.edited_at, m.mentions, \
           (SELECT COUNT(*) FROM messages u \
             WHERE u.conversation_id = p.conversation_id AND u.seq > p.read_seq \
               AND u.sender <> ?) AS unread \
         FROM ( \
           SELECT c.conversation_id, c.last_seq, c.last_ts, uc.read_seq \
           FROM user_conversations uc \
           JOIN conversations c ON c.conversation_id = uc.conversation_id \
           WHERE uc.user_id = ? AND uc.listed = TRUE {after} \
           ORDER BY c.last_ts DESC, c.conversation_id DESC \
           LIMIT ? \
         ) p \
         JOIN messages m ON m.conversation_id = p.conversation_id AND m.seq = p.last_seq \
         ORDER BY p.last_ts DESC, p.conversation_id DESC"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_use_few_shapes_and_cover_everything() {
        assert!(chunks(0).is_empty());
        assert_eq!(chunks(1), vec![(0, 1, 1)]);
        assert_eq!(chunks(19), vec![(0, 19, 20)]);
        assert_eq!(
            chunks(1234),
            vec![
                (0, 500, 500),
                (500, 500, 500),
                (1000, 100, 100),
                (1100, 100, 100),
                (1200, 20, 20),
                (1220, 14, 20)
            ]
        );
        assert_eq!(chunks(3), vec![(0, 3, 5)]);
        for n in 0..1200 {
            let c = chunks(n);
            assert_eq!(c.iter().map(|x| x.1).sum::<usize>(), n);
            assert!(c
                .iter()
                .all(|&(_, len, shape)| len <= shape && SHAPES.contains(&shape)));
        }
        assert_eq!(values_list(2, 3), "(?,?,?),(?,?,?)");
    }

    #[test]
    fn recorded_keeps_the_highest_seq_and_both_parties() {
        let d = ConversationId::Direct(UserId(1), UserId(2));
        let g = ConversationId::Group(GroupId(9));
        let msg = |c: ConversationId, seq: u64| Message {
            msg_id: MessageId(seq * 10),
            conversation_id: c,
            seq,
            from: UserId(1),
            to: Target::User(UserId(2)),
            kind: MessageKind::Text,
            body: serde_json::Value::Null,
            client_msg_id: String::new(),
            ts: 0,
            recalled: false,
            edited_at: None,
            mentions: None,
        };
        let batch = [msg(g, 3), msg(d, 2), msg(g, 5), msg(d, 1), msg(g, 4)];
        let r = recorded(&batch);
        assert_eq!(
            r.lasts
                .iter()
                .map(|(c, m)| (c.as_str(), m.seq))
                .collect::<Vec<_>>(),
            vec![("g:9", 5), ("u:1:2", 2)]
        );
        assert_eq!(
            r.parties,
            vec![
                (UserId(1), "u:1:2".to_owned()),
                (UserId(2), "u:1:2".to_owned())
            ]
        );
        assert_eq!(party_values(2), "(?, ?, 0, TRUE),(?, ?, 0, TRUE)");
    }

    #[test]
    fn targets_round_trip() {
        for t in [Target::User(UserId(7)), Target::Group(GroupId(9))] {
            assert_eq!(decode_target(&encode_target(t)), Some(t));
        }
        assert_eq!(decode_target("x:1"), None);
    }
}
