//! The route cache: each topic's route (which broker groups hold its queues, and their
//! replicas' addresses) fetched from any reachable NameServer of the configured list, refreshed
//! every `route_poll_ms` (30 s, RocketMQ's `pollNameServerInterval`) and at once when a send
//! fails or a broker says it is not the master.
//!
//! NameServers are tried in turn starting from the one that answered last, until one knows the
//! topic. A topic no answering NameServer knows is [`ClientError::NoRoute`] (a route cached
//! earlier is kept: a restarted NameServer is empty until the brokers register again); when no
//! NameServer answers at all, the last transport error is returned instead (the producer then routes through the template
//! topic, TBW102, so that the broker can create it).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use rocketraft_protocol::body::{JsonBody, MessageQueue, TopicRouteData};
use rocketraft_protocol::headers::GetRouteInfoRequestHeader;
use rocketraft_protocol::{request_code, response_code, RemotingCommand};

use crate::error::{ClientError, Result};
use crate::lock;
use crate::remoting::Remoting;

/// At most this many topics are cached; beyond it the cache is cleared and refilled on demand.
pub const ROUTES_MAX: usize = 10_000;

/// A topic's route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicRoute {
    pub topic: String,
    pub data: TopicRouteData,
    /// What a round-robin send picks from, worked out on first use: a route is immutable
    /// (a refresh makes a new one), so once per route instead of once per send.
    publish: OnceLock<Vec<MessageQueue>>,
    /// What a keyed send picks from (every writable queue, master or not), likewise.
    writable: OnceLock<Vec<MessageQueue>>,
}

impl TopicRoute {
    pub fn new(topic: impl Into<String>, data: TopicRouteData) -> Self {
        TopicRoute {
            topic: topic.into(),
            data,
            publish: OnceLock::new(),
            writable: OnceLock::new(),
        }
    }

    /// The writable queues of the groups that have a master now
    /// ([`crate::select::publish_queues`] for this route's own topic).
    pub fn publish_queues(&self) -> &[MessageQueue] {
        self.publish.get_or_init(|| crate::select::publish_queues(&self.topic, &self.data, true))
    }

    /// Every writable queue of the route's own topic, whether its group has a master now or
    /// not: keyed sends pick from these, so a failover does not move a key to another queue.
    pub fn writable_queues(&self) -> &[MessageQueue] {
        self.writable.get_or_init(|| crate::select::publish_queues(&self.topic, &self.data, false))
    }

    /// The address of `broker_name`'s master, if it has one now.
    pub fn master_addr(&self, broker_name: &str) -> Option<&str> {
        self.data
            .broker_datas
            .iter()
            .find(|b| b.broker_name == broker_name)
            .and_then(|b| b.master_addr())
    }

    /// The replica addresses of `broker_name`, brokerId -> address.
    pub fn broker_addrs(&self, broker_name: &str) -> Option<&BTreeMap<i64, String>> {
        self.data
            .broker_datas
            .iter()
            .find(|b| b.broker_name == broker_name)
            .map(|b| &b.broker_addrs)
    }
}

struct Inner {
    remoting: Remoting,
    namesrv_addrs: Vec<String>,
    call_timeout_ms: u64,
    next: AtomicUsize,
    routes: Mutex<BTreeMap<String, Arc<TopicRoute>>>,
    /// broker name -> replicas, merged from every route seen (heartbeats and lookups by name).
    brokers: Mutex<BTreeMap<String, BTreeMap<i64, String>>>,
    /// topic -> when its route was last fetched (see [`Routes::refresh_after_failure`]).
    fetched: Mutex<BTreeMap<String, tokio::time::Instant>>,
}

/// A route refreshed because a call to one of its brokers failed is fetched at most this often:
/// every pull loop of a consumer that meets one dead master asks, and one answer serves them.
pub const FAILURE_REFRESH_MIN_MS: u64 = 1_000;

/// The cache; cheap to clone.
#[derive(Clone)]
pub struct Routes {
    inner: Arc<Inner>,
}

impl Routes {
    pub fn new(remoting: Remoting, namesrv_addrs: Vec<String>, call_timeout_ms: u64) -> Self {
        Routes {
            inner: Arc::new(Inner {
                remoting,
                namesrv_addrs,
                call_timeout_ms,
                next: AtomicUsize::new(0),
                routes: Mutex::new(BTreeMap::new()),
                brokers: Mutex::new(BTreeMap::new()),
                fetched: Mutex::new(BTreeMap::new()),
            }),
        }
    }

    /// The cached route of `topic`, fetched first if it is not cached.
    pub async fn get(&self, topic: &str) -> Result<Arc<TopicRoute>> {
        if let Some(r) = lock(&self.inner.routes).get(topic) {
            return Ok(r.clone());
        }
        self.refresh(topic).await
    }

    /// Fetches `topic`'s route now and caches it.
    pub async fn refresh(&self, topic: &str) -> Result<Arc<TopicRoute>> {
        {
            let mut fetched = lock(&self.inner.fetched);
            if fetched.len() >= ROUTES_MAX && !fetched.contains_key(topic) {
                fetched.clear();
            }
            fetched.insert(topic.to_owned(), crate::clock::instant());
        }
        let data = self.fetch(topic).await?;
        let route = Arc::new(TopicRoute::new(topic, data));
        {
            let mut brokers = lock(&self.inner.brokers);
            for b in &route.data.broker_datas {
                brokers.insert(b.broker_name.clone(), b.broker_addrs.clone());
            }
        }
        let mut routes = lock(&self.inner.routes);
        if routes.len() >= ROUTES_MAX && !routes.contains_key(topic) {
            routes.clear();
        }
        routes.insert(topic.to_owned(), route.clone());
        Ok(route)
    }

    /// Refreshes `topic`'s route after a call to one of its brokers failed with `error` (the
    /// master may be gone: refused, unreachable, closed, or no longer the master), unless the
    /// error says nothing of where the master is (a malformed answer, a bad argument) or a
    /// fetch of it started less than [`FAILURE_REFRESH_MIN_MS`] ago.
    pub async fn refresh_after_failure(&self, topic: &str, error: &ClientError) {
        if matches!(error, ClientError::Protocol { .. } | ClientError::InvalidArgument(_)) {
            return;
        }
        let recent = lock(&self.inner.fetched).get(topic).is_some_and(|at| {
            crate::clock::instant().saturating_duration_since(*at)
                < std::time::Duration::from_millis(FAILURE_REFRESH_MIN_MS)
        });
        if !recent {
            if let Err(e) = self.refresh(topic).await {
                tracing::debug!(%topic, error = %e, "route not refreshed");
            }
        }
    }

    /// Refreshes every cached topic (the periodic poll); failures are logged and the old
    /// route is kept.
    pub async fn refresh_all(&self) {
        let topics: Vec<String> = lock(&self.inner.routes).keys().cloned().collect();
        for t in topics {
            if let Err(e) = self.refresh(&t).await {
                tracing::debug!(topic = %t, error = %e, "route not refreshed");
            }
        }
    }

    /// Every broker group seen in a route: name -> brokerId -> address.
    pub fn brokers(&self) -> BTreeMap<String, BTreeMap<i64, String>> {
        lock(&self.inner.brokers).clone()
    }

    /// Asks the NameServers in turn for `topic`'s route.
    async fn fetch(&self, topic: &str) -> Result<TopicRouteData> {
        let n = self.inner.namesrv_addrs.len();
        if n == 0 {
            return Err(ClientError::InvalidArgument("no NameServer address configured".into()));
        }
        let start = self.inner.next.load(Ordering::Relaxed);
        let mut last = None;
        let mut not_known: Vec<&str> = Vec::new();
        for i in 0..n {
            let k = (start + i) % n;
            let addr = &self.inner.namesrv_addrs[k];
            let req = RemotingCommand::request(
                request_code::GET_ROUTEINFO_BY_TOPIC,
                &GetRouteInfoRequestHeader {
                    topic: topic.to_owned(),
                    accept_standard_json_only: Some(true),
                },
            );
            match self.inner.remoting.call(addr, req, self.inner.call_timeout_ms).await {
                Ok(resp) if resp.code == response_code::SUCCESS => {
                    self.inner.next.store(k, Ordering::Relaxed);
                    return TopicRouteData::from_json(&resp.body)
                        .map_err(|e| ClientError::Protocol { addr: addr.clone(), source: e });
                }
                Ok(resp) if resp.code == response_code::TOPIC_NOT_EXIST => {
                    // Ask the others too: a NameServer that just restarted knows nothing until
                    // the brokers register again.
                    not_known.push(addr.as_str());
                }
                Ok(resp) => {
                    last = Some(ClientError::Broker {
                        addr: addr.clone(),
                        code: resp.code,
                        remark: resp.remark.unwrap_or_default(),
                    })
                }
                Err(e) => last = Some(e.into()),
            }
        }
        if !not_known.is_empty() {
            // A cached route stays: NameServers that restarted know nothing until the brokers'
            // next registration (up to 30 s), and the brokers still serve the topic meanwhile.
            return Err(ClientError::NoRoute {
                topic: topic.to_owned(),
                reason: format!("NameServer {} does not know it", not_known.join(", ")),
            });
        }
        // No NameServer could say: the transport error (retryable), not "no route".
        Err(last.unwrap_or_else(|| ClientError::InvalidArgument("no NameServer address".into())))
    }
}
