//! Wall-clock time, for the few decisions that need it (the age of CommitLog segments). The one
//! place that reads it; under madsim the clock is simulated.

/// Unix milliseconds now.
#[allow(clippy::disallowed_methods)] // the clock seam itself
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
