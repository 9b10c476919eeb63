//! openraft's `AsyncRuntime` over `tokio` (madsim-tokio): real tokio normally, the simulator
//! under `--cfg madsim`. openraft's own TokioRuntime calls real tokio and `thread_rng`, which
//! bypass madsim; every spawn, sleep, timeout and random draw of openraft goes through here.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use openraft::OptionalSend;

/// The runtime RocketRaft gives openraft.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MadRuntime;

/// A timeout ran out. (tokio's `Elapsed` cannot be built outside tokio.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("deadline has elapsed")
    }
}

impl std::error::Error for Elapsed {}

pin_project_lite::pin_project! {
    /// A future with a deadline (madsim's `timeout` returns an unnameable type).
    pub struct Timeout<T> {
        #[pin]
        fut: T,
        #[pin]
        sleep: tokio::time::Sleep,
    }
}

impl<T: Future> Future for Timeout<T> {
    type Output = Result<T::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(v) = this.fut.poll(cx) {
            return Poll::Ready(Ok(v));
        }
        match this.sleep.poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Elapsed)),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Seeded and deterministic under madsim.
#[cfg(madsim)]
pub type Rng = madsim::rand::GlobalRng;
#[cfg(not(madsim))]
pub type Rng = rand::rngs::ThreadRng;

/// openraft's instant is std's `Instant`, which madsim virtualises (it overrides the clock
/// call underneath), so converting it to the runtime's instant is safe in both worlds.
// Under madsim both are std's Instant and the conversion is the identity.
#[allow(clippy::useless_conversion)]
fn to_runtime_instant(i: openraft::TokioInstant) -> tokio::time::Instant {
    i.into_std().into()
}

impl openraft::AsyncRuntime for MadRuntime {
    type JoinError = tokio::task::JoinError;
    type JoinHandle<T: OptionalSend + 'static> = tokio::task::JoinHandle<T>;
    type Sleep = tokio::time::Sleep;
    type Instant = openraft::TokioInstant;
    type TimeoutError = Elapsed;
    type Timeout<R, T: Future<Output = R> + OptionalSend> = Timeout<T>;
    type ThreadLocalRng = Rng;
    // tokio::sync is executor-agnostic: it works under madsim too.
    type OneshotSender<T: OptionalSend> = openraft::async_runtime::TokioOneShotSender<T>;
    type OneshotReceiverError = tokio::sync::oneshot::error::RecvError;
    type OneshotReceiver<T: OptionalSend> = tokio::sync::oneshot::Receiver<T>;

    fn spawn<T>(future: T) -> Self::JoinHandle<T::Output>
    where
        T: Future + OptionalSend + 'static,
        T::Output: OptionalSend + 'static,
    {
        tokio::task::spawn(future)
    }

    fn sleep(duration: Duration) -> Self::Sleep {
        tokio::time::sleep(duration)
    }

    fn sleep_until(deadline: Self::Instant) -> Self::Sleep {
        tokio::time::sleep_until(to_runtime_instant(deadline))
    }

    fn timeout<R, F: Future<Output = R> + OptionalSend>(
        duration: Duration,
        future: F,
    ) -> Self::Timeout<R, F> {
        Timeout { fut: future, sleep: tokio::time::sleep(duration) }
    }

    fn timeout_at<R, F: Future<Output = R> + OptionalSend>(
        deadline: Self::Instant,
        future: F,
    ) -> Self::Timeout<R, F> {
        Timeout { fut: future, sleep: tokio::time::sleep_until(to_runtime_instant(deadline)) }
    }

    fn is_panic(join_error: &Self::JoinError) -> bool {
        join_error.is_panic()
    }

    // The one place randomness enters openraft: madsim's seeded RNG under simulation.
    #[allow(clippy::disallowed_methods)]
    fn thread_rng() -> Self::ThreadLocalRng {
        #[cfg(madsim)]
        return madsim::rand::thread_rng();
        #[cfg(not(madsim))]
        return rand::thread_rng();
    }

    fn oneshot<T: OptionalSend>() -> (Self::OneshotSender<T>, Self::OneshotReceiver<T>) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        (openraft::async_runtime::TokioOneShotSender(tx), rx)
    }
}

/// Runs blocking work (a sync) off the async workers: on a blocking thread with real tokio,
/// inline under madsim (which forbids blocking threads; its simulated disk never blocks).
pub async fn run_blocking<F, R>(f: F) -> R
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    #[cfg(madsim)]
    return f();
    #[cfg(not(madsim))]
    return match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    };
}
