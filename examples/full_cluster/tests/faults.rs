#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Process-level fault scenarios of issue 9 on the real multi-process cluster
//! (2 logic, 2 task, 2 connect and 1 api processes of `full_cluster`), on the
//! machine's Redis, MariaDB and etcd or on private servers started here:
//!
//! - #3 a task process SIGKILLed between read and ack under load;
//! - #4 a connect node SIGKILLed with 1,000 live sockets;
//! - #6 Redis (private, AOF `appendfsync always`) SIGKILLed and restarted;
//! - #7 MySQL cut through the fault-injecting proxy;
//! - #8 etcd (private) restarted, and a connect node partitioned from it;
//!   #8b checks that the sessions of a node that rejoined discovery get
//!   pushes at once (product bug B4 of docs/reliability.md, fixed).
//!
//! Each prints one `RELIABILITY …` line (`reliability::report::Tally`) and
//! fails when an acked message was lost or stored twice, or when its own
//! checks fail. The scenarios run one at a time (a process-wide lock): each
//! starts its own cluster, and on 2 cores their timing figures would disturb
//! each other. `RELIABILITY_LONG=1` makes the MySQL cut 30 s (8 s by default)
//! and the Redis outage 15 s (3 s by default).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod common;

use common::{free_port, rand_u32};
use futures::{SinkExt, StreamExt};
use im_client::{Connection, ImClient};
use im_core::id::UserId;
use im_core::model::MessageKind;
use im_core::task::{PERSIST_GROUP, PUSH_GROUP};
use reliability::proxy::{Framing, Proxy};
use reliability::report::Tally;
use serde_json::{json, Value};
use sqlx::MySqlPool;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_util::sync::CancellationToken;

const SECRET: &str = "faults-test-secret-faults-test-secret";
/// `cluster.partitions` (the default): streams `{ns}:{p0..p63}:stream`.
const SHARDS: u32 = im_core::ports::DEFAULT_PARTITIONS;
const PASSWORD: &str = "password123";

// ---------------------------------------------------------------------------
// One scenario at a time.

static SERIAL: Mutex<()> = Mutex::new(());

fn run(scenario: impl std::future::Future<Output = ()>) {
    let _one_at_a_time = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(scenario);
}

fn long_mode() -> bool {
    std::env::var("RELIABILITY_LONG").is_ok_and(|v| v == "1" || v == "true")
}

fn env_or(var: &str, default: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| default.to_owned())
}

fn database_url() -> String {
    env_or("DATABASE_URL", "mysql://root@127.0.0.1:3306/test")
}

fn redis_url() -> String {
    env_or("REDIS_URL", "redis://127.0.0.1:6379")
}

fn etcd_endpoint() -> String {
    env_or("ETCD_ENDPOINTS", "http://127.0.0.1:2379")
        .split(',')
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// Byte range of `host:port` in `scheme://user@host:port/path`.
fn authority(url: &str) -> (usize, usize) {
    let start = url.find("://").map_or(0, |i| i + 3);
    let end = start + url[start..].find('/').unwrap_or(url.len() - start);
    let start = url[start..end].rfind('@').map_or(start, |i| start + i + 1);
    (start, end)
}

/// The socket address of a URL's server (MySQL's port by default).
fn server_of(url: &str) -> SocketAddr {
    let (s, e) = authority(url);
    let host = &url[s..e];
    let host = if host.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:3306")
    };
    host.to_socket_addrs()
        .unwrap_or_else(|e| panic!("cannot resolve {host} of {url}: {e}"))
        .next()
        .unwrap()
}

/// `url` with its server replaced by `addr`.
fn through(url: &str, addr: SocketAddr) -> String {
    let (s, e) = authority(url);
    format!("{}{addr}{}", &url[..s], &url[e..])
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

fn millis(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.1}")
    } else {
        format!("{ms:.0}")
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

// ---------------------------------------------------------------------------
// Required servers: a missing one fails with its name and how to start it.

async fn require_redis(url: &str) {
    let ping = async {
        let c = redis::Client::open(url).map_err(|e| e.to_string())?;
        let mut con =
            tokio::time::timeout(Duration::from_secs(3), c.get_multiplexed_async_connection())
                .await
                .map_err(|_| "no answer within 3 s".to_owned())?
                .map_err(|e| e.to_string())?;
        redis::cmd("PING")
            .query_async::<String>(&mut con)
            .await
            .map_err(|e| e.to_string())
    };
    if let Err(e) = ping.await {
        panic!(
            "Redis is required at {url} ({e}): start it with scripts/services.sh \
             (or `redis-server --daemonize yes --port 6379`), or set REDIS_URL"
        );
    }
}

async fn require_mysql(url: &str) -> MySqlPool {
    let pool = sqlx::mysql::MySqlPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(5))
        .connect(url)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "MariaDB/MySQL is required at {url} ({e}): start it with scripts/services.sh \
                 (or `start-stop-daemon --start --background --exec /usr/sbin/mariadbd`), \
                 or set DATABASE_URL"
            )
        });
    sqlx::query("SELECT 1").execute(&pool).await.unwrap();
    pool
}

async fn require_etcd(http: &reqwest::Client, endpoint: &str) {
    let ok = match http
        .get(format!("{endpoint}/health"))
        .timeout(Duration::from_secs(3))
        .send()
        .await
    {
        Ok(r) => r.text().await.unwrap_or_default().contains("true"),
        Err(_) => false,
    };
    assert!(
        ok,
        "etcd is required at {endpoint}: start it with scripts/services.sh \
         (it installs etcd-server and runs it on 127.0.0.1:2379), or set ETCD_ENDPOINTS"
    );
}

fn require_binary(name: &str, how: &str) {
    let ok = Command::new(name)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "`{name}` is required on PATH: {how}");
}

/// The machine's Redis, MariaDB and etcd (what every cluster here uses unless
/// a scenario replaces one).
async fn require_services(http: &reqwest::Client, redis: bool, etcd: bool) -> MySqlPool {
    if redis {
        require_redis(&redis_url()).await;
    }
    if etcd {
        require_etcd(http, &etcd_endpoint()).await;
    }
    require_mysql(&database_url()).await
}

// ---------------------------------------------------------------------------
// A private server process (redis-server, etcd), restartable on the same
// ports and data directory.

struct Server {
    program: String,
    args: Vec<String>,
    dir: PathBuf,
    child: Option<Child>,
    starts: u32,
}

impl Server {
    fn new(program: &str, dir: PathBuf, args: Vec<String>) -> Server {
        std::fs::create_dir_all(&dir).unwrap();
        Server {
            program: program.to_owned(),
            args,
            dir,
            child: None,
            starts: 0,
        }
    }

    fn start(&mut self) {
        self.starts += 1;
        let log =
            std::fs::File::create(self.dir.join(format!("server-{}.log", self.starts))).unwrap();
        let child = Command::new(&self.program)
            .args(&self.args)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.program));
        self.child = Some(child);
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Polls `check` every 50 ms until it is true; the time it took, or None
/// after `limit`.
async fn poll_until<F, Fut>(limit: Duration, mut check: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let t = Instant::now();
    loop {
        if check().await {
            return Some(t.elapsed());
        }
        if t.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn redis_ping(url: &str) -> bool {
    let Ok(c) = redis::Client::open(url) else {
        return false;
    };
    let Ok(Ok(mut con)) = tokio::time::timeout(
        Duration::from_millis(500),
        c.get_multiplexed_async_connection(),
    )
    .await
    else {
        return false;
    };
    redis::cmd("PING")
        .query_async::<String>(&mut con)
        .await
        .is_ok()
}

// ---------------------------------------------------------------------------
// The cluster: separate OS processes of the `full_cluster` binary.

struct Proc {
    name: String,
    ready: String,
    child: Child,
}

struct Cluster {
    procs: Vec<Proc>,
    ns: String,
    api: u16,
    /// Connect node name → WebSocket port.
    ws: BTreeMap<String, u16>,
    logic_ops: [u16; 2],
    task_ops: [u16; 2],
    logs: PathBuf,
    env: Vec<(String, String)>,
    env_of: HashMap<String, Vec<(String, String)>>,
    /// Snowflake worker id of logic-1 (logic-2 has the next one).
    worker: u16,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for p in &mut self.procs {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
    }
}

fn set(env: &mut Vec<(String, String)>, key: &str, value: &str) {
    env.retain(|(k, _)| k != key);
    env.push((key.to_owned(), value.to_owned()));
}

impl Cluster {
    /// A cluster not started yet (ports, namespace, log directory, defaults).
    fn new(scenario: &str) -> Cluster {
        let ns = format!("f{:08x}", rand_u32());
        let logs = std::env::temp_dir().join(format!("im-faults-{scenario}-{ns}"));
        std::fs::create_dir_all(&logs).unwrap();
        let mut c = Cluster {
            procs: Vec::new(),
            ns,
            api: free_port(),
            ws: BTreeMap::new(),
            logic_ops: [free_port(), free_port()],
            task_ops: [free_port(), free_port()],
            logs,
            env: Vec::new(),
            env_of: HashMap::new(),
            // Random: clusters running at the same time share the MySQL
            // archive, where two messages with one msg_id (same worker id,
            // same millisecond) keep only the first row.
            worker: 2 + (rand_u32() % 440) as u16 * 2,
        };
        let ns = c.ns.clone();
        for (k, v) in [
            ("IM_CLUSTER__NAMESPACE", ns.as_str()),
            ("IM_CLUSTER__JWT_SECRET", SECRET),
            ("IM_CLUSTER__LEASE_TTL_SECS", "2"),
            ("IM_CLUSTER__MYSQL_POOL", "4"),
            ("IM_TASK__CLAIM_IDLE_SECS", "3"),
            ("RUST_LOG", "info"),
        ] {
            c.set_env(k, v);
        }
        c
    }

    /// Sets a variable of every process started from now on.
    fn set_env(&mut self, key: &str, value: &str) {
        set(&mut self.env, key, value);
    }

    /// Sets a variable of one process (by name) started from now on.
    fn set_env_of(&mut self, name: &str, key: &str, value: &str) {
        set(self.env_of.entry(name.to_owned()).or_default(), key, value);
    }

    fn spawn(&mut self, name: &str, args: &[String], ready: String) {
        let log = std::fs::File::create(self.logs.join(format!("{name}.log"))).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_full_cluster"));
        // tracing writes to stdout; errors go to stderr.
        cmd.args(args).stdout(log.try_clone().unwrap()).stderr(log);
        // Every client of these drills comes from 127.0.0.1 (s04 alone opens
        // 1,000 sockets): the per-address limits are tested in cluster.rs
        // and im-transport's front_door tests, not here.
        cmd.env("IM_FRONT_DOOR__ENABLED", "false");
        for (k, v) in self
            .env
            .iter()
            .chain(self.env_of.get(name).into_iter().flatten())
        {
            cmd.env(k, v);
            // The plain variables (set by scripts/services.sh) would win over
            // the IM_CLUSTER__ ones pointing at a proxy or a private server.
            for (im, plain) in [
                ("IM_CLUSTER__REDIS_URL", "REDIS_URL"),
                ("IM_CLUSTER__DATABASE_URL", "DATABASE_URL"),
                ("IM_CLUSTER__ETCD_ENDPOINTS", "ETCD_ENDPOINTS"),
            ] {
                if k.as_str() == im {
                    cmd.env_remove(plain);
                }
            }
        }
        let child = cmd.spawn().unwrap();
        self.procs.retain(|p| p.name != name);
        self.procs.push(Proc {
            name: name.to_owned(),
            ready,
            child,
        });
    }

    /// 2 logic, 2 task, 2 connect, 1 api.
    fn start(&mut self) {
        for name in [
            "logic-1",
            "logic-2",
            "task-1",
            "task-2",
            "connect-1",
            "connect-2",
            "api",
        ] {
            self.spawn_role(name);
        }
    }

    /// Starts (or starts again) the process `name` (`logic-N`, `task-N`,
    /// `connect-N`, `api`) on fresh ports.
    fn spawn_role(&mut self, name: &str) {
        let index = |prefix: &str| -> usize { name[prefix.len()..].parse::<usize>().unwrap() - 1 };
        if name.starts_with("logic-") {
            let i = index("logic-");
            let (grpc, ops) = (free_port(), free_port());
            self.logic_ops[i] = ops;
            self.spawn(
                name,
                &[
                    "logic".into(),
                    "--worker-id".into(),
                    format!("{}", self.worker as usize + i),
                    "--grpc-listen".into(),
                    format!("127.0.0.1:{grpc}"),
                    "--ops-listen".into(),
                    format!("127.0.0.1:{ops}"),
                ],
                format!("http://127.0.0.1:{ops}/readyz"),
            );
        } else if name.starts_with("task-") {
            let ops = free_port();
            self.task_ops[index("task-")] = ops;
            self.spawn(
                name,
                &[
                    "task".into(),
                    "--id".into(),
                    name.to_owned(),
                    "--ops-listen".into(),
                    format!("127.0.0.1:{ops}"),
                ],
                format!("http://127.0.0.1:{ops}/readyz"),
            );
        } else if name.starts_with("connect-") {
            self.spawn_connect(name);
        } else {
            assert_eq!(name, "api");
            self.api = free_port();
            let api = self.api;
            self.spawn(
                "api",
                &[
                    "api".into(),
                    "--listen".into(),
                    format!("127.0.0.1:{api}"),
                    "--send-rate".into(),
                    "0".into(),
                ],
                format!("http://127.0.0.1:{api}/readyz"),
            );
        }
    }

    fn spawn_connect(&mut self, name: &str) {
        let (ws, grpc) = (free_port(), free_port());
        self.ws.insert(name.to_owned(), ws);
        self.spawn(
            name,
            &[
                "connect".into(),
                "--node-id".into(),
                name.to_owned(),
                "--listen".into(),
                format!("127.0.0.1:{ws}"),
                "--grpc-listen".into(),
                format!("127.0.0.1:{grpc}"),
                "--send-rate".into(),
                "0".into(),
            ],
            format!("http://127.0.0.1:{ws}/readyz"),
        );
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.api)
    }

    fn ws_url(&self, node: &str) -> String {
        format!("ws://127.0.0.1:{}/ws", self.ws[node])
    }

    fn node_of_url(&self, url: &str) -> Option<String> {
        let port: u16 = url
            .trim_start_matches("ws://127.0.0.1:")
            .split('/')
            .next()?
            .parse()
            .ok()?;
        self.ws
            .iter()
            .find(|(_, p)| **p == port)
            .map(|(n, _)| n.clone())
    }

    fn metrics_url(&self, name: &str) -> String {
        let p = self.procs.iter().find(|p| p.name == name).unwrap();
        p.ready.replace("/readyz", "/metrics")
    }

    fn proc_mut(&mut self, name: &str) -> &mut Proc {
        self.procs.iter_mut().find(|p| p.name == name).unwrap()
    }

    fn kill9(&mut self, name: &str) {
        let p = self.proc_mut(name);
        p.child.kill().unwrap();
        p.child.wait().unwrap();
    }

    fn log_of(&self, name: &str) -> String {
        std::fs::read_to_string(self.logs.join(format!("{name}.log"))).unwrap_or_default()
    }

    fn log_tail(&self) -> String {
        let mut out = format!("(logs in {})\n", self.logs.display());
        for p in &self.procs {
            let text = self.log_of(&p.name);
            let tail: Vec<&str> = text.lines().rev().take(8).collect();
            out.push_str(&format!(
                "--- {} ---\n{}\n",
                p.name,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            ));
        }
        out
    }

    /// Waits until `name` answers its readiness probe. A process that exits
    /// because a port it was given got taken meanwhile is started again on
    /// fresh ports; any other exit fails at once with its log.
    async fn wait_ready(&mut self, http: &reqwest::Client, name: &str) {
        let t = Instant::now();
        let mut respawns = 0;
        loop {
            let url = self
                .procs
                .iter()
                .find(|p| p.name == name)
                .unwrap()
                .ready
                .clone();
            let up = http
                .get(&url)
                .timeout(Duration::from_secs(3))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if up {
                return;
            }
            if let Some(status) = self.proc_mut(name).child.try_wait().unwrap() {
                let log = self.log_of(name);
                assert!(
                    log.contains("Address already in use") && respawns < 3,
                    "{name} exited with {status} before it was ready\n{}",
                    self.log_tail()
                );
                respawns += 1;
                self.spawn_role(name);
                continue;
            }
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "{name} not ready at {url} within 60 s\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until every process is ready.
    async fn wait_all_ready(&mut self, http: &reqwest::Client) {
        let names: Vec<String> = self.procs.iter().map(|p| p.name.clone()).collect();
        for n in names {
            self.wait_ready(http, &n).await;
        }
    }
}

async fn metric(http: &reqwest::Client, url: &str, name: &str) -> f64 {
    let Ok(r) = http.get(url).timeout(Duration::from_secs(3)).send().await else {
        return f64::NAN;
    };
    let text = r.text().await.unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .fold(0.0, |a, b| a + b)
}

// ---------------------------------------------------------------------------
// Users, sends, deliveries, the archive.

async fn users(base: &str, ns: &str, names: &[&str]) -> Vec<ImClient> {
    futures::future::join_all(names.iter().map(|n| async move {
        let name = format!("{ns}_{n}");
        // Right after a (re)start the api may not have discovered a logic
        // instance yet and answers 503 `unavailable`: retry for a while.
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut registered = false;
        loop {
            if !registered {
                match ImClient::register(base, &name, PASSWORD).await {
                    Ok(_) => registered = true,
                    // A retry of a registration that went through.
                    Err(e) if format!("{e:?} {e}").contains("already_exists") => registered = true,
                    Err(e) if Instant::now() < deadline => {
                        let _ = e;
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                    Err(e) => panic!("registering {name}: {e:?}"),
                }
            }
            match ImClient::login(base, &name, PASSWORD).await {
                Ok(c) => return c,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("logging {name} in: {e:?}"),
            }
        }
    }))
    .await
}

/// An acked send: what it must reach.
#[derive(Debug, Clone)]
struct Acked {
    sender: UserId,
    cmid: String,
    msg_id: u64,
    conv: String,
    seq: u64,
    to: Vec<UserId>,
}

/// One `POST /api/v1/messages`: the ack, or (HTTP status, error code); and
/// how long it took.
async fn http_send(
    http: &reqwest::Client,
    base: &str,
    from: &ImClient,
    cmid: &str,
    to: &Value,
    recipients: &[UserId],
) -> (Result<Acked, (u16, String)>, Duration) {
    let t = Instant::now();
    let r = http
        .post(format!("{base}/api/v1/messages"))
        .bearer_auth(&from.token)
        .json(&json!({"client_msg_id": cmid, "to": to, "body": cmid}))
        .send()
        .await;
    let out = match r {
        Err(e) => Err((0, format!("transport: {e}"))),
        Ok(r) => {
            let status = r.status().as_u16();
            let v: Value = r.json().await.unwrap_or(Value::Null);
            if status == 200 {
                Ok(Acked {
                    sender: from.user_id,
                    cmid: cmid.to_owned(),
                    msg_id: v["msg_id"].as_str().unwrap().parse().unwrap(),
                    conv: v["conversation_id"].as_str().unwrap().to_owned(),
                    seq: v["seq"].as_u64().unwrap(),
                    to: recipients.to_vec(),
                })
            } else {
                Err((
                    status,
                    v["error"]["code"].as_str().unwrap_or_default().to_owned(),
                ))
            }
        }
    };
    (out, t.elapsed())
}

/// Sends until acked (same `client_msg_id` on every retry); the ack and the
/// failed attempts.
async fn send_until_acked(
    http: &reqwest::Client,
    base: &str,
    from: &ImClient,
    cmid: &str,
    to: &Value,
    recipients: &[UserId],
) -> (Acked, Vec<(u16, String)>) {
    let mut failures = Vec::new();
    let t = Instant::now();
    loop {
        match http_send(http, base, from, cmid, to, recipients).await.0 {
            Ok(a) => return (a, failures),
            Err(e) => failures.push(e),
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "send {cmid} not acked within 60 s: {failures:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn to_user(u: UserId) -> Value {
    json!({"user": u.to_string()})
}

/// What each user's live connection received: user → msg_id → times.
#[derive(Clone, Default)]
struct Inbox(Arc<Mutex<HashMap<UserId, HashMap<u64, u32>>>>);

impl Inbox {
    /// Reads `conn` (of user `me`) into the inbox until aborted.
    fn listen(&self, mut conn: Connection, me: UserId) -> tokio::task::JoinHandle<()> {
        let inbox = self.clone();
        tokio::spawn(async move {
            while let Some(m) = conn.next_message().await {
                if m.from != me && m.kind != MessageKind::System {
                    inbox.add(me, m.msg_id.0);
                }
            }
        })
    }

    fn add(&self, user: UserId, msg: u64) {
        *self
            .0
            .lock()
            .unwrap()
            .entry(user)
            .or_default()
            .entry(msg)
            .or_insert(0) += 1;
    }

    fn has(&self, user: UserId, msg: u64) -> bool {
        self.0
            .lock()
            .unwrap()
            .get(&user)
            .is_some_and(|m| m.contains_key(&msg))
    }

    fn missing<'a>(&self, acked: &'a [Acked]) -> Vec<(UserId, &'a Acked)> {
        acked
            .iter()
            .flat_map(|a| a.to.iter().map(move |u| (*u, a)))
            .filter(|(u, a)| !self.has(*u, a.msg_id))
            .collect()
    }

    /// Messages some live connection got more than once (after the client's dedup).
    fn repeated(&self) -> usize {
        self.0
            .lock()
            .unwrap()
            .values()
            .flat_map(|m| m.values())
            .filter(|n| **n > 1)
            .count()
    }
}

/// Every message of a conversation, read as `user` over HTTP history.
async fn history(http: &reqwest::Client, base: &str, user: &ImClient, conv: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after = 0u64;
    loop {
        let r = http
            .get(format!(
                "{base}/api/v1/conversations/{conv}/messages?after_seq={after}&limit=100"
            ))
            .bearer_auth(&user.token)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "history of {conv}: {}", r.status());
        let v: Value = r.json().await.unwrap();
        let page = v["messages"].as_array().cloned().unwrap_or_default();
        if let Some(last) = page.last() {
            after = last["seq"].as_u64().unwrap();
        }
        out.extend(page);
        if !v["has_more"].as_bool().unwrap_or(false) {
            return out;
        }
    }
}

/// Rows in the archive per acked send, counted per logical message (sender,
/// `client_msg_id`): a retry stored under a new msg_id counts twice.
async fn persisted(db: &MySqlPool, acked: &[Acked]) -> HashMap<String, u64> {
    let convs: BTreeSet<&str> = acked.iter().map(|a| a.conv.as_str()).collect();
    let mut out = HashMap::new();
    if convs.is_empty() {
        return out;
    }
    // Conversation ids are `u:<digits>:<digits>` / `g:<digits>`: safe inline.
    let list = convs
        .iter()
        .map(|c| format!("'{c}'"))
        .collect::<Vec<_>>()
        .join(",");
    let rows: Vec<(u64, Vec<u8>)> = sqlx::query_as(&format!(
        "SELECT sender, client_msg_id FROM messages WHERE conversation_id IN ({list})"
    ))
    .fetch_all(db)
    .await
    .unwrap();
    let keys: HashMap<(u64, &str), u64> = acked
        .iter()
        .map(|a| ((a.sender.0, a.cmid.as_str()), a.msg_id))
        .collect();
    for (sender, cmid) in rows {
        let cmid = String::from_utf8_lossy(&cmid);
        if let Some(id) = keys.get(&(sender, cmid.as_ref())) {
            *out.entry(id.to_string()).or_insert(0) += 1;
        }
    }
    out
}

/// Waits until every acked send has a row (or `limit`); the rows and the wait.
async fn wait_persisted(
    db: &MySqlPool,
    acked: &[Acked],
    limit: Duration,
) -> (HashMap<String, u64>, Duration) {
    let t = Instant::now();
    loop {
        let rows = persisted(db, acked).await;
        if rows.len() >= acked.len() || t.elapsed() > limit {
            return (rows, t.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Fills the tally: waits up to `live` for live deliveries, reads what is
/// still missing by history (sync), waits for the archive. Returns how many
/// (recipient, message) pairs were found only by sync.
#[allow(clippy::too_many_arguments)]
async fn settle(
    tally: &mut Tally,
    acked: &[Acked],
    inbox: &Inbox,
    who: &HashMap<UserId, ImClient>,
    http: &reqwest::Client,
    base: &str,
    db: &MySqlPool,
    live: Duration,
) -> usize {
    poll_until(live, || async { inbox.missing(acked).is_empty() }).await;
    let missing = inbox.missing(acked);
    let mut by_sync = 0;
    let mut convs: BTreeSet<(UserId, String)> = BTreeSet::new();
    for (u, a) in &missing {
        convs.insert((*u, a.conv.clone()));
    }
    for (u, conv) in convs {
        for m in history(http, base, &who[&u], &conv).await {
            let id: u64 = m["msg_id"].as_str().unwrap().parse().unwrap();
            if missing.iter().any(|(mu, a)| *mu == u && a.msg_id == id) {
                inbox.add(u, id);
                by_sync += 1;
            }
        }
    }
    let (rows, _) = wait_persisted(db, acked, Duration::from_secs(40)).await;
    for a in acked {
        tally.acked.insert(a.msg_id.to_string());
        if a.to.iter().all(|u| inbox.has(*u, a.msg_id)) {
            tally.delivered.insert(a.msg_id.to_string(), 1);
        }
    }
    tally.persisted = rows;
    by_sync
}

// ---------------------------------------------------------------------------
// Redis queue introspection.

async fn redis_con(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

fn stream_key(ns: &str, shard: u32) -> String {
    format!("{ns}:{{p{shard}}}:stream")
}

/// A pending entry: (group, stream, id, consumer).
type Pending = (String, String, String, String);

/// Every pending entry of both groups on every shard.
async fn pel(con: &mut redis::aio::MultiplexedConnection, ns: &str) -> Vec<Pending> {
    let mut out = Vec::new();
    for g in [PUSH_GROUP, PERSIST_GROUP] {
        for s in 0..SHARDS {
            let key = stream_key(ns, s);
            let rows: Vec<(String, String, u64, u64)> = redis::cmd("XPENDING")
                .arg(&key)
                .arg(g)
                .arg("-")
                .arg("+")
                .arg(1_000_000)
                .query_async(con)
                .await
                .unwrap_or_default();
            out.extend(
                rows.into_iter()
                    .map(|(id, consumer, _, _)| (g.to_owned(), key.clone(), id, consumer)),
            );
        }
    }
    out
}

fn redis_str(v: &redis::Value) -> Option<String> {
    match v {
        redis::Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        redis::Value::SimpleString(s) => Some(s.clone()),
        redis::Value::Int(n) => Some(n.to_string()),
        _ => None,
    }
}

/// (pending, lag) of `group` summed over the shards (`XINFO GROUPS`); a lag
/// Redis cannot tell is counted by reading the undelivered entries.
async fn backlog(con: &mut redis::aio::MultiplexedConnection, ns: &str, group: &str) -> (u64, u64) {
    let (mut pending, mut lag) = (0, 0);
    for s in 0..SHARDS {
        let key = stream_key(ns, s);
        let groups: Vec<Vec<redis::Value>> = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(&key)
            .query_async(con)
            .await
            .unwrap_or_default();
        for g in groups {
            let fields: HashMap<String, &redis::Value> = g
                .chunks(2)
                .filter_map(|kv| Some((redis_str(&kv[0])?, kv.get(1)?)))
                .collect();
            if fields.get("name").and_then(|v| redis_str(v)).as_deref() != Some(group) {
                continue;
            }
            pending += fields
                .get("pending")
                .and_then(|v| redis_str(v))
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(0);
            match fields
                .get("lag")
                .and_then(|v| redis_str(v))
                .and_then(|s| s.parse::<u64>().ok())
            {
                Some(l) => lag += l,
                None => {
                    let last = fields
                        .get("last-delivered-id")
                        .and_then(|v| redis_str(v))
                        .unwrap_or_else(|| "0-0".into());
                    let after: Vec<redis::Value> = redis::cmd("XRANGE")
                        .arg(&key)
                        .arg(format!("({last}"))
                        .arg("+")
                        .query_async(con)
                        .await
                        .unwrap_or_default();
                    lag += after.len() as u64;
                }
            }
        }
    }
    (pending, lag)
}

// ---------------------------------------------------------------------------
// #3: a task process SIGKILLed between read and ack under load.

#[test]
fn s03_task_process_sigkilled_between_read_and_ack() {
    run(task_sigkill());
}

async fn task_sigkill() {
    let http = reqwest::Client::new();
    let db = require_services(&http, true, true).await;
    let claim_idle = 3u64;
    // task-1 reaches MySQL through a proxy: slowed down under load, so its
    // consumers sit on fetched, un-acked entries when it is killed.
    let mysql = Proxy::start(server_of(&database_url()), Framing::Raw)
        .await
        .unwrap();
    let mut cluster = Cluster::new("s03");
    cluster.set_env("IM_TASK__CLAIM_IDLE_SECS", &claim_idle.to_string());
    cluster.set_env_of(
        "task-1",
        "IM_CLUSTER__DATABASE_URL",
        &through(&database_url(), mysql.addr()),
    );
    cluster.start();
    cluster.wait_all_ready(&http).await;
    let base = cluster.base();

    let u = users(&base, &cluster.ns, &["s0", "s1", "s2", "s3", "r0", "r1"]).await;
    let (r0, r1) = (u[4].user_id, u[5].user_id);
    let who: HashMap<UserId, ImClient> = u.iter().map(|c| (c.user_id, c.clone())).collect();
    let g: Value = u[0]
        .call(
            reqwest::Method::POST,
            "/groups",
            Some(json!({"name": "faults"})),
        )
        .await
        .unwrap();
    let gid = g["group_id"].as_str().unwrap().to_owned();
    for m in [r0, r1] {
        u[0].call(
            reqwest::Method::POST,
            &format!("/groups/{gid}/members"),
            Some(json!({"user_id": m.to_string()})),
        )
        .await
        .unwrap();
    }
    let inbox = Inbox::default();
    let mut listeners = Vec::new();
    for (i, c) in u[4..].iter().enumerate() {
        let mut c = c.clone();
        c.ws_url = Some(cluster.ws_url(&format!("connect-{}", i + 1)));
        listeners.push(inbox.listen(c.connect().await.unwrap(), c.user_id));
    }
    for node in ["connect-1", "connect-2"] {
        let url = cluster.metrics_url(node);
        let bound = poll_until(Duration::from_secs(10), || async {
            metric(&http, &url, "im_ws_connections").await >= 1.0
        })
        .await;
        assert!(bound.is_some(), "the recipient's session on {node}");
    }
    // A raw second session of r0 (no client-side reordering) records the
    // push order as it arrives (PROTOCOL.md v1.2 "Order").
    let watch_stop = CancellationToken::new();
    let raw = open_ws(&cluster.ws_url("connect-2"), &u[4].token)
        .await
        .expect("a raw session of r0");
    let seen: Seen = Arc::default();
    let order = tokio::spawn(watch_order(raw, seen.clone(), watch_stop.clone()));

    // 2,000 sends over HTTP: s0 into the group {s0, r0, r1}, s1..s3 to r0/r1.
    mysql.set_latency(Duration::from_millis(150));
    let per_sender = 500usize;
    let stop_at = Arc::new(AtomicBool::new(false));
    let acks = Arc::new(AtomicU64::new(0));
    let mut senders = Vec::new();
    for (i, from) in u[..4].iter().enumerate() {
        let (http, base, from) = (http.clone(), base.clone(), from.clone());
        let (to, recipients) = match i {
            0 => (json!({"group": gid}), vec![r0, r1]),
            1 | 3 => (to_user(r0), vec![r0]),
            _ => (to_user(r1), vec![r1]),
        };
        let (stop_at, acks) = (stop_at.clone(), acks.clone());
        senders.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut failures = Vec::new();
            let mut tick = tokio::time::interval(Duration::from_millis(8));
            for k in 0..per_sender {
                if stop_at.load(Ordering::Relaxed) {
                    break;
                }
                tick.tick().await;
                let (a, f) =
                    send_until_acked(&http, &base, &from, &format!("l{i}-{k}"), &to, &recipients)
                        .await;
                acked.push(a);
                acks.fetch_add(1, Ordering::Relaxed);
                failures.extend(f);
            }
            (acked, failures)
        }));
    }

    // Mid-load (600 of 2,000 acked), kill task-1 while its consumers hold
    // fetched, un-acked entries.
    let mut con = redis_con(&redis_url()).await;
    let ns = cluster.ns.clone();
    let holding = poll_until(Duration::from_secs(30), || {
        let (mut con, ns, acks) = (con.clone(), ns.clone(), acks.clone());
        async move {
            acks.load(Ordering::Relaxed) >= 600
                && pel(&mut con, &ns)
                    .await
                    .iter()
                    .any(|(g, _, _, c)| g == PERSIST_GROUP && c.starts_with("task-1-"))
        }
    })
    .await;
    if holding.is_none() {
        stop_at.store(true, Ordering::Relaxed);
        panic!(
            "task-1 never held a pending persist entry mid-load within 30 s\n{}",
            cluster.log_tail()
        );
    }
    cluster.kill9("task-1");
    let killed = Instant::now();
    let acked_at_kill = acks.load(Ordering::Relaxed);
    let dead: Vec<Pending> = pel(&mut con, &ns)
        .await
        .into_iter()
        .filter(|(_, _, _, c)| c.starts_with("task-1-"))
        .collect();
    mysql.set_latency(Duration::ZERO);
    let dead_persist = dead.iter().filter(|p| p.0 == PERSIST_GROUP).count();
    let dead_push = dead.len() - dead_persist;
    assert!(
        dead_persist > 0,
        "the kill landed between read and ack: task-1 held pending persist entries"
    );

    // Every entry of the dead consumers is claimed and finished by task-2.
    let dead_ids: BTreeSet<(String, String, String)> = dead
        .iter()
        .map(|(g, s, id, _)| (g.clone(), s.clone(), id.clone()))
        .collect();
    let limit = Duration::from_secs(claim_idle + 30);
    let reclaim = poll_until(limit, || {
        let (mut con, ns, dead_ids) = (con.clone(), ns.clone(), &dead_ids);
        async move {
            !pel(&mut con, &ns)
                .await
                .into_iter()
                .any(|(g, s, id, _)| dead_ids.contains(&(g, s, id)))
        }
    })
    .await
    .map(|_| killed.elapsed());
    let reclaim = reclaim.unwrap_or_else(|| {
        panic!(
            "entries of the dead task-1 still pending {} s after the kill\n{}",
            limit.as_secs(),
            cluster.log_tail()
        )
    });

    let mut acked = Vec::new();
    let mut failures = Vec::new();
    for s in senders {
        let (a, f) = s.await.unwrap();
        acked.extend(a);
        failures.extend(f);
    }
    // The archive and every recipient have everything.
    let mut tally = Tally::new(
        "#3 task worker SIGKILLed under load",
        "SIGKILL task-1 (of 2) while it holds fetched, un-acked entries; 2,000 HTTP sends",
    );
    tally.sent = acked.len() as u64;
    let by_sync = settle(
        &mut tally,
        &acked,
        &inbox,
        &who,
        &http,
        &base,
        &db,
        Duration::from_secs(30),
    )
    .await;
    tally.figure = format!(
        "reclaim {} after SIGKILL ({dead_persist} persist + {dead_push} push entries of the dead consumers; \
         claim idle {claim_idle} s); killed after {acked_at_kill} acks; {} send retries; {by_sync} deliveries by sync",
        secs(reclaim),
        failures.len()
    );
    for l in listeners {
        l.abort();
    }
    assert_eq!(acked.len(), 4 * per_sender, "every send acked");
    assert_eq!(inbox.repeated(), 0, "the client drops duplicates");
    tally.check();
    // The successor of the dead pusher went on in order, with nothing lost:
    // every message to r0 reached its raw session live, in seq order per
    // conversation (a re-push of what the dead one had pushed is a duplicate,
    // never a step back to an unseen lower seq).
    let r0_msgs: BTreeSet<u64> = acked
        .iter()
        .filter(|a| a.to.contains(&r0))
        .map(|a| a.msg_id)
        .collect();
    let live = poll_until(Duration::from_secs(30), || {
        let (seen, r0_msgs) = (seen.clone(), &r0_msgs);
        async move { seen.lock().unwrap().is_superset(r0_msgs) }
    })
    .await;
    watch_stop.cancel();
    let out_of_order = order.await.unwrap();
    assert!(
        live.is_some(),
        "r0's raw session missed {} of {} messages pushed live",
        r0_msgs.difference(&seen.lock().unwrap()).count(),
        r0_msgs.len()
    );
    assert_eq!(
        out_of_order, 0,
        "pushes of a conversation arrived out of seq order across the takeover"
    );
    // XAUTOCLAIM runs every claim_idle / 2 s for entries idle claim_idle s:
    // everything is claimed within about claim_idle + claim_every + a batch.
    assert!(
        reclaim <= Duration::from_secs(claim_idle * 2 + 5),
        "reclaim took {} (claim idle {claim_idle} s)",
        secs(reclaim)
    );
}

// ---------------------------------------------------------------------------
// #4: a connect node SIGKILLed with 1,000 live sockets.

/// One raw WebSocket client's state, shared with the test.
#[derive(Debug, Default)]
struct Sock {
    /// Open and answered a sync since the last (re)connect.
    ready: bool,
    url: String,
    /// seq → msg_id of its conversation.
    seqs: BTreeMap<u64, u64>,
    /// Every seq up to this one is here.
    contiguous: u64,
    disconnects: u32,
    /// When it was usable again after its first disconnect.
    back: Option<Instant>,
}

impl Sock {
    fn add(&mut self, m: &Value) {
        let (Some(seq), Some(id)) = (
            m["seq"].as_u64(),
            m["msg_id"].as_str().and_then(|s| s.parse::<u64>().ok()),
        ) else {
            return;
        };
        self.seqs.insert(seq, id);
        while self.seqs.contains_key(&(self.contiguous + 1)) {
            self.contiguous += 1;
        }
    }

    fn gap(&self) -> bool {
        self.seqs
            .keys()
            .next_back()
            .is_some_and(|l| *l > self.contiguous)
    }
}

/// What [`watch_order`] saw so far (shared with the test while it runs).
type Seen = Arc<Mutex<BTreeSet<u64>>>;

/// Reads `message` frames of one raw session until `stop`: counts frames
/// whose seq is below one already seen in their conversation and whose
/// msg_id is new (out of order; a repeat of a seen msg_id is a duplicate,
/// which at-least-once allows); records every msg_id in `seen`.
async fn watch_order(mut ws: Ws, seen: Seen, stop: CancellationToken) -> u64 {
    let mut top: HashMap<String, u64> = HashMap::new();
    let mut out_of_order = 0;
    loop {
        let frame = tokio::select! {
            _ = stop.cancelled() => break,
            f = ws.next() => f,
        };
        let Some(Ok(WsMessage::Text(text))) = frame else {
            if frame.is_none() {
                break;
            }
            continue;
        };
        let Ok(v) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        if v["type"] != "message" || v["kind"] == "system" {
            continue;
        }
        let (Some(conv), Some(seq), Some(id)) = (
            v["conversation_id"].as_str(),
            v["seq"].as_u64(),
            v["msg_id"].as_str().and_then(|s| s.parse::<u64>().ok()),
        ) else {
            continue;
        };
        let new = seen.lock().unwrap().insert(id);
        let last = top.entry(conv.to_owned()).or_insert(0);
        if seq > *last {
            *last = seq;
        } else if new {
            out_of_order += 1;
        }
    }
    out_of_order
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn open_ws(url: &str, token: &str) -> Option<Ws> {
    let mut req = url.into_client_request().ok()?;
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().ok()?);
    tokio::time::timeout(
        Duration::from_secs(5),
        tokio_tungstenite::connect_async(req),
    )
    .await
    .ok()?
    .ok()
    .map(|(ws, _)| ws)
}

fn sync_frame(conv: &str, after: u64) -> WsMessage {
    WsMessage::Text(
        json!({"type": "sync", "conversation_id": conv, "after_seq": after, "limit": 100})
            .to_string()
            .into(),
    )
}

/// A client following protocol §7 by hand: on every (re)connect it asks
/// `GET /api/v1/connect`, syncs its conversation from its last contiguous
/// seq, and syncs again on a gap; backoff 50 ms doubling to 1 s.
async fn raw_client(
    http: reqwest::Client,
    base: String,
    token: String,
    conv: String,
    first_url: String,
    state: Arc<Mutex<Sock>>,
    stop: CancellationToken,
) {
    let mut url = first_url;
    let mut backoff = Duration::from_millis(50);
    let mut connected_once = false;
    loop {
        // Until the first connection the socket insists on `first_url`.
        if connected_once {
            let r = http
                .get(format!("{base}/api/v1/connect"))
                .bearer_auth(&token)
                .timeout(Duration::from_secs(5))
                .send()
                .await;
            if let Ok(r) = r {
                if let Ok(v) = r.json::<Value>().await {
                    if let Some(u) = v["ws_url"].as_str() {
                        url = u.to_owned();
                    }
                }
            }
        }
        let ws = tokio::select! {
            _ = stop.cancelled() => return,
            ws = open_ws(&url, &token) => ws,
        };
        let Some(mut ws) = ws else {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
            continue;
        };
        backoff = Duration::from_millis(50);
        connected_once = true;
        state.lock().unwrap().url = url.clone();
        session(&mut ws, &conv, &state, &stop).await;
        if stop.is_cancelled() {
            let _ = ws.close(None).await;
            return;
        }
        let mut s = state.lock().unwrap();
        s.ready = false;
        s.disconnects += 1;
    }
}

async fn session(ws: &mut Ws, conv: &str, state: &Mutex<Sock>, stop: &CancellationToken) {
    let after = state.lock().unwrap().contiguous;
    if ws.send(sync_frame(conv, after)).await.is_err() {
        return;
    }
    let mut sync_sent = Some(Instant::now());
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        let frame = tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {
                // A gap (storage lags the ack briefly), or no answer yet since
                // the (re)connect (an `error` answer, e.g. `unavailable` while
                // Logic is overloaded): sync again unless one is in flight
                // (or unanswered for 2 s).
                let (want, after) = {
                    let s = state.lock().unwrap();
                    (s.gap() || !s.ready, s.contiguous)
                };
                if want && sync_sent.is_none_or(|t| t.elapsed() > Duration::from_secs(2)) {
                    if ws.send(sync_frame(conv, after)).await.is_err() {
                        return;
                    }
                    sync_sent = Some(Instant::now());
                }
                continue;
            }
            f = ws.next() => f,
        };
        let text = match frame {
            Some(Ok(WsMessage::Text(t))) => t,
            Some(Ok(WsMessage::Close(_))) | Some(Err(_)) | None => return,
            Some(Ok(_)) => continue,
        };
        let Ok(v) = serde_json::from_str::<Value>(text.as_str()) else {
            continue;
        };
        let mut resync = None;
        {
            let mut s = state.lock().unwrap();
            match v["type"].as_str() {
                Some("message") if v["conversation_id"] == conv => {
                    s.add(&v);
                    if s.gap() && sync_sent.is_none() {
                        resync = Some(s.contiguous);
                    }
                }
                Some("sync_result") => {
                    sync_sent = None;
                    for m in v["messages"].as_array().into_iter().flatten() {
                        s.add(m);
                    }
                    if !s.ready {
                        s.ready = true;
                        if s.disconnects > 0 && s.back.is_none() {
                            s.back = Some(Instant::now());
                        }
                    }
                    if v["has_more"].as_bool() == Some(true) {
                        resync = Some(s.contiguous);
                    }
                }
                // An `error` answer (no sync_result): the tick asks again
                // 2 s after the sync was sent.
                _ => {}
            }
        }
        if let Some(after) = resync {
            if ws.send(sync_frame(conv, after)).await.is_err() {
                return;
            }
            sync_sent = Some(Instant::now());
        }
    }
}

#[test]
fn s04_connect_node_sigkilled_with_1000_live_sockets() {
    run(connect_sigkill());
}

async fn connect_sigkill() {
    let http = reqwest::Client::new();
    let db = require_services(&http, true, true).await;
    let sockets = 1_000usize;
    let recipients = 10usize;
    let mut cluster = Cluster::new("s04");
    cluster.start();
    cluster.wait_all_ready(&http).await;
    let base = cluster.base();
    let names: Vec<String> = std::iter::once("snd".to_owned())
        .chain((0..recipients).map(|i| format!("r{i}")))
        .collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let u = users(&base, &cluster.ns, &names).await;
    let sender = u[0].clone();
    let rs: Vec<ImClient> = u[1..].to_vec();
    let convs: Vec<String> = rs
        .iter()
        .map(|r| {
            let (a, b) = (
                sender.user_id.0.min(r.user_id.0),
                sender.user_id.0.max(r.user_id.0),
            );
            format!("u:{a}:{b}")
        })
        .collect();

    // 1,000 sockets (100 per recipient) on connect-1.
    let stop = CancellationToken::new();
    let states: Vec<Arc<Mutex<Sock>>> = (0..sockets)
        .map(|_| Arc::new(Mutex::new(Sock::default())))
        .collect();
    let first_url = cluster.ws_url("connect-1");
    let mut tasks = Vec::new();
    let mut all_ready = Some(Duration::ZERO);
    // Opened 100 at a time, each batch once the one before is usable.
    for (i, st) in states.iter().enumerate() {
        let r = i % recipients;
        tasks.push(tokio::spawn(raw_client(
            http.clone(),
            base.clone(),
            rs[r].token.clone(),
            convs[r].clone(),
            first_url.clone(),
            st.clone(),
            stop.clone(),
        )));
        if (i + 1) % 100 == 0 || i + 1 == sockets {
            all_ready = poll_until(Duration::from_secs(60), || async {
                states[..=i].iter().all(|s| s.lock().unwrap().ready)
            })
            .await;
            if all_ready.is_none() {
                break;
            }
        }
    }
    let ready_n = states.iter().filter(|s| s.lock().unwrap().ready).count();
    assert!(
        all_ready.is_some(),
        "only {ready_n} of {sockets} sockets opened on connect-1\n{}",
        cluster.log_tail()
    );
    let c1 = cluster.metrics_url("connect-1");
    let live = metric(&http, &c1, "im_ws_connections").await;
    assert_eq!(live as usize, sockets, "connect-1 holds every socket");

    // Sends: 3 per recipient before the kill, 3 during the reconnects, 1 after.
    let mut acked: Vec<Acked> = Vec::new();
    let send_round = |round: usize| {
        let (http, base, sender, rs) = (http.clone(), base.clone(), sender.clone(), rs.clone());
        async move {
            let all = futures::future::join_all(rs.iter().enumerate().map(|(i, r)| {
                let (http, base, sender) = (http.clone(), base.clone(), sender.clone());
                let to = r.user_id;
                async move {
                    let mut out = Vec::new();
                    for k in 0..3 {
                        out.push(
                            send_until_acked(
                                &http,
                                &base,
                                &sender,
                                &format!("c{round}-{i}-{k}"),
                                &to_user(to),
                                &[to],
                            )
                            .await
                            .0,
                        );
                    }
                    out
                }
            }))
            .await;
            all.into_iter().flatten().collect::<Vec<Acked>>()
        }
    };
    acked.extend(send_round(0).await);
    let got = poll_until(Duration::from_secs(30), || async {
        states.iter().all(|s| s.lock().unwrap().contiguous >= 3)
    })
    .await;
    assert!(
        got.is_some(),
        "the first 3 messages reached every socket\n{}",
        cluster.log_tail()
    );

    cluster.kill9("connect-1");
    let killed = Instant::now();
    let during = tokio::spawn(send_round(1));
    let back = poll_until(Duration::from_secs(90), || async {
        states.iter().all(|s| {
            let s = s.lock().unwrap();
            s.back.is_some() && s.ready
        })
    })
    .await;
    let back_n = states
        .iter()
        .filter(|s| s.lock().unwrap().back.is_some())
        .count();
    let ready_n = states.iter().filter(|s| s.lock().unwrap().ready).count();
    assert!(
        back.is_some(),
        "only {back_n} of {sockets} sockets usable again within 90 s ({ready_n} ready)\n{}",
        cluster.log_tail()
    );
    let rpc_errors = metric(
        &http,
        &cluster.metrics_url("connect-2"),
        "im_rpc_errors_total",
    )
    .await
        + metric(&http, &cluster.metrics_url("api"), "im_rpc_errors_total").await;
    acked.extend(during.await.unwrap());
    // One more each, so a socket that missed the tail sees a gap.
    for (i, r) in rs.iter().enumerate() {
        let to = r.user_id;
        acked.push(
            send_until_acked(
                &http,
                &base,
                &sender,
                &format!("c2-{i}"),
                &to_user(to),
                &[to],
            )
            .await
            .0,
        );
    }
    let last: HashMap<String, u64> = acked.iter().fold(HashMap::new(), |mut m, a| {
        let e = m.entry(a.conv.clone()).or_insert(0);
        *e = (*e).max(a.seq);
        m
    });
    let converged = poll_until(Duration::from_secs(30), || async {
        states
            .iter()
            .enumerate()
            .all(|(i, s)| s.lock().unwrap().contiguous >= last[&convs[i % recipients]])
    })
    .await;
    stop.cancel();
    for t in tasks {
        let _ = t.await;
    }

    // Every socket: every acked message at its seq, no gap.
    let mut gaps = 0usize;
    let mut wrong = 0usize;
    let mut on_other = 0usize;
    let mut times: Vec<Duration> = Vec::new();
    let mut per_msg: HashMap<u64, usize> = HashMap::new();
    for (i, s) in states.iter().enumerate() {
        let s = s.lock().unwrap();
        let conv = &convs[i % recipients];
        gaps += (1..=last[conv]).filter(|q| !s.seqs.contains_key(q)).count();
        for a in acked.iter().filter(|a| &a.conv == conv) {
            match s.seqs.get(&a.seq) {
                Some(id) if *id == a.msg_id => *per_msg.entry(a.msg_id).or_insert(0) += 1,
                Some(_) => wrong += 1,
                None => {}
            }
        }
        if cluster.node_of_url(&s.url).as_deref() == Some("connect-2") {
            on_other += 1;
        }
        if let Some(b) = s.back {
            times.push(b.duration_since(killed));
        }
    }
    times.sort();
    let per_user = sockets / recipients;
    let mut tally = Tally::new(
        "#4 connect node SIGKILLed with 1,000 live sockets",
        "SIGKILL connect-1 holding 1,000 sockets (10 users × 100); 30 sends during the reconnects",
    );
    tally.sent = acked.len() as u64;
    for a in &acked {
        tally.acked.insert(a.msg_id.to_string());
        if per_msg.get(&a.msg_id) == Some(&per_user) {
            tally.delivered.insert(a.msg_id.to_string(), 1);
        }
    }
    tally.persisted = wait_persisted(&db, &acked, Duration::from_secs(30)).await.0;
    tally.figure = format!(
        "reconnect (kill → new socket answered a sync) p50 {} ms, p99 {} ms, max {} ms; \
         {on_other}/{sockets} on connect-2; gaps {gaps}; {rpc_errors} retryable LogicRpc errors \
         (connect-2 + api) during the reconnects",
        millis(percentile(&times, 0.50)),
        millis(percentile(&times, 0.99)),
        millis(percentile(&times, 1.0)),
    );
    tally.check();
    assert!(
        converged.is_some(),
        "every socket caught up by sync\n{}",
        cluster.log_tail()
    );
    assert_eq!(gaps, 0, "0 gaps on every socket");
    assert_eq!(wrong, 0, "every socket has the acked message at each seq");
    assert_eq!(
        on_other, sockets,
        "every socket reconnected to the other node"
    );
    assert!(
        percentile(&times, 0.99) < Duration::from_secs(30),
        "p99 reconnect under 30 s"
    );
}

// ---------------------------------------------------------------------------
// #6: Redis SIGKILLed and restarted (AOF, appendfsync always) under load.

#[derive(Debug)]
struct Attempt {
    started: Instant,
    took: Duration,
    result: Result<(), (u16, String)>,
}

#[test]
fn s06_redis_restarted_under_load() {
    run(redis_restart());
}

async fn redis_restart() {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap();
    let db = require_services(&http, false, true).await;
    require_binary(
        "redis-server",
        "install it with `apt-get install redis-server` (scripts/services.sh does)",
    );
    let outage = Duration::from_secs(if long_mode() { 15 } else { 3 });
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let dir = std::env::temp_dir().join(format!("im-faults-redis-{port}-{:x}", rand_u32()));
    let mut redis_server = Server::new(
        "redis-server",
        dir.clone(),
        [
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--save",
            "",
            "--dir",
            dir.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
    );
    redis_server.start();
    assert!(
        poll_until(Duration::from_secs(10), || redis_ping(&url))
            .await
            .is_some(),
        "the private redis-server on port {port} did not answer (log in {})",
        dir.display()
    );

    let mut cluster = Cluster::new("s06");
    cluster.set_env("IM_CLUSTER__REDIS_URL", &url);
    cluster.start();
    cluster.wait_all_ready(&http).await;
    let base = cluster.base();
    let u = users(&base, &cluster.ns, &["s0", "s1", "r0", "r1"]).await;
    let who: HashMap<UserId, ImClient> = u.iter().map(|c| (c.user_id, c.clone())).collect();
    let inbox = Inbox::default();
    let mut listeners = Vec::new();
    for (i, c) in u[2..].iter().enumerate() {
        let mut c = c.clone();
        c.ws_url = Some(cluster.ws_url(&format!("connect-{}", i + 1)));
        listeners.push(inbox.listen(c.connect().await.unwrap(), c.user_id));
    }
    for node in ["connect-1", "connect-2"] {
        let m = cluster.metrics_url(node);
        assert!(
            poll_until(Duration::from_secs(10), || async {
                metric(&http, &m, "im_ws_connections").await >= 1.0
            })
            .await
            .is_some(),
            "the recipient's session on {node}"
        );
    }

    // Two senders (s0 → r0, s1 → r1), each send retried with its
    // client_msg_id until acked.
    let stop = CancellationToken::new();
    let acks = Arc::new(AtomicU64::new(0));
    let mut senders = Vec::new();
    let pairs = [(u[0].clone(), u[2].user_id), (u[1].clone(), u[3].user_id)];
    for (i, (from, to)) in pairs.into_iter().enumerate() {
        let (http, base) = (http.clone(), base.clone());
        let (stop, acks) = (stop.clone(), acks.clone());
        senders.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut attempts = Vec::new();
            let mut sent = 0u64;
            'sends: for k in 0.. {
                if stop.is_cancelled() {
                    break;
                }
                sent += 1;
                let cmid = format!("r{i}-{k}");
                loop {
                    let started = Instant::now();
                    let (r, took) =
                        http_send(&http, &base, &from, &cmid, &to_user(to), &[to]).await;
                    match r {
                        Ok(a) => {
                            attempts.push(Attempt {
                                started,
                                took,
                                result: Ok(()),
                            });
                            acked.push(a);
                            acks.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                        Err(e) => attempts.push(Attempt {
                            started,
                            took,
                            result: Err(e),
                        }),
                    }
                    if stop.is_cancelled() {
                        break 'sends;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (sent, acked, attempts)
        }));
    }
    assert!(
        poll_until(Duration::from_secs(30), || async {
            acks.load(Ordering::Relaxed) >= 100
        })
        .await
        .is_some(),
        "sends before the fault\n{}",
        cluster.log_tail()
    );

    redis_server.kill9();
    let killed = Instant::now();
    tokio::time::sleep(outage).await; // the length of the fault
    redis_server.start();
    let restarted = Instant::now();
    assert!(
        poll_until(Duration::from_secs(30), || redis_ping(&url))
            .await
            .is_some(),
        "redis-server restarted on port {port}"
    );
    let up = Instant::now();
    let before = acks.load(Ordering::Relaxed);
    let resumed = poll_until(Duration::from_secs(60), || async {
        acks.load(Ordering::Relaxed) >= before + 100
    })
    .await;
    stop.cancel();
    let mut acked = Vec::new();
    let mut attempts = Vec::new();
    let mut sent = 0;
    for s in senders {
        let (n, a, t) = s.await.unwrap();
        sent += n;
        acked.extend(a);
        attempts.extend(t);
    }
    assert!(
        resumed.is_some(),
        "sends succeed again after Redis is back\n{}",
        cluster.log_tail()
    );

    // Failures: only during the outage (and the reconnect right after it),
    // all `unavailable` (503), answered fast.
    let failed: Vec<&Attempt> = attempts.iter().filter(|a| a.result.is_err()).collect();
    let mut fail_times: Vec<Duration> = failed.iter().map(|a| a.took).collect();
    fail_times.sort();
    let not_503: Vec<&(u16, String)> = failed
        .iter()
        .filter_map(|a| a.result.as_ref().err())
        .filter(|(s, c)| *s != 503 || c != "unavailable")
        .collect();
    let first_ok_after = attempts
        .iter()
        .filter(|a| a.result.is_ok() && a.started + a.took > up)
        .map(|a| a.started + a.took)
        .min()
        .unwrap();
    let recovery = first_ok_after.duration_since(up);
    let in_outage = attempts
        .iter()
        .filter(|a| a.started >= killed && a.started < restarted)
        .count();
    let ok_in_outage = attempts
        .iter()
        .filter(|a| a.started >= killed + Duration::from_millis(200) && a.started < restarted)
        .filter(|a| a.result.is_ok())
        .count();

    let mut tally = Tally::new(
        "#6 Redis restarted",
        &format!(
            "SIGKILL the private redis-server (AOF, appendfsync always) under load, restart it after {} on the same port and dir",
            secs(outage)
        ),
    );
    tally.sent = sent;
    let by_sync = settle(
        &mut tally,
        &acked,
        &inbox,
        &who,
        &http,
        &base,
        &db,
        Duration::from_secs(30),
    )
    .await;
    tally.figure = format!(
        "{} failed attempts ({} of them not 503 unavailable), answered in p50 {} ms / p99 {} ms / max {} ms \
         (client timeout 15 s); {in_outage} attempts during the outage, {ok_in_outage} acked; \
         first ack {} ms after Redis answered PING again; {by_sync} deliveries by sync",
        failed.len(),
        not_503.len(),
        millis(percentile(&fail_times, 0.5)),
        millis(percentile(&fail_times, 0.99)),
        millis(percentile(&fail_times, 1.0)),
        millis(recovery),
    );
    for l in listeners {
        l.abort();
    }
    tally.check();
    assert!(!failed.is_empty(), "sends during the outage failed");
    assert_eq!(ok_in_outage, 0, "nothing acked while Redis was down");
    assert!(
        not_503.is_empty(),
        "sends during the outage fail with 503 unavailable, got {not_503:?}"
    );
    assert!(
        percentile(&fail_times, 0.99) < Duration::from_secs(5),
        "failures are fast: p99 {} ms",
        millis(percentile(&fail_times, 0.99))
    );
    assert!(
        recovery < Duration::from_secs(15),
        "sends succeed within 15 s of Redis returning ({} ms)",
        millis(recovery)
    );
    assert_eq!(inbox.repeated(), 0, "the client drops duplicates");
}

// ---------------------------------------------------------------------------
// #7: MySQL unreachable (cut through the proxy).

#[test]
fn s07_mysql_cut_through_the_proxy() {
    run(mysql_cut());
}

async fn mysql_cut() {
    let http = reqwest::Client::new();
    let db = require_services(&http, true, true).await;
    let cut_for = Duration::from_secs(if long_mode() { 30 } else { 8 });
    let mysql = Proxy::start(server_of(&database_url()), Framing::Raw)
        .await
        .unwrap();
    let mut cluster = Cluster::new("s07");
    cluster.set_env(
        "IM_CLUSTER__DATABASE_URL",
        &through(&database_url(), mysql.addr()),
    );
    cluster.start();
    cluster.wait_all_ready(&http).await;
    let base = cluster.base();
    let u = users(&base, &cluster.ns, &["s0", "s1", "r0", "r1"]).await;
    let who: HashMap<UserId, ImClient> = u.iter().map(|c| (c.user_id, c.clone())).collect();
    let inbox = Inbox::default();
    let mut listeners = Vec::new();
    for (i, c) in u[2..].iter().enumerate() {
        let mut c = c.clone();
        c.ws_url = Some(cluster.ws_url(&format!("connect-{}", i + 1)));
        listeners.push(inbox.listen(c.connect().await.unwrap(), c.user_id));
    }
    for node in ["connect-1", "connect-2"] {
        let m = cluster.metrics_url(node);
        assert!(
            poll_until(Duration::from_secs(10), || async {
                metric(&http, &m, "im_ws_connections").await >= 1.0
            })
            .await
            .is_some(),
            "the recipient's session on {node}"
        );
    }

    // Senders s0 → r0 and s1 → r1, about 100 sends/s each; a failed send is
    // retried with its client_msg_id.
    let stop = CancellationToken::new();
    let acks = Arc::new(AtomicU64::new(0));
    let mut senders = Vec::new();
    let pairs = [(u[0].clone(), u[2].user_id), (u[1].clone(), u[3].user_id)];
    for (i, (from, to)) in pairs.into_iter().enumerate() {
        let (http, base) = (http.clone(), base.clone());
        let (stop, acks) = (stop.clone(), acks.clone());
        senders.push(tokio::spawn(async move {
            let mut acked: Vec<(Instant, Acked)> = Vec::new();
            let mut failures = 0u64;
            let mut sent = 0u64;
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            'sends: for k in 0.. {
                tick.tick().await;
                if stop.is_cancelled() {
                    break;
                }
                sent += 1;
                let cmid = format!("m{i}-{k}");
                loop {
                    match http_send(&http, &base, &from, &cmid, &to_user(to), &[to])
                        .await
                        .0
                    {
                        Ok(a) => {
                            acked.push((Instant::now(), a));
                            acks.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                        Err(_) => failures += 1,
                    }
                    if stop.is_cancelled() {
                        break 'sends;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            (sent, acked, failures)
        }));
    }
    // Warm up: both logic processes know both recipients (they cache user
    // existence, so sends do not need MySQL during the cut).
    assert!(
        poll_until(Duration::from_secs(30), || async {
            acks.load(Ordering::Relaxed) >= 100
        })
        .await
        .is_some(),
        "sends before the fault\n{}",
        cluster.log_tail()
    );

    let task1 = cluster.metrics_url("task-1");
    let mut con = redis_con(&redis_url()).await;
    let ns = cluster.ns.clone();
    mysql.cut();
    let cut_at = Instant::now();
    let acks_at_cut = acks.load(Ordering::Relaxed);
    let (mut peak_pending, mut peak_lag) = (0f64, 0f64);
    while cut_at.elapsed() < cut_for {
        // The fault lasts `cut_for`; meanwhile sample the backlog gauges.
        let p = metric(&http, &task1, "im_queue_pending{group=\"persist\"}").await;
        let l = metric(&http, &task1, "im_queue_lag{group=\"persist\"}").await;
        if p.is_finite() {
            peak_pending = peak_pending.max(p);
        }
        if l.is_finite() {
            peak_lag = peak_lag.max(l);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let acked_in_cut = acks.load(Ordering::Relaxed) - acks_at_cut;
    // Nothing acked in the persist group without a commit: everything acked
    // since the cut is still in the group's backlog (pending or not yet read).
    let (pend, lag) = backlog(&mut con, &ns, PERSIST_GROUP).await;
    mysql.restore();
    let restored = Instant::now();

    // Keep sending a moment after the restore, then stop.
    let resumed = acks.load(Ordering::Relaxed);
    poll_until(Duration::from_secs(30), || async {
        acks.load(Ordering::Relaxed) >= resumed + 50
    })
    .await;
    stop.cancel();
    let mut acked = Vec::new();
    let mut sent = 0;
    let mut failures = 0;
    for s in senders {
        let (n, a, f) = s.await.unwrap();
        sent += n;
        acked.extend(a);
        failures += f;
    }
    let during: Vec<Acked> = acked
        .iter()
        .filter(|(t, _)| *t >= cut_at && *t < restored)
        .map(|(_, a)| a.clone())
        .collect();
    let acked: Vec<Acked> = acked.into_iter().map(|(_, a)| a).collect();
    // The backlog drains: every acked message lands in the archive.
    wait_persisted(&db, &acked, Duration::from_secs(60)).await;
    let drain = restored.elapsed();
    let drained_queue = poll_until(Duration::from_secs(30), || {
        let (mut con, ns) = (con.clone(), ns.clone());
        async move { backlog(&mut con, &ns, PERSIST_GROUP).await == (0, 0) }
    })
    .await;

    let mut tally = Tally::new(
        "#7 MySQL unreachable",
        &format!(
            "proxy between logic/task and MariaDB cut for {} ({} mode) under ~200 sends/s",
            secs(cut_for),
            if long_mode() { "long" } else { "short" }
        ),
    );
    tally.sent = sent;
    let by_sync = settle(
        &mut tally,
        &acked,
        &inbox,
        &who,
        &http,
        &base,
        &db,
        Duration::from_secs(30),
    )
    .await;
    tally.figure = format!(
        "{} acked during the cut; persist backlog at the end of the cut {} (pending {pend} + lag {lag}); \
         peak im_queue_pending{{persist}} {peak_pending}, peak im_queue_lag{{persist}} {peak_lag}; \
         drained {} after the restore; {failures} failed send attempts; {by_sync} deliveries by sync",
        during.len(),
        pend + lag,
        secs(drain),
    );
    for l in listeners {
        l.abort();
    }
    tally.check();
    assert!(
        !during.is_empty(),
        "sends were acked during the cut (Logic caches users)"
    );
    assert!(
        pend + lag >= acked_in_cut,
        "persist acked {} entries without a commit during the cut (backlog {} < {acked_in_cut} acked)",
        acked_in_cut - (pend + lag),
        pend + lag
    );
    assert!(
        drained_queue.is_some(),
        "the persist group's backlog drains to 0\n{}",
        cluster.log_tail()
    );
    assert_eq!(inbox.repeated(), 0, "the client drops duplicates");
}

// ---------------------------------------------------------------------------
// #8: etcd restarted, and a connect node partitioned from it.

/// Instances registered under `/{ns}/services/{service}/` (etcd's JSON
/// gateway) with their `sessions` metadata, or None when etcd does not answer.
async fn registry_sessions(
    http: &reqwest::Client,
    endpoint: &str,
    ns: &str,
    service: &str,
) -> Option<BTreeMap<String, u64>> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let prefix = format!("/{ns}/services/{service}/");
    let end = format!("/{ns}/services/{service}0");
    let v: Value = http
        .post(format!("{endpoint}/v3/kv/range"))
        .timeout(Duration::from_secs(2))
        .json(&json!({"key": b64.encode(&prefix), "range_end": b64.encode(&end)}))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    Some(
        v["kvs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|kv| {
                let key = b64.decode(kv["key"].as_str()?).ok()?;
                let value = b64.decode(kv["value"].as_str()?).ok()?;
                let inst: Value = serde_json::from_slice(&value).ok()?;
                let sessions = inst["metadata"]["sessions"]
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                let id = String::from_utf8_lossy(&key)
                    .trim_start_matches(&prefix)
                    .to_owned();
                Some((id, sessions))
            })
            .collect(),
    )
}

/// Instance ids registered under `/{ns}/services/{service}/`.
async fn registry(
    http: &reqwest::Client,
    endpoint: &str,
    ns: &str,
    service: &str,
) -> Option<BTreeSet<String>> {
    registry_sessions(http, endpoint, ns, service)
        .await
        .map(|m| m.into_keys().collect())
}

/// Waits until every node in `want` advertises that many sessions.
async fn await_sessions(http: &reqwest::Client, endpoint: &str, ns: &str, want: &[(&str, u64)]) {
    let ok = poll_until(Duration::from_secs(15), || async {
        registry_sessions(http, endpoint, ns, "connect")
            .await
            .is_some_and(|m| want.iter().all(|(n, k)| m.get(*n) == Some(k)))
    })
    .await;
    assert!(
        ok.is_some(),
        "connect nodes advertise sessions {want:?}: {:?}",
        registry_sessions(http, endpoint, ns, "connect").await
    );
}

/// The connect nodes the api hands out (`GET /api/v1/connect`, round-robin
/// over the least loaded; every node here has 0 sessions).
async fn api_view(http: &reqwest::Client, cluster: &Cluster, token: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for _ in 0..8 {
        let Ok(r) = http
            .get(format!("{}/api/v1/connect", cluster.base()))
            .bearer_auth(token)
            .timeout(Duration::from_secs(2))
            .send()
            .await
        else {
            continue;
        };
        if let Ok(v) = r.json::<Value>().await {
            if let Some(n) = v["ws_url"].as_str().and_then(|u| cluster.node_of_url(u)) {
                out.insert(n);
            }
        }
    }
    out
}

fn nodes(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| n.to_string()).collect()
}

/// A private etcd (restartable on its ports and data dir) and a started,
/// ready cluster on it whose connect-2 reaches etcd through `partition`.
struct EtcdRig {
    etcd: Server,
    endpoint: String,
    partition: Proxy,
    cluster: Cluster,
}

async fn etcd_rig(http: &reqwest::Client, scenario: &str, ttl: u64) -> EtcdRig {
    require_binary(
        "etcd",
        "install it with `apt-get install etcd-server` (scripts/services.sh does)",
    );
    let (client_port, peer_port) = (free_port(), free_port());
    let endpoint = format!("http://127.0.0.1:{client_port}");
    let dir = std::env::temp_dir().join(format!("im-faults-etcd-{client_port}-{:x}", rand_u32()));
    let peer = format!("http://127.0.0.1:{peer_port}");
    let mut etcd = Server::new(
        "etcd",
        dir.clone(),
        vec![
            "--name".into(),
            "faults".into(),
            "--data-dir".into(),
            dir.join("data").to_str().unwrap().into(),
            "--listen-client-urls".into(),
            endpoint.clone(),
            "--advertise-client-urls".into(),
            endpoint.clone(),
            "--listen-peer-urls".into(),
            peer.clone(),
            "--initial-advertise-peer-urls".into(),
            peer.clone(),
            "--initial-cluster".into(),
            format!("faults={peer}"),
        ],
    );
    etcd.start();
    assert!(
        poll_until(Duration::from_secs(20), || etcd_up(http, &endpoint))
            .await
            .is_some(),
        "the private etcd on {endpoint} did not come up (log in {})",
        dir.display()
    );
    let partition = Proxy::start(
        format!("127.0.0.1:{client_port}").parse().unwrap(),
        Framing::Raw,
    )
    .await
    .unwrap();
    let mut cluster = Cluster::new(scenario);
    cluster.set_env("IM_CLUSTER__ETCD_ENDPOINTS", &format!("[{endpoint}]"));
    cluster.set_env("IM_CLUSTER__LEASE_TTL_SECS", &ttl.to_string());
    cluster.set_env_of(
        "connect-2",
        "IM_CLUSTER__ETCD_ENDPOINTS",
        &format!("[http://{}]", partition.addr()),
    );
    cluster.start();
    cluster.wait_all_ready(http).await;
    EtcdRig {
        etcd,
        endpoint,
        partition,
        cluster,
    }
}

async fn etcd_up(http: &reqwest::Client, endpoint: &str) -> bool {
    http.get(format!("{endpoint}/health"))
        .timeout(Duration::from_secs(1))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

/// Waits until the api hands out exactly `want`.
async fn await_view(
    http: &reqwest::Client,
    cluster: &Cluster,
    token: &str,
    want: &BTreeSet<String>,
    limit: Duration,
    what: &str,
) -> Duration {
    let t = Instant::now();
    loop {
        let v = api_view(http, cluster, token).await;
        if &v == want {
            return t.elapsed();
        }
        assert!(
            t.elapsed() < limit,
            "{what}: the api hands out {v:?}, not {want:?}\n{}",
            cluster.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Opens a session of `user` on each node into its own inbox, and waits until
/// each node counts it.
async fn sessions_on(
    http: &reqwest::Client,
    cluster: &Cluster,
    user: &ImClient,
    nodes: &[&str],
) -> (Vec<Inbox>, Vec<tokio::task::JoinHandle<()>>) {
    let mut inboxes = Vec::new();
    let mut listeners = Vec::new();
    for node in nodes {
        let inbox = Inbox::default();
        let mut c = user.clone();
        c.ws_url = Some(cluster.ws_url(node));
        listeners.push(inbox.listen(c.connect().await.unwrap(), user.user_id));
        let m = cluster.metrics_url(node);
        assert!(
            poll_until(Duration::from_secs(10), || async {
                metric(http, &m, "im_ws_connections").await >= 1.0
            })
            .await
            .is_some(),
            "the session on {node}"
        );
        inboxes.push(inbox);
    }
    (inboxes, listeners)
}

/// Cuts connect-2 from etcd until both etcd and the api dropped it; when each
/// did, measured from the cut.
async fn partition_connect2(
    http: &reqwest::Client,
    rig: &EtcdRig,
    token: &str,
    ttl: u64,
) -> (Duration, Duration) {
    let ns = &rig.cluster.ns;
    rig.partition.cut();
    let cut_at = Instant::now();
    let (mut reg_gone, mut api_gone) = (None, None);
    loop {
        if reg_gone.is_none()
            && registry(http, &rig.endpoint, ns, "connect")
                .await
                .is_some_and(|r| !r.contains("connect-2"))
        {
            reg_gone = Some(cut_at.elapsed());
        }
        let v = api_view(http, &rig.cluster, token).await;
        if api_gone.is_none() && !v.contains("connect-2") && !v.is_empty() {
            api_gone = Some(cut_at.elapsed());
        }
        if let (Some(r), Some(a)) = (reg_gone, api_gone) {
            return (r, a);
        }
        assert!(
            cut_at.elapsed() < Duration::from_secs(ttl + 15),
            "connect-2 left discovery while partitioned (etcd after {reg_gone:?}, api after {api_gone:?})\n{}",
            rig.cluster.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn s08_etcd_restarted_and_a_connect_node_partitioned() {
    run(etcd_faults());
}

async fn etcd_faults() {
    let http = reqwest::Client::new();
    let db = require_services(&http, true, false).await;
    let ttl = 3u64;
    let mut rig = etcd_rig(&http, "s08", ttl).await;
    let endpoint = rig.endpoint.clone();
    let base = rig.cluster.base();
    let ns = rig.cluster.ns.clone();
    let u = users(&base, &ns, &["a", "b"]).await;
    let (a, b) = (u[0].clone(), u[1].clone());
    let both = nodes(&["connect-1", "connect-2"]);
    let after = nodes(&["connect-2", "connect-3"]);
    await_view(
        &http,
        &rig.cluster,
        &a.token,
        &both,
        Duration::from_secs(20),
        "at start",
    )
    .await;

    let mut acked = Vec::new();
    let mut k = 0;
    let mut send = |n: usize| {
        let (http, base, a, b) = (http.clone(), base.clone(), a.clone(), b.user_id);
        let first = k;
        k += n;
        async move {
            let mut out = Vec::new();
            for i in first..first + n {
                let (r, _) = http_send(&http, &base, &a, &format!("e{i}"), &to_user(b), &[b]).await;
                out.push(r.expect("a send (the data path does not use etcd)"));
            }
            out
        }
    };
    acked.extend(send(5).await);

    // 1. etcd SIGKILLed; meanwhile connect-1 is SIGKILLed and connect-3 starts.
    rig.etcd.kill9();
    rig.cluster.kill9("connect-1");
    rig.cluster.spawn_connect("connect-3");
    let in_outage = send(5).await;
    let in_outage_n = in_outage.len();
    acked.extend(in_outage);
    let stale = api_view(&http, &rig.cluster, &a.token).await;
    tokio::time::sleep(Duration::from_secs(3)).await; // the length of the outage
    rig.etcd.start();
    assert!(
        poll_until(Duration::from_secs(20), || etcd_up(&http, &endpoint))
            .await
            .is_some(),
        "etcd restarted on the same data dir"
    );
    let restarted = Instant::now();
    let (mut join3, mut leave1, mut task_saw) = (None, None, None);
    loop {
        let v = api_view(&http, &rig.cluster, &a.token).await;
        if v.contains("connect-3") && join3.is_none() {
            join3 = Some(restarted.elapsed());
        }
        if !v.contains("connect-1") && !v.is_empty() && leave1.is_none() {
            leave1 = Some(restarted.elapsed());
        }
        let logs = rig.cluster.log_of("task-1") + &rig.cluster.log_of("task-2");
        if task_saw.is_none()
            && logs
                .lines()
                .any(|l| l.contains("connect node left") && l.contains("connect-1"))
        {
            task_saw = Some(restarted.elapsed());
        }
        if v == after && task_saw.is_some() {
            break;
        }
        assert!(
            restarted.elapsed() < Duration::from_secs(40),
            "after the etcd restart: api sees {v:?}, registry {:?}, task dropped connect-1: {}\n{}",
            registry(&http, &endpoint, &ns, "connect").await,
            task_saw.is_some(),
            rig.cluster.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        registry(&http, &endpoint, &ns, "connect").await,
        Some(after.clone()),
        "etcd's registry after the restart"
    );

    // b holds a session on each current node (one each: the api still
    // round-robins between them) and stays connected throughout.
    let (inboxes, listeners) =
        sessions_on(&http, &rig.cluster, &b, &["connect-2", "connect-3"]).await;
    let (on2, on3) = (&inboxes[0], &inboxes[1]);
    await_sessions(&http, &endpoint, &ns, &[("connect-2", 1), ("connect-3", 1)]).await;
    await_view(
        &http,
        &rig.cluster,
        &a.token,
        &after,
        Duration::from_secs(10),
        "one session on each node",
    )
    .await;
    let probe = send(1).await.remove(0);
    let probe_id = probe.msg_id;
    acked.push(probe);
    assert!(
        poll_until(Duration::from_secs(10), || async {
            on2.has(b.user_id, probe_id) && on3.has(b.user_id, probe_id)
        })
        .await
        .is_some(),
        "before the partition both of b's sessions get live pushes"
    );

    // 2. connect-2 partitioned from etcd (it keeps serving): its lease
    // expires and it leaves; healed, it registers again.
    let (reg_gone, api_gone) = partition_connect2(&http, &rig, &a.token, ttl).await;
    let in_partition = send(5).await;
    rig.partition.restore();
    let rejoined = await_view(
        &http,
        &rig.cluster,
        &a.token,
        &after,
        Duration::from_secs(30),
        "after the partition healed",
    )
    .await;
    let back = Instant::now();

    // 3. After the heal: one send a second until b's session on connect-2
    // (never disconnected) gets a live push again; it then closes the gap by
    // sync (product bug: its routes were dropped while it was out of
    // discovery and come back only with its next route heartbeat, 30 s).
    let mut after_heal: Vec<Acked> = Vec::new();
    let mut live3 = None;
    let mut live2 = None;
    while live2.is_none() && back.elapsed() < Duration::from_secs(45) {
        let m = send(1).await.remove(0);
        let sent = Instant::now();
        after_heal.push(m.clone());
        while sent.elapsed() < Duration::from_secs(1) {
            if live3.is_none() && on3.has(b.user_id, after_heal[0].msg_id) {
                live3 = Some(back.elapsed());
            }
            if after_heal.iter().any(|m| on2.has(b.user_id, m.msg_id)) {
                live2 = Some(back.elapsed());
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let missed: Vec<&Acked> = in_partition.iter().chain(after_heal.iter()).collect();
    let caught_up = poll_until(Duration::from_secs(10), || async {
        missed.iter().all(|m| on2.has(b.user_id, m.msg_id))
    })
    .await;
    let in_partition_n = in_partition.len();
    acked.extend(in_partition);
    acked.extend(after_heal.iter().cloned());

    let mut tally = Tally::new(
        "#8 etcd restarted, connect node partitioned",
        &format!(
            "private etcd SIGKILLed for 3 s (connect-1 SIGKILLed and connect-3 started meanwhile), \
             then connect-2 cut from etcd by the proxy while it serves a session; lease TTL {ttl} s"
        ),
    );
    tally.sent = acked.len() as u64;
    // Per user: either of b's sessions, or history for what neither got.
    let inbox = Inbox::default();
    for i in [on2, on3] {
        for (u, m) in i.0.lock().unwrap().iter() {
            for id in m.keys() {
                if !inbox.has(*u, *id) {
                    inbox.add(*u, *id);
                }
            }
        }
    }
    let who: HashMap<UserId, ImClient> = [(b.user_id, b.clone())].into_iter().collect();
    let by_sync = settle(
        &mut tally,
        &acked,
        &inbox,
        &who,
        &http,
        &base,
        &db,
        Duration::ZERO,
    )
    .await;
    let s = |d: Option<Duration>| d.map_or("never".to_owned(), secs);
    tally.figure = format!(
        "etcd restart: connect-3 (started during the outage) handed out after {}, SIGKILLed connect-1 \
         dropped after {}, its routes after {}; partition: etcd dropped connect-2 after {}, the api after {} \
         (TTL {ttl} s); back {} after healing; then a live push reached b's session on connect-3 after {} ms \
         and its session on connect-2 only after {} (routes restored by its heartbeat); \
         {in_outage_n} + {in_partition_n} sends during the faults; {by_sync} read by history",
        s(join3),
        s(leave1),
        s(task_saw),
        secs(reg_gone),
        secs(api_gone),
        secs(rejoined),
        live3.map_or("never".to_owned(), millis),
        s(live2),
    );
    for l in listeners {
        l.abort();
    }
    tally.check();
    assert_eq!(
        stale, both,
        "while etcd is down the api keeps its last known set"
    );
    assert!(
        api_gone <= Duration::from_secs(ttl + 4),
        "a partitioned node leaves within about the lease TTL ({} vs TTL {ttl} s)",
        secs(api_gone)
    );
    assert!(
        live3.is_some_and(|d| d < Duration::from_secs(5)),
        "task pushes live to b's session on connect-3 after the heal\n{}",
        rig.cluster.log_tail()
    );
    // Up to the connect node's route heartbeat (30 s): see s08b for the bug.
    assert!(
        live2.is_some(),
        "b's session on connect-2 gets live pushes again within 45 s of the heal\n{}",
        rig.cluster.log_tail()
    );
    assert!(
        caught_up.is_some(),
        "b's session on connect-2 recovers the messages it missed by sync"
    );
}

/// Product bug B4 (see docs/reliability.md): a connect node cut from etcd
/// for longer than the lease TTL, but alive, has its session routes dropped
/// by task; when it registers again they are not restored until its next
/// route heartbeat (30 s), so its sessions miss live pushes meanwhile, and a
/// client only learns of them when a later message exposes the gap.
#[test]
fn s08b_sessions_of_a_rejoined_connect_node_get_live_pushes() {
    run(rejoined_node_pushes());
}

async fn rejoined_node_pushes() {
    let http = reqwest::Client::new();
    require_services(&http, true, false).await;
    let ttl = 3u64;
    let rig = etcd_rig(&http, "s08b", ttl).await;
    let base = rig.cluster.base();
    let u = users(&base, &rig.cluster.ns, &["a", "b"]).await;
    let (a, b) = (u[0].clone(), u[1].clone());
    let both = nodes(&["connect-1", "connect-2"]);
    let (inboxes, listeners) =
        sessions_on(&http, &rig.cluster, &b, &["connect-1", "connect-2"]).await;
    await_sessions(
        &http,
        &rig.endpoint,
        &rig.cluster.ns,
        &[("connect-1", 1), ("connect-2", 1)],
    )
    .await;
    await_view(
        &http,
        &rig.cluster,
        &a.token,
        &both,
        Duration::from_secs(20),
        "one session on each node",
    )
    .await;
    // A first message gives b's clients their baseline in the conversation,
    // so a later gap is noticed and synced.
    let (before, _) = http_send(
        &http,
        &base,
        &a,
        "before",
        &to_user(b.user_id),
        &[b.user_id],
    )
    .await;
    let before = before.unwrap();
    assert!(
        poll_until(Duration::from_secs(10), || async {
            inboxes[1].has(b.user_id, before.msg_id)
        })
        .await
        .is_some(),
        "b's session on connect-2 got the first message"
    );
    let (_, api_gone) = partition_connect2(&http, &rig, &a.token, ttl).await;
    let (during, _) = http_send(
        &http,
        &base,
        &a,
        "during",
        &to_user(b.user_id),
        &[b.user_id],
    )
    .await;
    let during = during.unwrap();
    rig.partition.restore();
    await_view(
        &http,
        &rig.cluster,
        &a.token,
        &both,
        Duration::from_secs(30),
        "after the heal",
    )
    .await;
    let (after, _) = http_send(&http, &base, &a, "after", &to_user(b.user_id), &[b.user_id]).await;
    let after = after.unwrap();
    // Once connect-2 is back in discovery, its session gets the next push
    // live, and with it (gap sync) the one pushed while it was out.
    let got = poll_until(Duration::from_secs(10), || async {
        inboxes[1].has(b.user_id, after.msg_id) && inboxes[1].has(b.user_id, during.msg_id)
    })
    .await;
    for l in listeners {
        l.abort();
    }
    assert!(
        inboxes[0].has(b.user_id, after.msg_id),
        "the control session on connect-1 got the push"
    );
    assert!(
        got.is_some(),
        "b's session on connect-2 (left discovery {} after the cut, then back) got neither the \
         message pushed after it was back nor, by sync, the one pushed while it was out",
        secs(api_gone)
    );
}
