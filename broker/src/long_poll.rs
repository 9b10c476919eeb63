//! Long polling: pulls that found nothing wait here until a message for their queue is applied
//! (the state machine's arrival listener wakes them) or their suspend timeout passes.
//!
//! One `Notify` per queue, created on first use; a woken pull reads the queue again, so a
//! spurious wake-up costs one lookup. The map grows with the number of queues pulled, which is
//! bounded by the topics' queue counts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rocketraft_store::Arrival;
use tokio::sync::Notify;

/// Waiters per (topic, queue id).
#[derive(Default)]
pub struct PullWaiters {
    queues: Mutex<HashMap<(String, i32), Arc<Notify>>>,
}

impl PullWaiters {
    /// The notifier of one queue.
    pub fn notifier(&self, topic: &str, queue_id: i32) -> Arc<Notify> {
        let mut q = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        q.entry((topic.to_owned(), queue_id)).or_insert_with(|| Arc::new(Notify::new())).clone()
    }

    /// Wakes every pull waiting on a queue that just got messages.
    pub fn arrived(&self, arrivals: &[Arrival]) {
        let q = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        for a in arrivals {
            if let Some(n) = q.get(&(a.topic.clone(), a.queue_id)) {
                n.notify_waiters();
            }
        }
    }
}
