//! A virtual user: one WebSocket, sending on command (open loop) or keeping
//! a window of sends in flight (closed loop), and checking what it receives.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{FutureExt, SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde::Deserialize;
use serde_json::Value;
use tokio::net::TcpSocket;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::{hist, now_us, Args, Stats};

type Socket = WebSocketStream<tokio::net::TcpStream>;

/// What the driver tells a virtual user.
pub enum Cmd {
    /// Open loop: send one message scheduled at this time (µs since epoch).
    SendAt(u64),
    /// Closed loop: fill the window.
    Start,
    /// Stop and report.
    Finish,
}

pub struct VirtualUser {
    pub index: usize,
    #[allow(dead_code)]
    pub token: String,
    pub target: Value,
    pub recipients: u64,
    pub window: usize,
    pub stats: Arc<Stats>,
}

#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(default)]
    client_msg_id: Option<&'a str>,
    #[serde(default)]
    msg_id: Option<&'a str>,
    #[serde(default)]
    conversation_id: Option<&'a str>,
    #[serde(default)]
    seq: Option<u64>,
    #[serde(default)]
    body: Option<&'a str>,
    #[serde(default)]
    code: Option<&'a str>,
}

/// Opens an authenticated WebSocket, optionally from source address 127.0.0.`src`.
pub async fn open_socket(url: &str, token: &str, src: Option<u8>) -> Result<Socket, String> {
    let req = format!(
        "{url}{}token={token}",
        if url.contains('?') { '&' } else { '?' }
    )
    .into_client_request()
    .map_err(|e| e.to_string())?;
    let host = req.uri().host().unwrap_or("127.0.0.1").to_owned();
    let port = req.uri().port_u16().unwrap_or(80);
    let addr: SocketAddr = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|e| format!("{host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host}: no address"))?;
    let socket = TcpSocket::new_v4().map_err(|e| e.to_string())?;
    if let Some(k) = src {
        socket
            .bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, k)), 0))
            .map_err(|e| format!("bind 127.0.0.{k}: {e}"))?;
    }
    let stream = socket
        .connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let config = WebSocketConfig::default()
        .read_buffer_size(8 * 1024)
        .write_buffer_size(8 * 1024)
        .max_write_buffer_size(4 << 20);
    let (ws, _) = tokio_tungstenite::client_async_with_config(req, stream, Some(config))
        .await
        .map_err(|e| format!("websocket {url}: {e}"))?;
    Ok(ws)
}

/// What one virtual user has measured so far.
struct Tally {
    ack_h: Histogram<u64>,
    del_h: Histogram<u64>,
    in_flight: usize,
    seen: HashSet<u64>,
    last_seq: HashMap<String, u64>,
    sample: u32,
}

impl VirtualUser {
    fn frame(&self, to: &str, n: u64, t_us: u64) -> Message {
        Message::Text(
            format!(
                r#"{{"type":"send","client_msg_id":"{}.{n}.{t_us}","to":{to},"body":"{t_us}"}}"#,
                self.index
            )
            .into(),
        )
    }

    /// Closed loop: feeds sends (unflushed) until the window is full again.
    async fn feed_window(
        &self,
        ws: &mut Socket,
        to: &str,
        n: &mut u64,
        t: &mut Tally,
    ) -> Result<(), tokio_tungstenite::tungstenite::Error> {
        while t.in_flight < self.window {
            *n += 1;
            t.in_flight += 1;
            self.stats.sent.fetch_add(1, Ordering::Relaxed);
            ws.feed(self.frame(to, *n, now_us())).await?;
        }
        Ok(())
    }

    /// Accounts for one received frame.
    fn receive(&self, text: &str, t: &mut Tally) {
        let Ok(f) = serde_json::from_str::<Frame>(text) else {
            return;
        };
        let stats = &self.stats;
        let now = now_us();
        let measuring = stats.measuring.load(Ordering::Relaxed);
        match f.kind {
            "send_ack" => {
                stats.acked.fetch_add(1, Ordering::Relaxed);
                stats.expected.fetch_add(self.recipients, Ordering::Relaxed);
                if let Some(sent) = f
                    .client_msg_id
                    .and_then(|c| c.rsplit('.').next())
                    .and_then(|t| t.parse::<u64>().ok())
                {
                    if measuring {
                        let _ = t.ack_h.record(now.saturating_sub(sent).max(1));
                    }
                }
                t.in_flight = t.in_flight.saturating_sub(1);
            }
            "message" => {
                let id = f.msg_id.and_then(|m| m.parse::<u64>().ok()).unwrap_or(0);
                if !t.seen.insert(id) {
                    stats.duplicated.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                stats.delivered.fetch_add(1, Ordering::Relaxed);
                if let (Some(c), Some(seq)) = (f.conversation_id, f.seq) {
                    let last = match t.last_seq.get_mut(c) {
                        Some(last) => last,
                        None => t.last_seq.entry(c.to_owned()).or_insert(0),
                    };
                    if seq < *last {
                        stats.out_of_order.fetch_add(1, Ordering::Relaxed);
                    }
                    *last = (*last).max(seq);
                }
                if let Some(sent) = f.body.and_then(|b| b.parse::<u64>().ok()) {
                    if measuring {
                        let lat = now.saturating_sub(sent).max(1);
                        let _ = t.del_h.record(lat);
                        t.sample = t.sample.wrapping_add(1);
                        if t.sample % 16 == 0 {
                            if let Some(sec) = stats.second() {
                                let mut tl = stats.timeline.lock();
                                while tl.len() <= sec {
                                    tl.push(hist());
                                }
                                let _ = tl[sec].record(lat);
                            }
                        }
                    }
                }
            }
            "error" => {
                stats.failed.fetch_add(1, Ordering::Relaxed);
                t.in_flight = t.in_flight.saturating_sub(1);
                if f.code != Some("resource_exhausted") {
                    eprintln!("error frame: {text}");
                }
            }
            _ => {}
        }
    }

    /// Runs until told to finish; returns (send→ack, send→deliver) histograms.
    ///
    /// Like a good client (and like the server), it handles every frame that
    /// has already arrived before writing, and writes everything it has to
    /// send with one flush: a syscall per batch, not per frame.
    pub async fn run(
        self,
        mut ws: Socket,
        mut cmds: mpsc::Receiver<Cmd>,
    ) -> (Histogram<u64>, Histogram<u64>) {
        let to = self.target.to_string();
        let mut t = Tally {
            ack_h: hist(),
            del_h: hist(),
            in_flight: 0,
            seen: HashSet::new(),
            last_seq: HashMap::new(),
            sample: 0,
        };
        let mut n = 0u64;
        let stats = self.stats.clone();
        'run: loop {
            tokio::select! {
                cmd = cmds.recv() => {
                    let mut next = Some(cmd);
                    while let Some(cmd) = next.take() {
                        match cmd {
                            Some(Cmd::SendAt(at)) => {
                                n += 1;
                                stats.sent.fetch_add(1, Ordering::Relaxed);
                                if ws.feed(self.frame(&to, n, at)).await.is_err() { break 'run; }
                            }
                            Some(Cmd::Start) => {
                                if self.feed_window(&mut ws, &to, &mut n, &mut t).await.is_err() { break 'run; }
                            }
                            Some(Cmd::Finish) | None => break 'run,
                        }
                        next = cmds.try_recv().ok().map(Some);
                    }
                    if ws.flush().await.is_err() { break; }
                }
                incoming = ws.next() => {
                    let mut next = Some(incoming);
                    let mut budget = 256;
                    while let Some(incoming) = next.take() {
                        match incoming {
                            Some(Ok(Message::Text(text))) => self.receive(&text, &mut t),
                            Some(Ok(_)) => {}
                            _ => break 'run,
                        }
                        budget -= 1;
                        if budget > 0 {
                            next = ws.next().now_or_never();
                        }
                    }
                    if self.window > 0 && t.in_flight < self.window && !stats.stop_sending.load(Ordering::Relaxed) {
                        if self.feed_window(&mut ws, &to, &mut n, &mut t).await.is_err() { break; }
                        if ws.flush().await.is_err() { break; }
                    }
                }
            }
        }
        let _ = ws.close(None).await;
        (t.ack_h, t.del_h)
    }
}

/// Open loop: hands out sends at `rate` per second, round-robin over users.
pub async fn schedule(rate: f64, senders: Vec<mpsc::Sender<Cmd>>, stats: Arc<Stats>) {
    let start = Instant::now();
    let start_us = now_us();
    let mut issued = 0u64;
    let mut next = 0usize;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    loop {
        tick.tick().await;
        if stats.stop_sending.load(Ordering::Relaxed) {
            return;
        }
        let due = (start.elapsed().as_secs_f64() * rate) as u64;
        while issued < due {
            issued += 1;
            // The scheduled time of this send, not the time we got to it.
            let t = start_us + (issued as f64 * 1e6 / rate) as u64;
            let s = &senders[next % senders.len()];
            next += 1;
            if s.try_send(Cmd::SendAt(t)).is_err() {
                stats.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn src_ip(args: &Args, i: usize) -> Option<u8> {
    if args.spread_ips > 1 {
        Some(
            args.ip_offset
                .saturating_add(1 + (i % args.spread_ips as usize) as u8),
        )
    } else if args.ip_offset > 0 {
        Some(args.ip_offset.saturating_add(1))
    } else {
        None
    }
}

fn total_rss(pids: &[u32]) -> Option<u64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|p| rss_kib(*p)).sum()
}

/// Connections mode: opens idle authenticated connections (round-robin over
/// every `--ws`) and reports the servers' RSS per connection. As a worker
/// (`--child`) it prints `READY <n>` and holds the sockets until stdin closes.
pub async fn connections(args: &Args) -> Result<(), String> {
    let http = reqwest::Client::new();
    let run_id = format!("{:x}", rand::random::<u32>());
    // A user may hold many sessions: a few users are enough.
    let users = crate::setup::users(args, &http, &run_id, 10.min(args.connections.max(1))).await?;
    let urls = if args.ws.is_empty() {
        let v: Value = http
            .get(format!("{}/api/v1/connect", args.api.trim_end_matches('/')))
            .bearer_auth(&users[0].token)
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        vec![v["ws_url"].as_str().ok_or("no ws_url")?.to_owned()]
    } else {
        args.ws.clone()
    };
    let started = Instant::now();
    let mut sockets = Vec::with_capacity(args.connections);
    // The baseline is taken after the first 10% of the sockets, so memory the
    // server's allocator kept from the setup (argon2 buffers) is not
    // mistaken for a saving.
    let first = (args.connections / 10).max(1);
    let mut before = None;
    for i in 0..args.connections {
        if i == first && !args.child {
            tokio::time::sleep(Duration::from_millis(500)).await;
            before = total_rss(&args.server_pid);
        }
        let s = open_socket(
            &urls[i % urls.len()],
            &users[i % users.len()].token,
            src_ip(args, i),
        )
        .await?;
        sockets.push(s);
        if (i + 1) % 5000 == 0 {
            eprintln!("  {} connections", i + 1);
        }
    }
    if args.child {
        use tokio::io::AsyncReadExt;
        println!("READY {}", sockets.len());
        let mut sink = Vec::new();
        let _ = tokio::io::stdin().read_to_end(&mut sink).await;
        return Ok(());
    }
    let open_secs = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = total_rss(&args.server_pid);
    let measured = args.connections.saturating_sub(first).max(1);
    let per = match (before, after) {
        (Some(b), Some(a)) => Some((a.saturating_sub(b)) as f64 * 1024.0 / measured as f64),
        _ => None,
    };
    let upper = after.map(|a| a as f64 * 1024.0 / args.connections as f64);
    let report = serde_json::json!({
        "mode": "connections",
        "connections": sockets.len(),
        "ws_urls": urls,
        "open_seconds": open_secs,
        "server_rss_kib_before": before,
        "server_rss_kib_after": after,
        "rss_bytes_per_connection": per,
        "baseline_after_connections": first,
        "rss_bytes_per_connection_upper_bound": upper,
    });
    println!(
        "{}",
        serde_json::to_string_pretty(&report).unwrap_or_default()
    );
    if let Some(p) = &args.json {
        std::fs::write(p, report.to_string()).map_err(|e| e.to_string())?;
    }
    for mut s in sockets {
        let _ = s.close(None).await;
    }
    Ok(())
}

/// Connections mode over `--procs` worker processes (each below the
/// per-process open-file limit, each from its own source addresses).
pub async fn connections_multi(args: &Args) -> Result<(), String> {
    use tokio::io::AsyncBufReadExt;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let per = args.connections.div_ceil(args.procs);
    let before = total_rss(&args.server_pid);
    let started = Instant::now();
    let mut children = Vec::new();
    for p in 0..args.procs {
        let mut cmd = tokio::process::Command::new(&exe);
        cmd.args(["--mode", "connections", "--child", "--quiet"])
            .args(["--api", &args.api])
            .args(["--connections", &per.to_string()])
            .args(["--spread-ips", &args.spread_ips.max(1).to_string()])
            .args([
                "--ip-offset",
                &(p * args.spread_ips.max(1) as usize).min(250).to_string(),
            ])
            .args(["--password", &args.password])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped());
        for w in &args.ws {
            cmd.args(["--ws", w]);
        }
        children.push(
            cmd.spawn()
                .map_err(|e| format!("spawning worker {p}: {e}"))?,
        );
    }
    let mut total = 0usize;
    for (p, c) in children.iter_mut().enumerate() {
        let out = c.stdout.take().ok_or("worker without stdout")?;
        let mut lines = tokio::io::BufReader::new(out).lines();
        loop {
            match lines.next_line().await.map_err(|e| e.to_string())? {
                Some(l) if l.starts_with("READY ") => {
                    total += l[6..].trim().parse::<usize>().unwrap_or(0);
                    break;
                }
                Some(_) => continue,
                None => return Err(format!("worker {p} exited before it was ready")),
            }
        }
    }
    let open_secs = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = total_rss(&args.server_pid);
    let per_conn = match (before, after) {
        (Some(b), Some(a)) => Some(a.saturating_sub(b) as f64 * 1024.0 / total.max(1) as f64),
        _ => None,
    };
    let report = serde_json::json!({
        "mode": "connections",
        "procs": args.procs,
        "connections": total,
        "ws_urls": args.ws,
        "open_seconds": open_secs,
        "server_rss_kib_before": before,
        "server_rss_kib_after": after,
        "rss_bytes_per_connection": per_conn,
    });
    println!(
        "{}",
        serde_json::to_string_pretty(&report).unwrap_or_default()
    );
    if let Some(p) = &args.json {
        std::fs::write(p, report.to_string()).map_err(|e| e.to_string())?;
    }
    for mut c in children {
        drop(c.stdin.take());
        let _ = c.wait().await;
    }
    Ok(())
}
