//! What the benchmarks' stand-in agents answer besides the one endpoint
//! each serves: no members, no metrics, always live and ready.

/// The four `AgentView` methods every stand-in answers alike, for the
/// body of an `impl AgentView`; `$me` names the agent in its answers.
macro_rules! quiet_agent {
    ($me:expr) => {
        fn members(&self) -> starling_model::MembersResponse {
            starling_model::MembersResponse {
                answered_by: ($me).to_owned(),
                answered_at_unix_ms: 0,
                counts: starling_model::StateCounts::default(),
                local_health: 0,
                members_matched: 0,
                next_cursor: None,
                members: Vec::new(),
            }
        }

        fn metrics(&self) -> starling_web::Reply<String> {
            Box::pin(async { Ok(String::new()) })
        }

        fn live(&self) -> bool {
            true
        }

        fn ready(&self) -> Result<(), String> {
            Ok(())
        }
    };
}

pub(crate) use quiet_agent;
