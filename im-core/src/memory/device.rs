//! The in-memory `DeviceStore` (lost with the process: devices register
//! again when their apps start).
//!
//! Bounded per user ([`MAX_DEVICES_PER_USER`] tokens); one lock over the
//! devices, a token index and the settings keeps `register` atomic.

use std::collections::{BTreeMap, HashMap, HashSet};

use async_trait::async_trait;
use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::id::UserId;
use crate::ports::{DeviceStore, PushToken, MAX_DEVICES_PER_USER};

#[derive(Debug, Default)]
struct State {
    /// Each user's tokens by device label.
    devices: HashMap<UserId, BTreeMap<String, PushToken>>,
    /// Who holds each token: (user, device label).
    holders: HashMap<String, (UserId, String)>,
    /// Users who hide previews (the default shows them).
    hidden: HashSet<UserId>,
}

impl State {
    /// Removes one device's token from both maps.
    fn take(&mut self, user: UserId, device: &str) -> Option<PushToken> {
        let devices = self.devices.get_mut(&user)?;
        let old = devices.remove(device)?;
        if devices.is_empty() {
            self.devices.remove(&user);
        }
        if self
            .holders
            .get(&old.token)
            .is_some_and(|(u, d)| *u == user && d == device)
        {
            self.holders.remove(&old.token);
        }
        Some(old)
    }
}

/// Push tokens and notification settings in memory.
#[derive(Debug, Default)]
pub struct MemoryDeviceStore {
    state: Mutex<State>,
}

impl MemoryDeviceStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl DeviceStore for MemoryDeviceStore {
    async fn register(&self, user: UserId, token: &PushToken) -> Result<()> {
        token.validate()?;
        let mut s = self.state.lock();
        let known = s
            .devices
            .get(&user)
            .is_some_and(|d| d.contains_key(&token.device));
        let held_here = s.holders.get(&token.token).is_some_and(|(u, _)| *u == user);
        let count = s.devices.get(&user).map_or(0, BTreeMap::len);
        // A token moving from another label of this user frees that label.
        let freed = usize::from(held_here && !known);
        if !known && count - freed >= MAX_DEVICES_PER_USER {
            return Err(Error::ResourceExhausted(format!(
                "at most {MAX_DEVICES_PER_USER} devices per user"
            )));
        }
        if let Some((u, d)) = s.holders.get(&token.token).cloned() {
            s.take(u, &d);
        }
        s.take(user, &token.device);
        s.holders
            .insert(token.token.clone(), (user, token.device.clone()));
        s.devices
            .entry(user)
            .or_default()
            .insert(token.device.clone(), token.clone());
        Ok(())
    }

    async fn list(&self, user: UserId) -> Result<Vec<PushToken>> {
        Ok(self
            .state
            .lock()
            .devices
            .get(&user)
            .map(|d| d.values().cloned().collect())
            .unwrap_or_default())
    }

    async fn remove(&self, user: UserId, device: &str) -> Result<bool> {
        Ok(self.state.lock().take(user, device).is_some())
    }

    async fn remove_token(&self, user: UserId, token: &str) -> Result<bool> {
        let mut s = self.state.lock();
        match s.holders.get(token).cloned() {
            Some((u, d)) if u == user => Ok(s.take(u, &d).is_some()),
            _ => Ok(false),
        }
    }

    async fn set_preview(&self, user: UserId, show: bool) -> Result<()> {
        let mut s = self.state.lock();
        if show {
            s.hidden.remove(&user);
        } else {
            s.hidden.insert(user);
        }
        Ok(())
    }

    async fn preview(&self, user: UserId) -> Result<bool> {
        Ok(!self.state.lock().hidden.contains(&user))
    }
}
