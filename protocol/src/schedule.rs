//! Delayed delivery, as RocketMQ's clients ask for it: the 4.x delay levels (`DELAY`) and the
//! 5.x timers (`TIMER_DELIVER_MS`, `TIMER_DELAY_SEC`, `TIMER_DELAY_MS`). Pure rules, shared by
//! the broker (which parks and moves messages) and the SDK (which checks before it sends).
//!
//! Timers wait in a hierarchy of FIFO queues of `rmq_sys_wheel_timer`: queue `k` holds
//! messages for `TIMER_STEP_MS << k` each, so in one queue the message stored first is due
//! first, and the broker only ever looks at the head of each queue. A message whose delivery
//! time is `r` ms away goes to the largest step not over `r` (queue 0 if `r` is below the
//! smallest); when its step is up it moves on by the same rule with what is left, or to its
//! real topic once nothing is. Each move takes a step at least half of what was left, so a
//! timer moves at most once per queue; it is never delivered early and at most one smallest
//! step (plus the broker's tick) late. What the queues hold is in the log, and how far each
//! was moved is replicated with the moves, so the wheel needs no memory per pending timer.

use std::fmt;

use crate::message::{find_property, property};

/// The delay levels of RocketMQ's `messageDelayLevel` by default.
pub const DELAY_LEVELS_DEFAULT: &str = "1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h";
/// A timer's largest delay by default (RocketMQ's `timerMaxDelaySec`: 3 days).
pub const TIMER_MAX_DELAY_SEC_DEFAULT: u64 = 3 * 24 * 3600;
/// The smallest timer step: queue 0 of the timer topic holds messages this long.
pub const TIMER_STEP_MS: u64 = 100;
/// Timer queues: steps of 100 ms to 100 ms x 2^21 (about 58 h).
pub const TIMER_QUEUES: i32 = 22;

/// The delays of the delay levels, level 1 first, in ms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DelayLevels(Vec<u64>);

/// A `messageDelayLevel` setting that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("messageDelayLevel {0:?}: {1}")]
pub struct DelayLevelsError(String, &'static str);

impl DelayLevels {
    /// Parses RocketMQ's form: delays separated by spaces, each a number and a unit of `s`,
    /// `m`, `h` or `d` (e.g. "1s 5s 10s 30s 1m"). At least one level, at most 255.
    pub fn parse(text: &str) -> Result<Self, DelayLevelsError> {
        let bad = |why| DelayLevelsError(text.to_owned(), why);
        let mut levels = Vec::new();
        for item in text.split_whitespace() {
            let (number, unit) = item.split_at(item.len() - 1);
            let scale = match unit {
                "s" => 1_000,
                "m" => 60_000,
                "h" => 3_600_000,
                "d" => 86_400_000,
                _ => return Err(bad("each delay ends with s, m, h or d")),
            };
            let n: u64 =
                number.parse().map_err(|_| bad("each delay is a whole number and a unit"))?;
            if n == 0 {
                return Err(bad("a delay of 0 is no delay"));
            }
            levels.push(n.checked_mul(scale).ok_or_else(|| bad("a delay is too long"))?);
        }
        if levels.is_empty() || levels.len() > 255 {
            return Err(bad("between 1 and 255 delays"));
        }
        Ok(DelayLevels(levels))
    }

    /// The number of levels (18 by default).
    pub fn len(&self) -> i32 {
        self.0.len() as i32
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The delay of `level` (1-based, clamped to the levels there are), in ms.
    pub fn delay_ms(&self, level: i32) -> u64 {
        let i = (level.max(1) as usize).min(self.0.len()) - 1;
        self.0[i]
    }

    /// The level a `DELAY` property asks for: `None` for none (absent, not a number, 0 or
    /// less); above the last level means the last (RocketMQ's rule).
    pub fn level_of(&self, delay: Option<&str>) -> Option<i32> {
        let level: i64 = delay?.trim().parse().ok()?;
        (level > 0).then(|| level.min(self.len() as i64) as i32)
    }
}

impl Default for DelayLevels {
    fn default() -> Self {
        DelayLevels::parse(DELAY_LEVELS_DEFAULT).expect("the default levels parse")
    }
}

impl fmt::Display for DelayLevels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for ms in &self.0 {
            if !first {
                f.write_str(" ")?;
            }
            first = false;
            match *ms {
                ms if ms % 86_400_000 == 0 => write!(f, "{}d", ms / 86_400_000)?,
                ms if ms % 3_600_000 == 0 => write!(f, "{}h", ms / 3_600_000)?,
                ms if ms % 60_000 == 0 => write!(f, "{}m", ms / 60_000)?,
                ms => write!(f, "{}s", ms / 1_000)?,
            }
        }
        Ok(())
    }
}

/// A timer property that cannot be honoured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimerError {
    #[error("{0} must be a whole number, not {1:?}")]
    NotANumber(&'static str, String),
    /// RocketMQ's remark for a timer beyond the limit (its WHEEL_TIMER_MSG_ILLEGAL).
    #[error(
        "timer message illegal, the delay time should not be bigger than the max delay {0}ms; \
         or if set del msg, the delay time should be bigger than the current time"
    )]
    TooLate(u64),
}

/// When a timer message's properties ask it to be delivered (ms since the epoch), `None` if
/// they ask for no timer. `TIMER_DELAY_SEC` wins over `TIMER_DELAY_MS`, which wins over
/// `TIMER_DELIVER_MS` (RocketMQ's order). A time more than `max_delay_sec` after `now_ms` is
/// refused; a time already past is due at once.
pub fn timer_deliver_ms(
    properties: &str,
    now_ms: i64,
    max_delay_sec: u64,
) -> Result<Option<i64>, TimerError> {
    let number = |name: &'static str| -> Result<Option<i64>, TimerError> {
        find_property(properties, name)
            .map(|v| {
                v.trim().parse::<i64>().map_err(|_| TimerError::NotANumber(name, v.to_owned()))
            })
            .transpose()
    };
    let deliver = if let Some(sec) = number(property::TIMER_DELAY_SEC)? {
        now_ms.saturating_add(sec.saturating_mul(1_000))
    } else if let Some(ms) = number(property::TIMER_DELAY_MS)? {
        now_ms.saturating_add(ms)
    } else if let Some(at) = number(property::TIMER_DELIVER_MS)? {
        at
    } else {
        return Ok(None);
    };
    let max_ms = max_delay_sec.saturating_mul(1_000);
    if deliver.saturating_sub(now_ms) > max_ms as i64 {
        return Err(TimerError::TooLate(max_ms));
    }
    Ok(Some(deliver))
}

/// The timer queue for a message due in `remaining_ms` (more than 0): the largest step not
/// over it, queue 0 below the smallest step.
pub fn timer_queue_for(remaining_ms: u64) -> i32 {
    let steps = remaining_ms / TIMER_STEP_MS;
    if steps <= 1 {
        return 0;
    }
    ((63 - steps.leading_zeros()) as i32).min(TIMER_QUEUES - 1)
}

/// How long timer queue `queue` holds a message, in ms.
pub fn timer_step_ms(queue: i32) -> u64 {
    TIMER_STEP_MS << queue.clamp(0, TIMER_QUEUES - 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::properties_to_string;
    use proptest::prelude::*;

    #[test]
    fn levels_parse_as_rocketmq_writes_them_and_clamp_as_it_does() {
        let levels = DelayLevels::default();
        assert_eq!(levels.len(), 18);
        assert_eq!(levels.delay_ms(1), 1_000);
        assert_eq!(levels.delay_ms(3), 10_000);
        assert_eq!(levels.delay_ms(18), 7_200_000);
        assert_eq!(levels.to_string(), DELAY_LEVELS_DEFAULT);
        assert_eq!(levels.level_of(Some("3")), Some(3));
        assert_eq!(levels.level_of(Some("40")), Some(18), "above the last is the last");
        for none in [None, Some("0"), Some("-2"), Some("x"), Some("")] {
            assert_eq!(levels.level_of(none), None, "{none:?}");
        }
        assert_eq!(
            DelayLevels::parse("200ms 1d").unwrap_err().1,
            "each delay is a whole number and a unit"
        );
        for bad in ["", "1x", "0s", "s", "1s  2q"] {
            assert!(DelayLevels::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(DelayLevels::parse(" 1s  2m 1d ").unwrap().0, vec![1_000, 120_000, 86_400_000]);
    }

    #[test]
    fn timer_properties_give_the_delivery_time_or_a_reason() {
        let now = 1_000_000;
        let props = |k: &str, v: &str| properties_to_string([(k, v)]);
        assert_eq!(timer_deliver_ms("", now, 10), Ok(None));
        assert_eq!(
            timer_deliver_ms(&props(property::TIMER_DELAY_SEC, "3"), now, 10),
            Ok(Some(now + 3_000))
        );
        assert_eq!(
            timer_deliver_ms(&props(property::TIMER_DELAY_MS, "250"), now, 10),
            Ok(Some(now + 250))
        );
        assert_eq!(timer_deliver_ms(&props(property::TIMER_DELIVER_MS, "5"), now, 10), Ok(Some(5)));
        assert_eq!(
            timer_deliver_ms(&props(property::TIMER_DELAY_SEC, "11"), now, 10),
            Err(TimerError::TooLate(10_000))
        );
        assert!(matches!(
            timer_deliver_ms(&props(property::TIMER_DELAY_MS, "soon"), now, 10),
            Err(TimerError::NotANumber(..))
        ));
        assert!(TimerError::TooLate(259_200_000).to_string().starts_with(
            "timer message illegal, the delay time should not be bigger than the max delay 259200000ms"
        ));
    }

    #[test]
    fn timer_queues_take_the_largest_step_that_fits() {
        assert_eq!(timer_queue_for(1), 0);
        assert_eq!(timer_queue_for(199), 0);
        assert_eq!(timer_queue_for(200), 1);
        assert_eq!(timer_queue_for(3_000), 4, "3 s: 1.6 s first");
        assert_eq!(timer_queue_for(u64::MAX), TIMER_QUEUES - 1);
        assert_eq!(timer_step_ms(0), 100);
        assert_eq!(timer_step_ms(4), 1_600);
    }

    proptest! {
        /// Following the rule from any delay, a timer is delivered no earlier than asked and at
        /// most one smallest step later, after at most one stop per queue (plus repeats of the
        /// largest queue for delays beyond it).
        #[test]
        fn a_timer_is_never_early_and_at_most_one_step_late(delay in 1u64..400_000_000) {
            let (mut now, due) = (0u64, delay);
            let mut hops = 0;
            while now < due {
                now += timer_step_ms(timer_queue_for(due - now));
                hops += 1;
            }
            prop_assert!(now >= due);
            prop_assert!(now - due < TIMER_STEP_MS);
            let largest = timer_step_ms(TIMER_QUEUES - 1);
            prop_assert!(hops as u64 <= TIMER_QUEUES as u64 + delay / largest);
        }
    }
}
