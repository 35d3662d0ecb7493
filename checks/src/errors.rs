//! Turning errors and health pages into the one-line reasons checks report.

/// The innermost cause of an error ("connection refused", "invalid peer
/// certificate: UnknownIssuer"), not the layers restating the URL above it.
pub fn innermost_cause(error: &dyn std::error::Error) -> String {
    let mut cause = error;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    cause.to_string()
}

/// The failing sub-checks of a Kubernetes-style verbose health page
/// (`[-]etcd failed: reason withheld` → `etcd`), as `/readyz?verbose` and
/// the components' `/healthz` print them.
pub(crate) fn failing_sub_checks(verbose: &str) -> Vec<String> {
    verbose
        .lines()
        .filter_map(|line| line.trim().strip_prefix("[-]"))
        .map(|rest| rest.split_whitespace().next().unwrap_or(rest).to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failing_sub_checks_are_named() {
        let text = "[+]ping ok\n[+]log ok\n[-]etcd failed: reason withheld\n\
                    [-]poststarthook/rbac/bootstrap-roles failed: not finished\nreadyz check failed";
        assert_eq!(
            failing_sub_checks(text),
            ["etcd", "poststarthook/rbac/bootstrap-roles"]
        );
    }
}
