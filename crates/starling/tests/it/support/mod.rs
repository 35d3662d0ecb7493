//! Helpers shared by the test modules: in-process agents, the namespace
//! lab of agent processes, and `deploy/` read as Kubernetes objects.

pub mod agents;
pub mod lab;
pub mod manifests;

/// `starling ARGS` with an empty environment, waited for.
pub fn starling(args: &[&str]) -> std::process::Output {
    std::process::Command::new(lab::STARLING)
        .args(args)
        .env_clear()
        .output()
        .expect("the starling binary runs")
}
