//! The container runtime check against a real containerd (Debian's
//! `containerd`, run by testkit as root with its own socket and CNI dir):
//! running without a pod network, with one, and killed; starting a pod
//! sandbox without its pause image and with it.

use starling_checks::{Checker, RuntimeCheck, Status};
use starling_testkit::{PAUSE_IMAGE, containerd_or_skip};

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

/// `--cri-start-sandbox`: a runtime whose conditions are fine but whose
/// pause image cannot be pulled starts no pod, and says why; with the
/// image, a sandbox starts and nothing is left behind.
#[tokio::test]
async fn a_sandbox_is_started_and_removed_and_an_unpullable_pause_image_is_critical() {
    let Some(containerd) = containerd_or_skip() else {
        return;
    };
    let check = RuntimeCheck::new(containerd.socket()).with_sandbox("node-a");

    let no_image = check.check().await;
    assert_eq!(no_image.status, Status::Critical, "{no_image:?}");
    assert!(
        no_image.message.starts_with("cannot start a pod sandbox: ")
            && no_image.message.contains(PAUSE_IMAGE),
        "{}",
        no_image.message
    );
    eprintln!(
        "an unpullable pause image, as the operator sees it: {}",
        no_image.message
    );

    containerd
        .import_pause_image()
        .expect("the pause image imports");
    let started = check.check().await;
    // No CNI config: NetworkReady false keeps it a warning; the host-network
    // sandbox starts regardless.
    assert_eq!(
        started.status,
        Status::Warning,
        "{started:?}\n{}",
        containerd.log()
    );
    assert!(
        started
            .message
            .contains("; started and removed a pod sandbox in "),
        "{}",
        started.message
    );
    assert_eq!(started.details["sandbox"]["started"], true);
    assert_eq!(
        containerd.cri_containers().expect("ctr lists"),
        Vec::<String>::new(),
        "the sandbox is removed"
    );
    eprintln!(
        "a sandbox started, as the operator sees it: {}",
        started.message
    );
}
