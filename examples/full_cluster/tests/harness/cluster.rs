//! The cluster: separate OS processes of the `full_cluster` binary (2 logic,
//! 2 task, 2 connect, 1 api) on loopback, each logging to its own file;
//! every process is killed when the [`Cluster`] is dropped.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use super::{free_port, rand_u32};

/// The JWT secret every process of a test cluster shares.
pub const SECRET: &str = "cluster-test-secret-cluster-test-secret";

/// The connect nodes of [`Cluster::start`], in order.
pub const CONNECT_NODES: [&str; 2] = ["connect-1", "connect-2"];

/// One process of the cluster.
pub struct Proc {
    /// Its role name: `logic-1`, `task-2`, `connect-1`, `api`, …
    pub name: String,
    /// Its arguments, to start it again the same way.
    pub args: Vec<String>,
    /// Its readiness URL (`…/readyz`).
    pub ready: String,
    /// The running process.
    pub child: Child,
}

/// The processes of one test cluster and what they were given.
pub struct Cluster {
    /// Running (or killed) processes, by name.
    pub procs: Vec<Proc>,
    /// The cluster's namespace (Redis keys, etcd prefix, user names).
    pub ns: String,
    /// The api role's HTTP port.
    pub api: u16,
    /// Connect node name → WebSocket port.
    pub ws: BTreeMap<String, u16>,
    /// The ops ports (`/readyz`, `/metrics`) of logic-1 and logic-2.
    pub logic_ops: [u16; 2],
    /// The ops ports of task-1 and task-2.
    pub task_ops: [u16; 2],
    /// Where each process logs (`{name}.log`).
    pub logs: PathBuf,
    env: Vec<(String, String)>,
    env_of: HashMap<String, Vec<(String, String)>>,
    /// Snowflake worker id of logic-1 (logic-2 has the next one).
    pub worker: u16,
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
    /// A cluster not started yet (ports, namespace, log directory under
    /// `im-{scenario}-…` in the temp directory, defaults).
    pub fn new(scenario: &str) -> Cluster {
        let ns = format!("t{:08x}", rand_u32());
        let logs = std::env::temp_dir().join(format!("im-{scenario}-{ns}"));
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
    pub fn set_env(&mut self, key: &str, value: &str) {
        set(&mut self.env, key, value);
    }

    /// Sets a variable of one process (by name) started from now on.
    pub fn set_env_of(&mut self, name: &str, key: &str, value: &str) {
        set(self.env_of.entry(name.to_owned()).or_default(), key, value);
    }

    /// Starts `full_cluster {args}` as `name` (replacing a process of that
    /// name), ready when `ready` answers 2xx.
    pub fn spawn(&mut self, name: &str, args: &[String], ready: String) {
        let log = std::fs::File::create(self.logs.join(format!("{name}.log"))).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_full_cluster"));
        // tracing writes to stdout; errors go to stderr.
        cmd.args(args).stdout(log.try_clone().unwrap()).stderr(log);
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
            args: args.to_vec(),
            ready,
            child,
        });
    }

    /// 2 logic, 2 task, 2 connect, 1 api.
    pub fn start(&mut self) {
        for name in [
            "logic-1",
            "logic-2",
            "task-1",
            "task-2",
            CONNECT_NODES[0],
            CONNECT_NODES[1],
            "api",
        ] {
            self.spawn_role(name);
        }
    }

    /// Starts (or starts again) the process `name` (`logic-N`, `task-N`,
    /// `connect-N`, `api`) on fresh ports.
    pub fn spawn_role(&mut self, name: &str) {
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

    /// Starts (or starts again) connect node `name` on fresh ports.
    pub fn spawn_connect(&mut self, name: &str) {
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

    /// Starts a stopped process again with the same arguments (and ports).
    pub fn restart(&mut self, name: &str) {
        let p = self.proc_mut(name);
        let (args, ready) = (p.args.clone(), p.ready.clone());
        self.spawn(name, &args, ready);
    }

    /// The api's base URL.
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.api)
    }

    /// The WebSocket URL of connect node `node`.
    pub fn ws_url(&self, node: &str) -> String {
        format!("ws://127.0.0.1:{}/ws", self.ws[node])
    }

    /// The connect node a WebSocket URL of this cluster points at.
    pub fn node_of_url(&self, url: &str) -> Option<String> {
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

    /// The `/metrics` URL of process `name`.
    pub fn metrics_url(&self, name: &str) -> String {
        let p = self.procs.iter().find(|p| p.name == name).unwrap();
        p.ready.replace("/readyz", "/metrics")
    }

    /// The process `name`.
    pub fn proc_mut(&mut self, name: &str) -> &mut Proc {
        self.procs.iter_mut().find(|p| p.name == name).unwrap()
    }

    /// SIGKILLs `name` and reaps it.
    pub fn kill9(&mut self, name: &str) {
        let p = self.proc_mut(name);
        p.child.kill().unwrap();
        p.child.wait().unwrap();
    }

    /// SIGTERMs `name` and waits (at most 20 s) for it to exit.
    pub async fn term(&mut self, name: &str) -> std::process::ExitStatus {
        let p = self.proc_mut(name);
        let pid = p.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(s) = p.child.try_wait().unwrap() {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "{name} did not exit within 20 s of SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The log of process `name` so far.
    pub fn log_of(&self, name: &str) -> String {
        std::fs::read_to_string(self.logs.join(format!("{name}.log"))).unwrap_or_default()
    }

    /// The last lines of every process's log (for failure messages).
    pub fn log_tail(&self) -> String {
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
    pub async fn wait_ready(&mut self, http: &reqwest::Client, name: &str) {
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
    pub async fn wait_all_ready(&mut self, http: &reqwest::Client) {
        let names: Vec<String> = self.procs.iter().map(|p| p.name.clone()).collect();
        for n in names {
            self.wait_ready(http, &n).await;
        }
    }
}
