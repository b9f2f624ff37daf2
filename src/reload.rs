//! Polling reloaders: a server picks up files changed on disk (the embedded authority's state
//! directory, token-server keys) without a restart.
//!
//! Polling rather than inotify: it works the same on every filesystem, a mounted Kubernetes
//! Secret's symlink swap included, and the cost is one `stat` per file per tick.

use std::sync::Arc;
use std::time::Duration;

/// Calls `poll` on `this` every `interval` in a blocking task, until the last `Arc` to `this`
/// is dropped. `what` names the reloaded thing in the log should `poll` panic. Needs a tokio
/// runtime.
pub fn spawn<T: Send + Sync + 'static>(
    this: &Arc<T>,
    interval: Duration,
    what: &'static str,
    poll: fn(&T),
) {
    let weak = Arc::downgrade(this);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(this) = weak.upgrade() else { break };
            // Reading files blocks; keep it off the request workers.
            if tokio::task::spawn_blocking(move || poll(&this))
                .await
                .is_err()
            {
                tracing::error!(
                    "{what} reloader panicked; changes are no longer picked up until restart"
                );
                break;
            }
        }
    });
}
