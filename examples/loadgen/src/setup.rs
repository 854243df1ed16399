//! Setup before the load: register and log in the virtual users over HTTP,
//! create the groups, and work out who sends to whom.

use std::sync::Arc;

use futures::stream::{self, StreamExt};
use serde_json::{json, Value};

use crate::{Args, Mode};

/// A logged-in virtual user.
pub struct UserCreds {
    pub id: String,
    pub token: String,
}

/// Everything the run needs.
pub struct Plan {
    pub run_id: String,
    pub users: Vec<UserCreds>,
    /// The `to` of each user's sends.
    pub targets: Vec<Value>,
    /// Deliveries each message should cause.
    pub recipients: u64,
    pub ws_urls: Vec<String>,
}

async fn post(
    http: &reqwest::Client,
    url: String,
    token: Option<&str>,
    body: Value,
) -> Result<Value, String> {
    // Password hashing at capacity (503) is worth a few retries after its
    // Retry-After; a rate limit (429) is not: it means the server's front
    // door is on (run it with IM_FRONT_DOOR=off / IM_FRONT_DOOR__ENABLED=false).
    let mut tries = 0;
    loop {
        let mut req = http.post(&url).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let res = req.send().await.map_err(|e| format!("{url}: {e}"))?;
        let status = res.status();
        let wait = res
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let v: Value = res.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(v);
        }
        tries += 1;
        match wait {
            Some(secs) if status.as_u16() == 503 && tries < 10 => {
                tokio::time::sleep(std::time::Duration::from_secs(secs.min(5))).await;
            }
            _ if status.as_u16() == 429 => {
                return Err(format!(
                    "{url}: HTTP {status}: {v} (the server limits logins and registrations per \
                     address: start it with IM_FRONT_DOOR=off for a load test)"
                ))
            }
            _ => return Err(format!("{url}: HTTP {status}: {v}")),
        }
    }
}

/// Registers and logs in `n` users named `lg{run}_{i}`.
pub async fn users(
    args: &Args,
    http: &reqwest::Client,
    run_id: &str,
    n: usize,
) -> Result<Vec<UserCreds>, String> {
    let api = args.api.trim_end_matches('/').to_owned();
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let results: Vec<Result<UserCreds, String>> = stream::iter(0..n)
        .map(|i| {
            let http = http.clone();
            let api = api.clone();
            let name = format!("lg{run_id}_{i}");
            let pw = args.password.clone();
            let done = done.clone();
            async move {
                post(
                    &http,
                    format!("{api}/api/v1/users"),
                    None,
                    json!({"username": name, "password": pw}),
                )
                .await?;
                let v = post(
                    &http,
                    format!("{api}/api/v1/sessions"),
                    None,
                    json!({"username": name, "password": pw}),
                )
                .await?;
                let k = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                if k % 500 == 0 {
                    eprintln!("  {k}/{n} users ready");
                }
                Ok(UserCreds {
                    id: v["user_id"].as_str().unwrap_or_default().to_owned(),
                    token: v["token"].as_str().unwrap_or_default().to_owned(),
                })
            }
        })
        .buffered(args.setup_concurrency.max(1))
        .collect()
        .await;
    results.into_iter().collect()
}

/// Prepares users, groups and targets.
pub async fn prepare(args: &Args) -> Result<Plan, String> {
    let http = reqwest::Client::new();
    let run_id = format!("{:x}", rand::random::<u32>());
    eprintln!("setting up {} users (run {run_id})…", args.users);
    let users = users(args, &http, &run_id, args.users).await?;
    let api = args.api.trim_end_matches('/');
    let (targets, recipients) = match args.mode {
        Mode::OneToOne => {
            let n = users.len();
            let t = (0..n)
                .map(|i| json!({"user": users[(i + 1) % n].id}))
                .collect();
            (t, 1)
        }
        Mode::Group => {
            let g = args.group_size.clamp(2, users.len());
            let mut targets = vec![Value::Null; users.len()];
            for (k, chunk) in users.chunks(g).enumerate() {
                let owner = &chunk[0];
                let v = post(
                    &http,
                    format!("{api}/api/v1/groups"),
                    Some(&owner.token),
                    json!({"name": format!("lg{run_id}-{k}")}),
                )
                .await?;
                let gid = v["group_id"].as_str().unwrap_or_default().to_owned();
                let adds = chunk[1..].iter().map(|m| {
                    post(
                        &http,
                        format!("{api}/api/v1/groups/{gid}/members"),
                        Some(&owner.token),
                        json!({"user_id": m.id}),
                    )
                });
                for r in futures::future::join_all(adds).await {
                    r?;
                }
                let base = k * g;
                for i in 0..chunk.len() {
                    targets[base + i] = json!({"group": gid});
                }
            }
            if users.len() % g != 0 && users.len() > g {
                eprintln!("note: the last group has {} members", users.len() % g);
            }
            (targets, (g - 1) as u64)
        }
        Mode::Connections | Mode::Abuse => (Vec::new(), 0),
    };
    let ws_urls = if args.ws.is_empty() {
        let res = http
            .get(format!("{api}/api/v1/connect"))
            .bearer_auth(&users[0].token)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let v: Value = res.json().await.map_err(|e| e.to_string())?;
        vec![v["ws_url"]
            .as_str()
            .ok_or("no ws_url from /api/v1/connect")?
            .to_owned()]
    } else {
        args.ws.clone()
    };
    Ok(Plan {
        run_id,
        users,
        targets,
        recipients,
        ws_urls,
    })
}

/// Rows of this run persisted in MySQL (messages sent by its users), per
/// archive database (`--database-shard-urls`, else `--database-url`).
pub async fn count_db(args: &Args, plan: &Plan) -> Result<Vec<u64>, String> {
    use sqlx::Row;
    let urls = if args.database_shard_urls.is_empty() {
        std::slice::from_ref(&args.database_url)
    } else {
        &args.database_shard_urls[..]
    };
    let mut pools = Vec::new();
    for url in urls {
        pools.push(
            sqlx::mysql::MySqlPoolOptions::new()
                .max_connections(1)
                .connect(url)
                .await
                .map_err(|e| format!("--check-db ({url}): {e}"))?,
        );
    }
    // Persistence lags delivery: count until the figure stops moving (3 s).
    let mut last = Vec::new();
    let mut stable_since = std::time::Instant::now();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let mut counts = Vec::new();
        for pool in &pools {
            let mut total = 0u64;
            for chunk in plan.users.chunks(500) {
                let ids: Vec<String> = chunk
                    .iter()
                    .filter(|u| !u.id.is_empty() && u.id.bytes().all(|b| b.is_ascii_digit()))
                    .map(|u| u.id.clone())
                    .collect();
                if ids.is_empty() {
                    continue;
                }
                let sql = format!(
                    "SELECT COUNT(*) FROM messages WHERE sender IN ({})",
                    ids.join(",")
                );
                let row = sqlx::query(&sql)
                    .fetch_one(pool)
                    .await
                    .map_err(|e| format!("--check-db: {e}"))?;
                let n: i64 = row.try_get(0).map_err(|e| e.to_string())?;
                total += n as u64;
            }
            counts.push(total);
        }
        let settled = stable_since.elapsed() >= std::time::Duration::from_secs(3);
        if counts != last {
            last = counts;
            stable_since = std::time::Instant::now();
        } else if settled || std::time::Instant::now() > deadline {
            return Ok(counts);
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}
