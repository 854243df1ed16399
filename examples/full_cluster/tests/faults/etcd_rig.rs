//! The etcd drills' rig: a private etcd, a cluster on it whose connect-2
//! reaches etcd through a partition, and what etcd and the api see.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use im_client::ImClient;
use reliability::proxy::{Framing, Proxy};
use serde_json::{json, Value};

use crate::harness::{free_port, metric, poll_until, rand_u32, Cluster, Server};
use crate::setup::{new_cluster, require_binary};
use crate::traffic::Inbox;

/// Instances registered under `/{ns}/services/{service}/` (etcd's JSON
/// gateway) with their `sessions` metadata, or None when etcd does not answer.
pub async fn registry_sessions(
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
pub async fn registry(
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
pub async fn await_sessions(
    http: &reqwest::Client,
    endpoint: &str,
    ns: &str,
    want: &[(&str, u64)],
) {
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
pub async fn api_view(http: &reqwest::Client, cluster: &Cluster, token: &str) -> BTreeSet<String> {
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

pub fn nodes(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| n.to_string()).collect()
}

/// A private etcd (restartable on its ports and data dir) and a started,
/// ready cluster on it whose connect-2 reaches etcd through `partition`.
pub struct EtcdRig {
    pub etcd: Server,
    pub endpoint: String,
    pub partition: Proxy,
    pub cluster: Cluster,
}

pub async fn etcd_rig(http: &reqwest::Client, scenario: &str, ttl: u64) -> EtcdRig {
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
    let mut cluster = new_cluster(scenario);
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

pub async fn etcd_up(http: &reqwest::Client, endpoint: &str) -> bool {
    http.get(format!("{endpoint}/health"))
        .timeout(Duration::from_secs(1))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

/// Waits until the api hands out exactly `want`.
pub async fn await_view(
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
pub async fn sessions_on(
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
pub async fn partition_connect2(
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
