//! Background tasks tied to an owner: dropping the handle aborts the task, so a
//! task cannot outlive the application (or test) that started it.

use std::future::Future;
use tokio::task::JoinHandle;

/// A spawned task that is aborted when this handle is dropped.
#[derive(Debug)]
#[must_use = "dropping the handle stops the task"]
pub struct BackgroundTask(JoinHandle<()>);

impl BackgroundTask {
    /// Spawns `task` on the current tokio runtime.
    pub fn spawn(task: impl Future<Output = ()> + Send + 'static) -> BackgroundTask {
        BackgroundTask(tokio::spawn(task))
    }
}

impl Drop for BackgroundTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}
