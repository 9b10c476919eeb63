//! ACL over real TCP: a dev cluster (a NameServer and one 3-replica group on loopback) with
//! ACL on, driven by the SDK, by raw requests and by a real RocketMQ client (ali-ons).
//!
//! ```text
//!   accounts (acl.toml)        NameServer: REGISTER/UNREGISTER etc. need an admin
//!     cluster-admin (admin)      ▲ signed registrations (cluster-admin)
//!     orders-producer: Orders=PUB│
//!     orders-consumer: Orders=SUB, Billing=SUB
//!   clients ──signed requests──▶ broker replicas: every request checked
//! ```

// Real processes, files and sockets: not for the madsim build.
#![cfg(not(madsim))]
#![allow(clippy::disallowed_methods)] // tests read the clock to bound their waits

use std::path::Path;
use std::time::{Duration, Instant};

use rocketraft::dev::{DevAcl, DevCluster};
use rocketraft_client::remoting::{Remoting, RemotingConfig};
use rocketraft_client::{
    Admin, ClientConfig, ClientError, ConsumeFrom, Credentials, Message, MessageExt, Producer,
    ProducerConfig, PullConsumer, PullConsumerConfig, SendResult, TransactionListener,
    TransactionProducer, TransactionState,
};
use rocketraft_protocol::body::{
    DataVersion, JsonBody, JsonStyle, RegisterBrokerBody, SubscriptionGroupConfig,
    TopicConfigSerializeWrapper,
};
use rocketraft_protocol::headers::{
    ConsumerSendMsgBackRequestHeader, EndTransactionRequestHeader, PullMessageRequestHeader,
    QueryConsumerOffsetRequestHeader, RegisterBrokerRequestHeader, ViewMessageRequestHeader,
};
use rocketraft_protocol::message::decode_offset_msg_id;
use rocketraft_protocol::{request_code, response_code, RemotingCommand};

#[path = "support/dev.rs"]
mod dev;

const ADMIN: (&str, &str) = ("cluster-admin", "admin-secret-1");
const PRODUCER: (&str, &str) = ("orders-producer", "producer-secret");
const CONSUMER: (&str, &str) = ("orders-consumer", "consumer-secret");

/// The accounts; `extra` goes into the producer's topic permissions.
fn acl_file(extra: &str) -> String {
    format!(
        r#"
[[accounts]]
access_key = "cluster-admin"
secret_key = "admin-secret-1"
admin = true

[[accounts]]
access_key = "orders-producer"
secret_key = "producer-secret"
topic_perms = ["Orders=PUB"{extra}]

[[accounts]]
access_key = "orders-consumer"
secret_key = "consumer-secret"
topic_perms = ["Orders=SUB", "Interop=PUB|SUB"]
group_perms = ["Billing=SUB", "CG_interop=SUB"]
"#
    )
}

async fn start(dir: &tempfile::TempDir, file: &Path) -> DevCluster {
    start_tls(dir, file, false).await
}

/// With `tls`, the cluster's client ports are permissive TLS and its Raft mutual TLS.
async fn start_tls(dir: &tempfile::TempDir, file: &Path, tls: bool) -> DevCluster {
    std::fs::write(file, acl_file("")).unwrap();
    let acl = DevAcl { file: file.to_owned(), registration: Credentials::new(ADMIN.0, ADMIN.1) };
    dev::start_cluster_with(dir, 8 << 20, Duration::from_secs(15), |c| {
        c.acl = Some(acl);
        c.tls = tls;
    })
    .await
}

fn client(cluster: &DevCluster, keys: Option<(&str, &str)>) -> ClientConfig {
    let c = ClientConfig::new(&cluster.namesrv_addr().to_string());
    match keys {
        Some((a, s)) => c.with_credentials(a, s),
        None => c,
    }
}

async fn producer(cluster: &DevCluster, keys: Option<(&str, &str)>) -> Producer {
    let mut c = ProducerConfig { client: client(cluster, keys), ..ProducerConfig::new("x:1") };
    c.retries = 0;
    Producer::start(c).await.unwrap()
}

/// Creates `topic` as the admin and waits until it is routed.
async fn create_topic(cluster: &DevCluster, topic: &str) {
    dev::create_topic(client(cluster, Some(ADMIN)), topic, 2).await
}

fn refused_with(result: Result<impl std::fmt::Debug, ClientError>, remark: &str) {
    let e = result.expect_err("refused").to_string();
    assert!(e.contains("NO_PERMISSION") && e.contains(remark), "{e} should say {remark:?}");
}

/// A raw call to the leader's client port, signed with `keys` if given.
async fn raw(
    cluster: &DevCluster,
    keys: Option<(&str, &str)>,
    cmd: RemotingCommand,
) -> RemotingCommand {
    let leader = cluster.leader().expect("a leader");
    let addr = cluster.broker_addrs()[&leader].to_string();
    let config = RemotingConfig {
        credentials: keys.map(|(a, s)| Credentials::new(a, s)),
        ..Default::default()
    };
    let r = Remoting::new(config, None);
    let answer = r.call(&addr, cmd, 5_000).await.unwrap();
    r.shutdown();
    answer
}

fn pull(topic: &str, group: &str) -> RemotingCommand {
    RemotingCommand::request(
        request_code::PULL_MESSAGE,
        &PullMessageRequestHeader {
            consumer_group: group.into(),
            topic: topic.into(),
            queue_id: 0,
            queue_offset: 0,
            max_msg_nums: 32,
            sys_flag: 0,
            commit_offset: 0,
            suspend_timeout_millis: 0,
            subscription: Some("*".into()),
            sub_version: 0,
            expression_type: Some("TAG".into()),
            broker_name: None,
        },
    )
}

fn register_as_master_of_broker_a(addr: &str, raft_term: Option<i64>) -> RemotingCommand {
    let body = RegisterBrokerBody {
        filter_server_list: vec![],
        topic_config_serialize_wrapper: TopicConfigSerializeWrapper {
            data_version: DataVersion { counter: 1, timestamp: 1, ..Default::default() },
            ..Default::default()
        },
    }
    .to_json(JsonStyle::Standard);
    let header = RegisterBrokerRequestHeader {
        broker_name: "broker-a".into(),
        broker_addr: addr.into(),
        cluster_name: "DefaultCluster".into(),
        ha_server_addr: addr.into(),
        broker_id: 0,
        compressed: Some(false),
        body_crc32: Some(RegisterBrokerBody::crc32(&body)),
        raft_term,
        raft_leader: None,
    };
    RemotingCommand::request(request_code::REGISTER_BROKER, &header).with_body(body)
}

async fn routed_master(admin: &Admin) -> Option<String> {
    let route = admin.route("Orders").await.ok()?;
    route.broker_datas.first()?.master_addr().map(str::to_owned)
}

/// Without keys, with a wrong secret, or with a body changed after signing, nothing gets
/// through: no send, no pull, no metadata change, no registration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_refuses_unsigned_and_wrongly_signed_clients() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("acl.toml");
    let cluster = start(&dir, &file).await;
    create_topic(&cluster, "Orders").await;

    tracing::info!("sends: unsigned, a wrong secret, an unknown account");
    let unsigned = producer(&cluster, None).await;
    refused_with(unsigned.send(Message::new("Orders", "x")).await, "No accessKey is configured");
    let wrong = producer(&cluster, Some((PRODUCER.0, "not-the-secret"))).await;
    refused_with(
        wrong.send(Message::new("Orders", "x")).await,
        "Check signature failed for accessKey=orders-producer",
    );
    let stranger = producer(&cluster, Some(("somebody-else", "whatever-secret"))).await;
    refused_with(stranger.send(Message::new("Orders", "x")).await, "No acl config for");

    tracing::info!("pulls and offset queries");
    let answer = raw(&cluster, None, pull("Orders", "Billing")).await;
    assert_eq!(answer.code, response_code::NO_PERMISSION, "{:?}", answer.remark);
    let answer = raw(&cluster, Some((CONSUMER.0, "bad-secret-x")), pull("Orders", "Billing")).await;
    assert_eq!(answer.code, response_code::NO_PERMISSION, "{:?}", answer.remark);
    let query = RemotingCommand::request(
        request_code::QUERY_CONSUMER_OFFSET,
        &QueryConsumerOffsetRequestHeader {
            consumer_group: "Billing".into(),
            topic: "Orders".into(),
            queue_id: 0,
            set_zero_if_not_found: Some(false),
            broker_name: None,
        },
    );
    assert_eq!(raw(&cluster, None, query).await.code, response_code::NO_PERMISSION);

    tracing::info!("a signed request whose body was changed on the way");
    let mut runtime_info =
        RemotingCommand::request_without_header(request_code::GET_BROKER_RUNTIME_INFO)
            .with_body(&b"as signed"[..]);
    Credentials::new(CONSUMER.0, CONSUMER.1).sign(&mut runtime_info);
    assert_eq!(raw(&cluster, None, runtime_info.clone()).await.code, response_code::SUCCESS);
    let tampered = runtime_info.with_body(&b"changed!!"[..]);
    let answer = raw(&cluster, None, tampered).await;
    assert_eq!(answer.code, response_code::NO_PERMISSION);
    assert_eq!(
        answer.remark.as_deref(),
        Some("Check signature failed for accessKey=orders-consumer")
    );

    tracing::info!("metadata: unsigned, then an account that is not an admin");
    let admin = Admin::start(client(&cluster, None)).await.unwrap();
    refused_with(admin.create_topic(None, "Sneaky", 1, false).await, "No accessKey is configured");
    admin.shutdown().await;
    let admin = Admin::start(client(&cluster, Some(CONSUMER))).await.unwrap();
    refused_with(admin.create_topic(None, "Sneaky", 1, false).await, "Need admin permission");
    assert!(!admin.topics().await.unwrap().contains("Sneaky"));

    tracing::info!("registrations: unsigned or with a non-admin account, the route stays");
    let master = routed_master(&admin).await.expect("a routed master");
    let ns = cluster.namesrv_addr().to_string();
    for keys in [None, Some(CONSUMER)] {
        let config = RemotingConfig {
            credentials: keys.map(|(a, s)| Credentials::new(a, s)),
            ..Default::default()
        };
        let r = Remoting::new(config, None);
        let cmd = register_as_master_of_broker_a("10.6.6.6:10911", Some(i64::MAX));
        let answer = r.call(&ns, cmd, 5_000).await.unwrap();
        assert_eq!(answer.code, response_code::NO_PERMISSION, "{:?}", answer.remark);
        r.shutdown();
    }
    assert_eq!(routed_master(&admin).await.as_deref(), Some(master.as_str()));
    admin.shutdown().await;
    cluster.shutdown().await;
}

/// Each account does what the file lets it and nothing else; a change of the file applies
/// within seconds, and a broken file leaves the accounts in force.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_accounts_do_what_they_are_allowed_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("acl.toml");
    let cluster = start(&dir, &file).await;
    create_topic(&cluster, "Orders").await;
    create_topic(&cluster, "Payments").await;

    tracing::info!("the producer sends to Orders only");
    let p = producer(&cluster, Some(PRODUCER)).await;
    for i in 0..10 {
        p.send(Message::new("Orders", format!("order-{i}"))).await.unwrap();
    }
    refused_with(
        p.send(Message::new("Payments", "x")).await,
        "No default permission for topic=Payments",
    );

    tracing::info!("the consumer reads Orders as Billing, and may not send or use another group");
    let mut pc = PullConsumerConfig {
        client: client(&cluster, Some(CONSUMER)),
        ..PullConsumerConfig::new("x:1", "Billing")
    };
    pc.consume_from = ConsumeFrom::FirstOffset;
    let consumer = PullConsumer::start(pc).await.unwrap();
    consumer.assign(consumer.topic_queues("Orders").await.unwrap());
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while got.len() < 10 {
        assert!(Instant::now() < deadline, "consumed {} of 10", got.len());
        got.extend(consumer.poll(1_000).await.unwrap());
    }
    let mut bodies: Vec<String> =
        got.iter().map(|m| String::from_utf8_lossy(&m.body).into_owned()).collect();
    bodies.sort();
    assert_eq!(bodies, (0..10).map(|i| format!("order-{i}")).collect::<Vec<_>>());
    consumer.commit().await.unwrap();
    let c = producer(&cluster, Some(CONSUMER)).await;
    refused_with(c.send(Message::new("Orders", "x")).await, "No permission for topic=Orders");
    let answer = raw(&cluster, Some(CONSUMER), pull("Orders", "Shipping")).await;
    assert_eq!(answer.remark.as_deref(), Some("No default permission for group=Shipping"));
    let answer = raw(&cluster, Some(PRODUCER), pull("Orders", "Billing")).await;
    assert_eq!(answer.remark.as_deref(), Some("No permission for topic=Orders"));

    tracing::info!("reads by CommitLog offset: admin only, or only of a topic the account reads");
    let secret = producer(&cluster, Some(ADMIN)).await;
    let paid = secret.send(Message::new("Payments", "card 4111")).await.unwrap();
    let (_, position) = decode_offset_msg_id(&paid.offset_msg_id).unwrap();
    let view = RemotingCommand::request(
        request_code::VIEW_MESSAGE_BY_ID,
        &ViewMessageRequestHeader { offset: position },
    );
    let answer = raw(&cluster, Some(CONSUMER), view).await;
    assert!(answer.remark.unwrap_or_default().starts_with("Need admin permission"));
    // The group a message is sent back for must exist (a pull consumer does not create it).
    let create =
        RemotingCommand::request_without_header(request_code::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP)
            .with_body(SubscriptionGroupConfig::new("Billing").to_json(JsonStyle::Standard));
    let answer = raw(&cluster, Some(ADMIN), create).await;
    assert_eq!(answer.code, response_code::SUCCESS, "{:?}", answer.remark);
    let back = |origin: &str| {
        RemotingCommand::request(
            request_code::CONSUMER_SEND_MSG_BACK,
            &ConsumerSendMsgBackRequestHeader {
                offset: position,
                group: "Billing".into(),
                delay_level: 0,
                origin_msg_id: None,
                origin_topic: Some(origin.into()),
                unit_mode: Some(false),
                max_reconsume_times: None,
                broker_name: None,
            },
        )
    };
    // Naming the topic it is of: ACL refuses (the account may not read Payments).
    let answer = raw(&cluster, Some(CONSUMER), back("Payments")).await;
    assert_eq!(answer.remark.as_deref(), Some("No default permission for topic=Payments"));
    // Naming a topic it may read: the broker sees the record is not of it.
    let answer = raw(&cluster, Some(CONSUMER), back("Orders")).await;
    assert_eq!(answer.code, response_code::NO_PERMISSION, "{:?}", answer.remark);
    assert!(answer.remark.unwrap_or_default().contains("is not of topic Orders"));

    tracing::info!("the file changes: the producer may now send to Payments");
    std::fs::write(&file, acl_file(", \"Payments=PUB\"")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while p.send(Message::new("Payments", "now allowed")).await.is_err() {
        assert!(Instant::now() < deadline, "the change never applied");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    tracing::info!("a broken file is refused whole; the accounts in force stay");
    std::fs::write(&file, "[[accounts]]\naccess_key = \"x\"\n").unwrap();
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    p.send(Message::new("Payments", "still allowed")).await.unwrap();
    refused_with(unsigned_send(&cluster).await, "No accessKey is configured");
    cluster.shutdown().await;
}

async fn unsigned_send(cluster: &DevCluster) -> Result<rocketraft_client::SendResult, ClientError> {
    producer(cluster, None).await.send(Message::new("Orders", "x")).await
}

/// The NameServer never lets a registration replace the group's live master from another
/// address unless it holds the cluster's admin credentials and claims a newer Raft term.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_the_nameserver_refuses_an_impostor_master() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("acl.toml");
    let cluster = start(&dir, &file).await;
    create_topic(&cluster, "Orders").await;
    let admin = Admin::start(client(&cluster, Some(ADMIN))).await.unwrap();
    let master = routed_master(&admin).await.expect("a routed master");
    let ns = cluster.namesrv_addr().to_string();
    let r = Remoting::new(
        RemotingConfig {
            credentials: Some(Credentials::new(ADMIN.0, ADMIN.1)),
            ..Default::default()
        },
        None,
    );
    for term in [None, Some(0), Some(1)] {
        let answer = r
            .call(&ns, register_as_master_of_broker_a("10.6.6.6:10911", term), 5_000)
            .await
            .unwrap();
        assert_eq!(answer.code, response_code::NO_PERMISSION, "term {term:?}");
        let why = answer.remark.unwrap_or_default();
        assert!(why.contains(&format!("{master} is the live master of broker-a")), "{why}");
        assert_eq!(routed_master(&admin).await.as_deref(), Some(master.as_str()));
    }
    r.shutdown();
    admin.shutdown().await;
    cluster.shutdown().await;
}

/// A real RocketMQ client (ali-ons from npm) signs its requests with an account's keys and
/// works against the cluster with ACL and TLS on: sends, a push consumer, lookups by key. It
/// has no TLS, so it connects plain to client ports in permissive mode (the replicas talk Raft
/// over mutual TLS meanwhile).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_tls_ali_ons_signs_its_requests_on_permissive_ports() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("acl.toml");
    let cluster = start_tls(&dir, &file, true).await;
    assert!(cluster.tls_ca_file().is_some());
    create_topic(&cluster, "Interop").await;
    let leader = cluster.leader().expect("a leader");
    let args = [
        cluster.namesrv_addr().to_string(),
        cluster.broker_addrs()[&leader].to_string(),
        "Interop".into(),
        "200".into(),
        CONSUMER.0.into(),
        CONSUMER.1.into(),
    ];
    let result = tokio::task::spawn_blocking(move || {
        rocketraft_tests::interop::run_node("ons_e2e.js", &args)
    })
    .await
    .unwrap();
    assert_eq!(result, serde_json::json!({"sent": 200, "consumed": 200, "found": 200}));
    cluster.shutdown().await;
}

/// Never resolves its transactions: the half message stays for the test to end.
struct Undecided;

impl TransactionListener for Undecided {
    async fn execute_local(&self, _msg: &Message, _sent: &SendResult) -> TransactionState {
        TransactionState::Unknown
    }
    async fn check(&self, _msg: MessageExt) -> TransactionState {
        TransactionState::Unknown
    }
}

/// END_TRANSACTION names a half message by offsets only; with ACL on, ending it needs PUB on
/// the topic it is bound for, as sending it did (RocketMQ 4.9 checks only the signature).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_ending_a_transaction_needs_pub_on_its_topic() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("acl.toml");
    let cluster = start(&dir, &file).await;
    create_topic(&cluster, "Payments").await;
    let config = ProducerConfig {
        client: client(&cluster, Some(ADMIN)),
        group: "PG_payments".into(),
        ..ProducerConfig::new("x:1")
    };
    let tx = TransactionProducer::start(config, Undecided).await.unwrap();
    let half = tx.send(Message::new("Payments", "pending")).await.unwrap().sent;
    let (_, position) = decode_offset_msg_id(&half.offset_msg_id).unwrap();
    let end = RemotingCommand::request(
        request_code::END_TRANSACTION,
        &EndTransactionRequestHeader {
            producer_group: "PG_payments".into(),
            tran_state_table_offset: half.queue_offset,
            commit_log_offset: position,
            commit_or_rollback: rocketraft_protocol::sysflag::message::TRANSACTION_COMMIT,
            from_transaction_check: Some(false),
            msg_id: half.msg_id.clone(),
            transaction_id: Some(half.msg_id.clone()),
        },
    );
    let answer = raw(&cluster, Some(CONSUMER), end.clone()).await;
    assert_eq!(answer.code, response_code::NO_PERMISSION, "{:?}", answer.remark);
    assert_eq!(answer.remark.as_deref(), Some("No default permission for topic=Payments"));
    let answer = raw(&cluster, Some(ADMIN), end).await;
    assert_eq!(answer.code, response_code::SUCCESS, "the control: {:?}", answer.remark);
    tx.shutdown().await;
    cluster.shutdown().await;
}
