//! Skipping etcd tests where etcd is not installed, without ever skipping silently in CI.

use super::{Etcd, EtcdError, Pki};

/// Environment variable that turns a missing etcd into a failure; `scripts/test` installs
/// `etcd-server` and sets it to 1.
const REQUIRE_VAR: &str = "STARLING_REQUIRE_ETCD";

/// For tests: a healthy `Some(etcd)` (see [`Etcd::start`]), or `None` after printing
/// `SKIPPED: <reason>` to stderr when no `etcd` binary is installed; return from the test
/// then.
///
/// Panics instead of skipping if `STARLING_REQUIRE_ETCD=1`, so CI can never silently skip;
/// panics on any other error (etcd installed but not starting), which is a real failure.
pub fn etcd_or_skip(tls: Option<&Pki>) -> Option<Etcd> {
    etcd_with_or_skip(tls, &[])
}

/// [`etcd_or_skip`] with extra flags for etcd (see [`Etcd::start_with`]).
pub fn etcd_with_or_skip(tls: Option<&Pki>, extra: &[&str]) -> Option<Etcd> {
    match Etcd::start_with(tls, extra) {
        Ok(etcd) => Some(etcd),
        Err(e @ EtcdError::Missing) => {
            skip(&e);
            None
        }
        Err(e) => panic!("etcd fixture failed to start: {e}"),
    }
}

/// For tests that start etcd themselves (in a lab namespace): whether the
/// `etcd` binary is installed; if not, skips or panics like
/// [`etcd_or_skip`] and returns false.
pub fn etcd_installed_or_skip() -> bool {
    let installed = std::process::Command::new(super::server::PROGRAM)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !installed {
        skip(&EtcdError::Missing);
    }
    installed
}

/// Prints `SKIPPED`, or panics when `STARLING_REQUIRE_ETCD=1`.
fn skip(missing: &EtcdError) {
    if std::env::var(REQUIRE_VAR).is_ok_and(|v| v == "1") {
        panic!("{REQUIRE_VAR}=1 but the test cannot run here: {missing}");
    }
    eprintln!("SKIPPED: {missing}");
}
