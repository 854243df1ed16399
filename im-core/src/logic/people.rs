//! v1.2: the people around a conversation — profiles and lookup, contacts,
//! blocks, members' read cursors, and edits — as one [`Command`] set.
//!
//! Each is a small operation with the same shape (an authenticated actor,
//! a request, a reply), so the layers between a client and Logic carry them
//! as one [`LogicApi::execute`](super::LogicApi::execute) call instead of a
//! dozen: the HTTP API, the WebSocket `edit` frame and the gRPC transport
//! add nothing per operation.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::id::{now_ms, ConversationId, MessageId, UserId};
use crate::model::{ContactEvent, Event, EventAudience, Message, MessageKind, Profile};
use crate::ports::{ContactRequest, Direction, Rate, RequestOutcome};

use super::Logic;

/// Longest display name, in characters.
pub const MAX_DISPLAY_NAME: usize = 64;
/// Longest avatar URL, in bytes.
pub const MAX_AVATAR_URL: usize = 1024;
/// Longest note of a contact request, in characters.
pub const MAX_REQUEST_NOTE: usize = 200;
/// Most users one profile lookup may name.
pub const MAX_LOOKUP: usize = 200;

/// An operation of the people features (v1.2), run for an authenticated actor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Command {
    /// Profiles of users by id and/or by exact username (unknown ones are left out).
    Profiles {
        /// Ids.
        #[serde(default)]
        user_ids: Vec<UserId>,
        /// Exact usernames.
        #[serde(default)]
        usernames: Vec<String>,
    },
    /// Sets the actor's display name and avatar (`None` clears).
    SetProfile {
        /// 1–64 characters, not only whitespace.
        display_name: Option<String>,
        /// `https://…` or a path of this server (`/api/v1/files/…`).
        avatar_url: Option<String>,
    },
    /// Users whose username starts with `prefix` (bounded, paged, rate-limited).
    Search {
        /// At least [`super::LogicConfig::search_min_prefix`] characters.
        prefix: String,
        /// The `next_cursor` of the previous page.
        cursor: Option<String>,
        /// Page size (clamped).
        limit: Option<u32>,
    },
    /// Asks `user_id` to become contacts.
    RequestContact {
        /// Whom.
        user_id: UserId,
        /// An optional note (at most 200 characters).
        message: Option<String>,
    },
    /// Accepts or declines the pending request of `user_id`.
    RespondContact {
        /// Who asked.
        user_id: UserId,
        /// Accept (else decline).
        accept: bool,
    },
    /// Withdraws the actor's pending request to `user_id`.
    CancelContactRequest {
        /// Whom it asked.
        user_id: UserId,
    },
    /// Ends the contact relation with `user_id`.
    RemoveContact {
        /// The contact.
        user_id: UserId,
    },
    /// A page of the actor's contacts.
    Contacts {
        /// The `next_cursor` of the previous page.
        cursor: Option<String>,
        /// Page size (clamped).
        limit: Option<u32>,
    },
    /// A page of the actor's pending requests.
    ContactRequests {
        /// Incoming or outgoing.
        direction: Direction,
        /// The `next_cursor` of the previous page.
        cursor: Option<String>,
        /// Page size (clamped).
        limit: Option<u32>,
    },
    /// Blocks `user_id` (idempotent).
    Block {
        /// Whom.
        user_id: UserId,
    },
    /// Unblocks `user_id` (idempotent).
    Unblock {
        /// Whom.
        user_id: UserId,
    },
    /// A page of the users the actor blocks.
    Blocked {
        /// The `next_cursor` of the previous page.
        cursor: Option<String>,
        /// Page size (clamped).
        limit: Option<u32>,
    },
    /// The participants' read cursors of a conversation (participants only).
    Reads {
        /// The conversation.
        conversation_id: ConversationId,
    },
    /// Edits the body of one of the actor's text messages.
    Edit {
        /// The message.
        msg_id: MessageId,
        /// The new body (a string).
        body: serde_json::Value,
    },
}

/// A contact, as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactView {
    /// Who.
    pub user: Profile,
    /// Contacts since, Unix ms.
    pub since: i64,
}

/// A pending contact request, as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestView {
    /// The other party (the asker for incoming, the asked for outgoing).
    pub user: Profile,
    /// Which side the actor is on.
    pub direction: Direction,
    /// The asker's note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When it was asked, Unix ms.
    pub ts: i64,
}

/// One participant's read cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadCursor {
    /// The participant.
    pub user_id: UserId,
    /// Read up to here (0: nothing).
    pub read_seq: u64,
}

/// The answer to a [`Command`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Reply {
    /// Done; nothing to return.
    Done,
    /// Profiles (lookup).
    Profiles {
        /// The users found.
        users: Vec<Profile>,
    },
    /// The actor's profile after a change.
    Profile {
        /// It.
        profile: Profile,
    },
    /// A page of users (search, blocked).
    Users {
        /// The page.
        users: Vec<Profile>,
        /// Where the next page starts (`None`: the end).
        next_cursor: Option<String>,
    },
    /// What a contact request did.
    Requested {
        /// `pending`, `accepted` or `already_contacts`.
        status: RequestOutcome,
    },
    /// A page of contacts.
    Contacts {
        /// The page.
        contacts: Vec<ContactView>,
        /// Where the next page starts.
        next_cursor: Option<String>,
    },
    /// A page of requests.
    Requests {
        /// The page.
        requests: Vec<RequestView>,
        /// Where the next page starts.
        next_cursor: Option<String>,
    },
    /// Read cursors.
    Reads {
        /// One per participant (bounded).
        reads: Vec<ReadCursor>,
    },
    /// The edited message.
    Edited {
        /// It, with its new body and `edited_at`.
        message: Message,
    },
}

fn user_cursor(cursor: Option<&str>) -> Result<Option<UserId>> {
    match cursor {
        None | Some("") => Ok(None),
        Some(c) => c
            .parse()
            .map(Some)
            .map_err(|_| Error::InvalidArgument("malformed cursor".into())),
    }
}

/// Checks a display name: 1–64 characters, not only whitespace, no control characters.
pub fn validate_display_name(name: &str) -> Result<()> {
    let n = name.chars().count();
    if n == 0
        || n > MAX_DISPLAY_NAME
        || name.trim().is_empty()
        || name.chars().any(char::is_control)
    {
        return Err(Error::InvalidArgument(format!(
            "display_name must be 1-{MAX_DISPLAY_NAME} characters, not only whitespace, without control characters"
        )));
    }
    Ok(())
}

fn validate_avatar_url(url: &str) -> Result<()> {
    let ok = url.len() <= MAX_AVATAR_URL
        && (url.starts_with("https://") || url.starts_with("/api/v1/"))
        && !url.chars().any(|c| c.is_control() || c.is_whitespace());
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "avatar_url must be an https:// URL or a path of this server (/api/v1/...), at most {MAX_AVATAR_URL} bytes"
        )))
    }
}

impl Logic {
    /// Runs one people command for `actor`.
    pub(super) async fn execute(&self, actor: UserId, command: Command) -> Result<Reply> {
        // The send path's cached answer for a pair whose relation this
        // command changes is dropped once it is changed (a send racing the
        // change may still have cached the old answer before: drop after).
        let changes = match &command {
            Command::RequestContact { user_id, .. }
            | Command::RespondContact { user_id, .. }
            | Command::RemoveContact { user_id }
            | Command::Block { user_id }
            | Command::Unblock { user_id } => Some(*user_id),
            _ => None,
        };
        let reply = self.run_one(actor, command).await;
        if let Some(other) = changes {
            self.reach.forget(actor, other);
        }
        reply
    }

    async fn run_one(&self, actor: UserId, command: Command) -> Result<Reply> {
        match command {
            Command::Profiles {
                user_ids,
                usernames,
            } => self.profiles(user_ids, usernames).await,
            Command::SetProfile {
                display_name,
                avatar_url,
            } => {
                if let Some(n) = &display_name {
                    validate_display_name(n)?;
                }
                if let Some(u) = &avatar_url {
                    validate_avatar_url(u)?;
                }
                self.ports
                    .users
                    .set_profile(actor, display_name.as_deref(), avatar_url.as_deref())
                    .await?;
                let user = self
                    .ports
                    .users
                    .get(actor)
                    .await?
                    .ok_or_else(|| Error::NotFound(format!("no user {actor}")))?;
                Ok(Reply::Profile {
                    profile: user.profile(),
                })
            }
            Command::Search {
                prefix,
                cursor,
                limit,
            } => {
                self.search_users(actor, &prefix, cursor.as_deref(), limit)
                    .await
            }
            Command::RequestContact { user_id, message } => {
                self.request_contact(actor, user_id, message).await
            }
            Command::RespondContact { user_id, accept } => {
                self.ports
                    .contacts
                    .respond(actor, user_id, accept, now_ms())
                    .await?;
                let event = if accept {
                    ContactEvent::Accepted
                } else {
                    ContactEvent::Declined
                };
                self.contact_event(event, actor, user_id).await?;
                Ok(Reply::Done)
            }
            Command::CancelContactRequest { user_id } => {
                self.ports.contacts.cancel(actor, user_id).await?;
                self.contact_event(ContactEvent::Cancelled, actor, user_id)
                    .await?;
                Ok(Reply::Done)
            }
            Command::RemoveContact { user_id } => {
                if !self.ports.contacts.remove(actor, user_id).await? {
                    return Err(Error::NotFound(format!(
                        "user {user_id} is not one of your contacts"
                    )));
                }
                self.contact_event(ContactEvent::Removed, actor, user_id)
                    .await?;
                Ok(Reply::Done)
            }
            Command::Contacts { cursor, limit } => {
                let limit = self.people_page(limit);
                let after = user_cursor(cursor.as_deref())?;
                let mut rows = self
                    .ports
                    .contacts
                    .contacts(actor, after, limit + 1)
                    .await?;
                let next_cursor = next_cursor(&mut rows, limit, |c| c.user_id);
                let profiles = self
                    .profiles_in_order(&rows.iter().map(|c| c.user_id).collect::<Vec<_>>())
                    .await?;
                Ok(Reply::Contacts {
                    contacts: rows
                        .iter()
                        .zip(profiles)
                        .map(|(c, user)| ContactView {
                            user,
                            since: c.since,
                        })
                        .collect(),
                    next_cursor,
                })
            }
            Command::ContactRequests {
                direction,
                cursor,
                limit,
            } => {
                let limit = self.people_page(limit);
                let after = user_cursor(cursor.as_deref())?;
                let mut rows = self
                    .ports
                    .contacts
                    .requests(actor, direction, after, limit + 1)
                    .await?;
                let other = |r: &ContactRequest| match direction {
                    Direction::Incoming => r.from,
                    Direction::Outgoing => r.to,
                };
                let next_cursor = next_cursor(&mut rows, limit, other);
                let profiles = self
                    .profiles_in_order(&rows.iter().map(other).collect::<Vec<_>>())
                    .await?;
                Ok(Reply::Requests {
                    requests: rows
                        .into_iter()
                        .zip(profiles)
                        .map(|(r, user)| RequestView {
                            user,
                            direction,
                            message: r.message,
                            ts: r.ts,
                        })
                        .collect(),
                    next_cursor,
                })
            }
            Command::Block { user_id } => {
                if user_id == actor {
                    return Err(Error::InvalidArgument("cannot block yourself".into()));
                }
                self.require_user(user_id).await?;
                self.ports.contacts.block(actor, user_id, now_ms()).await?;
                Ok(Reply::Done)
            }
            Command::Unblock { user_id } => {
                self.ports.contacts.unblock(actor, user_id).await?;
                Ok(Reply::Done)
            }
            Command::Blocked { cursor, limit } => {
                let limit = self.people_page(limit);
                let after = user_cursor(cursor.as_deref())?;
                let mut rows = self.ports.contacts.blocked(actor, after, limit + 1).await?;
                let next_cursor = next_cursor(&mut rows, limit, |u| *u);
                Ok(Reply::Users {
                    users: self.profiles_in_order(&rows).await?,
                    next_cursor,
                })
            }
            Command::Reads { conversation_id } => self.reads(actor, conversation_id).await,
            Command::Edit { msg_id, body } => self.edit_message(actor, msg_id, body).await,
        }
    }

    fn people_page(&self, limit: Option<u32>) -> usize {
        limit
            .unwrap_or(self.config.people_page)
            .clamp(1, self.config.people_page.max(1)) as usize
    }

    async fn require_user(&self, user: UserId) -> Result<()> {
        if self.ports.users.existing(&[user]).await?.is_empty() {
            return Err(Error::NotFound(format!("no user {user}")));
        }
        Ok(())
    }

    async fn profiles(&self, ids: Vec<UserId>, usernames: Vec<String>) -> Result<Reply> {
        if ids.len() + usernames.len() > MAX_LOOKUP {
            return Err(Error::InvalidArgument(format!(
                "a lookup names at most {MAX_LOOKUP} users"
            )));
        }
        let mut users = self.ports.users.get_many(&ids).await?;
        for name in usernames {
            if let Some(u) = self.ports.users.by_username(&name).await? {
                users.push(u);
            }
        }
        let mut seen = std::collections::HashSet::new();
        users.retain(|u| seen.insert(u.id));
        Ok(Reply::Profiles {
            users: users.iter().map(crate::model::User::profile).collect(),
        })
    }

    /// Profiles of `ids`, in that order; a user unknown to the store (never
    /// the case for ids from our own tables) shows as its id.
    pub(super) async fn profiles_in_order(&self, ids: &[UserId]) -> Result<Vec<Profile>> {
        let found: std::collections::HashMap<UserId, Profile> = self
            .ports
            .users
            .get_many(ids)
            .await?
            .into_iter()
            .map(|u| (u.id, u.profile()))
            .collect();
        Ok(ids
            .iter()
            .map(|id| {
                found.get(id).cloned().unwrap_or_else(|| Profile {
                    user_id: *id,
                    username: id.to_string(),
                    display_name: id.to_string(),
                    avatar_url: None,
                })
            })
            .collect())
    }

    async fn search_users(
        &self,
        actor: UserId,
        prefix: &str,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> Result<Reply> {
        let cfg = &self.config;
        if prefix.chars().count() < cfg.search_min_prefix || prefix.len() > 64 {
            return Err(Error::InvalidArgument(format!(
                "a search prefix has {}-64 characters",
                cfg.search_min_prefix
            )));
        }
        // The cursor says how many results came before and the last name.
        let (seen, after) = match cursor {
            None | Some("") => (0usize, None),
            Some(c) => {
                let (n, name) = c
                    .split_once('~')
                    .ok_or_else(|| Error::InvalidArgument("malformed cursor".into()))?;
                let n: usize = n
                    .parse()
                    .map_err(|_| Error::InvalidArgument("malformed cursor".into()))?;
                (n, Some(name.to_owned()))
            }
        };
        if seen >= cfg.search_max_results {
            return Err(Error::InvalidArgument(format!(
                "a search returns at most {} users; type more of the name",
                cfg.search_max_results
            )));
        }
        if let Some(wait) = self
            .ports
            .throttle
            .take(&format!("search:{actor}"), cfg.search_rate)
            .await?
        {
            return Err(Error::Throttled {
                message: "too many searches; slow down".into(),
                retry_after: wait,
            });
        }
        let limit = (limit.unwrap_or(20) as usize)
            .clamp(1, cfg.search_max_page)
            .min(cfg.search_max_results - seen);
        let mut users = self
            .ports
            .users
            .search(prefix, after.as_deref(), limit + 1)
            .await?;
        let more = users.len() > limit && seen + limit < cfg.search_max_results;
        users.truncate(limit);
        let next_cursor = if more {
            users
                .last()
                .map(|u| format!("{}~{}", seen + users.len(), u.username))
        } else {
            None
        };
        Ok(Reply::Users {
            users: users.iter().map(crate::model::User::profile).collect(),
            next_cursor,
        })
    }

    async fn request_contact(
        &self,
        actor: UserId,
        to: UserId,
        message: Option<String>,
    ) -> Result<Reply> {
        if to == actor {
            return Err(Error::InvalidArgument(
                "cannot ask yourself to be a contact".into(),
            ));
        }
        if let Some(m) = &message {
            if m.chars().count() > MAX_REQUEST_NOTE {
                return Err(Error::InvalidArgument(format!(
                    "a request note has at most {MAX_REQUEST_NOTE} characters"
                )));
            }
        }
        self.require_user(to).await?;
        let reach = self.ports.contacts.reach(&[(actor, to)]).await?;
        if reach.first().is_some_and(|r| r.blocked) {
            return Err(Error::PermissionDenied(
                "you cannot send a contact request to this user".into(),
            ));
        }
        let status = self
            .ports
            .contacts
            .request(&ContactRequest {
                from: actor,
                to,
                message,
                ts: now_ms(),
            })
            .await?;
        let event = match status {
            RequestOutcome::Pending => Some(ContactEvent::Requested),
            RequestOutcome::Accepted => Some(ContactEvent::Accepted),
            RequestOutcome::AlreadyContacts => None,
        };
        if let Some(event) = event {
            self.contact_event(event, actor, to).await?;
        }
        Ok(Reply::Requested { status })
    }

    async fn contact_event(&self, event: ContactEvent, from: UserId, to: UserId) -> Result<()> {
        self.publish_event(
            Event::Contact { event, from, to },
            EventAudience::Users(vec![to, from]),
            None,
        )
        .await
    }

    async fn reads(&self, actor: UserId, conversation: ConversationId) -> Result<Reply> {
        self.authorize_read(actor, conversation).await?;
        let users: Vec<UserId> = match conversation {
            ConversationId::Direct(a, b) => vec![a, b],
            ConversationId::Group(g) => self
                .ports
                .groups
                .members(g)
                .await?
                .into_iter()
                .map(|m| m.user_id)
                .take(self.config.max_group_reads)
                .collect(),
        };
        let pairs: Vec<_> = users.iter().map(|u| (*u, conversation)).collect();
        let seqs = self.ports.conversations.read_seqs(&pairs).await?;
        Ok(Reply::Reads {
            reads: users
                .into_iter()
                .zip(seqs)
                .map(|(user_id, read_seq)| ReadCursor { user_id, read_seq })
                .collect(),
        })
    }

    pub(super) async fn edit_message(
        &self,
        actor: UserId,
        msg_id: MessageId,
        body: serde_json::Value,
    ) -> Result<Reply> {
        let text_len = match &body {
            serde_json::Value::String(s) => s.len(),
            _ => {
                return Err(Error::InvalidArgument(
                    "an edited body must be a string (only text messages can be edited)".into(),
                ))
            }
        };
        if text_len > self.config.max_body_bytes {
            return Err(Error::ResourceExhausted(format!(
                "body is {text_len} bytes; the limit is {}",
                self.config.max_body_bytes
            )));
        }
        let message = self
            .stored_message(msg_id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no message {msg_id}")))?;
        if self
            .read_cutoff(actor, message.conversation_id)
            .await
            .is_err()
        {
            return Err(Error::NotFound(format!("no message {msg_id}")));
        }
        if message.from != actor {
            return Err(Error::PermissionDenied(
                "only the sender can edit a message".into(),
            ));
        }
        if message.kind != MessageKind::Text {
            return Err(Error::InvalidArgument(
                "only text messages can be edited".into(),
            ));
        }
        if message.recalled {
            return Err(Error::PermissionDenied(
                "a recalled message cannot be edited".into(),
            ));
        }
        let window = i64::try_from(self.config.edit_window.as_millis()).unwrap_or(i64::MAX);
        let now = now_ms();
        if now.saturating_sub(message.ts) > window {
            return Err(Error::PermissionDenied(format!(
                "the edit window of {} s has passed",
                window / 1000
            )));
        }
        if !self.ports.messages.edit(msg_id, &body, now).await? {
            return Err(Error::PermissionDenied(
                "a recalled message cannot be edited".into(),
            ));
        }
        let edited = Message {
            body: body.clone(),
            edited_at: Some(now),
            ..message
        };
        self.ports.conversations.changed(&edited).await?;
        self.publish_event(
            Event::Edited {
                conversation_id: edited.conversation_id,
                msg_id,
                seq: edited.seq,
                body,
                edited_at: now,
                by: actor,
            },
            EventAudience::Conversation {
                conversation_id: edited.conversation_id,
                except: None,
            },
            None,
        )
        .await?;
        Ok(Reply::Edited { message: edited })
    }
}

/// Cuts a page fetched with one extra row; the cursor is the last kept row's key.
fn next_cursor<T>(rows: &mut Vec<T>, limit: usize, key: impl Fn(&T) -> UserId) -> Option<String> {
    if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(|r| key(r).to_string())
    } else {
        None
    }
}

/// The default rate of user searches per user: 30 a minute, bursts of 10.
pub fn default_search_rate() -> Rate {
    Rate::per_minute(30, 10)
}
