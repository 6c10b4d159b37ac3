//! One root shutdown signal for a process: SIGINT or SIGTERM.

use tracing::warn;

/// Resolves on the first SIGINT or SIGTERM. A second signal exits the
/// process at once (status 130), for when a graceful drain takes too long.
pub async fn signal() {
    wait_for_signal().await;
    tokio::spawn(async {
        wait_for_signal().await;
        warn!("Second shutdown signal: exiting without draining.");
        std::process::exit(130);
    });
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut interrupt), Ok(mut terminate)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        warn!("Cannot listen for shutdown signals; stopping on Ctrl-C only.");
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}
