//! What a simulated node records: check transitions that vary as real
//! ones do (six checks, their messages, random origins, millisecond
//! times), because the aggregators' answers are deflated and alike rows
//! would deflate to almost nothing.

/// One simulated check transition: which check, between which states,
/// and what it said.
#[derive(Clone, Debug)]
pub struct CheckChange {
    pub check: &'static str,
    pub old: &'static str,
    pub new: &'static str,
    pub message: String,
}

/// The `seq`th transition of a log, alternately failing and recovering as
/// transitions do, its check and its message's figures picked by `noise`:
/// real rows vary, and deflate sees it. `starling-bench aggregator` sends
/// the same rows to real aggregators.
pub fn check_change(noise: u64, seq: u64) -> CheckChange {
    let (check, failing, passing) = CHECKS[(noise % CHECKS.len() as u64) as usize];
    let (old, new, said) = if seq % 2 == 1 {
        ("ok", "critical", failing)
    } else {
        ("critical", "ok", passing)
    };
    CheckChange {
        check,
        old,
        new,
        message: said.replace("{ms}", &((noise >> 24) % 2_000).to_string()),
    }
}

/// The checks a simulated row is a transition of, with what they say when
/// they fail and when they pass.
const CHECKS: [(&str, &str, &str); 6] = [
    (
        "etcd",
        "etcd: 2 of 3 members answered /health within 2s; quorum holds",
        "etcd: 3 of 3 members healthy in {ms} ms",
    ),
    (
        "apiserver",
        "apiserver: GET /readyz timed out after 2s",
        "apiserver: /readyz 200 in {ms} ms",
    ),
    (
        "scheduler",
        "scheduler: no leader lease renewed for {ms} ms",
        "scheduler: lease renewed {ms} ms ago",
    ),
    (
        "overlay",
        "overlay: 3 of 48 peers did not echo within 1s",
        "overlay: 48 of 48 peers echoed, p99 {ms} ms",
    ),
    (
        "disk",
        "disk: /var/lib/kubelet is 93% full",
        "disk: /var/lib/kubelet is 71% full",
    ),
    (
        "certs",
        "certs: kubelet serving certificate expires in 6 days",
        "certs: every certificate valid for 30 days or more",
    ),
];

/// A fixed, well-spread function of two numbers (SplitMix64's finalizer):
/// what varies between simulated rows, the same in every run.
pub fn mix(a: u64, b: u64) -> u64 {
    let mut z = a.rotate_left(32) ^ b ^ 0x9e37_79b9_7f4a_7c15;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
