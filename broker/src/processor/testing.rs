//! The processors' own tests run here: a one-replica group (its Raft port on loopback, a
//! simulated disk) and the processors called directly, without the remoting server.

use std::collections::BTreeMap;
use std::time::Duration;

use rocketraft_protocol::headers::*;
use rocketraft_protocol::message::properties_to_string;
use rocketraft_protocol::{CommandHeader, RemotingCommand};
use rocketraft_raft::{MemMeta, NodeConfig, RaftNode, RaftTiming};
use rocketraft_remoting::Connections;
use rocketraft_store::io::sim::SimStorage;
use rocketraft_store::FlushMode;

use super::*;
use crate::broker_config::BrokerConfig;
use crate::long_poll::PullWaiters;

pub(crate) type TestInner = Inner<SimStorage, MemMeta>;

/// A one-replica group serving as master, and the state its processors share.
pub(crate) struct OneReplica {
    pub(crate) inner: Arc<TestInner>,
    node: RaftNode<SimStorage, MemMeta>,
}

/// The peer every request here comes from.
pub(crate) const PEER: Peer = Peer {
    addr: std::net::SocketAddr::V4(std::net::SocketAddrV4::new(
        std::net::Ipv4Addr::LOCALHOST,
        50_000,
    )),
    conn: 1,
};

impl OneReplica {
    pub(crate) async fn start() -> OneReplica {
        Self::start_with(|_| {}).await
    }

    /// As [`OneReplica::start`], with the broker's settings changed by `tweak`.
    pub(crate) async fn start_with(tweak: impl FnOnce(&mut BrokerConfig)) -> OneReplica {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let waiters = Arc::new(PullWaiters::default());
        let config = NodeConfig {
            group: "broker-a".into(),
            id: 0,
            peers: BTreeMap::from([(0, addr)]),
            timing: RaftTiming {
                heartbeat_interval_ms: 50,
                election_timeout_min_ms: 150,
                election_timeout_max_ms: 300,
                snapshot_every_entries: 10_000,
            },
            commit_log: Default::default(),
            dispatch: Default::default(),
            flush: FlushMode::Sync,
            retention: Default::default(),
            retention_check_ms: rocketraft_raft::node::RETENTION_CHECK_MS_DEFAULT,
            message_faults: Default::default(),
            tls: None,
            #[cfg(madsim)]
            sim_bug_ack_before_fsync: false,
            #[cfg(madsim)]
            sim_bug_accept_wiped: false,
            #[cfg(madsim)]
            sim_bug_retention_ignores_floor: false,
            #[cfg(madsim)]
            sim_bugs: Default::default(),
        };
        let node = RaftNode::start(
            config,
            SimStorage::new(),
            MemMeta::new(),
            listener,
            Some(crate::arrival_listener(&waiters)),
        )
        .await
        .unwrap();
        let mut config = BrokerConfig::new("broker-a", "127.0.0.1:10911".parse().unwrap());
        tweak(&mut config);
        let inner =
            Arc::new(Inner::new(config, &node, waiters, 1_700_000_000_000, Connections::new()));
        for _ in 0..100 {
            if inner.replica.master_ready(MASTER_CATCH_UP_MS).await {
                return OneReplica { inner, node };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("a one-replica group did not elect itself");
    }

    /// `processor`'s answer to `req`.
    pub(crate) async fn call<P: Processor>(
        &self,
        processor: &P,
        req: RemotingCommand,
    ) -> RemotingCommand {
        let answer = processor.process(req, PEER).await;
        assert!(answer.is_response(), "{answer:?}");
        answer
    }

    /// Creates `topic` with 4 queues through the admin processor.
    pub(crate) async fn topic(&self, topic: &str) {
        let req = request(
            rc::UPDATE_AND_CREATE_TOPIC,
            CreateTopicRequestHeader {
                topic: topic.into(),
                read_queue_nums: 4,
                write_queue_nums: 4,
                perm: 6,
                topic_filter_type: "SINGLE_TAG".into(),
                ..Default::default()
            },
        );
        let answer = self.call(&admin::AdminProcessor(self.inner.clone()), req).await;
        assert_eq!(answer.code, response_code::SUCCESS, "{:?}", answer.remark);
    }

    /// Creates subscription group `group` through the admin processor.
    pub(crate) async fn group(&self, group: &str) {
        use rocketraft_protocol::body::{JsonBody, JsonStyle, SubscriptionGroupConfig};
        let req = RemotingCommand::request_without_header(rc::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP)
            .with_body(SubscriptionGroupConfig::new(group.to_owned()).to_json(JsonStyle::Standard));
        let answer = self.call(&admin::AdminProcessor(self.inner.clone()), req).await;
        assert_eq!(answer.code, response_code::SUCCESS, "{:?}", answer.remark);
    }

    /// Sends `body` to queue 0 of `topic` with tag and key; the answer's header.
    pub(crate) async fn send(
        &self,
        topic: &str,
        tag: &str,
        key: &str,
        body: &str,
    ) -> RemotingCommand {
        let req = send_request(topic, tag, key, body);
        self.call(&send::SendProcessor(self.inner.clone()), req).await
    }

    /// The processors' shared state over this same replica as if its broker had started with
    /// its wall clock at `now_ms` (a restart after the machine's clock was stepped). Drop it
    /// before [`OneReplica::stop`].
    pub(crate) fn with_clock(&self, now_ms: i64) -> Arc<TestInner> {
        let config = self.inner.config.clone();
        let waiters = self.inner.waiters.clone();
        Arc::new(Inner::new(config, &self.node, waiters, now_ms, Connections::new()))
    }

    /// Stops the replica; the processors made of `inner` must be dropped first (they hold
    /// the metadata store, which the stop waits for).
    pub(crate) async fn stop(self) {
        let OneReplica { inner, node } = self;
        drop(inner);
        node.shutdown().await;
    }
}

pub(crate) fn request<H: CommandHeader>(code: i32, header: H) -> RemotingCommand {
    RemotingCommand::request(code, &header)
}

/// A SEND_MESSAGE_V2 to queue 0 of `topic` that names no template (no auto-creation).
pub(crate) fn send_request(topic: &str, tag: &str, key: &str, body: &str) -> RemotingCommand {
    let header = SendMessageRequestHeader {
        producer_group: "PG".into(),
        topic: topic.into(),
        born_timestamp: 1_700_000_000_000,
        properties: Some(properties_to_string([("TAGS", tag), ("KEYS", key)])),
        ..Default::default()
    };
    request(rc::SEND_MESSAGE_V2, SendMessageRequestHeaderV2::from(header))
        .with_body(body.as_bytes().to_vec())
}
