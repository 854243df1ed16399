//! The in-memory `ContactStore`.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use parking_lot::RwLock;

use crate::error::{Error, Result};
use crate::id::UserId;
use crate::ports::{Contact, ContactRequest, ContactStore, Direction, Reach, RequestOutcome};

#[derive(Debug, Default)]
struct State {
    /// user → (contact → since); both directions are stored.
    contacts: HashMap<UserId, BTreeMap<UserId, i64>>,
    /// (from, to) → request.
    requests: BTreeMap<(UserId, UserId), ContactRequest>,
    /// to → from → (), for incoming lists.
    incoming: HashMap<UserId, BTreeMap<UserId, ()>>,
    /// blocker → (blocked → since).
    blocks: HashMap<UserId, BTreeMap<UserId, i64>>,
}

impl State {
    fn are_contacts(&self, a: UserId, b: UserId) -> bool {
        self.contacts.get(&a).is_some_and(|c| c.contains_key(&b))
    }

    fn link(&mut self, a: UserId, b: UserId, since: i64) {
        self.contacts.entry(a).or_default().insert(b, since);
        self.contacts.entry(b).or_default().insert(a, since);
    }

    fn unlink(&mut self, a: UserId, b: UserId) -> bool {
        let x = self
            .contacts
            .get_mut(&a)
            .is_some_and(|c| c.remove(&b).is_some());
        let y = self
            .contacts
            .get_mut(&b)
            .is_some_and(|c| c.remove(&a).is_some());
        x || y
    }

    fn drop_request(&mut self, from: UserId, to: UserId) -> Option<ContactRequest> {
        let r = self.requests.remove(&(from, to))?;
        if let Some(i) = self.incoming.get_mut(&to) {
            i.remove(&from);
        }
        Some(r)
    }
}

/// Contacts, requests and blocks in memory.
#[derive(Debug, Default)]
pub struct MemoryContactStore {
    state: RwLock<State>,
}

impl MemoryContactStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

fn page<T>(
    items: impl Iterator<Item = (UserId, T)>,
    after: Option<UserId>,
    limit: usize,
) -> Vec<T> {
    items
        .filter(|(u, _)| after.is_none_or(|a| *u > a))
        .take(limit)
        .map(|(_, t)| t)
        .collect()
}

#[async_trait]
impl ContactStore for MemoryContactStore {
    async fn request(&self, request: &ContactRequest) -> Result<RequestOutcome> {
        let mut st = self.state.write();
        let (a, b) = (request.from, request.to);
        if st.are_contacts(a, b) {
            return Ok(RequestOutcome::AlreadyContacts);
        }
        if st.drop_request(b, a).is_some() {
            st.drop_request(a, b);
            st.link(a, b, request.ts);
            return Ok(RequestOutcome::Accepted);
        }
        st.requests.insert((a, b), request.clone());
        st.incoming.entry(b).or_default().insert(a, ());
        Ok(RequestOutcome::Pending)
    }

    async fn respond(&self, user: UserId, from: UserId, accept: bool, now: i64) -> Result<()> {
        let mut st = self.state.write();
        if st.drop_request(from, user).is_none() {
            return Err(Error::NotFound(format!(
                "no pending contact request from user {from}"
            )));
        }
        if accept {
            st.drop_request(user, from);
            st.link(user, from, now);
        }
        Ok(())
    }

    async fn cancel(&self, from: UserId, to: UserId) -> Result<()> {
        self.state
            .write()
            .drop_request(from, to)
            .map(|_| ())
            .ok_or_else(|| Error::NotFound(format!("no pending contact request to user {to}")))
    }

    async fn remove(&self, user: UserId, other: UserId) -> Result<bool> {
        Ok(self.state.write().unlink(user, other))
    }

    async fn contacts(
        &self,
        user: UserId,
        after: Option<UserId>,
        limit: usize,
    ) -> Result<Vec<Contact>> {
        let st = self.state.read();
        let Some(c) = st.contacts.get(&user) else {
            return Ok(Vec::new());
        };
        Ok(page(
            c.iter().map(|(u, since)| {
                (
                    *u,
                    Contact {
                        user_id: *u,
                        since: *since,
                    },
                )
            }),
            after,
            limit,
        ))
    }

    async fn requests(
        &self,
        user: UserId,
        direction: Direction,
        after: Option<UserId>,
        limit: usize,
    ) -> Result<Vec<ContactRequest>> {
        let st = self.state.read();
        Ok(match direction {
            Direction::Outgoing => page(
                st.requests
                    .range((user, UserId(0))..=(user, UserId(u64::MAX)))
                    .map(|((_, to), r)| (*to, r.clone())),
                after,
                limit,
            ),
            Direction::Incoming => match st.incoming.get(&user) {
                Some(i) => page(
                    i.keys().filter_map(|from| {
                        st.requests.get(&(*from, user)).map(|r| (*from, r.clone()))
                    }),
                    after,
                    limit,
                ),
                None => Vec::new(),
            },
        })
    }

    async fn block(&self, user: UserId, other: UserId, now: i64) -> Result<bool> {
        let mut st = self.state.write();
        st.unlink(user, other);
        st.drop_request(user, other);
        st.drop_request(other, user);
        Ok(st
            .blocks
            .entry(user)
            .or_default()
            .insert(other, now)
            .is_none())
    }

    async fn unblock(&self, user: UserId, other: UserId) -> Result<bool> {
        Ok(self
            .state
            .write()
            .blocks
            .get_mut(&user)
            .is_some_and(|b| b.remove(&other).is_some()))
    }

    async fn blocked(
        &self,
        user: UserId,
        after: Option<UserId>,
        limit: usize,
    ) -> Result<Vec<UserId>> {
        let st = self.state.read();
        Ok(match st.blocks.get(&user) {
            Some(b) => page(b.keys().map(|u| (*u, *u)), after, limit),
            None => Vec::new(),
        })
    }

    async fn reach(&self, pairs: &[(UserId, UserId)]) -> Result<Vec<Reach>> {
        let st = self.state.read();
        Ok(pairs
            .iter()
            .map(|(from, to)| Reach {
                blocked: st.blocks.get(to).is_some_and(|b| b.contains_key(from)),
                contacts: st.are_contacts(*from, *to),
            })
            .collect())
    }
}
