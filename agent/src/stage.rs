//! The one shutdown primitive: a stage is a set of tasks that stop
//! together. The agent stops as an ordered list of stages
//! (`RunningAgent::shutdown`), each over before the next begins.

use std::future::Future;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::AgentError;

/// Tasks that stop together: one token cancels them all, and the stage
/// is over once every one of them has returned.
#[derive(Debug)]
pub(crate) struct Stage {
    stop: CancellationToken,
    tasks: Vec<JoinHandle<std::io::Result<()>>>,
}

impl Stage {
    pub(crate) fn new() -> Self {
        Stage {
            stop: CancellationToken::new(),
            tasks: Vec::new(),
        }
    }

    /// Runs `task` until it returns; it should watch `self.stop`.
    pub(crate) fn spawn(&mut self, task: impl Future<Output = ()> + Send + 'static) {
        self.tasks.push(tokio::spawn(async move {
            task.await;
            Ok(())
        }));
    }

    /// Runs `task` (the HTTP server) until it returns; its I/O error is
    /// the stage's failure, reported once the stage has stopped.
    pub(crate) fn spawn_fallible(
        &mut self,
        task: impl Future<Output = std::io::Result<()>> + Send + 'static,
    ) {
        self.tasks.push(tokio::spawn(task));
    }

    /// Completes once the stage is told to stop.
    pub(crate) fn stopped(&self) -> tokio_util::sync::WaitForCancellationFutureOwned {
        self.stop.clone().cancelled_owned()
    }

    /// Cancel, then wait for every task; the first failure is returned
    /// after all have ended.
    pub(crate) async fn stop(self) -> Result<(), AgentError> {
        self.stop.cancel();
        let mut result = Ok(());
        for task in self.tasks {
            let outcome = task.await?.map_err(AgentError::Http);
            result = result.and(outcome);
        }
        result
    }
}
