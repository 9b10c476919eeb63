//! The library side of the `rocketraft` command: running a broker replica on real files
//! ([`replica`]), the production processes ([`serve`]), a whole development cluster in one
//! process ([`dev`]), the admin verbs ([`admin`]) and the benchmark ([`bench`]). The binary
//! and the integration tests both use it, so what the tests start is what users run.

pub mod admin;
pub mod bench;
pub mod cpu;
pub mod dashboard;
pub mod dev;
pub mod hist;
pub mod metrics;
pub mod replica;
pub mod serve;
pub mod table;

/// Locks a mutex whose data stays usable if a holder panicked (counters and histograms).
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM. The handlers are installed when this is called,
/// not when first polled: call it before announcing "ready", so a signal sent right after the
/// announcement stops the process cleanly instead of killing it.
#[cfg(all(unix, not(madsim)))]
pub fn stop_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, Signal, SignalKind};
    async fn recv(s: Option<Signal>) {
        match s {
            Some(mut s) => {
                s.recv().await;
            }
            None => std::future::pending().await,
        }
    }
    let term = signal(SignalKind::terminate()).ok();
    let int = signal(SignalKind::interrupt()).ok();
    async move {
        if term.is_none() && int.is_none() {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
        tokio::select! {
            biased;
            _ = recv(int) => {}
            _ = recv(term) => {}
        }
    }
}

/// Resolves on Ctrl-C (madsim has no unix signals; the binary never runs under it, only clippy
/// builds it there).
#[cfg(any(not(unix), madsim))]
pub async fn stop_signal() {
    let _ = tokio::signal::ctrl_c().await;
}
