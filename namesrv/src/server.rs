//! The NameServer's remoting server: RocketMQ frames over TCP (JSON and ROCKETMQ headers),
//! answering brokers and clients from the [`Registry`], a scan that evicts silent brokers, and
//! eviction when a broker's connection closes.
//!
//! It runs on the shared `remoting::Server`: at most `connections_max` connections (more are
//! closed at once, logged); one request at a time per connection, in order; each frame at most
//! `frame_max_bytes`; idle connections closed after `idle_timeout_ms`. Malformed frames close
//! the connection; malformed headers or bodies get SYSTEM_ERROR with a remark; unknown codes get
//! REQUEST_CODE_NOT_SUPPORTED (even oneway, as RocketMQ answers). Configuration is readable
//! (GET_NAMESRV_CONFIG) but changing it over the network (UPDATE_NAMESRV_CONFIG) is refused.
//! An operator can route a broker group read-only (WIPE_WRITE_PERM_OF_BROKER) and back.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use rocketraft_metrics::{Counter, Gather, Source};
use rocketraft_protocol::admin::properties_text;
use rocketraft_protocol::body::{
    DataVersion, JsonBody, JsonStyle, KvTable, RegisterBrokerBody, TopicList,
};
use rocketraft_protocol::headers::*;
use rocketraft_protocol::register::{decode_compressed, InflateLimits};
use rocketraft_protocol::{request_code as rc, response_code, CommandHeader, RemotingCommand};
use rocketraft_remoting::acl::{AclGuard, Scope};
use rocketraft_remoting::throttle::LogThrottle;
use rocketraft_remoting::{Connections, Guard, Handler, Peer, Server, ServerConfig};
use tokio::net::TcpListener;

use crate::registry::{ConnId, Registration, Registry, BROKER_EXPIRY_MS_DEFAULT, MASTER_ID};

/// The default NameServer port.
pub const NAMESRV_PORT_DEFAULT: u16 = 9876;

/// NameServer settings (defaults: DESIGN.md §5 and RocketMQ's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamesrvConfig {
    /// Where to listen. Default `0.0.0.0:9876`.
    pub listen: String,
    /// How often silent brokers are looked for. Default 10,000 ms.
    pub scan_interval_ms: u64,
    /// A broker silent this long is evicted. Default 120,000 ms.
    pub broker_expiry_ms: i64,
    /// Connections beyond this are closed at once. Default 4,096.
    pub connections_max: usize,
    /// Connections from one IP address beyond this are closed at once. Default 1,024.
    pub connections_per_ip_max: usize,
    /// The largest frame accepted. Default 16 MiB.
    pub frame_max_bytes: usize,
    /// A connection with nothing read or written this long is closed. Default 120,000 ms
    /// (RocketMQ's `serverChannelMaxIdleTimeSeconds`; brokers register every 30 s and clients
    /// ask for routes every 30 s, so a live peer is never idle that long).
    pub idle_timeout_ms: u64,
    /// An ACL file ([`rocketraft_remoting::acl`]): when set, registrations, unregistrations
    /// and every other call that changes what the NameServer serves must be signed by an
    /// admin account of the file (a broker signs with its `[acl]` credentials); route
    /// lookups stay open. Reloaded when it changes. Default none (nothing is checked).
    pub acl_file: Option<std::path::PathBuf>,
    /// TLS on the port, in its mode (RocketMQ's `tls.server.mode`). Default none (plain).
    pub tls: Option<rocketraft_remoting::tls::ServerTls>,
    /// The most broker addresses registered at once; a registration from a new address past it
    /// is refused (SYSTEM_ERROR). Default 1,024.
    pub brokers_max: usize,
    /// The most topics one registration may list. Default 65,536.
    pub registration_topics_max: usize,
    /// The most bytes a compressed registration body (RocketMQ's `compressedRegister`) may
    /// inflate to; it is read as it inflates, never held whole. Default 64 MiB.
    pub registration_inflated_max_bytes: usize,
    /// The most KV config entries (PUT_KV_CONFIG), over every namespace. Default 10,000.
    pub kv_entries_max: usize,
    /// The most bytes of KV config (namespaces, keys and values). Default 4 MiB (a registering
    /// broker gets the ORDER_TOPIC_CONFIG namespace back in every answer).
    pub kv_bytes_max: usize,
}

impl Default for NamesrvConfig {
    fn default() -> Self {
        NamesrvConfig {
            listen: format!("0.0.0.0:{NAMESRV_PORT_DEFAULT}"),
            scan_interval_ms: 10_000,
            broker_expiry_ms: BROKER_EXPIRY_MS_DEFAULT,
            connections_max: 4096,
            connections_per_ip_max: rocketraft_remoting::server::CONNECTIONS_PER_IP_MAX_DEFAULT,
            frame_max_bytes: rocketraft_protocol::FRAME_MAX_BYTES_DEFAULT,
            idle_timeout_ms: 120_000,
            acl_file: None,
            tls: None,
            brokers_max: 1_024,
            registration_topics_max: 65_536,
            registration_inflated_max_bytes: 64 << 20,
            kv_entries_max: 10_000,
            kv_bytes_max: 4 << 20,
        }
    }
}

impl NamesrvConfig {
    /// The settings as GET_NAMESRV_CONFIG answers them (`key=value` lines): ours under their
    /// own names, and `listenPort` as RocketMQ names the port.
    pub fn properties(&self) -> BTreeMap<String, String> {
        let port = self.listen.rsplit(':').next().unwrap_or_default().to_owned();
        [
            ("listen", self.listen.clone()),
            ("listenPort", port),
            ("scanIntervalMs", self.scan_interval_ms.to_string()),
            ("brokerExpiryMs", self.broker_expiry_ms.to_string()),
            ("connectionsMax", self.connections_max.to_string()),
            ("connectionsPerIpMax", self.connections_per_ip_max.to_string()),
            ("frameMaxBytes", self.frame_max_bytes.to_string()),
            ("idleTimeoutMs", self.idle_timeout_ms.to_string()),
            ("aclEnable", self.acl_file.is_some().to_string()),
            ("brokersMax", self.brokers_max.to_string()),
            ("registrationTopicsMax", self.registration_topics_max.to_string()),
            ("registrationInflatedMaxBytes", self.registration_inflated_max_bytes.to_string()),
            ("kvEntriesMax", self.kv_entries_max.to_string()),
            ("kvBytesMax", self.kv_bytes_max.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }
}

/// The KV config namespace whose table a registering broker gets back.
const ORDER_TOPIC_CONFIG: &str = "ORDER_TOPIC_CONFIG";

#[derive(Default)]
struct State {
    registry: Registry,
    kv: Kv,
}

/// The KV config (PUT_KV_CONFIG): namespace -> key -> value, within its limits.
#[derive(Default)]
struct Kv {
    tables: BTreeMap<String, BTreeMap<String, String>>,
    entries: usize,
    bytes: usize,
}

impl Kv {
    /// Sets `key` in `namespace`, or says which limit it would pass (nothing changes then).
    fn put(
        &mut self,
        namespace: String,
        key: String,
        value: String,
        config: &NamesrvConfig,
    ) -> Result<(), String> {
        let table = self.tables.get(&namespace);
        let old = table.and_then(|t| t.get(&key));
        let new_entry = old.is_none();
        let bytes = self.bytes - old.map_or(0, |v| v.len())
            + value.len()
            + if new_entry { key.len() } else { 0 }
            + if table.is_none() { namespace.len() } else { 0 };
        if new_entry && self.entries >= config.kv_entries_max {
            return Err(format!(
                "the NameServer holds {} KV config entries, its limit (kv_entries_max): delete some \
                 first",
                self.entries
            ));
        }
        if bytes > config.kv_bytes_max {
            return Err(format!(
                "the KV config would take {bytes} bytes, more than its limit of {} \
                 (kv_bytes_max): delete some first",
                config.kv_bytes_max
            ));
        }
        self.bytes = bytes;
        self.entries += usize::from(new_entry);
        self.tables.entry(namespace).or_default().insert(key, value);
        Ok(())
    }

    fn get(&self, namespace: &str) -> Option<&BTreeMap<String, String>> {
        self.tables.get(namespace)
    }

    fn delete(&mut self, namespace: &str, key: &str) {
        let Some(table) = self.tables.get_mut(namespace) else { return };
        if let Some(value) = table.remove(key) {
            self.entries -= 1;
            self.bytes -= key.len() + value.len();
        }
        if table.is_empty() {
            self.tables.remove(namespace);
            self.bytes -= namespace.len();
        }
    }
}

struct Shared {
    state: Mutex<State>,
    /// Milliseconds are counted from here (the runtime's clock: virtual under madsim).
    epoch: tokio::time::Instant,
    config: NamesrvConfig,
    /// Refused registrations and KV entries are logged at most once per interval.
    refusals: LogThrottle,
    /// What the NameServer counts, for its metrics.
    counts: Counts,
}

/// The NameServer's counters (see [`NameServer::metrics`]).
#[derive(Debug, Default)]
struct Counts {
    registrations: Counter,
    registrations_refused: Counter,
    unregistrations: Counter,
    evictions: Counter,
    route_lookups: Counter,
    route_misses: Counter,
}

/// The NameServer's metrics source.
struct NamesrvMetrics {
    shared: Weak<Shared>,
    connections: Connections,
}

impl Source for NamesrvMetrics {
    fn gather(&self, out: &mut Gather) {
        let Some(shared) = self.shared.upgrade() else { return };
        let c = &shared.counts;
        let (brokers, groups, topics) = {
            let state = shared.state();
            let info = state.registry.cluster_info();
            (
                state.registry.live_count(),
                info.broker_addr_table.len(),
                state.registry.topics().len(),
            )
        };
        out.gauge(
            "rocketraft_namesrv_brokers",
            "Broker replicas registered and live.",
            &[],
            brokers as f64,
        );
        out.gauge(
            "rocketraft_namesrv_broker_groups",
            "Broker groups with a registered replica.",
            &[],
            groups as f64,
        );
        out.gauge("rocketraft_namesrv_topics", "Topics with a route.", &[], topics as f64);
        out.gauge(
            "rocketraft_namesrv_connections",
            "Connections open on the NameServer port.",
            &[],
            self.connections.len() as f64,
        );
        out.counter(
            "rocketraft_namesrv_registrations",
            "Broker registrations accepted.",
            &[],
            c.registrations.get(),
        );
        out.counter(
            "rocketraft_namesrv_registrations_refused",
            "Broker registrations refused (a bad body, a second master).",
            &[],
            c.registrations_refused.get(),
        );
        out.counter(
            "rocketraft_namesrv_unregistrations",
            "Brokers that unregistered.",
            &[],
            c.unregistrations.get(),
        );
        out.counter(
            "rocketraft_namesrv_evictions",
            "Brokers evicted: silent past the expiry, or their connection closed.",
            &[],
            c.evictions.get(),
        );
        out.counter(
            "rocketraft_namesrv_route_lookups",
            "Topic route lookups.",
            &[],
            c.route_lookups.get(),
        );
        out.counter(
            "rocketraft_namesrv_route_misses",
            "Topic route lookups for a topic with no route.",
            &[],
            c.route_misses.get(),
        );
    }
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now_ms(&self) -> i64 {
        self.epoch.elapsed().as_millis() as i64
    }

    /// Logs a refusal, at most once per interval with a count of the others.
    fn refused(&self, what: &str, why: &str) {
        if let Some(unlogged) = self.refusals.due() {
            tracing::warn!(refused_since_last_line = unlogged, "refused {what}: {why}");
        }
    }
}

/// A running NameServer.
pub struct NameServer {
    shared: Arc<Shared>,
    server: Server,
    metrics: Arc<dyn Source>,
}

/// The remoting server's handler.
struct Requests(Arc<Shared>, Option<Arc<AclGuard>>);

impl Handler for Requests {
    async fn handle(&self, req: RemotingCommand, peer: Peer) -> Option<RemotingCommand> {
        if let Some(guard) = &self.1 {
            if let Err(refusal) = guard.check(&req, peer) {
                return (!req.is_oneway()).then_some(refusal);
            }
        }
        let response = handle(&req, peer.conn, &self.0);
        (!req.is_oneway() || response.code == response_code::REQUEST_CODE_NOT_SUPPORTED)
            .then_some(response)
    }

    fn closed(&self, peer: Peer) {
        let evicted = self.0.state().registry.connection_closed(peer.conn);
        self.0.counts.evictions.add(evicted.len() as u64);
        for d in evicted {
            tracing::info!(group = %d.group, broker = %d.addr, broker_id = d.broker_id, term = %term_of(d.raft_term), "evicted a broker whose connection closed");
        }
    }
}

impl NameServer {
    /// Binds and starts serving (call inside the runtime that should own it).
    pub async fn start(config: NamesrvConfig) -> std::io::Result<NameServer> {
        let acl = match &config.acl_file {
            Some(path) => Some(
                AclGuard::load(path, Scope::NameServer)
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?,
            ),
            None => None,
        };
        let listener = TcpListener::bind(&config.listen).await?;
        let server_config = ServerConfig {
            connections_max: config.connections_max,
            connections_per_ip_max: config.connections_per_ip_max,
            frame_max_bytes: config.frame_max_bytes,
            idle_timeout_ms: config.idle_timeout_ms,
            ordered: true,
            tls: config.tls.clone(),
            ..Default::default()
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            // The runtime's clock (virtual under madsim, where it is std's Instant).
            #[allow(clippy::disallowed_methods)]
            epoch: tokio::time::Instant::now(),
            config,
            refusals: LogThrottle::new(),
            counts: Counts::default(),
        });
        let connections = Connections::new();
        let server = Server::start(
            listener,
            server_config,
            Arc::new(Requests(shared.clone(), acl)),
            connections.clone(),
        )?;
        tokio::spawn(scan_loop(shared.clone(), server.stop_signal()));
        tracing::info!(addr = %server.local_addr(), "NameServer listening");
        let metrics: Arc<dyn Source> =
            Arc::new(NamesrvMetrics { shared: Arc::downgrade(&shared), connections });
        Ok(NameServer { shared, server, metrics })
    }

    /// The NameServer's metrics (brokers, topics, registrations, evictions, route lookups,
    /// connections). Add it to the process's `rocketraft_metrics::Hub`.
    pub fn metrics(&self) -> Arc<dyn Source> {
        self.metrics.clone()
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// The NameServer's clock (ms since it started): the time base of the registry's
    /// `last_update_ms`.
    pub fn now_ms(&self) -> i64 {
        self.shared.now_ms()
    }

    /// A copy of the registry, for observation (tests, admin).
    pub fn registry(&self) -> Registry {
        self.shared.state().registry.clone()
    }

    /// Stops accepting, scanning and serving.
    pub fn shutdown(&self) {
        self.server.shutdown();
    }
}

async fn scan_loop(shared: Arc<Shared>, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        tokio::select! {
            biased;
            _ = tokio::time::sleep(Duration::from_millis(shared.config.scan_interval_ms)) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let now = shared.now_ms();
        let evicted = shared.state().registry.evict_expired(now, shared.config.broker_expiry_ms);
        shared.counts.evictions.add(evicted.len() as u64);
        for d in evicted {
            tracing::warn!(group = %d.group, broker = %d.addr, broker_id = d.broker_id, term = %term_of(d.raft_term), "evicted a broker silent for over {} ms", shared.config.broker_expiry_ms);
        }
    }
}

/// A registration's Raft term for the log ("none" from a RocketMQ broker, which says none).
fn term_of(term: Option<i64>) -> String {
    term.map_or_else(|| "none".to_owned(), |t| t.to_string())
}

fn error(req: &RemotingCommand, code: i32, remark: impl Into<String>) -> RemotingCommand {
    RemotingCommand::response_to(req, code, Some(remark.into()))
}

fn ok(req: &RemotingCommand) -> RemotingCommand {
    RemotingCommand::response_to(req, response_code::SUCCESS, None)
}

fn header<H: CommandHeader>(req: &RemotingCommand) -> Result<H, RemotingCommand> {
    req.decode_header::<H>().map_err(|e| error(req, response_code::SYSTEM_ERROR, e.to_string()))
}

/// Answers one request.
fn handle(req: &RemotingCommand, conn: ConnId, shared: &Shared) -> RemotingCommand {
    let result = match req.code {
        rc::REGISTER_BROKER => register(req, conn, shared),
        rc::UNREGISTER_BROKER => header::<UnregisterBrokerRequestHeader>(req).map(|h| {
            shared.state().registry.unregister(&h.broker_name, &h.broker_addr);
            tracing::info!(broker = %h.broker_addr, group = %h.broker_name, "a broker unregistered");
            ok(req)
        }),
        rc::QUERY_DATA_VERSION => header::<QueryDataVersionRequestHeader>(req).and_then(|h| {
            let version = DataVersion::from_json(&req.body)
                .map_err(|e| error(req, response_code::SYSTEM_ERROR, e.to_string()))?;
            let now = shared.now_ms();
            let mut state = shared.state();
            let changed = state.registry.data_version_changed(&h.broker_addr, version);
            state.registry.touch(&h.broker_addr, now);
            drop(state);
            Ok(ok(req).with_header(&QueryDataVersionResponseHeader { changed }))
        }),
        rc::GET_ROUTEINFO_BY_TOPIC => {
            header::<GetRouteInfoRequestHeader>(req).map(|h| {
                match shared.state().registry.route(&h.topic) {
                    Some(route) => {
                        let style = JsonStyle::for_route_request(
                            req.version,
                            h.accept_standard_json_only.unwrap_or(false),
                        );
                        ok(req).with_body(route.to_json(style))
                    }
                    None => error(
                        req,
                        response_code::TOPIC_NOT_EXIST,
                        format!("No topic route info in name server for the topic: {}", h.topic),
                    ),
                }
            })
        }
        rc::GET_BROKER_CLUSTER_INFO => {
            Ok(ok(req)
                .with_body(shared.state().registry.cluster_info().to_json(JsonStyle::Fastjson)))
        }
        rc::GET_ALL_TOPIC_LIST_FROM_NAMESERVER => {
            let topic_list = shared.state().registry.topics();
            Ok(ok(req).with_body(
                TopicList { broker_addr: None, topic_list }.to_json(JsonStyle::Standard),
            ))
        }
        rc::GET_TOPICS_BY_CLUSTER => header::<GetTopicsByClusterRequestHeader>(req).map(|h| {
            let topic_list = shared.state().registry.topics_of_cluster(&h.cluster);
            ok(req)
                .with_body(TopicList { broker_addr: None, topic_list }.to_json(JsonStyle::Standard))
        }),
        rc::DELETE_TOPIC_IN_NAMESRV => header::<TopicRequestHeader>(req).map(|h| {
            shared.state().registry.delete_topic(&h.topic);
            ok(req)
        }),
        rc::PUT_KV_CONFIG => header::<PutKvConfigRequestHeader>(req).map(|h| {
            let put = shared.state().kv.put(h.namespace, h.key, h.value, &shared.config);
            match put {
                Ok(()) => ok(req),
                Err(why) => {
                    shared.refused("a KV config entry", &why);
                    error(req, response_code::SYSTEM_ERROR, why)
                }
            }
        }),
        rc::GET_KV_CONFIG => header::<KvConfigKeyRequestHeader>(req).map(|h| {
            match shared.state().kv.get(&h.namespace).and_then(|t| t.get(&h.key)).cloned() {
                Some(value) => {
                    ok(req).with_header(&GetKvConfigResponseHeader { value: Some(value) })
                }
                None => error(
                    req,
                    response_code::QUERY_NOT_FOUND,
                    format!("No config item, Namespace: {} Key: {}", h.namespace, h.key),
                ),
            }
        }),
        rc::DELETE_KV_CONFIG => header::<KvConfigKeyRequestHeader>(req).map(|h| {
            shared.state().kv.delete(&h.namespace, &h.key);
            ok(req)
        }),
        rc::GET_KVLIST_BY_NAMESPACE => header::<GetKvListByNamespaceRequestHeader>(req).map(|h| {
            match shared.state().kv.get(&h.namespace).cloned() {
                Some(table) => ok(req).with_body(KvTable { table }.to_json(JsonStyle::Standard)),
                None => error(
                    req,
                    response_code::QUERY_NOT_FOUND,
                    format!("No config item, Namespace: {}", h.namespace),
                ),
            }
        }),
        rc::GET_SYSTEM_TOPIC_LIST_FROM_NS => {
            Ok(ok(req).with_body(shared.state().registry.system_topics().to_json(JsonStyle::Standard)))
        }
        rc::WIPE_WRITE_PERM_OF_BROKER | rc::ADD_WRITE_PERM_OF_BROKER => {
            header::<WritePermOfBrokerRequestHeader>(req).map(|h| {
                let writable = req.code == rc::ADD_WRITE_PERM_OF_BROKER;
                let count = shared.state().registry.set_write_perm(&h.broker_name, writable);
                tracing::info!(group = %h.broker_name, writable, topics = count, "an operator changed a broker group's write permission");
                if writable {
                    ok(req).with_header(&AddWritePermOfBrokerResponseHeader { add_topic_count: count })
                } else {
                    ok(req).with_header(&WipeWritePermOfBrokerResponseHeader { wipe_topic_count: count })
                }
            })
        }
        rc::GET_NAMESRV_CONFIG => {
            Ok(ok(req).with_body(properties_text(&shared.config.properties()).into_bytes()))
        }
        rc::UPDATE_NAMESRV_CONFIG => Ok(error(
            req,
            response_code::NO_PERMISSION,
            "changing the NameServer's configuration over the network is disabled",
        )),
        code => Ok(error(
            req,
            response_code::REQUEST_CODE_NOT_SUPPORTED,
            format!(" request type {code} not supported"),
        )),
    };
    let response = result.unwrap_or_else(|e| e);
    let c = &shared.counts;
    let ok = response.code == response_code::SUCCESS;
    match req.code {
        rc::REGISTER_BROKER if ok => c.registrations.inc(),
        rc::REGISTER_BROKER => c.registrations_refused.inc(),
        rc::UNREGISTER_BROKER if ok => c.unregistrations.inc(),
        rc::GET_ROUTEINFO_BY_TOPIC => {
            c.route_lookups.inc();
            if response.code == response_code::TOPIC_NOT_EXIST {
                c.route_misses.inc();
            }
        }
        _ => {}
    }
    response
}

fn register(
    req: &RemotingCommand,
    conn: ConnId,
    shared: &Shared,
) -> Result<RemotingCommand, RemotingCommand> {
    let h: RegisterBrokerRequestHeader = header(req)?;
    if let Some(expected) = h.body_crc32.filter(|c| *c != 0) {
        let actual = RegisterBrokerBody::crc32(&req.body);
        if actual != expected {
            return Err(error(req, response_code::SYSTEM_ERROR, format!("receive registerBroker request, crc32 not match (header {expected}, body {actual})")));
        }
    }
    let config = &shared.config;
    let body = if req.body.is_empty() {
        Ok(RegisterBrokerBody::default())
    } else if h.compressed == Some(true) {
        let limits = InflateLimits {
            inflated_bytes_max: config.registration_inflated_max_bytes,
            topics_max: config.registration_topics_max,
        };
        decode_compressed(&req.body, limits)
    } else {
        RegisterBrokerBody::from_json(&req.body)
    };
    let body = body.map_err(|e| {
        shared.refused(&format!("a registration from {}", h.broker_addr), &e.to_string());
        error(req, response_code::SYSTEM_ERROR, e.to_string())
    })?;
    let wrapper = body.topic_config_serialize_wrapper;
    let topics = wrapper.topic_config_table.len();
    if topics > config.registration_topics_max {
        let why = format!(
            "the registration lists {topics} topics, more than the NameServer's limit of {} \
             (registration_topics_max)",
            config.registration_topics_max
        );
        shared.refused(&format!("a registration from {}", h.broker_addr), &why);
        return Err(error(req, response_code::SYSTEM_ERROR, why));
    }
    let registration = Registration {
        cluster: h.cluster_name,
        broker_name: h.broker_name,
        broker_addr: h.broker_addr,
        broker_id: h.broker_id,
        ha_server_addr: h.ha_server_addr,
        data_version: wrapper.data_version,
        topics: wrapper.topic_config_table,
        raft_term: h.raft_term,
        raft_leader: h.raft_leader,
    };
    let now = shared.now_ms();
    let mut state = shared.state();
    if let Some(why) = state.registry.master_conflict(&registration) {
        drop(state);
        shared.refused("a master registration", &why);
        return Err(error(req, response_code::NO_PERMISSION, why));
    }
    let live = state.registry.live_count();
    if live >= config.brokers_max && !state.registry.is_live(&registration.broker_addr) {
        drop(state);
        let why = format!(
            "the NameServer has {live} brokers registered, its limit (brokers_max): {} is not \
             recorded",
            registration.broker_addr
        );
        shared.refused("a registration", &why);
        return Err(error(req, response_code::SYSTEM_ERROR, why));
    }
    let (group, addr, id, term) = (
        registration.broker_name.clone(),
        registration.broker_addr.clone(),
        registration.broker_id,
        registration.raft_term,
    );
    let answer = state.registry.register(registration, now, conn);
    if answer.news {
        let role = if id == MASTER_ID { "master" } else { "slave" };
        tracing::info!(group = %group, broker = %addr, broker_id = id, term = %term_of(term), "a broker registered as {role}");
    }
    let order_conf = state.kv.get(ORDER_TOPIC_CONFIG).cloned().unwrap_or_default();
    drop(state);
    let resp = ok(req).with_header(&RegisterBrokerResponseHeader {
        ha_server_addr: answer.ha_server_addr,
        master_addr: answer.master_addr,
    });
    Ok(resp.with_body(KvTable { table: order_conf }.to_json(JsonStyle::Standard)))
}
