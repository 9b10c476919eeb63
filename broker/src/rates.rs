//! Per-group consumption rates for GET_CONSUME_STATS' `consumeTps`: the messages this replica
//! served to a group's pulls, counted in one-second buckets, averaged over the last minute
//! (RocketMQ averages its per-group "get" counts the same way).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// The averaging window.
pub const WINDOW_SECS: i64 = 60;
/// Groups tracked at most; pulls of further groups are not counted (group names come from the
/// network, so the table must not grow without bound).
pub const GROUPS_MAX: usize = 10_000;

#[derive(Default)]
pub struct ConsumeRates {
    /// group -> (second, messages) buckets, oldest first.
    groups: Mutex<HashMap<String, VecDeque<(i64, u64)>>>,
}

impl ConsumeRates {
    /// Counts `messages` served to `group` at `now_ms`.
    pub fn record(&self, group: &str, messages: u64, now_ms: i64) {
        let second = now_ms.div_euclid(1000);
        let mut groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        if !groups.contains_key(group) {
            if groups.len() >= GROUPS_MAX {
                groups.retain(|_, b| b.back().is_some_and(|&(s, _)| s > second - WINDOW_SECS));
            }
            if groups.len() >= GROUPS_MAX {
                return;
            }
            groups.insert(group.to_owned(), VecDeque::new());
        }
        // Pulls are a hot path: no allocation for a group already tracked.
        let Some(buckets) = groups.get_mut(group) else { return };
        match buckets.back_mut() {
            Some((s, n)) if *s == second => *n += messages,
            _ => buckets.push_back((second, messages)),
        }
        while buckets.front().is_some_and(|&(s, _)| s <= second - WINDOW_SECS) {
            buckets.pop_front();
        }
    }

    /// Messages per second served to `group` over the minute before `now_ms`.
    pub fn tps(&self, group: &str, now_ms: i64) -> f64 {
        let second = now_ms.div_euclid(1000);
        let groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        let total: u64 = groups.get(group).map_or(0, |b| {
            b.iter().filter(|&&(s, _)| s > second - WINDOW_SECS).map(|&(_, n)| n).sum()
        });
        total as f64 / WINDOW_SECS as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn averages_over_the_last_minute() {
        let r = ConsumeRates::default();
        for second in 0..30 {
            r.record("G", 4, second * 1000 + 500);
        }
        r.record("other", 1_000, 10_000);
        assert_eq!(r.tps("G", 30_000), 2.0, "120 messages in the last minute");
        assert_eq!(r.tps("G", 80_000), 36.0 / 60.0, "only seconds 21..=29 are in the window");
        assert_eq!(r.tps("G", 90_000), 0.0);
        assert_eq!(r.tps("nobody", 30_000), 0.0);
    }

    #[test]
    fn the_group_table_is_bounded() {
        let r = ConsumeRates::default();
        for g in 0..GROUPS_MAX + 5 {
            r.record(&format!("g{g}"), 1, 0);
        }
        assert_eq!(r.groups.lock().unwrap().len(), GROUPS_MAX);
        // Once the old groups' minute has passed, new ones are counted again.
        r.record("late", 60, 120_000);
        assert_eq!(r.tps("late", 120_000), 1.0);
    }
}
