//! Wall-clock time for message timestamps and UNIQ_KEYs: the one place the client reads it
//! (STYLE.md rule 20). Under madsim the clock is simulated.

/// Unix milliseconds now.
#[allow(clippy::disallowed_methods)] // the clock seam itself
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The runtime's monotonic clock (virtual under madsim).
#[allow(clippy::disallowed_methods)] // tokio's clock is madsim's under the simulation
pub(crate) fn instant() -> tokio::time::Instant {
    tokio::time::Instant::now()
}

/// `now + ms`, saturating far in the future instead of overflowing on absurd timeouts.
pub(crate) fn deadline_in(ms: u64) -> tokio::time::Instant {
    let now = instant();
    // About 30 years: later than any real deadline, far from the overflow.
    let ms = ms.min(1_000_000_000_000);
    now.checked_add(std::time::Duration::from_millis(ms)).unwrap_or(now)
}
