//! The overlay probe's settings, checked.

use starling_probe::{ProbeSettings, ProbeSetupError};

use crate::cli::ProbeArgs;

/// `starling probe`'s flags, checked without touching the network (the
/// key file is read).
pub fn probe(args: &ProbeArgs) -> Result<ProbeSettings, ProbeSetupError> {
    let node = args.node_name.trim().to_owned();
    if node.is_empty() {
        return Err(ProbeSetupError::EmptyNodeName);
    }
    let keyring = args.key.load()?.ok_or(ProbeSetupError::NoKey)?;
    let agent_url = args.agent.trim_end_matches('/').to_owned();
    if !agent_url.starts_with("http://") || agent_url.len() <= "http://".len() {
        return Err(ProbeSetupError::BadAgentUrl(args.agent.clone()));
    }
    let ip = match args.pod_ip {
        Some(ip) => ip,
        None if !args.listen.ip().is_unspecified() => args.listen.ip(),
        None => return Err(ProbeSetupError::NoPodIp(args.listen)),
    };
    Ok(ProbeSettings {
        node,
        listen: args.listen,
        ip,
        agent_url,
        keyring,
    })
}
