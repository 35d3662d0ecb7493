//! A real three-member etcd in which one follower's write-ahead log is on a
//! throttled disk: under load it falls behind the leader, its `/health`
//! fails (etcd answers it with a linearizable read the member cannot serve),
//! and the check must say why instead of "reports unhealthy".

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};
use starling_checks::{Checker, ClientTls, EtcdCheck, EtcdConfig, Status};
use starling_testkit::{Etcd, etcd_installed_or_skip, slow_disk_or_skip};

/// Far past the check's limit (1,000 entries), so the follower cannot
/// catch up between the test's last look and the check's.
const LAG_WANTED: u64 = 3_000;
/// Enough for a loaded two-core machine to commit `LAG_WANTED` entries.
const LOAD_BOUND: Duration = Duration::from_secs(90);
const WRITERS: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_whose_log_is_on_a_slow_disk_is_named_raft_entries_behind() {
    let Some(disk) = slow_disk_or_skip() else {
        return;
    };
    if !etcd_installed_or_skip() {
        return;
    }
    let cluster = Etcd::start_cluster(3, Some(&disk.mount_point())).expect("3 members start");
    let client = starling_checks::http_client()
        .build()
        .expect("a plain HTTP client");
    let slow = &cluster[0];
    let leader_url = leader(&client, &cluster).await;
    assert_ne!(
        leader_url,
        slow.client_url(),
        "the member started last is a follower"
    );
    disk.admit(slow.pid().expect("etcd runs"))
        .expect("the follower joins the throttled cgroup");
    let _throttled = disk
        .throttle_write_bytes(32 << 10)
        .expect("the cgroup takes a write limit");

    let lag = load_until_behind(&client, &leader_url, &slow.client_url()).await;
    let urls: Vec<String> = cluster.iter().map(Etcd::client_url).collect();
    let verdict = EtcdCheck::new(EtcdConfig {
        endpoints: urls,
        tls: ClientTls::default(),
        ..EtcdConfig::default()
    })
    .check()
    .await;
    eprintln!(
        "a follower {lag} entries behind, as the operator sees it: {}",
        verdict.message
    );
    assert_ne!(verdict.status, Status::Ok, "{verdict:?}");
    assert!(
        verdict
            .message
            .contains(&format!("({}) is ", slow.client_url()))
            && verdict.message.contains("raft entries behind"),
        "{}",
        verdict.message
    );
}

/// `POST /v3/maintenance/status` of one member.
async fn status(client: &reqwest::Client, url: &str) -> Value {
    client
        .post(format!("{url}/v3/maintenance/status"))
        .json(&json!({}))
        .send()
        .await
        .expect("the member answers its status")
        .json()
        .await
        .expect("status is JSON")
}

/// The client URL of the member that leads.
async fn leader(client: &reqwest::Client, cluster: &[Etcd]) -> String {
    for member in cluster {
        let status = status(client, &member.client_url()).await;
        if status["leader"] == status["header"]["member_id"] {
            return member.client_url();
        }
    }
    panic!("no member leads");
}

fn raft_index(status: &Value) -> u64 {
    status["raftIndex"]
        .as_str()
        .and_then(|index| index.parse().ok())
        .expect("etcd's status has a raft index")
}

/// Writes 1 kB values to the leader from several writers until the slow
/// follower is [`LAG_WANTED`] entries behind; how far behind it is then.
async fn load_until_behind(client: &reqwest::Client, leader: &str, slow: &str) -> u64 {
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let (client, url, stop) = (client.clone(), leader.to_owned(), stop.clone());
            tokio::spawn(async move {
                let value = base64::engine::general_purpose::STANDARD.encode([b'x'; 1000]);
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let key = base64::engine::general_purpose::STANDARD
                        .encode(format!("/lag/{writer}/{i}"));
                    let put = client
                        .post(format!("{url}/v3/kv/put"))
                        .json(&json!({"key": key, "value": value}))
                        .send()
                        .await
                        .expect("the leader takes writes");
                    assert!(put.status().is_success(), "{put:?}");
                    i += 1;
                }
            })
        })
        .collect();
    let deadline = Instant::now() + LOAD_BOUND;
    let lag = loop {
        let ahead = raft_index(&status(client, leader).await);
        let behind = raft_index(&status(client, slow).await);
        let lag = ahead.saturating_sub(behind);
        if lag >= LAG_WANTED {
            break lag;
        }
        assert!(
            Instant::now() < deadline,
            "after {LOAD_BOUND:?} of writes the follower is only {lag} entries behind \
             (leader at {ahead})"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.await.expect("a writer stops");
    }
    lag
}
