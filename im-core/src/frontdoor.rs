//! The front door: what stands between the Internet and the expensive or
//! abusable entry points — login (per-address buckets and per-account failure
//! backoff), registration (per-address and global buckets, then the
//! application's [`RegistrationGuard`]) and WebSocket upgrades (open sockets
//! and upgrades per address).
//!
//! Counts live behind the [`Throttle`] port (memory for one node, Redis for a
//! cluster). Every check runs *before* the work it guards — a refused login
//! never reaches argon2 — so a flood against one account or from one address
//! costs a map lookup per request and slows nobody else down. Refusals are
//! [`Error::Throttled`] (HTTP 429 with `Retry-After`). When the throttle's
//! backend is down, the checks let requests through and count
//! `im_frontdoor_throttle_errors_total`: an outage of the counters must not
//! lock every user out.
//!
//! Password hashing itself is bounded in Logic (`LogicConfig::hash_concurrency`).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::ports::{AllowAll, Backoff, Rate, RegistrationAttempt, RegistrationGuard, Throttle};

/// The limits of the front door; `None` turns a limit off.
///
/// ```
/// use im_core::frontdoor::FrontDoorConfig;
/// let c = FrontDoorConfig::default();
/// assert!(c.login_per_address.is_some() && c.login_backoff.is_some());
/// let off = FrontDoorConfig::unlimited();
/// assert!(off.register_per_address.is_none() && off.ws_open_per_address.is_none());
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct FrontDoorConfig {
    /// Login attempts per client address (default 60 a minute, bursts of 30).
    pub login_per_address: Option<Rate>,
    /// Logins of one client address in flight at once on one node (default
    /// 2): a flood from one address holds at most this many password
    /// hashes, so other clients' logins wait behind no queue of its making.
    pub login_in_flight_per_address: Option<usize>,
    /// Failed logins per account: after 5 free failures, a lockout from 1 s
    /// doubling up to 15 minutes; forgotten an hour after the last failure,
    /// or at the next successful login.
    pub login_backoff: Option<Backoff>,
    /// Registrations per client address (default 10 an hour, bursts of 10).
    pub register_per_address: Option<Rate>,
    /// Registrations of the whole deployment (default 600 a minute).
    pub register_global: Option<Rate>,
    /// Open WebSockets per client address on one connect node (default 512).
    pub ws_open_per_address: Option<usize>,
    /// WebSocket upgrades per client address (default 20 a second, bursts of 200).
    pub ws_upgrades_per_address: Option<Rate>,
    /// Proxies whose `X-Forwarded-For` is believed (default none: the
    /// client address is the TCP peer).
    pub trusted_proxies: Vec<IpNet>,
}

impl Default for FrontDoorConfig {
    fn default() -> Self {
        FrontDoorConfig {
            login_per_address: Some(Rate::per_minute(60, 30)),
            login_in_flight_per_address: Some(2),
            login_backoff: Some(Backoff {
                free: 5,
                base: Duration::from_secs(1),
                max: Duration::from_secs(15 * 60),
                forget_after: Duration::from_secs(3600),
            }),
            register_per_address: Some(Rate::per_hour(10, 10)),
            register_global: Some(Rate::per_minute(600, 600)),
            ws_open_per_address: Some(512),
            ws_upgrades_per_address: Some(Rate::per_second(20.0, 200)),
            trusted_proxies: Vec::new(),
        }
    }
}

impl FrontDoorConfig {
    /// Every limit off (benchmarks from one address; never on the Internet).
    pub fn unlimited() -> Self {
        FrontDoorConfig {
            login_per_address: None,
            login_in_flight_per_address: None,
            login_backoff: None,
            register_per_address: None,
            register_global: None,
            ws_open_per_address: None,
            ws_upgrades_per_address: None,
            trusted_proxies: Vec::new(),
        }
    }
}

/// The front door as a deployment's configuration file says it (TOML, env):
/// plain numbers, `0` turning a limit off, `enabled = false` turning all off.
///
/// ```
/// use im_core::frontdoor::{FrontDoorConfig, FrontDoorSettings};
/// let s = FrontDoorSettings { trusted_proxies: vec!["10.0.0.0/8".into(), "192.0.2.7".into()], register_per_hour: 0, ..Default::default() };
/// let c = s.to_config().unwrap();
/// assert_eq!(c.trusted_proxies.len(), 2);
/// assert!(c.register_per_address.is_none());
/// assert_eq!(c.login_backoff, FrontDoorConfig::default().login_backoff);
/// assert!(FrontDoorSettings { trusted_proxies: vec!["nope".into()], ..Default::default() }.to_config().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FrontDoorSettings {
    /// All limits on (default) or off (benchmarks from one address only).
    pub enabled: bool,
    /// Proxies (addresses or CIDR blocks) whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<String>,
    /// Login attempts per client address per minute.
    pub login_per_minute: u32,
    /// Login attempts per client address at once.
    pub login_burst: u32,
    /// Logins of one client address in flight at once on one node.
    pub login_in_flight_per_address: usize,
    /// Failed logins of an account before lockouts start (0 = no lockouts).
    pub login_free_failures: u32,
    /// Longest lockout of an account, seconds.
    pub login_max_lockout_secs: u64,
    /// Registrations per client address per hour.
    pub register_per_hour: u32,
    /// Registrations per client address at once.
    pub register_burst: u32,
    /// Registrations of the whole deployment per minute.
    pub register_global_per_minute: u32,
    /// Open WebSockets per client address on one connect node.
    pub ws_open_per_address: usize,
    /// WebSocket upgrades per client address per second.
    pub ws_upgrades_per_second: f64,
    /// WebSocket upgrades per client address at once.
    pub ws_upgrade_burst: u32,
}

impl Default for FrontDoorSettings {
    fn default() -> Self {
        FrontDoorSettings {
            enabled: true,
            trusted_proxies: Vec::new(),
            login_per_minute: 60,
            login_burst: 30,
            login_in_flight_per_address: 2,
            login_free_failures: 5,
            login_max_lockout_secs: 15 * 60,
            register_per_hour: 10,
            register_burst: 10,
            register_global_per_minute: 600,
            ws_open_per_address: 512,
            ws_upgrades_per_second: 20.0,
            ws_upgrade_burst: 200,
        }
    }
}

impl FrontDoorSettings {
    /// The limits these settings stand for; an unparsable proxy is an error
    /// naming it.
    pub fn to_config(&self) -> std::result::Result<FrontDoorConfig, String> {
        let trusted_proxies = self
            .trusted_proxies
            .iter()
            .map(|p| {
                let p = p.trim();
                p.parse::<IpNet>()
                    .or_else(|_| p.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        format!("trusted proxy {p:?} is neither an address nor a CIDR block")
                    })
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        if !self.enabled {
            return Ok(FrontDoorConfig {
                trusted_proxies,
                ..FrontDoorConfig::unlimited()
            });
        }
        let on = |n: u32| n > 0;
        Ok(FrontDoorConfig {
            login_per_address: on(self.login_per_minute)
                .then(|| Rate::per_minute(self.login_per_minute, self.login_burst)),
            login_in_flight_per_address: (self.login_in_flight_per_address > 0)
                .then_some(self.login_in_flight_per_address),
            login_backoff: (self.login_max_lockout_secs > 0).then(|| Backoff {
                free: self.login_free_failures,
                base: Duration::from_secs(1),
                max: Duration::from_secs(self.login_max_lockout_secs),
                forget_after: Duration::from_secs(3600),
            }),
            register_per_address: on(self.register_per_hour)
                .then(|| Rate::per_hour(self.register_per_hour, self.register_burst)),
            register_global: on(self.register_global_per_minute).then(|| {
                Rate::per_minute(
                    self.register_global_per_minute,
                    self.register_global_per_minute,
                )
            }),
            ws_open_per_address: (self.ws_open_per_address > 0).then_some(self.ws_open_per_address),
            ws_upgrades_per_address: (self.ws_upgrades_per_second > 0.0)
                .then(|| Rate::per_second(self.ws_upgrades_per_second, self.ws_upgrade_burst)),
            trusted_proxies,
        })
    }
}

/// The client's address: the TCP peer, or — when the peer is a trusted proxy
/// — the right-most address of `X-Forwarded-For` that is not itself a
/// trusted proxy (the left-most entries are whatever the client wrote).
///
/// ```
/// use std::net::IpAddr;
/// use im_core::frontdoor::client_address;
/// let proxy: IpAddr = "10.0.0.2".parse().unwrap();
/// let trusted = vec!["10.0.0.0/8".parse().unwrap()];
/// let xff = Some("6.6.6.6, 203.0.113.7, 10.0.0.9");
/// assert_eq!(client_address(proxy, xff, &trusted), "203.0.113.7".parse::<IpAddr>().unwrap());
/// // An untrusted peer's header is ignored.
/// let peer: IpAddr = "198.51.100.1".parse().unwrap();
/// assert_eq!(client_address(peer, xff, &trusted), peer);
/// ```
pub fn client_address(peer: IpAddr, forwarded_for: Option<&str>, trusted: &[IpNet]) -> IpAddr {
    let peer = canonical(peer);
    let is_trusted = |a: &IpAddr| trusted.iter().any(|n| n.contains(a));
    if !is_trusted(&peer) {
        return peer;
    }
    let Some(header) = forwarded_for else {
        return peer;
    };
    let mut last_trusted = peer;
    for hop in header.rsplit(',') {
        match hop.trim().parse::<IpAddr>() {
            Ok(a) => {
                let a = canonical(a);
                if !is_trusted(&a) {
                    return a;
                }
                last_trusted = a;
            }
            // Garbage in the chain: trust nothing to its left.
            Err(_) => return last_trusted,
        }
    }
    last_trusted
}

/// IPv4-mapped IPv6 addresses as IPv4.
fn canonical(a: IpAddr) -> IpAddr {
    match a {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(a, IpAddr::V4),
        v4 => v4,
    }
}

/// The key an address is counted under: IPv4 as is, IPv6 by its /64 (one
/// subscriber usually holds a whole /64).
fn address_key(a: IpAddr) -> String {
    match canonical(a) {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0).to_string() + "/64"
        }
    }
}

/// Guards login, registration and WebSocket upgrades (see the module docs).
pub struct FrontDoor {
    throttle: Arc<dyn Throttle>,
    guard: Arc<dyn RegistrationGuard>,
    config: FrontDoorConfig,
    open: Mutex<HashMap<IpAddr, usize>>,
    logins: Mutex<HashMap<String, usize>>,
}

impl std::fmt::Debug for FrontDoor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrontDoor")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl FrontDoor {
    /// A front door counting in `throttle`, letting every registration that
    /// passes the limits through.
    pub fn new(throttle: Arc<dyn Throttle>, config: FrontDoorConfig) -> Self {
        FrontDoor {
            throttle,
            guard: Arc::new(AllowAll),
            config,
            open: Mutex::new(HashMap::new()),
            logins: Mutex::new(HashMap::new()),
        }
    }

    /// Asks `guard` about every registration that passes the limits.
    pub fn with_registration_guard(mut self, guard: Arc<dyn RegistrationGuard>) -> Self {
        self.guard = guard;
        self
    }

    /// The limits.
    pub fn config(&self) -> &FrontDoorConfig {
        &self.config
    }

    /// The client address of a request from `peer` (see [`client_address`]).
    pub fn client_address(&self, peer: IpAddr, forwarded_for: Option<&str>) -> IpAddr {
        client_address(peer, forwarded_for, &self.config.trusted_proxies)
    }

    /// Before a login is tried: the logins in flight on this node of the
    /// address and of the account, the address's bucket, then the
    /// account's lockout. Hold the permit until the login is answered: a
    /// flood from one address, or against one account, holds at most a few
    /// password hashes at a time, so other clients' logins wait behind no
    /// queue of its making.
    pub async fn check_login(
        self: &Arc<Self>,
        address: IpAddr,
        username: &str,
    ) -> Result<LoginPermit> {
        let address = canonical(address);
        let mut permit = LoginPermit {
            door: self.clone(),
            keys: Vec::new(),
        };
        if let Some(max) = self.config.login_in_flight_per_address {
            let key = format!("a:{}", address_key(address));
            if !permit.hold(key, max) {
                return Err(refused(
                    "too many logins at once from this address",
                    Duration::from_secs(1),
                    "login_in_flight",
                ));
            }
        }
        if self.config.login_backoff.is_some()
            && !permit.hold(format!("u:{username}"), LOGINS_IN_FLIGHT_PER_ACCOUNT)
        {
            return Err(refused(
                "a login of this account is already in progress",
                Duration::from_secs(1),
                "login_in_flight",
            ));
        }
        if let Some(rate) = self.config.login_per_address {
            let key = format!("login:a:{}", address_key(address));
            self.take(&key, rate, "too many login attempts from this address")
                .await?;
        }
        if self.config.login_backoff.is_some() {
            match self.throttle.lockout(&account_key(username)).await {
                Ok(Some(wait)) => {
                    return Err(refused(
                        "too many failed logins for this account",
                        wait,
                        "login_lockout",
                    ))
                }
                Ok(None) => {}
                Err(e) => throttle_error(&e),
            }
        }
        Ok(permit)
    }

    /// After a login was tried: a wrong password counts against the account,
    /// a success forgets its failures.
    pub async fn login_done(&self, username: &str, succeeded: bool) {
        let Some(backoff) = self.config.login_backoff else {
            return;
        };
        let key = account_key(username);
        let result = if succeeded {
            self.throttle.clear(&key).await
        } else {
            self.throttle.fail(&key, backoff).await.map(|_| ())
        };
        if let Err(e) = result {
            throttle_error(&e);
        }
    }

    /// Before an account is created: the address's bucket, the deployment's
    /// bucket, then the registration guard.
    pub async fn check_register(
        &self,
        address: IpAddr,
        username: &str,
        proof: Option<String>,
    ) -> Result<()> {
        if let Some(rate) = self.config.register_per_address {
            let key = format!("register:a:{}", address_key(address));
            self.take(&key, rate, "too many registrations from this address")
                .await?;
        }
        if let Some(rate) = self.config.register_global {
            self.take(
                "register:all",
                rate,
                "too many registrations; try again later",
            )
            .await?;
        }
        self.guard
            .check(&RegistrationAttempt {
                username: username.to_owned(),
                address,
                proof,
            })
            .await
    }

    /// Before a WebSocket upgrade: the address's upgrade bucket and its open
    /// sockets on this node. The permit counts the socket until dropped.
    pub async fn open_socket(self: &Arc<Self>, address: IpAddr) -> Result<SocketPermit> {
        let address = canonical(address);
        if let Some(max) = self.config.ws_open_per_address {
            let open = self.open.lock().get(&address).copied().unwrap_or(0);
            if open >= max {
                return Err(refused(
                    "too many open connections from this address",
                    Duration::from_secs(5),
                    "ws_open",
                ));
            }
        }
        if let Some(rate) = self.config.ws_upgrades_per_address {
            let key = format!("ws:a:{}", address_key(address));
            self.take(&key, rate, "too many new connections from this address")
                .await?;
        }
        if self.config.ws_open_per_address.is_none() {
            return Ok(SocketPermit {
                door: None,
                address,
            });
        }
        *self.open.lock().entry(address).or_insert(0) += 1;
        Ok(SocketPermit {
            door: Some(self.clone()),
            address,
        })
    }

    /// Open sockets counted for `address` on this node.
    pub fn open_sockets(&self, address: IpAddr) -> usize {
        self.open
            .lock()
            .get(&canonical(address))
            .copied()
            .unwrap_or(0)
    }

    async fn take(&self, key: &str, rate: Rate, what: &str) -> Result<()> {
        match self.throttle.take(key, rate).await {
            Ok(None) => Ok(()),
            Ok(Some(wait)) => Err(refused(
                what,
                wait,
                key.split(':').next().unwrap_or("limit"),
            )),
            Err(e) => {
                throttle_error(&e);
                Ok(())
            }
        }
    }
}

/// Logins of one account in flight at once on one node (its password
/// hashes are checked one or two at a time; more is a guessing burst).
pub const LOGINS_IN_FLIGHT_PER_ACCOUNT: usize = 2;

/// One login in flight, counted (per address and per account) until dropped.
#[derive(Debug)]
pub struct LoginPermit {
    door: Arc<FrontDoor>,
    keys: Vec<String>,
}

impl LoginPermit {
    /// Counts this login under `key` unless `max` are in flight already.
    fn hold(&mut self, key: String, max: usize) -> bool {
        let mut logins = self.door.logins.lock();
        let n = logins.entry(key.clone()).or_insert(0);
        if *n >= max {
            if *n == 0 {
                logins.remove(&key);
            }
            return false;
        }
        *n += 1;
        self.keys.push(key);
        true
    }
}

impl Drop for LoginPermit {
    fn drop(&mut self) {
        let mut logins = self.door.logins.lock();
        for key in &self.keys {
            uncount(&mut logins, key);
        }
    }
}

/// Uncounts one of `key` in `counts` (a count of 0 leaves the map).
fn uncount<K: std::hash::Hash + Eq>(counts: &mut HashMap<K, usize>, key: &K) {
    if let Some(n) = counts.get_mut(key) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            counts.remove(key);
        }
    }
}

/// One open WebSocket of an address, counted until dropped.
#[derive(Debug)]
pub struct SocketPermit {
    door: Option<Arc<FrontDoor>>,
    address: IpAddr,
}

impl Drop for SocketPermit {
    fn drop(&mut self) {
        if let Some(door) = &self.door {
            uncount(&mut door.open.lock(), &self.address);
        }
    }
}

fn account_key(username: &str) -> String {
    format!("login:u:{username}")
}

fn refused(message: &str, wait: Duration, what: &str) -> Error {
    metrics::counter!("im_frontdoor_refused_total", "limit" => what.to_owned()).increment(1);
    Error::Throttled {
        message: message.to_owned(),
        // Whole seconds, at least one: what Retry-After can say.
        retry_after: Duration::from_secs(wait.as_secs() + u64::from(wait.subsec_nanos() > 0))
            .max(Duration::from_secs(1)),
    }
}

fn throttle_error(e: &Error) {
    use std::sync::atomic::{AtomicI64, Ordering};
    /// When the last warning was logged (ms): one every 10 s, not one per request.
    static LOGGED: AtomicI64 = AtomicI64::new(0);
    metrics::counter!("im_frontdoor_throttle_errors_total").increment(1);
    let now = crate::id::now_ms();
    let last = LOGGED.load(Ordering::Relaxed);
    if now - last >= 10_000
        && LOGGED
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        tracing::warn!(error = %e, "front door counters unavailable; letting requests through");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryThrottle;

    fn door(config: FrontDoorConfig) -> Arc<FrontDoor> {
        Arc::new(FrontDoor::new(Arc::new(MemoryThrottle::new()), config))
    }

    #[tokio::test]
    async fn an_account_under_attack_locks_out_alone() {
        let d = door(FrontDoorConfig {
            login_per_address: None,
            ..FrontDoorConfig::default()
        });
        let attacker: IpAddr = "203.0.113.9".parse().unwrap();
        for _ in 0..6 {
            let _permit = d.check_login(attacker, "alice").await.unwrap();
            d.login_done("alice", false).await;
        }
        let err = d.check_login(attacker, "alice").await.unwrap_err();
        assert_eq!(err.code(), crate::ErrorCode::ResourceExhausted);
        assert!(err.retry_after().is_some());
        d.check_login(attacker, "bob").await.unwrap();
    }

    #[tokio::test]
    async fn sockets_are_counted_until_dropped() {
        let d = door(FrontDoorConfig {
            ws_open_per_address: Some(2),
            ..FrontDoorConfig::unlimited()
        });
        let a: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        let p1 = d.open_socket(a).await.unwrap();
        let _p2 = d.open_socket(a).await.unwrap();
        assert!(d.open_socket(a).await.is_err());
        assert!(d.open_socket("192.0.2.2".parse().unwrap()).await.is_ok());
        assert_eq!(d.open_sockets("192.0.2.1".parse().unwrap()), 2);
        drop(p1);
        assert!(d.open_socket(a).await.is_ok());
    }

    #[tokio::test]
    async fn logins_in_flight_are_capped_per_account_and_address() {
        let d = door(FrontDoorConfig {
            login_in_flight_per_address: Some(3),
            ..FrontDoorConfig::unlimited()
        });
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let mut held = Vec::new();
        for i in 0..3 {
            held.push(d.check_login(a, &format!("u{i}")).await.unwrap());
        }
        assert!(
            d.check_login(a, "u9").await.is_err(),
            "a fourth login of the address"
        );
        drop(held);
        assert!(d.check_login(a, "u9").await.is_ok());
        let d = door(FrontDoorConfig::default());
        let _one = d.check_login(a, "alice").await.unwrap();
        let _two = d
            .check_login("192.0.2.2".parse().unwrap(), "alice")
            .await
            .unwrap();
        let third = d.check_login("192.0.2.3".parse().unwrap(), "alice").await;
        assert!(third.is_err(), "a third concurrent login of one account");
    }

    #[test]
    fn ipv6_counts_by_prefix() {
        assert_eq!(
            address_key("2001:db8:1:2:aaaa::1".parse().unwrap()),
            address_key("2001:db8:1:2:bbbb::7".parse().unwrap())
        );
        assert_ne!(
            address_key("2001:db8:1:2::1".parse().unwrap()),
            address_key("2001:db8:1:3::1".parse().unwrap())
        );
    }
}
