//! The container runtime check against a real containerd (Debian's
//! `containerd`, run by testkit as root with its own socket and CNI dir):
//! running without a pod network, with one, and killed.

use starling_checks::{Checker, RuntimeCheck, Status};
use starling_testkit::containerd_or_skip;

#[tokio::test]
async fn a_real_containerd_is_judged_by_its_own_conditions_and_a_dead_one_names_its_socket() {
    let Some(mut containerd) = containerd_or_skip() else {
        return;
    };
    let check = RuntimeCheck::new(containerd.socket());

    // No CNI config yet: containerd runs containers but has no pod network.
    let no_cni = check.check().await;
    assert_eq!(no_cni.status, Status::Warning, "{no_cni:?}");
    assert!(
        no_cni.message.starts_with("containerd ")
            && no_cni
                .message
                .contains("NetworkReady false: NetworkPluginNotReady"),
        "{}",
        no_cni.message
    );
    assert_eq!(no_cni.details["cri_version"], "v1", "{}", no_cni.details);

    // A CNI config appears: containerd reloads it and reports the network ready.
    std::fs::write(
        containerd.cni_conf_dir().join("10-lab.conflist"),
        r#"{"cniVersion": "0.4.0", "name": "lab", "plugins": [{"type": "bridge", "bridge": "stl-cni0"}]}"#,
    )
    .expect("write a CNI config");
    let ready = poll_until_ok(&check).await;
    assert_eq!(
        ready.message.split_once(": ").map(|(_, rest)| rest),
        Some("RuntimeReady, NetworkReady"),
        "{}",
        ready.message
    );

    containerd.kill();
    let dead = check.check().await;
    assert_eq!(dead.status, Status::Critical, "{dead:?}");
    let socket = containerd.socket();
    assert!(
        dead.message
            .starts_with(&format!("container runtime socket {}: ", socket.display())),
        "{}",
        dead.message
    );
}

/// containerd notices a new CNI config within a few seconds.
async fn poll_until_ok(check: &RuntimeCheck) -> starling_checks::Outcome {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let outcome = check.check().await;
        if outcome.status == Status::Ok || tokio::time::Instant::now() > deadline {
            return outcome;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}
