//! A queue from request threads to a writer thread (the log and the audit log) that wakes the
//! writer once per batch rather than once per line.
//!
//! Waking a sleeping thread is a system call for the waker and a context switch for the
//! sleeper; at a thousand requests a second, once per request costs more than formatting the
//! line. So only the first item into an empty queue wakes the writer, which then waits a
//! moment (its `gather`) for more and takes everything queued in one go: a busy server writes
//! its lines a few hundred times a second at most, a quiet one within `gather` of each line.
//!
//! Nothing is dropped: past `capacity` queued items a producer waits for the writer. Once the
//! queue is closed (the writer is gone), pushes are discarded instead of waiting forever.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// A bounded queue of `T` with one consumer that takes items in batches.
pub struct Batch<T> {
    state: Mutex<State<T>>,
    /// Signalled when the first item arrives in an empty queue, or on close.
    work: Condvar,
    /// Signalled when the writer has taken a batch, or on close.
    space: Condvar,
    capacity: usize,
}

struct State<T> {
    items: Vec<T>,
    closed: bool,
}

impl<T> Batch<T> {
    /// An empty queue holding at most `capacity` items before producers wait.
    pub fn new(capacity: usize) -> Batch<T> {
        Batch {
            state: Mutex::new(State {
                items: Vec::new(),
                closed: false,
            }),
            work: Condvar::new(),
            space: Condvar::new(),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `item` (waiting while the queue is full); discarded once the queue is closed.
    pub fn push(&self, item: T) {
        let mut state = self.lock();
        while state.items.len() >= self.capacity && !state.closed {
            state = self.space.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        if state.closed {
            return;
        }
        state.items.push(item);
        if state.items.len() == 1 {
            self.work.notify_one();
        }
    }

    /// Waits for items, lets `gather` pass for more to join them (not once closed), and moves
    /// all queued items into `into` (which should be empty). `false` once the queue is closed
    /// and empty: the writer's loop ends.
    pub fn take(&self, gather: Duration, into: &mut Vec<T>) -> bool {
        let closed = {
            let mut state = self.lock();
            while state.items.is_empty() {
                if state.closed {
                    return false;
                }
                state = self.work.wait(state).unwrap_or_else(|e| e.into_inner());
            }
            state.closed
        };
        if !closed && !gather.is_zero() {
            std::thread::sleep(gather);
        }
        let mut state = self.lock();
        std::mem::swap(&mut state.items, into);
        self.space.notify_all();
        true
    }

    /// Closes the queue: the writer takes what is left and stops, and later pushes are
    /// discarded.
    pub fn close(&self) {
        self.lock().closed = true;
        self.work.notify_all();
        self.space.notify_all();
    }
}

/// Closes `batch` when dropped: a writer thread holds one, so if it ends (or panics) no
/// producer waits for it forever.
pub struct CloseOnDrop<'a, T>(pub &'a Batch<T>);

impl<T> Drop for CloseOnDrop<'_, T> {
    fn drop(&mut self) {
        self.0.close();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn items_arrive_in_order_in_batches_and_none_is_lost_when_full() {
        let batch = Arc::new(Batch::new(4));
        let producer = {
            let batch = batch.clone();
            std::thread::spawn(move || {
                for i in 0..100 {
                    batch.push(i);
                }
                batch.close();
            })
        };
        let (mut seen, mut batches, mut taken) = (Vec::new(), 0, Vec::new());
        while batch.take(Duration::from_millis(1), &mut taken) {
            assert!(taken.len() <= 4, "never more than the capacity queued");
            batches += 1;
            seen.append(&mut taken);
        }
        producer.join().expect("producer");
        assert_eq!(seen, (0..100).collect::<Vec<_>>());
        assert!(batches >= 25);
    }

    #[test]
    fn a_closed_queue_discards_rather_than_blocks() {
        let batch = Batch::new(1);
        batch.push(1);
        batch.close();
        batch.push(2);
        let mut taken = Vec::new();
        let gather = Duration::from_millis(20);
        assert!(batch.take(gather, &mut taken));
        assert_eq!(taken, vec![1]);
        taken.clear();
        assert!(!batch.take(gather, &mut taken));
    }
}
