//! `--mode abuse`: the front door tried as an attacker would, against a
//! server on loopback (each actor from its own source address 127.0.0.x, so
//! per-address limits see them apart):
//!
//! 1. a flood of `--flood` concurrent wrong logins from 127.0.0.1, while a
//!    good account logs in from 127.0.0.2 (its latency is the figure), with
//!    the server's peak RSS (`--server-pid`) before and after;
//! 2. 30 sequential wrong logins of one account from 127.0.0.3, then its
//!    right password once the last `Retry-After` has passed;
//! 3. 40 registrations in a row from 127.0.0.4.
//!
//! Exits 2 when a target of the front-door issue does not hold.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::Args;

const PASSWORD: &str = "abuse-password-1";

fn client(last_octet: u8) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last_octet)))
        .pool_max_idle_per_host(0)
        .build()
        .map_err(|e| e.to_string())
}

/// `POST {api}/api/v1{path}`: status and `Retry-After`.
async fn post(http: &reqwest::Client, api: &str, path: &str, body: Value) -> (u16, Option<u64>) {
    match http
        .post(format!("{api}/api/v1{path}"))
        .json(&body)
        .send()
        .await
    {
        Ok(res) => {
            let retry = res
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok());
            (res.status().as_u16(), retry)
        }
        // Not answered at all: counted as status 0.
        Err(_) => (0, None),
    }
}

fn peak_rss_kib(pid: Option<u32>) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid?)).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn counts(statuses: impl IntoIterator<Item = u16>) -> BTreeMap<u16, usize> {
    let mut m = BTreeMap::new();
    for s in statuses {
        *m.entry(s).or_insert(0) += 1;
    }
    m
}

/// Runs the three scenarios; `Ok(true)` when every target holds.
pub async fn run(args: &Args) -> Result<bool, String> {
    let api = args.api.trim_end_matches('/').to_owned();
    let run = format!("{:x}", rand::random::<u32>());
    let pid = args.server_pid.first().copied();
    let mut ok = true;

    // 1. Flood.
    let good = format!("ab{run}good");
    let good_http = client(2)?;
    let creds = |u: &str, p: &str| json!({"username": u, "password": p});
    let (s, _) = post(&good_http, &api, "/users", creds(&good, PASSWORD)).await;
    if s != 201 {
        return Err(format!("registering {good}: HTTP {s}"));
    }
    let rss_before = peak_rss_kib(pid);
    let flood_http = client(1)?;
    let n = args.flood;
    let flood = tokio::spawn({
        let api = api.clone();
        let run = run.clone();
        async move {
            let calls = (0..n).map(|i| {
                let (http, api) = (flood_http.clone(), api.clone());
                let user = format!("ab{run}x{i}");
                async move {
                    post(
                        &http,
                        &api,
                        "/sessions",
                        json!({"username": user, "password": "wrong-password"}),
                    )
                    .await
                    .0
                }
            });
            futures::future::join_all(calls).await
        }
    });
    let mut good_ms = Vec::new();
    while !flood.is_finished() || good_ms.is_empty() {
        let t = Instant::now();
        let (s, _) = post(&good_http, &api, "/sessions", creds(&good, PASSWORD)).await;
        good_ms.push((t.elapsed().as_secs_f64() * 1000.0, s));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let flood = flood.await.map_err(|e| e.to_string())?;
    let rss_after = peak_rss_kib(pid);
    let answered = flood.iter().all(|s| matches!(s, 401 | 429 | 503));
    let worst = good_ms.iter().map(|(ms, _)| *ms).fold(0.0, f64::max);
    let all_good = good_ms.iter().all(|(_, s)| *s == 200);
    println!(
        "ABUSE flood | {n} concurrent wrong logins from 127.0.0.1: {:?} | good logins from 127.0.0.2 during it: {} ({}), slowest {worst:.1} ms | server peak RSS {} -> {} KiB",
        counts(flood.iter().copied()),
        good_ms.len(),
        if all_good { "all 200" } else { "NOT all 200" },
        rss_before.map_or("?".into(), |v| v.to_string()),
        rss_after.map_or("?".into(), |v| v.to_string()),
    );
    ok &= answered && all_good && worst <= 100.0;
    ok &= rss_after.is_none_or(|kib| kib <= 300 * 1024);

    // 2. Sequential wrong logins of one account.
    let victim = format!("ab{run}victim");
    let victim_http = client(3)?;
    post(&good_http, &api, "/users", creds(&victim, PASSWORD)).await;
    let mut seq = Vec::new();
    for _ in 0..30 {
        seq.push(
            post(
                &victim_http,
                &api,
                "/sessions",
                creds(&victim, "wrong-password"),
            )
            .await,
        );
    }
    let last20_throttled = seq[10..].iter().all(|(s, r)| *s == 429 && r.is_some());
    let wait = seq.iter().filter_map(|(_, r)| *r).max().unwrap_or(0);
    tokio::time::sleep(Duration::from_secs(wait)).await;
    let (after, _) = post(&victim_http, &api, "/sessions", creds(&victim, PASSWORD)).await;
    println!(
        "ABUSE sequential | 30 wrong logins of one account from 127.0.0.3: {:?}, the last 20 all 429 with Retry-After: {last20_throttled} | right password after {wait} s: HTTP {after}",
        counts(seq.iter().map(|(s, _)| *s)),
    );
    ok &= last20_throttled && after == 200;

    // 3. Registrations from one address.
    let reg_http = client(4)?;
    let mut regs = Vec::new();
    for i in 0..40 {
        regs.push(
            post(
                &reg_http,
                &api,
                "/users",
                creds(&format!("ab{run}r{i}"), PASSWORD),
            )
            .await
            .0,
        );
    }
    let created = regs.iter().filter(|s| **s == 201).count();
    println!(
        "ABUSE registrations | 40 in a row from 127.0.0.4: {:?} ({created} created)",
        counts(regs.iter().copied())
    );
    ok &= created <= 10 && regs.iter().all(|s| matches!(s, 201 | 429));
    Ok(ok)
}
