//! One shutdown signal fanned out to every server of a service, and a
//! bounded drain.

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long servers get to finish requests in progress after shutdown.
const DRAIN_DEADLINE: Duration = Duration::from_secs(10);

/// A shutdown signal many servers can wait on.
pub(crate) struct Shutdown {
    tx: watch::Sender<bool>,
}

impl Shutdown {
    pub(crate) fn new() -> Self {
        Self {
            tx: watch::channel(false).0,
        }
    }

    /// Completes once [`trigger`](Self::trigger) was called.
    pub(crate) fn signal(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.tx.subscribe();
        async move {
            // An error means the sender is gone, which is shutdown too.
            let _ = rx.wait_for(|stop| *stop).await;
        }
    }

    pub(crate) fn trigger(&self) {
        self.tx.send_replace(true);
    }
}

/// Waits for a server task to finish, at most [`DRAIN_DEADLINE`]; aborts it
/// after that.
pub(crate) async fn drain<T>(mut task: JoinHandle<T>, name: &str) {
    if task.is_finished() {
        return;
    }
    if tokio::time::timeout(DRAIN_DEADLINE, &mut task)
        .await
        .is_err()
    {
        tracing::warn!(server = name, "Server did not drain in time; aborting it.");
        task.abort();
    }
}
