//! The library side of the `rocketraft` command: running a broker replica on real files
//! ([`replica`]), the production processes ([`serve`]), a whole development cluster in one
//! process ([`dev`]), the admin verbs ([`admin`]) and the benchmark ([`bench`]). The binary
//! and the integration tests both use it, so what the tests start is what users run.

pub mod admin;
pub mod bench;
pub mod dev;
pub mod hist;
pub mod replica;
pub mod serve;
pub mod table;

/// Locks a mutex whose data stays usable if a holder panicked (counters and histograms).
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn stop_signal() {
    // madsim has no unix signals (the binary never runs under it; only clippy builds it).
    #[cfg(all(unix, not(madsim)))]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    biased;
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(any(not(unix), madsim))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
