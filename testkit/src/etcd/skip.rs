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
    match Etcd::start(tls) {
        Ok(etcd) => Some(etcd),
        Err(e @ EtcdError::Missing) => {
            if std::env::var(REQUIRE_VAR).is_ok_and(|v| v == "1") {
                panic!("{REQUIRE_VAR}=1 but the test cannot run here: {e}");
            }
            eprintln!("SKIPPED: {e}");
            None
        }
        Err(e) => panic!("etcd fixture failed to start: {e}"),
    }
}
