//! Warnings about refused requests at most once per [`REFUSAL_LOG_INTERVAL_MS`], with a count of
//! those not logged since: a client sending thousands of bad requests a second must not flood
//! the log (or fill the disk it writes to), and an operator still learns that it happens.

use std::sync::Mutex;
use std::time::Duration;

/// The shortest time between two logged refusals of one kind.
pub const REFUSAL_LOG_INTERVAL_MS: u64 = 10_000;

/// When a kind of refusal was last logged, and how many were not logged since.
#[derive(Debug, Default)]
pub struct LogThrottle {
    state: Mutex<(Option<tokio::time::Instant>, u64)>,
}

impl LogThrottle {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether to log this refusal: `Some(n)` with the `n` not logged since the last line, or
    /// `None` (this one is counted instead).
    pub fn due(&self) -> Option<u64> {
        // The runtime's clock (virtual under madsim).
        #[allow(clippy::disallowed_methods)]
        let now = tokio::time::Instant::now();
        self.due_at(now)
    }

    fn due_at(&self, now: tokio::time::Instant) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let interval = Duration::from_millis(REFUSAL_LOG_INTERVAL_MS);
        if state.0.is_some_and(|last| now.duration_since(last) < interval) {
            state.1 += 1;
            return None;
        }
        state.0 = Some(now);
        Some(std::mem::take(&mut state.1))
    }
}

#[cfg(all(test, not(madsim)))]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_line_per_interval_with_the_count_of_the_rest() {
        let t = LogThrottle::new();
        #[allow(clippy::disallowed_methods)]
        let start = tokio::time::Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        assert_eq!(t.due_at(at(0)), Some(0));
        assert_eq!((t.due_at(at(1)), t.due_at(at(9_999))), (None, None));
        assert_eq!(t.due_at(at(REFUSAL_LOG_INTERVAL_MS)), Some(2), "the two between are counted");
        assert_eq!(t.due_at(at(REFUSAL_LOG_INTERVAL_MS + 1)), None);
    }
}
