//! # loadgen: a benchmark client for im, over the public protocol only
//!
//! Run with:
//! ```sh
//! cargo run --release -p quickstart -- --send-rate 0 --front-door off &  # a server without rate limits
//! cargo run --release -p loadgen -- --users 1000 --duration 20   # closed loop, window 16
//! cargo run --release -p loadgen -- --users 1000 --rate 50000 --duration 20 --json report.json --svg plot.svg
//! cargo run --release -p loadgen -- --mode group --group-size 1000 --users 1000 --window 4
//! cargo run --release -p loadgen -- --mode connections --connections 19000 --server-pid $(pgrep quickstart)
//! cargo run --release -p loadgen -- --mode abuse --server-pid $(pgrep quickstart)   # front door limits ON
//! ```
//!
//! N virtual users register and log in over HTTP, each holds one WebSocket
//! (spread over every `--ws` URL, and over source addresses 127.0.0.x with
//! `--spread-ips`), and they send 1:1 (user i to user i+1) or to their group.
//! Open loop (`--rate`): sends are scheduled at a fixed total rate and latency
//! counts from the scheduled time (no coordinated omission). Closed loop
//! (`--window W`, the default with W=16): each user keeps W sends in flight.
//! Measured: sent, acked, delivered, lost, duplicated, out-of-order, and
//! send→ack / send→deliver latency as HDR histograms.
//!
//! ## CPU per message
//! Each run also reports CPU µs per delivered message (the `measured.delivered`
//! count of the report, see `cpu.rs`), read at the start and the end of the
//! window (the end after the drain):
//! - `--redis-url URL` (repeat, e.g. for every master of a Redis Cluster; or
//!   `LOADGEN_REDIS_URLS=url1,url2` when no flag is given): `INFO cpu`
//!   (used_cpu_sys + used_cpu_user) and `INFO commandstats` of each server,
//!   over a plain connection to that node.
//! - `--pid PID` (repeat): utime + stime of that process from `/proc`.
//! - `--proc NAME` (repeat): every process whose `/proc/<pid>/comm`, or the
//!   basename of whose `argv[0]`, equals NAME (resolved once, before the
//!   warm-up); `--proc NAME:WORD` also needs an argument equal to WORD, e.g.
//!   `--proc full_cluster:logic` for `full_cluster logic …`.
//! - loadgen's own CPU, always.
//!
//! ```sh
//! loadgen --users 1000 --duration 15 --redis-url redis://127.0.0.1:7000 --redis-url redis://127.0.0.1:7001 \
//!     --proc full_cluster:logic --proc full_cluster:task --proc full_cluster:connect --proc mariadbd
//! ```

/// mimalloc: the allocator is on every hot path (frames, envelopes, JSON).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod abuse;
mod cpu;
mod report;
mod setup;
mod vu;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use parking_lot::Mutex;

/// What to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Each user sends to the next one.
    OneToOne,
    /// Users form groups of `--group-size`; each sends to its group.
    Group,
    /// Open idle authenticated connections and report the server's RSS per connection.
    Connections,
    /// Try the front door as an attacker would (login flood, password
    /// guessing, mass registration) and check its limits.
    Abuse,
}

/// Command-line options.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "loadgen",
    about = "Benchmark client for im (public protocol only)"
)]
struct Args {
    /// HTTP API base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    api: String,
    /// WebSocket URL of a connect node (repeat for several; default: ask GET /api/v1/connect).
    #[arg(long)]
    ws: Vec<String>,
    /// Virtual users (one WebSocket each).
    #[arg(long, default_value_t = 100)]
    users: usize,
    /// Traffic shape.
    #[arg(long, value_enum, default_value_t = Mode::OneToOne)]
    mode: Mode,
    /// Members per group (group mode).
    #[arg(long, default_value_t = 10)]
    group_size: usize,
    /// Open loop: total sends per second.
    #[arg(long)]
    rate: Option<f64>,
    /// Closed loop: sends in flight per user (default 16 when no --rate).
    #[arg(long)]
    window: Option<usize>,
    /// Measured seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Unmeasured seconds before.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Stop after this many measured sends (instead of the duration).
    #[arg(long)]
    messages: Option<u64>,
    /// Write the JSON report here.
    #[arg(long)]
    json: Option<String>,
    /// Write an SVG plot of throughput and latency over time here.
    #[arg(long)]
    svg: Option<String>,
    /// Count the persisted rows of this run in MySQL at the end (DATABASE_URL,
    /// or every archive shard of --database-shard-urls).
    #[arg(long)]
    check_db: bool,
    /// MySQL URL for --check-db.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "mysql://root@127.0.0.1:3306/test"
    )]
    database_url: String,
    /// The archive's shard URLs for --check-db, comma separated (the
    /// cluster's DATABASE_SHARD_URLS): rows are counted on each and summed.
    #[arg(long, env = "DATABASE_SHARD_URLS", value_delimiter = ',')]
    database_shard_urls: Vec<String>,
    /// Spread client sockets over this many source addresses 127.0.0.1.. (loopback servers).
    #[arg(long, default_value_t = 1)]
    spread_ips: u8,
    /// Runtime threads of loadgen itself. One (the default) polls every
    /// socket from one thread: no cross-thread wake-ups, which in open loop
    /// cost more than the second core gives; raise it only when one core
    /// cannot keep up (loadgen's own CPU per message is in every report).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Concurrent wrong logins of the flood (abuse mode).
    #[arg(long, default_value_t = 300)]
    flood: usize,
    /// Connections to open (connections mode).
    #[arg(long, default_value_t = 1000)]
    connections: usize,
    /// Server processes to measure (connections mode; repeat for several connect nodes).
    #[arg(long)]
    server_pid: Vec<u32>,
    /// Worker processes to spread the connections over (connections mode;
    /// a process here may hold at most 20,000 open files).
    #[arg(long, default_value_t = 1)]
    procs: usize,
    /// First source address offset (set by the parent for its workers).
    #[arg(long, default_value_t = 0, hide = true)]
    ip_offset: u8,
    /// Run as a worker of a parent loadgen (connections mode).
    #[arg(long, hide = true)]
    child: bool,
    /// Hide the progress bar.
    #[arg(long)]
    quiet: bool,
    /// Password of the generated users.
    #[arg(long, default_value = "loadgen-password")]
    password: String,
    /// Concurrent registrations/logins during setup.
    #[arg(long, default_value_t = 32)]
    setup_concurrency: usize,
    /// Redis server whose CPU per message to report (repeat for every master
    /// of a cluster; read with INFO over a plain connection to that node).
    /// Without the flag, LOADGEN_REDIS_URLS (comma-separated) if set.
    #[arg(long, env = "LOADGEN_REDIS_URLS", value_delimiter = ',')]
    redis_url: Vec<String>,
    /// Local process whose CPU per message to report (repeat).
    #[arg(long)]
    pid: Vec<u32>,
    /// Local processes whose CPU per message to report (repeat): every process
    /// whose comm, or the basename of the first word of its command line, is
    /// NAME; with NAME:WORD also one of its arguments equal to WORD (e.g.
    /// full_cluster:logic). Resolved before the warm-up.
    #[arg(long, value_name = "NAME[:WORD]")]
    proc: Vec<String>,
}

/// Counters shared by every virtual user.
#[derive(Default)]
struct Stats {
    sent: AtomicU64,
    acked: AtomicU64,
    failed: AtomicU64,
    expected: AtomicU64,
    delivered: AtomicU64,
    duplicated: AtomicU64,
    out_of_order: AtomicU64,
    measuring: AtomicBool,
    stop_sending: AtomicBool,
    /// Per-second samples of deliver latency (1 in 16), for the plot.
    timeline: Mutex<Vec<Histogram<u64>>>,
    started: Mutex<Option<Instant>>,
}

impl Stats {
    fn second(&self) -> Option<usize> {
        self.started.lock().map(|s| s.elapsed().as_secs() as usize)
    }
}

/// Microseconds since the Unix epoch (shared clock of every process on this machine).
fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// A latency histogram in microseconds, 1 µs to 120 s, 3 significant digits.
#[allow(clippy::expect_used)]
fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("constant, valid histogram bounds")
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let runtime = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(r) => r,
        Err(e) => {
            eprintln!("loadgen: starting the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(ok) if ok => std::process::ExitCode::SUCCESS,
        Ok(_) => std::process::ExitCode::from(2),
        Err(e) => {
            eprintln!("loadgen: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<bool, String> {
    if args.mode == Mode::Abuse {
        return abuse::run(&args).await;
    }
    if args.mode == Mode::Connections {
        if args.procs > 1 && !args.child {
            return vu::connections_multi(&args).await.map(|_| true);
        }
        return vu::connections(&args).await.map(|_| true);
    }
    if args.users < 2 {
        return Err("need at least 2 users".into());
    }
    let plan = setup::prepare(&args).await?;
    let stats = Arc::new(Stats::default());
    let window = if args.rate.is_some() {
        0
    } else {
        args.window.unwrap_or(16).max(1)
    };
    let mut handles = Vec::new();
    let mut senders = Vec::new();
    eprintln!("connecting {} users…", plan.users.len());
    for (i, u) in plan.users.iter().enumerate() {
        let ws_url = plan.ws_urls[i % plan.ws_urls.len()].clone();
        let src = if args.spread_ips > 1 {
            Some(1 + (i % args.spread_ips as usize) as u8)
        } else {
            None
        };
        let (tx, rx) = tokio::sync::mpsc::channel(1024);
        let vu = vu::VirtualUser {
            index: i,
            token: u.token.clone(),
            target: plan.targets[i].clone(),
            recipients: plan.recipients,
            window,
            stats: stats.clone(),
        };
        let socket = vu::open_socket(&ws_url, &u.token, src).await?;
        handles.push(tokio::spawn(vu.run(socket, rx)));
        senders.push(tx);
    }
    eprintln!(
        "{} users connected; warming up for {:.0} s",
        senders.len(),
        args.warmup
    );

    let started = Instant::now();
    let warm = Duration::from_secs_f64(args.warmup);
    let measure = Duration::from_secs_f64(args.duration);
    // Open loop: one scheduler hands out sends at the target rate.
    let sched = args.rate.map(|rate| {
        let senders = senders.clone();
        let stats = stats.clone();
        tokio::spawn(vu::schedule(rate, senders, stats))
    });
    // Closed loop: kick every user off.
    if window > 0 {
        for s in &senders {
            let _ = s.send(vu::Cmd::Start).await;
        }
    }
    let probe = cpu::Probe::new(&args).await;
    tokio::time::sleep(warm).await;
    let cpu_start = probe.sample().await;
    let base = report::Snapshot::take(&stats);
    stats.measuring.store(true, Ordering::SeqCst);
    *stats.started.lock() = Some(Instant::now());
    let bar = report::progress(&args, measure);
    let mut series = Vec::new();
    let mut last = base.clone();
    let measure_start = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = report::Snapshot::take(&stats);
        series.push(now.delivered - last.delivered);
        if let Some(b) = &bar {
            b.set_position(measure_start.elapsed().as_secs().min(measure.as_secs()));
            b.set_message(format!(
                "sent {}/s  delivered {}/s  lost-so-far {}",
                now.sent - last.sent,
                now.delivered - last.delivered,
                now.expected.saturating_sub(now.delivered)
            ));
        }
        last = now;
        let done_by_count = args.messages.is_some_and(|m| last.sent - base.sent >= m);
        if measure_start.elapsed() >= measure || done_by_count {
            break;
        }
    }
    let elapsed = measure_start.elapsed();
    stats.stop_sending.store(true, Ordering::SeqCst);
    if let Some(s) = sched {
        s.abort();
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    // Drain: wait for in-flight acks and deliveries while they still come in
    // (an overloaded cluster may deliver seconds late: that is latency, not
    // loss), at most 60 s, and stop after 3 s without progress.
    let drain_deadline = Instant::now() + Duration::from_secs(60);
    let mut stable = 0;
    let mut prev = 0;
    while Instant::now() < drain_deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let s = report::Snapshot::take(&stats);
        if s.delivered >= s.expected && s.acked + s.failed >= s.sent {
            break;
        }
        stable = if s.delivered == prev { stable + 1 } else { 0 };
        prev = s.delivered;
        if stable >= 15 {
            break;
        }
    }
    // The CPU window ends here, after the drain: the delivered count it is
    // divided by includes the drain's deliveries, so it includes their work.
    let cpu_end = probe.sample().await;
    for s in &senders {
        let _ = s.send(vu::Cmd::Finish).await;
    }
    let mut send_ack = hist();
    let mut send_deliver = hist();
    for h in handles {
        if let Ok(Ok((a, d))) = tokio::time::timeout(Duration::from_secs(10), h).await {
            let _ = send_ack.add(&a);
            let _ = send_deliver.add(&d);
        }
    }
    let db_shard_rows = if args.check_db {
        Some(setup::count_db(&args, &plan).await?)
    } else {
        None
    };
    let db_rows = db_shard_rows.as_ref().map(|r| r.iter().sum());
    let total = report::Snapshot::take(&stats);
    let mut r = report::Report::build(
        &args,
        &plan,
        &base,
        &total,
        elapsed,
        &send_ack,
        &send_deliver,
        series,
        db_rows,
        started,
    );
    if let Some(per_shard) = db_shard_rows.filter(|r| r.len() > 1) {
        r.value["persisted_rows_per_shard"] = serde_json::json!(per_shard);
    }
    // CPU per message is divided by the count behind `delivered_per_sec` and
    // `measured.delivered`: deliveries from the window's start to the end of
    // the drain (total.delivered - base.delivered), fan-out included.
    r.extend(probe.report(
        &cpu_start,
        &cpu_end,
        total.delivered.saturating_sub(base.delivered),
    ));
    r.print();
    if let Some(p) = &args.json {
        std::fs::write(p, r.json()).map_err(|e| format!("writing {p}: {e}"))?;
    }
    if let Some(p) = &args.svg {
        report::plot(p, &r, &stats).map_err(|e| format!("plotting {p}: {e}"))?;
    }
    Ok(r.lost == 0)
}
