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

/// What one reload came to, for the caller's log line.
#[derive(Debug, PartialEq, Eq)]
pub enum Reloaded {
    /// Nothing changed (or the same failure as last time, already logged).
    Unchanged,
    /// Something new is in force; `recovered` when the look before had failed.
    Changed {
        /// The previous look had failed.
        recovered: bool,
    },
    /// A failure not logged yet: the message to log once.
    Failed(String),
}

/// The last reload failure, so each distinct failure is logged once and not at every tick.
#[derive(Debug, Default)]
pub struct LastError(std::sync::Mutex<Option<String>>);

impl LastError {
    /// Records the result of a reload (`Ok(true)` when something changed).
    pub fn note<E: std::fmt::Display>(&self, result: Result<bool, E>) -> Reloaded {
        let mut last = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok(false) => Reloaded::Unchanged,
            Ok(true) => Reloaded::Changed {
                recovered: last.take().is_some(),
            },
            Err(error) => {
                let message = error.to_string();
                if last.as_deref() == Some(message.as_str()) {
                    return Reloaded::Unchanged;
                }
                *last = Some(message.clone());
                Reloaded::Failed(message)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_distinct_failure_is_reported_once() {
        let last = LastError::default();
        assert_eq!(last.note::<String>(Ok(false)), Reloaded::Unchanged);
        assert_eq!(last.note(Err("bad")), Reloaded::Failed("bad".into()));
        assert_eq!(last.note(Err("bad")), Reloaded::Unchanged);
        assert_eq!(last.note(Err("worse")), Reloaded::Failed("worse".into()));
        assert_eq!(
            last.note::<String>(Ok(true)),
            Reloaded::Changed { recovered: true }
        );
        assert_eq!(
            last.note::<String>(Ok(true)),
            Reloaded::Changed { recovered: false }
        );
    }
}
