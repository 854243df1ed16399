//! CPU per delivered message: Redis servers, local processes, and loadgen.
//!
//! Why: throughput alone does not say where a message's cost goes, nor
//! whether a change saved work or only moved it (a faster Logic that makes
//! Redis run more Lua is no win when Redis is the shared bottleneck). CPU
//! spent per delivered message is comparable across runs of different
//! lengths and rates, and across machines of similar speed. Two reads, at the
//! start and at the end of the window, cost nothing during the load, so the
//! figures can stay on for every benchmark.
//!
//! - Redis: `INFO cpu` (`used_cpu_sys + used_cpu_user`, seconds, the whole
//!   server process including I/O threads) and `INFO commandstats`, over a
//!   plain (non-cluster) connection to each `--redis-url`, so every master of
//!   a Redis Cluster is read itself.
//! - Processes: `utime + stime` (fields 14 and 15 of `/proc/<pid>/stat`, all
//!   threads, in clock ticks) of each `--pid` and each process matched by
//!   `--proc`, and of loadgen itself (`/proc/self/stat`).
//!
//! The ticks-per-second divisor is `sysconf(_SC_CLK_TCK)`; the workspace
//! forbids `unsafe`, so instead of calling libc it is read from where glibc's
//! `sysconf` takes it: the `AT_CLKTCK` entry of `/proc/self/auxv`, with 100
//! (Linux's `USER_HZ` on every mainstream architecture) if that cannot be read.
//!
//! Nothing read from the network or from `/proc` is trusted to be there: a
//! Redis that does not answer, or a process that exited (or whose pid was
//! reused: its start time changed) gives a warning on stderr and `null`
//! instead of a figure; a total is given only when all its parts were read.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use serde_json::{json, Map, Value};

use crate::Args;

/// How long one Redis connect or INFO read may take.
const REDIS_TIMEOUT: Duration = Duration::from_secs(3);
/// Commands listed from `INFO commandstats` (the most expensive by usec).
const TOP_COMMANDS: usize = 6;
/// `AT_CLKTCK` in the ELF auxiliary vector.
const AT_CLKTCK: u64 = 17;

fn warn(msg: &str) {
    eprintln!("loadgen: warning: {msg}");
}

/// Clock ticks per second of `/proc/<pid>/stat` times, and whether it was
/// read (`true`) or assumed to be 100 (`false`).
pub fn clk_tck() -> (u64, bool) {
    match std::fs::read("/proc/self/auxv")
        .ok()
        .and_then(|b| auxv_value(&b, AT_CLKTCK))
    {
        Some(t) if t > 0 => (t, true),
        _ => (100, false),
    }
}

/// The value of `key` in an auxiliary vector of native-endian words.
fn auxv_value(auxv: &[u8], key: u64) -> Option<u64> {
    const W: usize = std::mem::size_of::<usize>();
    let word = |b: &[u8]| -> Option<u64> {
        let mut a = [0u8; W];
        a.copy_from_slice(b.get(..W)?);
        Some(usize::from_ne_bytes(a) as u64)
    };
    auxv.chunks_exact(2 * W).find_map(|pair| {
        let (k, v) = pair.split_at(W);
        (word(k)? == key).then(|| word(v)).flatten()
    })
}

/// What `/proc/<pid>/stat` says about a process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcStat {
    pub comm: String,
    /// utime + stime, clock ticks.
    pub ticks: u64,
    /// Start time after boot, clock ticks (tells a reused pid apart).
    pub start: u64,
}

/// Parses `/proc/<pid>/stat`: `pid (comm) state ppid …`. The comm may hold
/// spaces and parentheses, so it runs to the *last* `)`; utime and stime are
/// fields 14 and 15, starttime field 22 (1-based, as in proc(5)).
pub fn parse_stat(s: &str) -> Option<ProcStat> {
    let open = s.find('(')?;
    let close = s.rfind(')')?;
    let comm = s.get(open + 1..close)?.to_owned();
    // Fields from 3 (state) on.
    let rest: Vec<&str> = s.get(close + 1..)?.split_whitespace().collect();
    let field = |n: usize| -> Option<u64> { rest.get(n.checked_sub(3)?)?.parse().ok() };
    Some(ProcStat {
        comm,
        ticks: field(14)?.checked_add(field(15)?)?,
        start: field(22)?,
    })
}

fn read_stat(path: &str) -> Result<ProcStat, String> {
    let s = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    parse_stat(&s).ok_or_else(|| format!("{path}: unexpected format"))
}

/// A `--proc` value: `name` or `name:word`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcSpec {
    pub name: String,
    pub word: Option<String>,
}

impl ProcSpec {
    pub fn parse(spec: &str) -> ProcSpec {
        match spec.split_once(':') {
            Some((name, word)) if !word.is_empty() => ProcSpec {
                name: name.to_owned(),
                word: Some(word.to_owned()),
            },
            _ => ProcSpec {
                name: spec.trim_end_matches(':').to_owned(),
                word: None,
            },
        }
    }

    /// Whether a process with this comm and argv is one of ours: comm, or the
    /// basename of `argv[0]`, equals the name, and (with `name:word`) one of
    /// the arguments after `argv[0]` equals the word.
    pub fn matches(&self, comm: &str, argv: &[String]) -> bool {
        let base = argv
            .first()
            .map(|a| a.rsplit('/').next().unwrap_or(a.as_str()));
        let named = comm == self.name || base == Some(self.name.as_str());
        named
            && self
                .word
                .as_ref()
                .is_none_or(|w| argv.iter().skip(1).any(|a| a == w))
    }
}

/// Pids of the processes matching `spec` (loadgen itself excluded).
fn find_pids(spec: &ProcSpec) -> Vec<u32> {
    let me = std::process::id();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter(|&pid| {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            let argv: Vec<String> = std::fs::read(format!("/proc/{pid}/cmdline"))
                .unwrap_or_default()
                .split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            spec.matches(comm.trim_end_matches('\n'), &argv)
        })
        .collect();
    pids.sort_unstable();
    pids
}

/// Seconds of CPU in an `INFO cpu` reply: `used_cpu_sys + used_cpu_user`
/// (not the `_children` or `_main_thread` lines).
pub fn parse_info_cpu(info: &str) -> Option<f64> {
    let mut found = false;
    let mut sum = 0.0;
    for line in info.lines() {
        if let Some((k, v)) = line.trim().split_once(':') {
            if k == "used_cpu_sys" || k == "used_cpu_user" {
                sum += v.trim().parse::<f64>().ok()?;
                found = true;
            }
        }
    }
    found.then_some(sum)
}

/// Per command (`cmdstat_<name>:calls=…,usec=…,…`): (calls, usec).
pub fn parse_commandstats(info: &str) -> HashMap<String, (u64, u64)> {
    let mut out = HashMap::new();
    for line in info.lines() {
        let Some((k, v)) = line.trim().split_once(':') else {
            continue;
        };
        let Some(cmd) = k.strip_prefix("cmdstat_") else {
            continue;
        };
        let (mut calls, mut usec) = (None, None);
        for kv in v.split(',') {
            match kv.split_once('=') {
                Some(("calls", n)) => calls = n.parse().ok(),
                Some(("usec", n)) => usec = n.parse().ok(),
                _ => {}
            }
        }
        if let (Some(c), Some(u)) = (calls, usec) {
            out.insert(cmd.to_owned(), (c, u));
        }
    }
    out
}

/// µs of CPU per message: `delta_s * 1e6 / msgs`; none without messages or
/// with a negative delta (a restarted server, `CONFIG RESETSTAT`).
pub fn per_msg_us(delta_s: f64, msgs: u64) -> Option<f64> {
    (msgs > 0 && delta_s.is_finite() && delta_s >= 0.0).then(|| delta_s * 1e6 / msgs as f64)
}

/// Seconds in `ticks` clock ticks.
pub fn ticks_to_secs(ticks: u64, clk_tck: u64) -> f64 {
    ticks as f64 / clk_tck.max(1) as f64
}

/// Command-stat deltas between two reads (commands new at `end` count from 0).
fn command_deltas(
    start: &HashMap<String, (u64, u64)>,
    end: &HashMap<String, (u64, u64)>,
) -> HashMap<String, (u64, u64)> {
    end.iter()
        .map(|(k, &(c, u))| {
            let (c0, u0) = start.get(k).copied().unwrap_or((0, 0));
            (k.clone(), (c.saturating_sub(c0), u.saturating_sub(u0)))
        })
        .filter(|(_, (c, u))| *c > 0 || *u > 0)
        .collect()
}

/// The `TOP_COMMANDS` most expensive commands, by usec, per message.
pub fn top_commands(deltas: &HashMap<String, (u64, u64)>, msgs: u64) -> Value {
    let mut v: Vec<(&String, &(u64, u64))> = deltas.iter().collect();
    v.sort_by(|a, b| b.1 .1.cmp(&a.1 .1).then_with(|| a.0.cmp(b.0)));
    let per = |x: u64| (msgs > 0).then(|| x as f64 / msgs as f64);
    Value::Array(
        v.into_iter()
            .take(TOP_COMMANDS)
            .map(|(cmd, &(calls, usec))| {
                json!({
                    "command": cmd,
                    "calls": calls,
                    "usec": usec,
                    "calls_per_msg": per(calls),
                    "usec_per_msg": per(usec),
                })
            })
            .collect(),
    )
}

/// One Redis server's counters at one instant.
#[derive(Debug, Clone)]
struct RedisInfo {
    cpu_s: f64,
    commands: HashMap<String, (u64, u64)>,
}

struct RedisNode {
    /// The URL without its password.
    label: String,
    con: Result<MultiplexedConnection, String>,
}

async fn connect(url: &str) -> Result<MultiplexedConnection, String> {
    let client = redis::Client::open(url).map_err(|e| e.to_string())?;
    match tokio::time::timeout(REDIS_TIMEOUT, client.get_multiplexed_async_connection()).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("connect timed out".into()),
    }
}

async fn read_info(con: Result<MultiplexedConnection, String>) -> Result<RedisInfo, String> {
    let mut con = con?;
    let mut pipe = redis::pipe();
    pipe.cmd("INFO").arg("cpu").cmd("INFO").arg("commandstats");
    let (cpu, cmds): (String, String) =
        match tokio::time::timeout(REDIS_TIMEOUT, pipe.query_async(&mut con)).await {
            Ok(r) => r.map_err(|e| e.to_string())?,
            Err(_) => return Err("INFO timed out".into()),
        };
    Ok(RedisInfo {
        cpu_s: parse_info_cpu(&cpu).ok_or("no used_cpu_sys/used_cpu_user in INFO cpu")?,
        commands: parse_commandstats(&cmds),
    })
}

/// `redis://user:secret@host:port/0` → `redis://host:port/0`.
fn redact(url: &str) -> String {
    match (url.split_once("://"), url.rfind('@')) {
        (Some((scheme, _)), Some(at)) => format!("{scheme}://{}", &url[at + 1..]),
        _ => url.to_owned(),
    }
}

/// A `--pid` or `--proc` and the pids it stands for.
struct ProcTarget {
    label: String,
    pids: Vec<u32>,
}

/// What to measure, connected and resolved before the warm-up so that the
/// reads at the window's edges are quick.
pub struct Probe {
    redis: Vec<RedisNode>,
    procs: Vec<ProcTarget>,
    clk_tck: u64,
}

/// The counters at one instant.
pub struct Sample {
    at: Instant,
    redis: Vec<Result<RedisInfo, String>>,
    procs: HashMap<u32, Result<ProcStat, String>>,
    own: Result<ProcStat, String>,
}

impl Probe {
    /// Connects to every `--redis-url` and finds the pids of every `--proc`
    /// (processes started later are not measured).
    pub async fn new(args: &Args) -> Probe {
        let (clk_tck, read) = clk_tck();
        if !read {
            warn("could not read AT_CLKTCK from /proc/self/auxv; assuming 100 ticks per second");
        }
        let mut redis = Vec::new();
        for url in args.redis_url.iter().filter(|u| !u.trim().is_empty()) {
            let label = redact(url.trim());
            let con = connect(url.trim()).await;
            if let Err(e) = &con {
                warn(&format!("redis {label}: {e}; no CPU figure for it"));
            }
            redis.push(RedisNode { label, con });
        }
        let mut procs = Vec::new();
        for &pid in &args.pid {
            if let Err(e) = read_stat(&format!("/proc/{pid}/stat")) {
                warn(&format!("--pid {pid}: {e}"));
            }
            procs.push(ProcTarget {
                label: pid.to_string(),
                pids: vec![pid],
            });
        }
        for spec in &args.proc {
            let pids = find_pids(&ProcSpec::parse(spec));
            if pids.is_empty() {
                warn(&format!("--proc {spec}: no such process; no CPU figure"));
            }
            procs.push(ProcTarget {
                label: spec.clone(),
                pids,
            });
        }
        Probe {
            redis,
            procs,
            clk_tck,
        }
    }

    /// Reads every counter (the Redis servers concurrently).
    pub async fn sample(&self) -> Sample {
        let reads = self.redis.iter().map(|n| read_info(n.con.clone()));
        let redis = futures::future::join_all(reads).await;
        let procs = self
            .procs
            .iter()
            .flat_map(|t| t.pids.iter().copied())
            .map(|pid| (pid, read_stat(&format!("/proc/{pid}/stat"))))
            .collect();
        Sample {
            at: Instant::now(),
            redis,
            procs,
            own: read_stat("/proc/self/stat"),
        }
    }

    /// CPU seconds of `pid` between the samples, if it ran through both.
    fn proc_delta(&self, a: &Sample, b: &Sample, pid: u32) -> Result<f64, String> {
        let get = |s: &Sample| -> Result<ProcStat, String> {
            s.procs
                .get(&pid)
                .cloned()
                .unwrap_or_else(|| Err(format!("pid {pid} not sampled")))
        };
        let (s0, s1) = (get(a)?, get(b)?);
        if s0.start != s1.start {
            return Err(format!("pid {pid} was reused by another process"));
        }
        Ok(ticks_to_secs(
            s1.ticks.saturating_sub(s0.ticks),
            self.clk_tck,
        ))
    }

    /// The report's CPU keys. `msgs` is the message count the figures are
    /// divided by (main passes the measured deliveries).
    pub fn report(&self, a: &Sample, b: &Sample, msgs: u64) -> Map<String, Value> {
        let mut out = Map::new();
        out.insert(
            "cpu_window_s".into(),
            json!(b.at.duration_since(a.at).as_secs_f64()),
        );
        out.insert("cpu_msgs".into(), json!(msgs));
        out.insert("clk_tck".into(), json!(self.clk_tck));

        // Redis, per server and summed.
        let mut nodes = Vec::new();
        let mut sum_s = Some(0.0);
        let mut sum_cmds: HashMap<String, (u64, u64)> = HashMap::new();
        for (i, node) in self.redis.iter().enumerate() {
            let pair = match (a.redis.get(i), b.redis.get(i)) {
                (Some(Ok(x)), Some(Ok(y))) => Ok((x, y)),
                (Some(Err(e)), _) | (_, Some(Err(e))) => Err(e.clone()),
                _ => Err("not sampled".to_owned()),
            };
            match pair {
                Ok((x, y)) => {
                    let d = y.cpu_s - x.cpu_s;
                    let cmds = command_deltas(&x.commands, &y.commands);
                    for (k, (c, u)) in &cmds {
                        let e = sum_cmds.entry(k.clone()).or_insert((0, 0));
                        e.0 += c;
                        e.1 += u;
                    }
                    let us = per_msg_us(d, msgs);
                    if us.is_none() && msgs > 0 {
                        warn(&format!(
                            "redis {}: CPU went backwards (restarted?); no figure",
                            node.label
                        ));
                    }
                    sum_s = sum_s.zip(us.map(|_| d)).map(|(s, d)| s + d);
                    nodes.push(json!({
                        "url": node.label,
                        "cpu_s": d,
                        "cpu_us_per_msg": us,
                        "top_commands": top_commands(&cmds, msgs),
                    }));
                }
                Err(e) => {
                    warn(&format!("redis {}: {e}; no CPU figure for it", node.label));
                    sum_s = None;
                    nodes.push(json!({
                        "url": node.label,
                        "cpu_s": null,
                        "cpu_us_per_msg": null,
                        "error": e,
                    }));
                }
            }
        }
        let redis_total = if self.redis.is_empty() {
            None
        } else {
            sum_s.and_then(|s| per_msg_us(s, msgs))
        };
        out.insert("redis_cpu_us_per_msg".into(), json!(redis_total));
        out.insert("redis_cpu".into(), Value::Array(nodes));
        out.insert("redis_top_commands".into(), top_commands(&sum_cmds, msgs));

        // Local processes, per label and in total (each pid counted once).
        let mut labels = Vec::new();
        let mut counted = BTreeSet::new();
        let mut complete = !self.procs.is_empty();
        for t in &self.procs {
            let mut secs = 0.0;
            let mut vanished = BTreeMap::new();
            for &pid in &t.pids {
                match self.proc_delta(a, b, pid) {
                    Ok(d) => secs += d,
                    Err(e) => {
                        vanished.insert(pid, e);
                    }
                }
            }
            let ok = !t.pids.is_empty() && vanished.is_empty();
            if ok {
                counted.extend(t.pids.iter().copied());
            } else {
                complete = false;
                for e in vanished.values() {
                    warn(&format!("{}: {e}; no CPU figure for it", t.label));
                }
            }
            labels.push(json!({
                "label": t.label,
                "pids": t.pids,
                "cpu_s": ok.then_some(secs),
                "cpu_us_per_msg": if ok { per_msg_us(secs, msgs) } else { None },
                "vanished": vanished.keys().collect::<Vec<_>>(),
            }));
        }
        let total_s: f64 = counted
            .iter()
            .filter_map(|&pid| self.proc_delta(a, b, pid).ok())
            .sum();
        out.insert(
            "proc_cpu_us_per_msg".into(),
            json!(if complete {
                per_msg_us(total_s, msgs)
            } else {
                None
            }),
        );
        out.insert("proc_cpu".into(), Value::Array(labels));

        // loadgen itself.
        let own = match (&a.own, &b.own) {
            (Ok(x), Ok(y)) => per_msg_us(
                ticks_to_secs(y.ticks.saturating_sub(x.ticks), self.clk_tck),
                msgs,
            ),
            (Err(e), _) | (_, Err(e)) => {
                warn(&format!("loadgen's own CPU: {e}"));
                None
            }
        };
        out.insert("loadgen_cpu_us_per_msg".into(), json!(own));
        out
    }
}

/// `x.y` or `n/a`.
fn fig(v: &Value) -> String {
    v.as_f64()
        .map(|x| format!("{x:.1}"))
        .unwrap_or_else(|| "n/a".into())
}

/// What the report's summary line appends: the totals, as `key value` pairs
/// named like the JSON keys (Redis and processes only when asked for).
pub fn summary_suffix(v: &Value) -> String {
    let mut s = String::new();
    let asked = |k: &str| v[k].as_array().is_some_and(|a| !a.is_empty());
    if asked("redis_cpu") {
        s += &format!(" redis_cpu_us_per_msg {}", fig(&v["redis_cpu_us_per_msg"]));
    }
    if asked("proc_cpu") {
        s += &format!(" proc_cpu_us_per_msg {}", fig(&v["proc_cpu_us_per_msg"]));
    }
    if v.get("loadgen_cpu_us_per_msg").is_some() {
        s += &format!(
            " loadgen_cpu_us_per_msg {}",
            fig(&v["loadgen_cpu_us_per_msg"])
        );
    }
    s
}

/// The per-server and per-process breakdown, when any was asked for.
pub fn detail_line(v: &Value) -> Option<String> {
    let list = |key: &str, name: &str| -> Option<String> {
        let a = v[key].as_array().filter(|a| !a.is_empty())?;
        Some(
            a.iter()
                .map(|e| {
                    format!(
                        "{} {}",
                        e[name].as_str().unwrap_or("?"),
                        fig(&e["cpu_us_per_msg"])
                    )
                })
                .collect::<Vec<_>>()
                .join(", "),
        )
    };
    let parts: Vec<String> = [
        list("redis_cpu", "url").map(|s| format!("redis {s}")),
        list("proc_cpu", "label").map(|s| format!("processes {s}")),
    ]
    .into_iter()
    .flatten()
    .collect();
    if parts.is_empty() {
        return None;
    }
    Some(format!(
        "cpu µs per delivered message ({} messages, {:.1} s): {}",
        v["cpu_msgs"],
        v["cpu_window_s"].as_f64().unwrap_or(0.0),
        parts.join("; ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stat line with fields 3.. as given (state first).
    fn stat_line(comm: &str, utime: u64, stime: u64, start: u64) -> String {
        let mut f: Vec<String> = vec!["S".into()];
        for n in 4..=52 {
            f.push(match n {
                14 => utime.to_string(),
                15 => stime.to_string(),
                22 => start.to_string(),
                _ => n.to_string(),
            });
        }
        format!("4242 ({comm}) {}\n", f.join(" "))
    }

    #[test]
    fn stat_parsing_survives_spaces_and_parentheses_in_comm() {
        for comm in [
            "full_cluster",
            "a b",
            "x) (y",
            ") 1 2 3 (",
            "((",
            "tokio-rt (w) 3",
        ] {
            let p = parse_stat(&stat_line(comm, 1234, 56, 987_654)).unwrap();
            assert_eq!(p.comm, comm);
            assert_eq!(p.ticks, 1290, "{comm}");
            assert_eq!(p.start, 987_654, "{comm}");
        }
        // A real line (kernel 6.x, 52 fields).
        let real = "1 (systemd) S 0 1 1 0 -1 4194560 53137 6457211 116 3153 \
                    112 358 14523 4226 20 0 1 0 21 23031808 3280 18446744073709551615 \
                    1 1 0 0 0 0 671173123 4096 1260 0 0 0 17 0 0 0 0 0 0 0 0 0 0 0 0 0 0";
        let p = parse_stat(real).unwrap();
        assert_eq!((p.comm.as_str(), p.ticks, p.start), ("systemd", 470, 21));
        assert_eq!(parse_stat("4242 (short) S 1 2"), None);
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat(""), None);
        // Our own line parses.
        assert!(read_stat("/proc/self/stat").is_ok());
    }

    #[test]
    fn per_message_arithmetic() {
        // 1.5 s of CPU over 300,000 messages = 5 µs each.
        assert_eq!(per_msg_us(1.5, 300_000), Some(5.0));
        assert_eq!(per_msg_us(0.0, 10), Some(0.0));
        assert_eq!(per_msg_us(1.0, 0), None);
        assert_eq!(per_msg_us(-0.5, 10), None);
        assert_eq!(per_msg_us(f64::NAN, 10), None);
        // 250 ticks at 100 Hz = 2.5 s; over 500,000 messages = 5 µs.
        assert_eq!(ticks_to_secs(250, 100), 2.5);
        assert_eq!(per_msg_us(ticks_to_secs(250, 100), 500_000), Some(5.0));
        assert_eq!(ticks_to_secs(250, 0), 250.0);
        let (hz, _) = clk_tck();
        assert!(hz > 0);
    }

    #[test]
    fn auxv_lookup() {
        let mut v = Vec::new();
        for (k, val) in [(6usize, 4096usize), (17, 100), (0, 0)] {
            v.extend_from_slice(&k.to_ne_bytes());
            v.extend_from_slice(&val.to_ne_bytes());
        }
        assert_eq!(auxv_value(&v, 17), Some(100));
        assert_eq!(auxv_value(&v, 6), Some(4096));
        assert_eq!(auxv_value(&v, 99), None);
        assert_eq!(auxv_value(&v[..5], 17), None);
    }

    #[test]
    fn redis_info_parsing_and_top_commands() {
        let cpu = "# CPU\r\nused_cpu_sys:1.500000\r\nused_cpu_user:2.250000\r\n\
                   used_cpu_sys_children:9.0\r\nused_cpu_user_children:9.0\r\n\
                   used_cpu_sys_main_thread:1.0\r\n";
        assert_eq!(parse_info_cpu(cpu), Some(3.75));
        assert_eq!(parse_info_cpu("# CPU\r\n"), None);
        let before = parse_commandstats(
            "# Commandstats\r\ncmdstat_evalsha:calls=10,usec=1000,usec_per_call=100.00,rejected_calls=0,failed_calls=0\r\n\
             cmdstat_xack:calls=5,usec=50,usec_per_call=10.00\r\ncmdstat_client|setname:calls=1,usec=1\r\n",
        );
        assert_eq!(before.get("client|setname"), Some(&(1, 1)));
        let after = parse_commandstats(
            "cmdstat_evalsha:calls=110,usec=21000\r\ncmdstat_xack:calls=105,usec=2050\r\n\
             cmdstat_xreadgroup:calls=20,usec=4000\r\ncmdstat_client|setname:calls=1,usec=1\r\n",
        );
        let d = command_deltas(&before, &after);
        assert_eq!(d.len(), 3, "unchanged commands are left out: {d:?}");
        let top = top_commands(&d, 100);
        assert_eq!(top[0]["command"], "evalsha");
        assert_eq!(top[0]["usec_per_msg"], 200.0);
        assert_eq!(top[0]["calls_per_msg"], 1.0);
        assert_eq!(top[1]["command"], "xreadgroup");
        assert_eq!(top[2]["command"], "xack");
        assert_eq!(top[2]["usec"], 2000);
    }

    #[test]
    fn proc_specs() {
        let argv = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        let logic = ProcSpec::parse("full_cluster:logic");
        assert_eq!(logic.word.as_deref(), Some("logic"));
        assert!(logic.matches(
            "full_cluster",
            &argv("./target/release/full_cluster logic --id 1")
        ));
        assert!(!logic.matches("full_cluster", &argv("full_cluster task")));
        assert!(!logic.matches("full_cluster", &argv("full_cluster --role=logic")));
        assert!(!logic.matches("loadgen", &argv("loadgen --proc full_cluster:logic")));
        let redis = ProcSpec::parse("redis-server");
        assert_eq!(redis.word, None);
        assert!(redis.matches("redis-server", &argv("/usr/bin/redis-server *:6379")));
        // comm is cut to 15 bytes; argv[0]'s basename still matches.
        let long = ProcSpec::parse("a_very_long_process_name");
        assert!(long.matches("a_very_long_pro", &argv("/opt/a_very_long_process_name")));
        assert!(!long.matches("a_very_long_pro", &[]));
        assert_eq!(
            redact("redis://:s3cret@10.0.0.1:7000/0"),
            "redis://10.0.0.1:7000/0"
        );
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }

    #[test]
    fn flags() {
        use clap::Parser;
        let a = crate::Args::try_parse_from([
            "loadgen",
            "--redis-url",
            "redis://127.0.0.1:7001",
            "--redis-url",
            "redis://127.0.0.1:7002,redis://127.0.0.1:7003",
            "--pid",
            "42",
            "--proc",
            "full_cluster:logic",
            "--proc",
            "redis-server",
        ])
        .unwrap();
        assert_eq!(a.redis_url.len(), 3);
        assert_eq!(a.pid, vec![42]);
        assert_eq!(a.proc, vec!["full_cluster:logic", "redis-server"]);
        // The environment variable is the fallback when no flag is given.
        std::env::set_var("LOADGEN_REDIS_URLS", "redis://h1:1,redis://h2:2");
        let env = crate::Args::try_parse_from(["loadgen"]).unwrap();
        let flag = crate::Args::try_parse_from(["loadgen", "--redis-url", "redis://h3:3"]).unwrap();
        std::env::remove_var("LOADGEN_REDIS_URLS");
        assert_eq!(env.redis_url, vec!["redis://h1:1", "redis://h2:2"]);
        assert_eq!(flag.redis_url, vec!["redis://h3:3"]);
    }

    #[test]
    fn summary_and_detail() {
        let v = json!({
            "cpu_msgs": 1000, "cpu_window_s": 10.04,
            "redis_cpu": [{"url": "redis://a:1", "cpu_us_per_msg": 10.26}, {"url": "redis://b:2", "cpu_us_per_msg": null}],
            "redis_cpu_us_per_msg": null,
            "proc_cpu": [], "proc_cpu_us_per_msg": null,
            "loadgen_cpu_us_per_msg": 40.04,
        });
        assert_eq!(
            summary_suffix(&v),
            " redis_cpu_us_per_msg n/a loadgen_cpu_us_per_msg 40.0"
        );
        assert_eq!(
            detail_line(&v).unwrap(),
            "cpu µs per delivered message (1000 messages, 10.0 s): redis redis://a:1 10.3, redis://b:2 n/a"
        );
        assert_eq!(detail_line(&json!({"redis_cpu": [], "proc_cpu": []})), None);
    }
}
