//! Real agents in this process, on 127.0.0.1 with real UDP and TCP sockets:
//! joining, keys, hostile input, graceful leave and the event stream.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use starling_agent::daemon;
use starling_gossip::{MemberState, Transition};
use starling_seal::Keyring;
use tokio::io::AsyncWriteExt;

use crate::support::agents;
use agents::{ANY_PORT, PATIENCE, agent, get, keyring, metric, sees_alive, settings};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_agents_join_through_one_seed_and_the_api_shows_them() {
    let key = keyring();
    let (seed, _d0) = agent("seed", &key, None).await;
    let (b, _d1) = agent("b", &key, Some(seed.gossip_addr)).await;
    let (c, _d2) = agent("c", &key, Some(seed.gossip_addr)).await;
    for a in [&seed, &b, &c] {
        sees_alive(a, 2).await;
    }
    let members = starling_client::members(&[c.api_addr.to_string()])
        .await
        .expect("API answers");
    assert_eq!(members.answered_by, "c");
    assert_eq!(members.counts.alive, 3);
    let names: Vec<&str> = members.members.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["b", "c", "seed"]);
    let live = get(format!("http://{}/livez", b.api_addr))
        .await
        .expect("reachable");
    assert_eq!(live.status(), 200);
    // Once views agree, a periodic push-pull and a history pull are each
    // one fingerprint exchanged, not the whole state.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    for a in [&seed, &b, &c] {
        for line in [
            r#"starling_gossip_push_pulls_total{result="in_sync"}"#,
            r#"starling_replication_pulls_total{result="in_sync"}"#,
        ] {
            while metric(a, line).await < 1.0 {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{line} stayed 0 on the agent at {}",
                    a.api_addr
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    for a in [seed, b, c] {
        a.shutdown().await.expect("clean shutdown");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_the_wrong_key_cannot_join_or_inject_anything() {
    let (seed, _d0) = agent("seed", &keyring(), None).await;
    let (intruder, _d1) = agent("intruder", &keyring(), Some(seed.gossip_addr)).await;
    // Give the intruder several join attempts and push-pulls.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        seed.gossip.view.borrow().members.is_empty(),
        "the seed accepted the intruder"
    );
    assert!(intruder.gossip.view.borrow().members.is_empty());
    assert!(
        metric(
            &seed,
            "starling_gossip_datagrams_dropped_total{reason=\"unknown_key\"}"
        )
        .await
            >= 1.0
    );
    assert_eq!(
        metric(&seed, "starling_gossip_datagrams_received_total").await,
        0.0
    );
    seed.shutdown().await.expect("clean shutdown");
    intruder.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_datagrams_and_frames_are_counted_and_change_nothing() {
    let key = keyring();
    let (seed, _d0) = agent("seed", &key, None).await;
    let (peer, _d1) = agent("peer", &key, Some(seed.gossip_addr)).await;
    sees_alive(&seed, 1).await;

    let socket = UdpSocket::bind("127.0.0.1:0").expect("loopback bind");
    let mut sealed = Vec::new();
    starling_seal::seal(
        &key,
        starling_seal::Purpose::Datagram,
        b"not foca",
        &mut sealed,
    );
    let mut tampered = sealed.clone();
    *tampered.last_mut().expect("non-empty") ^= 1;
    let hostile: Vec<Vec<u8>> = vec![
        vec![],
        b"STRL".to_vec(),
        vec![0xAB; 100],
        sealed[..sealed.len() / 2].to_vec(),
        tampered,
        sealed.clone(), // opens, but foca cannot parse it
        vec![0u8; 9000],
    ];
    for datagram in &hostile {
        for _ in 0..20 {
            socket
                .send_to(datagram, seed.gossip_addr)
                .expect("loopback send");
        }
    }
    // A garbage push-pull frame: a huge length prefix, then nothing.
    let mut stream = tokio::net::TcpStream::connect(seed.gossip_addr)
        .await
        .expect("tcp reachable");
    stream
        .write_all(&u32::MAX.to_be_bytes())
        .await
        .expect("write");
    drop(stream);

    tokio::time::sleep(Duration::from_millis(500)).await;
    for reason in [
        "too_short",
        "bad_magic",
        "unauthentic",
        "rejected",
        "oversize",
    ] {
        let dropped = metric(
            &seed,
            &format!("starling_gossip_datagrams_dropped_total{{reason=\"{reason}\"}}"),
        )
        .await;
        assert!(dropped >= 1.0, "no drop counted for {reason}");
    }
    // Still one healthy cluster, still answering.
    tokio::time::sleep(Duration::from_secs(2)).await;
    sees_alive(&seed, 1).await;
    sees_alive(&peer, 1).await;
    let live = get(format!("http://{}/livez", seed.api_addr))
        .await
        .expect("reachable");
    assert_eq!(live.status(), 200);
    seed.shutdown().await.expect("clean shutdown");
    peer.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_leave_is_a_leave_on_the_event_stream() {
    let key = keyring();
    let (seed, _d0) = agent("seed", &key, None).await;
    let mut events = seed.gossip.subscribe();
    let (leaver, _d1) = agent("leaver", &key, Some(seed.gossip_addr)).await;
    sees_alive(&seed, 1).await;
    sees_alive(&leaver, 1).await;
    leaver.shutdown().await.expect("clean shutdown");

    let mut seen = Vec::new();
    let outcome = tokio::time::timeout(PATIENCE, async {
        while let Ok(event) = events.recv().await {
            seen.push(event.transition);
            if event.transition != Transition::Joined {
                return event;
            }
        }
        panic!("event stream closed");
    })
    .await
    .expect("a leave event arrives");
    assert_eq!(outcome.transition, Transition::Left, "events: {seen:?}");
    assert_eq!(outcome.member.name, "leaver");
    assert!(outcome.at_unix_ms > 0);
    assert_eq!(seen.first(), Some(&Transition::Joined));
    let view = seed.gossip.view.borrow().clone();
    assert_eq!(view.members[0].state, MemberState::Left);
    seed.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joining_resolves_names_and_retries_until_the_seed_appears() {
    let key = keyring();
    // Reserve a port for the seed, then free it: the joiner starts first
    // and must keep retrying until something answers there.
    let port = UdpSocket::bind("127.0.0.1:0")
        .expect("loopback bind")
        .local_addr()
        .expect("bound")
        .port();
    let data = tempfile::tempdir().expect("temp dir");
    // A name, not an address: resolved on every attempt.
    let targets = vec![format!("localhost:{port}")];
    let early_settings = settings("early", &key, ANY_PORT, targets, &data);
    let early = daemon::start(early_settings)
        .await
        .expect("starts with no seed up");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(early.gossip.view.borrow().members.is_empty());

    let seed_data = tempfile::tempdir().expect("temp dir");
    let seed_bind = SocketAddr::from(([127, 0, 0, 1], port));
    let seed = daemon::start(settings(
        "late-seed",
        &key,
        seed_bind,
        Vec::new(),
        &seed_data,
    ))
    .await
    .expect("the seed binds the reserved port");
    sees_alive(&early, 1).await;
    sees_alive(&seed, 1).await;
    early.shutdown().await.expect("clean shutdown");
    seed.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_mid_key_rotation_still_form_one_cluster() {
    let (old, new) = (Keyring::generate_key(), Keyring::generate_key());
    let ring = |lines: [&str; 2]| Keyring::parse(&lines.join("\n")).expect("two valid keys");
    // Step 1 of the rotation reached one node, step 2 another: one sends
    // with the old key, the other with the new; both accept both.
    let (step1, _d0) = agent("step1", &ring([&old, &new]), None).await;
    let (step2, _d1) = agent("step2", &ring([&new, &old]), Some(step1.gossip_addr)).await;
    sees_alive(&step1, 1).await;
    sees_alive(&step2, 1).await;
    // Each really received the other's key: nothing was dropped.
    for agent in [&step1, &step2] {
        assert_eq!(
            metric(
                agent,
                "starling_gossip_datagrams_dropped_total{reason=\"unknown_key\"}"
            )
            .await,
            0.0
        );
    }
    for agent in [step1, step2] {
        agent.shutdown().await.expect("clean shutdown");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_once_joined_and_still_ready_when_every_peer_is_gone() {
    let key = keyring();
    let status = |agent: &daemon::RunningAgent| {
        let url = format!("http://{}/readyz", agent.api_addr);
        async move { get(url).await.expect("reachable").status().as_u16() }
    };
    // No seeds: a cluster of one is ready at once.
    let (seed, _d0) = agent("seed", &key, None).await;
    assert_eq!(status(&seed).await, 200);

    // A seed that never answers: live, but not ready.
    let silent = UdpSocket::bind("127.0.0.1:0").expect("a port nobody gossips on");
    let (lonely, _d1) = agent("lonely", &key, Some(silent.local_addr().expect("bound"))).await;
    let live = get(format!("http://{}/livez", lonely.api_addr))
        .await
        .expect("reachable");
    assert_eq!(live.status(), 200);
    assert_eq!(status(&lonely).await, 503);

    // Joined: ready, and it stays ready after its only peer dies (it is
    // the one left to answer for the cluster).
    let (joiner, _d2) = agent("joiner", &key, Some(seed.gossip_addr)).await;
    sees_alive(&joiner, 1).await;
    assert_eq!(status(&joiner).await, 200);
    seed.shutdown().await.expect("seed leaves");
    sees_alive(&joiner, 0).await;
    assert_eq!(status(&joiner).await, 200);

    joiner.shutdown().await.expect("clean shutdown");
    lonely.shutdown().await.expect("clean shutdown");
}
