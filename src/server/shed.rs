//! Load shedding (docs/behaviour.md §5): at most `connections.max_in_flight` requests are
//! being handled at once; one more is answered 503 with `Retry-After` at once rather than
//! queued. A request holds its place until its response headers are ready: a streaming
//! transfer is bounded by `connections.max` instead.
//!
//! Requests without credentials are also counted per client address ([`PerClient`]), from
//! before their body is read: one client trickling forms holds at most
//! `connections.max_in_flight_per_client` of them, and none of the places above.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Requests being handled, against the most allowed.
pub(crate) struct Admission {
    in_flight: AtomicUsize,
    max: usize,
}

/// A request's place; given back when dropped.
pub(super) struct Admitted<'a>(&'a AtomicUsize);

impl Admission {
    /// At most `max` requests at once.
    pub(crate) fn new(max: usize) -> Admission {
        Admission {
            in_flight: AtomicUsize::new(0),
            max,
        }
    }

    /// A place for one more request, or `None` when all `max` are taken.
    pub(super) fn enter(&self) -> Option<Admitted<'_>> {
        let taken = self.in_flight.fetch_add(1, Ordering::AcqRel);
        let admitted = Admitted(&self.in_flight);
        (taken < self.max).then_some(admitted)
    }
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Requests in flight per client address, against the most one address may have.
pub(crate) struct PerClient {
    in_flight: Mutex<HashMap<IpAddr, usize>>,
    max: usize,
}

/// A client's place; given back when dropped.
pub(super) struct ClientPlace<'a> {
    limiter: &'a PerClient,
    address: IpAddr,
}

impl PerClient {
    /// At most `max` requests at once per address.
    pub(crate) fn new(max: usize) -> PerClient {
        PerClient {
            in_flight: Mutex::new(HashMap::new()),
            max,
        }
    }

    /// A place for one more request of `address`, or `None` when it has `max` already.
    pub(super) fn enter(&self, address: IpAddr) -> Option<ClientPlace<'_>> {
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        let count = in_flight.entry(address).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(ClientPlace {
            limiter: self,
            address,
        })
    }
}

impl Drop for ClientPlace<'_> {
    fn drop(&mut self) {
        let mut in_flight = self
            .limiter
            .in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        // The last place of an address takes its entry with it: the map holds only clients
        // with requests in flight.
        if let Some(count) = in_flight.get_mut(&self.address) {
            *count -= 1;
            if *count == 0 {
                in_flight.remove(&self.address);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_client_past_its_limit_is_refused_and_others_are_not() {
        let limiter = PerClient::new(2);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let first = limiter.enter(a).expect("first");
        let _second = limiter.enter(a).expect("second");
        assert!(limiter.enter(a).is_none(), "a third of the same client");
        assert!(limiter.enter(b).is_some(), "another client");
        drop(first);
        assert!(limiter.enter(a).is_some(), "a place given back");
        drop(_second);
        assert!(
            limiter.in_flight.lock().unwrap().is_empty(),
            "no entry is kept for a client with nothing in flight"
        );
    }

    #[test]
    fn the_request_past_the_limit_is_refused_and_places_come_back() {
        let admission = Admission::new(2);
        let first = admission.enter().expect("first");
        let _second = admission.enter().expect("second");
        assert!(admission.enter().is_none(), "a third is shed");
        drop(first);
        assert!(
            admission.enter().is_some(),
            "a place given back is taken again"
        );
        assert_eq!(admission.in_flight.load(Ordering::SeqCst), 1);
    }
}
