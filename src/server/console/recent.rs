//! The console's live view of decisions: the last [`CAPACITY`] authorization decisions of
//! registry requests, taken from the same events the audit log writes (`access_log.rs` hands
//! each request's events to both), newest last.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::audit::{Event, RequestRecord};
use crate::policy::Attributes;

/// Decisions kept.
pub const CAPACITY: usize = 2000;

/// One decision a registry request needed.
#[derive(Clone, Debug)]
pub struct Seen {
    /// Its place in the stream, from 1; what the console's links name.
    pub seq: u64,
    /// When it was made.
    pub time: SystemTime,
    /// The request's `X-Request-Id`, as in the audit log.
    pub request_id: String,
    /// The request's method and path (never the query).
    pub method: String,
    /// The request's path.
    pub path: String,
    /// Who asked; `None` when no identity was settled.
    pub user: Option<String>,
    /// Their groups.
    pub groups: Vec<String>,
    /// What was asked.
    pub attrs: Attributes,
    /// `Some(allowed)`, or `None` when the authority could not answer (fail closed).
    pub allowed: Option<bool>,
    /// The binding that allowed it, or why it was denied.
    pub reason: String,
    /// The status the request was answered with.
    pub status: u16,
}

/// The stream of recent decisions.
#[derive(Default)]
pub struct Recent {
    inner: Mutex<Ring>,
}

#[derive(Default)]
struct Ring {
    next: u64,
    seen: VecDeque<Arc<Seen>>,
}

impl Recent {
    /// Keeps the decisions among `events`, made for `request`.
    pub fn record(&self, request: &RequestRecord<'_>, events: &[Event]) {
        let mut ring = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        for event in events {
            let Event::Decision {
                time,
                attrs,
                decision,
                ..
            } = event
            else {
                continue;
            };
            ring.next += 1;
            let seen = Seen {
                seq: ring.next,
                time: *time,
                request_id: request.request_id.to_string(),
                method: request.method.to_string(),
                path: request.path.to_string(),
                user: request.user.map(str::to_string),
                groups: request.groups.to_vec(),
                attrs: attrs.clone(),
                allowed: decision.as_ref().map(|d| d.allowed()),
                reason: decision.as_ref().map_or_else(
                    || crate::audit::FAIL_CLOSED.to_string(),
                    |d| d.reason().to_string(),
                ),
                status: request.status,
            };
            if ring.seen.len() == CAPACITY {
                ring.seen.pop_front();
            }
            ring.seen.push_back(Arc::new(seen));
        }
    }

    /// The decisions kept that `keep` takes, newest first, at most `limit`.
    pub fn newest(&self, limit: usize, keep: impl Fn(&Seen) -> bool) -> Vec<Arc<Seen>> {
        let ring = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        ring.seen
            .iter()
            .rev()
            .filter(|seen| keep(seen))
            .take(limit)
            .cloned()
            .collect()
    }

    /// The requests whose decisions are kept, newest first, each with its decisions in the order
    /// they were made; those `keep` takes, at most `limit`. A request's decisions are recorded
    /// together, so they stand side by side in the ring.
    pub fn newest_requests(
        &self,
        limit: usize,
        keep: impl Fn(&[Arc<Seen>]) -> bool,
    ) -> Vec<Vec<Arc<Seen>>> {
        let ring = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut requests: Vec<Vec<Arc<Seen>>> = Vec::new();
        let mut current: Vec<Arc<Seen>> = Vec::new();
        for seen in ring.seen.iter().rev() {
            if current
                .last()
                .is_some_and(|last| last.request_id != seen.request_id)
            {
                current.reverse();
                if keep(&current) {
                    requests.push(std::mem::take(&mut current));
                    if requests.len() == limit {
                        return requests;
                    }
                }
                current.clear();
            }
            current.push(seen.clone());
        }
        current.reverse();
        if !current.is_empty() && requests.len() < limit && keep(&current) {
            requests.push(current);
        }
        requests
    }

    /// The namespaces the kept decisions were about, sorted.
    pub fn namespaces(&self) -> std::collections::BTreeSet<String> {
        let ring = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        ring.seen
            .iter()
            .filter(|seen| !seen.attrs.namespace.is_empty())
            .map(|seen| seen.attrs.namespace.clone())
            .collect()
    }

    /// Decision `seq`, if it is still kept.
    pub fn get(&self, seq: u64) -> Option<Arc<Seen>> {
        let ring = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let first = ring.seen.front()?.seq;
        let index = usize::try_from(seq.checked_sub(first)?).ok()?;
        ring.seen.get(index).cloned()
    }
}

#[cfg(test)]
mod tests;
