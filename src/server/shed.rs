//! Load shedding (docs/behaviour.md §5): at most `connections.max_in_flight` requests are
//! being handled at once; one more is answered 503 with `Retry-After` at once rather than
//! queued. A request holds its place until its response headers are ready: a streaming
//! transfer is bounded by `connections.max` instead.

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

#[cfg(test)]
mod tests {
    use super::*;

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
