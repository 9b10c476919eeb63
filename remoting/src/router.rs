//! Routes each request to the [`Processor`] registered for its code, as RocketMQ's remoting
//! servers do (`registerProcessor(code, processor)`): a server's request families live in
//! processors of their own, and the router is the one place that knows which answers what.
//!
//! What every processor would otherwise repeat lives here: a code nobody registered is
//! answered REQUEST_CODE_NOT_SUPPORTED with RocketMQ's remark (even when the request was
//! oneway, so a client learns of it), and the answer to a oneway request is not sent. A
//! [`Guard`] (the ACL), when installed, sees every request of a known code before its
//! processor does and may refuse it.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use rocketraft_protocol::{response_code, RemotingCommand};

use crate::server::{Handler, Peer};

/// A processor's answer in the making.
pub type Answer<'a> = Pin<Box<dyn Future<Output = RemotingCommand> + Send + 'a>>;

/// Answers the requests of one family (the codes it is registered for).
pub trait Processor: Send + Sync + 'static {
    /// Answers `req`; for a oneway request the answer is built and dropped.
    fn process(&self, req: RemotingCommand, peer: Peer) -> Answer<'_>;

    /// A connection closed (connection-scoped state, such as a client's registration, ends).
    fn closed(&self, _peer: Peer) {}
}

/// Checks a request before its processor sees it (RocketMQ's RPC hook; the ACL is one).
pub trait Guard: Send + Sync + 'static {
    /// `Err(answer)` refuses the request: the processor never sees it, and `answer` is sent
    /// unless the request was oneway.
    fn check(&self, req: &RemotingCommand, peer: Peer) -> Result<(), RemotingCommand>;
}

/// A [`Handler`] that sends each request to the processor registered for its code.
#[derive(Default)]
pub struct Router {
    routes: HashMap<i32, Arc<dyn Processor>>,
    /// Each processor once, in registration order, for `closed`.
    processors: Vec<Arc<dyn Processor>>,
    guard: Option<Arc<dyn Guard>>,
}

impl Router {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `processor` for `codes`.
    ///
    /// # Panics
    /// If a code is already registered: two processors for one code is a bug in the server's
    /// construction, found by its first test, never by a request.
    pub fn register(mut self, codes: &[i32], processor: Arc<dyn Processor>) -> Self {
        for &code in codes {
            let previous = self.routes.insert(code, processor.clone());
            assert!(previous.is_none(), "request code {code} is registered twice");
        }
        self.processors.push(processor);
        self
    }

    /// Checks every request with `guard` before routing it.
    pub fn guarded(mut self, guard: Arc<dyn Guard>) -> Self {
        self.guard = Some(guard);
        self
    }

    /// The codes some processor answers, ascending.
    pub fn codes(&self) -> Vec<i32> {
        let mut codes: Vec<i32> = self.routes.keys().copied().collect();
        codes.sort_unstable();
        codes
    }

    /// The answer to `req` as the handler would send it (`None` for oneway requests).
    pub async fn route(&self, req: RemotingCommand, peer: Peer) -> Option<RemotingCommand> {
        let Some(processor) = self.routes.get(&req.code) else {
            let remark = format!(" request type {} not supported", req.code);
            return Some(RemotingCommand::response_to(
                &req,
                response_code::REQUEST_CODE_NOT_SUPPORTED,
                Some(remark),
            ));
        };
        let oneway = req.is_oneway();
        if let Some(guard) = &self.guard {
            if let Err(refusal) = guard.check(&req, peer) {
                return (!oneway).then_some(refusal);
            }
        }
        let answer = processor.process(req, peer).await;
        (!oneway).then_some(answer)
    }
}

impl Handler for Router {
    fn handle(
        &self,
        req: RemotingCommand,
        peer: Peer,
    ) -> impl Future<Output = Option<RemotingCommand>> + Send {
        self.route(req, peer)
    }

    fn closed(&self, peer: Peer) {
        for p in &self.processors {
            p.closed(peer);
        }
    }
}

// The tests drive the router on real tokio's runtime (madsim has no runtime builder).
#[cfg(all(test, not(madsim)))]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    struct Fixed {
        code: i32,
        closed: AtomicUsize,
    }

    impl Processor for Fixed {
        fn process(&self, req: RemotingCommand, _peer: Peer) -> Answer<'_> {
            Box::pin(async move { RemotingCommand::response_to(&req, self.code, None) })
        }

        fn closed(&self, _peer: Peer) {
            self.closed.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn peer() -> Peer {
        Peer { addr: "127.0.0.1:1".parse().unwrap(), conn: 7 }
    }

    fn request(code: i32) -> RemotingCommand {
        let mut req = RemotingCommand::request(code, &rocketraft_protocol::header::EmptyHeader);
        req.opaque = 9;
        req
    }

    fn block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
    }

    #[test]
    fn each_code_reaches_its_processor_and_unknown_codes_are_refused() {
        let a = Arc::new(Fixed { code: 1, closed: AtomicUsize::new(0) });
        let b = Arc::new(Fixed { code: 2, closed: AtomicUsize::new(0) });
        let router = Router::new().register(&[10, 11], a.clone()).register(&[20], b.clone());
        assert_eq!(router.codes(), vec![10, 11, 20]);
        block_on(async {
            for (code, answer) in [(10, 1), (11, 1), (20, 2)] {
                let resp = router.route(request(code), peer()).await.unwrap();
                assert_eq!((resp.code, resp.opaque), (answer, 9));
                assert!(resp.is_response());
            }
            let resp = router.route(request(99), peer()).await.unwrap();
            assert_eq!(resp.code, response_code::REQUEST_CODE_NOT_SUPPORTED);
            assert_eq!(resp.remark.as_deref(), Some(" request type 99 not supported"));

            // Oneway: the processor runs, its answer is dropped; an unknown code still answers.
            assert!(router.route(request(10).into_oneway(), peer()).await.is_none());
            let resp = router.route(request(99).into_oneway(), peer()).await.unwrap();
            assert_eq!(resp.code, response_code::REQUEST_CODE_NOT_SUPPORTED);
        });
        Handler::closed(&router, peer());
        assert_eq!(a.closed.load(Ordering::Relaxed), 1, "once per processor, not per code");
        assert_eq!(b.closed.load(Ordering::Relaxed), 1);
    }

    #[test]
    #[should_panic(expected = "request code 10 is registered twice")]
    fn a_code_registered_twice_is_a_construction_bug() {
        let p = || Arc::new(Fixed { code: 0, closed: AtomicUsize::new(0) });
        let _ = Router::new().register(&[10], p()).register(&[10], p());
    }
}
