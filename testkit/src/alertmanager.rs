//! Debian's Alertmanager (`prometheus-alertmanager`) and `amtool`, for
//! tests that deliver alerts to the real receiver and hold the shipped
//! routing example to the real configuration checker.

use std::path::Path;

use crate::served::{Served, ServedError, or_skip};

/// Debian names the server after its package.
const PROGRAM: &str = "prometheus-alertmanager";

/// A real Alertmanager on 127.0.0.1, alone (no cluster: HA replicas do
/// not share alerts, so each must be sent every one). Killed on drop.
#[derive(Debug)]
pub struct Alertmanager(Served);

/// An Alertmanager running `config` (its YAML), behind basic auth when
/// `web_config` (exporter-toolkit's `--web.config.file` YAML) says so; or
/// `None` after printing why when it is not installed (a failure with
/// `STARLING_REQUIRE_PROMETHEUS=1`).
pub fn alertmanager_or_skip(config: &str, web_config: Option<&str>) -> Option<Alertmanager> {
    or_skip(
        Alertmanager::start(config, web_config),
        "prometheus-alertmanager",
    )
}

impl Alertmanager {
    pub fn start(config: &str, web_config: Option<&str>) -> Result<Alertmanager, ServedError> {
        let web = web_config.map(str::to_owned);
        Served::start(
            PROGRAM,
            "alertmanager.yml",
            config,
            |dir, config, listen| {
                let mut args = vec![
                    format!("--config.file={}", config.display()),
                    format!("--storage.path={}", dir.join("data").display()),
                    format!("--web.listen-address={listen}"),
                    // No gossip between replicas: each stands alone.
                    "--cluster.listen-address=".to_owned(),
                ];
                if let Some(web) = web {
                    let path = dir.join("web.yml");
                    std::fs::write(&path, web).expect("the web configuration is written");
                    args.push(format!("--web.config.file={}", path.display()));
                }
                args
            },
        )
        .map(Alertmanager)
    }

    /// `http://127.0.0.1:PORT`: the base URL an agent's sink takes.
    pub fn url(&self) -> String {
        self.0.url()
    }
}

/// `amtool check-config FILE`: its report, `Err` when the configuration is
/// refused (or amtool is missing).
pub fn amtool_check_config(config: &Path) -> Result<String, String> {
    crate::tool::report("amtool", &["check-config", &config.display().to_string()])
}
