//! Checks that talk to the Kubernetes API through the `kube` client: the
//! API server itself, the scheduler (a probe pod), and the leader leases
//! of the scheduler and the controller manager.

mod apiserver;
mod lease;
mod scheduler;

pub use apiserver::ApiServerCheck;
pub use lease::LeaseCheck;
pub use scheduler::{SchedulerCheck, SchedulerConfig};

/// One line for an API error: the API server's own message, or the
/// innermost transport cause ("connection refused").
pub(crate) fn describe(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) if !status.message.is_empty() => {
            format!("HTTP {}: {}", status.code, one_line(&status.message))
        }
        kube::Error::Api(status) => format!("HTTP {}", status.code),
        other => crate::errors::innermost_cause(other),
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A GET of `path` as text, through `client`.
pub(crate) async fn get_text(client: &kube::Client, path: &str) -> Result<String, kube::Error> {
    let request = http::Request::get(path)
        .body(Vec::new())
        .expect("a GET with a path and an empty body is a valid request");
    client.request_text(request).await
}
