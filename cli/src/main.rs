//! `rocketraft`: the one binary a user meets. `dev` runs a whole cluster in one process;
//! `namesrv` and `broker` are the production processes; `topic`, `cluster`, `group` and
//! `message` administer a cluster; `send` and `consume` try it; `bench` loads it; `msgid`
//! decodes RocketMQ message ids.
//!
//! Errors are one sentence on stderr and a non-zero exit code, never a stack trace. Logs go to
//! stderr, filtered by RUST_LOG.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use rocketraft::admin::{self, Output};
use rocketraft::bench::{self, BenchConfig, Kind};
use rocketraft::dev::{DevAcl, DevCluster, DevConfig, RetentionConfig};
use rocketraft::serve::BrokerSetup;
use rocketraft::stop_signal;
use rocketraft_client::{
    Admin, ClientConfig, ClientError, ConsumeFrom, Message, Producer, ProducerConfig, PullConsumer,
    PullConsumerConfig,
};
use rocketraft_namesrv::{NameServer, NamesrvConfig};
use rocketraft_protocol::acl::Credentials;
use rocketraft_protocol::message::decode_offset_msg_id;
use rocketraft_store::flush::FlushMode;

/// `println!` that never panics: a closed stdout (`| head`, a dead `tee`) must not stop a
/// server from shutting down cleanly.
macro_rules! say {
    ($($t:tt)*) => {{
        let _ = emit(&format!($($t)*));
    }};
}

#[derive(Parser)]
#[command(
    name = "rocketraft",
    version,
    about = "A Raft-replicated, RocketMQ-compatible message broker"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the cluster is, for every command that talks to one.
/// A replica to (re)join its group: started already, with an empty data directory.
#[derive(Args)]
struct ReplicaAt {
    /// The broker group (brokerName).
    #[arg(long)]
    group: String,
    /// The replica's Raft node id.
    #[arg(long)]
    node: u64,
    /// The replica's Raft address (host:port), as the other replicas reach it.
    #[arg(long)]
    addr: String,
    /// How long it may take to catch up before the command gives up (it stays a learner,
    /// still catching up; run the command again to wait more).
    #[arg(long, default_value_t = 600_000)]
    timeout_ms: u64,
    #[command(flatten)]
    target: Target,
}

#[derive(Args, Clone)]
struct Target {
    /// NameServer address(es), `;`-separated, as RocketMQ's clients take them.
    #[arg(
        short = 'n',
        long = "namesrv",
        env = "NAMESRV_ADDR",
        default_value = "127.0.0.1:9876",
        global = true
    )]
    namesrv: String,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
    /// Sign every request with this ACL account (RocketMQ's AccessKey), for clusters with
    /// ACL on; needs --secret-key.
    #[arg(long, env = "ROCKETRAFT_ACCESS_KEY", global = true, requires = "secret_key")]
    access_key: Option<String>,
    /// The account's secret key.
    #[arg(
        long,
        env = "ROCKETRAFT_SECRET_KEY",
        global = true,
        hide_env_values = true,
        requires = "access_key"
    )]
    secret_key: Option<String>,
    /// Connect over TLS, trusting this CA (PEM); `rocketraft dev --tls` writes one.
    #[arg(long, env = "ROCKETRAFT_TLS_CA", global = true)]
    tls_ca: Option<PathBuf>,
}

impl Target {
    /// Client settings for the cluster: signing with the account and speaking TLS if asked.
    fn client(&self) -> anyhow::Result<ClientConfig> {
        let mut c = ClientConfig::new(&self.namesrv);
        if let (Some(a), Some(s)) = (&self.access_key, &self.secret_key) {
            c.remoting.credentials = Some(Credentials::new(a, s));
        }
        if let Some(ca) = &self.tls_ca {
            c.remoting.tls = Some(rocketraft_remoting::tls::ClientTls::from_ca_file(ca)?);
        }
        Ok(c)
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run a development cluster in this process: a NameServer and one broker group of three
    /// replicas on loopback, data under --data-dir. Stops cleanly on Ctrl-C or SIGTERM.
    Dev {
        /// Where the replicas keep their files (created if missing; reused on restart).
        #[arg(long, default_value = "rocketraft-data")]
        data_dir: PathBuf,
        /// The NameServer's port (clients connect here).
        #[arg(long, default_value_t = 9876)]
        namesrv_port: u16,
        /// Prometheus metrics of the NameServer and every replica: http://HOST:PORT/metrics.
        #[arg(long, default_value_t = rocketraft::metrics::NAMESRV_METRICS_PORT_DEFAULT)]
        metrics_port: u16,
        /// Replica i serves clients on this port + 10 * i.
        #[arg(long, default_value_t = 10911)]
        broker_port: u16,
        /// Replica i talks Raft on this port + i.
        #[arg(long, default_value_t = 40911)]
        raft_port: u16,
        /// sync: a send is acknowledged once on a majority's disks; async: once written,
        /// synced every 500 ms.
        #[arg(long, value_enum, default_value = "sync")]
        flush: Flush,
        /// quorum: a send is acknowledged once a majority has it; leader: once the leader's
        /// own log has it (RocketMQ's asynchronous replication: a failover can lose
        /// acknowledged messages).
        #[arg(long, value_enum, default_value = "quorum")]
        replication: ReplicationArg,
        /// The delay of each DELAY level, RocketMQ's messageDelayLevel (e.g. "1s 1s 1s" makes
        /// every retry come back after a second).
        #[arg(long, default_value = rocketraft_protocol::schedule::DELAY_LEVELS_DEFAULT)]
        message_delay_level: String,
        /// Turn ACL on: the accounts file (README "Access control"). The replicas register
        /// with the account of --access-key/--secret-key, which must be an admin in it.
        #[arg(long, requires = "access_key")]
        acl_file: Option<PathBuf>,
        /// With --acl-file: the admin account the replicas register with.
        #[arg(long, env = "ROCKETRAFT_ACCESS_KEY", requires = "secret_key")]
        access_key: Option<String>,
        #[arg(long, env = "ROCKETRAFT_SECRET_KEY", hide_env_values = true)]
        secret_key: Option<String>,
        /// TLS with a throwaway CA (written to DATA_DIR/tls/ca.pem, for clients' --tls-ca):
        /// mutual TLS between the replicas, and TLS or plain clients on every client port.
        #[arg(long)]
        tls: bool,
        /// With --tls: permissive (TLS and plain clients) or enforcing (TLS only).
        #[arg(long, default_value = "permissive", requires = "tls")]
        tls_mode: rocketraft_remoting::tls::TlsMode,
        /// Refuse sends once the data directory's volume is this full (0 to 1; RocketMQ's
        /// ratio). Early deletion of old segments starts at 0.75 or this, whichever is lower.
        #[arg(long, default_value_t = 0.90)]
        disk_max_used_ratio: f64,
    },
    /// Run a NameServer until Ctrl-C or SIGTERM.
    Namesrv {
        /// Where to listen.
        #[arg(long, default_value = "0.0.0.0:9876")]
        listen: String,
        /// Where to serve Prometheus metrics (http://ADDR/metrics).
        #[arg(long, default_value = "0.0.0.0:9877")]
        metrics_listen: String,
        /// How often silent brokers are looked for (ms).
        #[arg(long, default_value_t = 10_000)]
        scan_interval_ms: u64,
        /// A broker silent this long is evicted (ms).
        #[arg(long, default_value_t = 120_000)]
        broker_expiry_ms: i64,
        /// Connections beyond this are closed at once.
        #[arg(long, default_value_t = 4096)]
        connections_max: usize,
        /// Connections from one IP address beyond this are closed at once.
        #[arg(long, default_value_t = rocketraft_remoting::server::CONNECTIONS_PER_IP_MAX_DEFAULT)]
        connections_per_ip_max: usize,
        /// A connection with nothing read or written this long is closed (ms; 0: never).
        #[arg(long, default_value_t = 120_000)]
        idle_timeout_ms: u64,
        /// Turn ACL on: registrations and other changes must be signed by an admin account of
        /// this file (README "Access control"); route lookups stay open.
        #[arg(long)]
        acl_file: Option<PathBuf>,
        /// Serve TLS with this certificate chain (PEM); needs --tls-key.
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// The certificate's private key (PEM).
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// With --tls-cert: permissive (TLS and plain clients; the default) or enforcing (TLS
        /// only).
        #[arg(long, requires = "tls_cert")]
        tls_mode: Option<rocketraft_remoting::tls::TlsMode>,
        /// Broker addresses registered at once; a new one past it is refused.
        #[arg(long, default_value_t = 1_024)]
        brokers_max: usize,
        /// Topics one registration may list.
        #[arg(long, default_value_t = 65_536)]
        registration_topics_max: usize,
        /// KV config entries (PUT_KV_CONFIG) over every namespace.
        #[arg(long, default_value_t = 10_000)]
        kv_entries_max: usize,
    },
    /// Run one replica of a broker group, configured by a TOML file (broker.example.toml lists
    /// every key; deploy/ has a 3-machine group). Stops on Ctrl-C or SIGTERM: unregisters from
    /// the NameServers and syncs its files first.
    #[command(args_conflicts_with_subcommands = true)]
    Broker {
        /// The replica's config file. Relative paths in it start at its directory.
        #[arg(short, long)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        show: Option<BrokerCmd>,
    },
    /// Create, list, show or delete topics.
    #[command(subcommand)]
    Topic(TopicCmd),
    /// Show the cluster's broker groups and replicas.
    #[command(subcommand)]
    Cluster(ClusterCmd),
    /// Show a consumer group's progress and dead letters.
    #[command(subcommand)]
    Group(GroupCmd),
    /// Delayed and timer messages waiting in every broker group, per delay level and timer
    /// queue.
    Delayed {
        #[command(flatten)]
        target: Target,
    },
    /// Transaction half messages still waiting for commit or rollback, with their age and
    /// how often the broker checked them back.
    Transactions {
        /// Only those of this topic.
        #[arg(long)]
        topic: Option<String>,
        /// Only those of this producer group.
        #[arg(long)]
        group: Option<String>,
        /// At most this many per broker group.
        #[arg(long, default_value_t = 100)]
        max: i32,
        #[command(flatten)]
        target: Target,
    },
    /// Look messages up.
    #[command(subcommand)]
    Message(MessageCmd),
    /// Send messages: the body from the argument, or one message per line of stdin.
    Send {
        #[arg(short, long)]
        topic: String,
        /// The body; without it, each line of stdin is one message.
        body: Option<String>,
        #[arg(long)]
        tags: Option<String>,
        /// Comma-separated keys (indexed: `message query --key` finds them).
        #[arg(long)]
        keys: Option<String>,
        /// Send each body this many times.
        #[arg(long, default_value_t = 1)]
        count: u64,
        /// Sharding key: every message with it goes to one queue, in order.
        #[arg(long)]
        order_key: Option<String>,
        /// Deliver after this delay level's time (1-18 by default: 1s 5s 10s 30s 1m ... 2h).
        #[arg(long)]
        delay_level: Option<u32>,
        /// Any property, as NAME=VALUE (repeatable), e.g. RETRY_TOPIC=Orders.
        #[arg(long = "property", value_name = "NAME=VALUE")]
        properties: Vec<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Consume and print messages as a member of a clustering group (offsets are kept by the
    /// brokers, so a second run goes on where the first stopped). Stops on Ctrl-C or --count.
    Consume {
        #[arg(short, long)]
        topic: String,
        #[arg(short, long, default_value = "rocketraft-cli")]
        group: String,
        /// Tag filter: `*` or `TagA || TagB`.
        #[arg(long, default_value = "*")]
        tags: String,
        /// Where a group without committed offsets starts.
        #[arg(long, value_enum, default_value = "last")]
        from: From,
        /// Stop after this many messages.
        #[arg(long)]
        count: Option<u64>,
        #[command(flatten)]
        target: Target,
    },
    /// Load a cluster and report throughput and latency (p50/p99/p99.9/max).
    #[command(subcommand)]
    Bench(BenchCmd),
    /// Serve a web dashboard of the cluster until Ctrl-C: groups and replicas with their lag,
    /// topics and their queues, consumer groups with lag and consumers, message lookup, live
    /// send and consume rates. It reads the cluster through the admin calls the CLI makes.
    Dashboard {
        /// Where to serve the pages (http://ADDR/).
        #[arg(long, default_value = "127.0.0.1:8088")]
        listen: String,
        /// A host name the pages may be reached under besides IP addresses and localhost
        /// (repeatable); other names are refused (a guard against DNS rebinding).
        #[arg(long = "allow-host")]
        allow_host: Vec<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Decode an offset message id (as printed by brokers and `SendResult.offsetMsgId`) into
    /// the store host and the CommitLog offset, like mqadmin's DecodeMessageId.
    Msgid {
        /// 32 hex characters (IPv4 store host) or 56 (IPv6).
        id: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Flush {
    Sync,
    Async,
}

#[derive(Clone, Copy, ValueEnum)]
enum ReplicationArg {
    Quorum,
    Leader,
}

#[derive(Clone, Copy, ValueEnum)]
enum From {
    First,
    Last,
}

#[derive(Subcommand)]
enum TopicCmd {
    /// Create (or update) a topic on every master of the cluster.
    Create {
        topic: String,
        /// Read and write queues per broker group.
        #[arg(long, default_value_t = 8)]
        queues: i32,
        /// Only on this cluster's groups (default: every cluster).
        #[arg(long)]
        cluster: Option<String>,
        /// Mark the topic ordered.
        #[arg(long)]
        order: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Every topic the NameServer knows.
    List {
        #[command(flatten)]
        target: Target,
    },
    /// Which groups and replicas serve a topic, with its queues.
    Route {
        topic: String,
        #[command(flatten)]
        target: Target,
    },
    /// The consumer groups of a topic: online with a subscription, or with offsets on it.
    Consumers {
        topic: String,
        #[command(flatten)]
        target: Target,
    },
    /// Delete a topic from the brokers and the NameServers.
    Delete {
        topic: String,
        #[arg(long)]
        cluster: Option<String>,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Subcommand)]
enum BrokerCmd {
    /// A running broker's settings (GET_BROKER_CONFIG): each group's master, or every replica
    /// of one group.
    Config {
        /// Only this broker group, every replica of it.
        #[arg(short, long)]
        group: Option<String>,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Subcommand)]
enum ClusterCmd {
    /// Every registered replica: group, Raft role and term, log index, lag behind the leader.
    List {
        #[command(flatten)]
        target: Target,
    },
    /// Move a group's leadership to another of its replicas (before maintenance on the
    /// leader's machine): writes wait on the old leader until the new one is elected, and
    /// clients retry them there.
    TransferLeader {
        /// The broker group (brokerName).
        #[arg(long)]
        group: String,
        /// The Raft node id of the replica to lead.
        #[arg(long)]
        to: u64,
        /// How long writes may be held while the target catches up and is elected.
        #[arg(long, default_value_t = 3_000)]
        timeout_ms: u64,
        #[command(flatten)]
        target: Target,
    },
    /// Add a replica to a running group: start it first (`rocketraft broker` with an empty
    /// data directory, the group's `peers` and its own `[raft] addr`); it joins as a learner,
    /// catches up from the leader, then votes.
    AddReplica(ReplicaAt),
    /// Remove a replica from its group (its leadership moves first if it leads); its process
    /// unregisters and exits, and will not serve from its data directory again.
    RemoveReplica {
        /// The broker group (brokerName).
        #[arg(long)]
        group: String,
        /// The Raft node id of the replica to remove.
        #[arg(long)]
        node: u64,
        #[arg(long, default_value_t = 30_000)]
        timeout_ms: u64,
        #[command(flatten)]
        target: Target,
    },
    /// Repair a replica from its peers: started again under its id on an empty data
    /// directory (its old one quarantined, or lost), it is removed and added again, and
    /// copies the group's log from the leader.
    RepairReplica(ReplicaAt),
    /// Replace a replica (a dead machine) by a new one: add the new one, then remove the old,
    /// so the group never has fewer voters than before.
    ReplaceReplica {
        /// The broker group (brokerName).
        #[arg(long)]
        group: String,
        /// The Raft node id of the replica to replace.
        #[arg(long)]
        from: u64,
        /// The new replica's Raft node id.
        #[arg(long)]
        to: u64,
        /// The new replica's Raft address (host:port).
        #[arg(long)]
        addr: String,
        #[arg(long, default_value_t = 600_000)]
        timeout_ms: u64,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Subcommand)]
enum GroupCmd {
    /// Per-queue committed offsets, queue ends and lag of a consumer group.
    Offsets {
        group: String,
        /// Only this topic's queues.
        #[arg(short, long)]
        topic: Option<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Who is connected for a consumer group: client ids, addresses, languages, versions,
    /// and how the group consumes.
    Connections {
        group: String,
        #[command(flatten)]
        target: Target,
    },
    /// Move a group's offsets on a topic to the first message stored at or after a time, on
    /// every broker group (running consumers move there on their next pull).
    ResetOffset {
        group: String,
        #[arg(short, long)]
        topic: String,
        /// Unix milliseconds, `now` (skip everything), or UTC as 2026-12-03T10:00:00.
        #[arg(long)]
        to_time: String,
        #[command(flatten)]
        target: Target,
    },
    /// A group's dead letters (%DLQ%<group>): list them, or re-send them to their topics.
    DeadLetters {
        group: String,
        /// Send each again to the topic it was first sent to (a second run sends only those
        /// that died since).
        #[arg(long)]
        resend: bool,
        /// At most this many.
        #[arg(short, long, default_value_t = 100)]
        count: usize,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Subcommand)]
enum MessageCmd {
    /// Find messages by key, or one by id (msgId with --topic, or offsetMsgId).
    Query {
        #[arg(short, long)]
        topic: Option<String>,
        #[arg(long, conflicts_with = "id")]
        key: Option<String>,
        #[arg(long)]
        id: Option<String>,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Args)]
struct BenchArgs {
    #[arg(short, long, default_value = "BenchmarkTest")]
    topic: String,
    /// Queues per group if the bench creates the topic.
    #[arg(long, default_value_t = 8)]
    queues: i32,
    /// Body size in bytes.
    #[arg(short, long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=4_194_304))]
    size: u32,
    /// Stop after this many seconds (default 30 unless --count is given).
    #[arg(short, long)]
    duration: Option<u64>,
    /// Stop after this many messages.
    #[arg(short, long)]
    count: Option<u64>,
    /// Concurrent producers (each its own client).
    #[arg(short, long, default_value_t = 4)]
    producers: usize,
    /// Concurrent consumers (members of one group).
    #[arg(long, default_value_t = 1)]
    consumers: usize,
    /// Sends outstanding per producer; above 1 sends asynchronously.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    in_flight: u32,
    /// Consumer group for `consume`.
    #[arg(short, long, default_value = "benchmark_consumer")]
    group: String,
    /// `consume`: start a new group at the oldest message instead of the newest. Without
    /// --count or --duration, the run reads the backlog there is at its start and stops; the
    /// rate is timed from the first message received to the last.
    #[arg(long)]
    from_first: bool,
    /// `e2e`: seconds to wait for the last acknowledged messages to arrive.
    #[arg(long, default_value_t = 30)]
    drain: u64,
    /// Send timer messages due this many ms after their send; `e2e` then reports lateness
    /// (receipt - due). 100 ms x 2^k (e.g. 1600) is one stop in the broker's timer queues.
    #[arg(long, default_value_t = 0)]
    delay_ms: u64,
    /// Messages per second, all producers together (default: as fast as they go).
    #[arg(long)]
    rate: Option<u64>,
    /// Send transactional messages: half message, a local transaction of this many ms, then
    /// commit (each send's time covers all three).
    #[arg(long)]
    transaction_local_ms: Option<u64>,
    /// Give every message a property `n`, its sequence number mod 100 (for --sql selectors).
    #[arg(long)]
    numbered: bool,
    /// `consume`/`e2e`: subscribe with this SQL92 selector (e.g. 'n < 10') instead of every
    /// message; the brokers must allow property filters.
    #[arg(long)]
    sql: Option<String>,
    /// No progress line.
    #[arg(short, long)]
    quiet: bool,
    #[command(flatten)]
    target: Target,
}

#[derive(Subcommand)]
enum BenchCmd {
    /// Send as fast as the producers can.
    Produce(BenchArgs),
    /// Consume a topic (from another bench's producers).
    Consume(BenchArgs),
    /// Produce and consume at once: send latency, end-to-end latency, and losses.
    E2e(BenchArgs),
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Dev {
            data_dir,
            namesrv_port,
            metrics_port,
            broker_port,
            raft_port,
            flush,
            replication,
            message_delay_level,
            acl_file,
            access_key,
            secret_key,
            tls,
            tls_mode,
            disk_max_used_ratio,
        } => {
            if !(disk_max_used_ratio > 0.0 && disk_max_used_ratio <= 1.0) {
                anyhow::bail!("--disk-max-used-ratio must be above 0 and at most 1");
            }
            let defaults = RetentionConfig::default();
            let retention = RetentionConfig {
                disk_clean_ratio: defaults.disk_clean_ratio.min(disk_max_used_ratio),
                disk_max_used_ratio,
                ..defaults
            };
            let delay_levels =
                rocketraft_protocol::schedule::DelayLevels::parse(&message_delay_level)?;
            let flush = match flush {
                Flush::Sync => FlushMode::Sync,
                Flush::Async => {
                    FlushMode::Async { interval_ms: FlushMode::ASYNC_INTERVAL_MS_DEFAULT }
                }
            };
            let config = DevConfig {
                data_dir,
                namesrv_port,
                metrics_port,
                broker_port,
                raft_port,
                flush,
                replication: match replication {
                    ReplicationArg::Quorum => rocketraft_raft::Replication::Quorum,
                    ReplicationArg::Leader => rocketraft_raft::Replication::Leader,
                },
                delay_levels,
                acl: match (acl_file, access_key, secret_key) {
                    (Some(file), Some(a), Some(s)) => {
                        Some(DevAcl { file, registration: Credentials::new(a, s) })
                    }
                    _ => None,
                },
                tls,
                tls_client_mode: tls_mode,
                retention,
                ..Default::default()
            };
            runtime()?.block_on(dev(config))
        }
        Command::Namesrv {
            listen,
            metrics_listen,
            scan_interval_ms,
            broker_expiry_ms,
            connections_max,
            connections_per_ip_max,
            idle_timeout_ms,
            acl_file,
            tls_cert,
            tls_key,
            tls_mode,
            brokers_max,
            registration_topics_max,
            kv_entries_max,
        } => {
            if scan_interval_ms == 0
                || broker_expiry_ms <= 0
                || connections_max == 0
                || connections_per_ip_max == 0
                || brokers_max == 0
            {
                anyhow::bail!(
                    "--scan-interval-ms, --broker-expiry-ms, --connections-max, --connections-per-ip-max \
                     and --brokers-max must be above 0"
                );
            }
            let config = NamesrvConfig {
                listen,
                scan_interval_ms,
                broker_expiry_ms,
                connections_max,
                connections_per_ip_max,
                idle_timeout_ms,
                acl_file,
                tls: match (tls_cert, tls_key) {
                    (Some(cert), Some(key)) => {
                        use rocketraft_remoting::tls::{Pem, ServerTls};
                        let mode = tls_mode.unwrap_or_default();
                        Some(ServerTls::new(&Pem::read(&cert, &key, None)?, mode)?)
                    }
                    _ => None,
                },
                brokers_max,
                registration_topics_max,
                kv_entries_max,
                ..Default::default()
            };
            runtime()?.block_on(namesrv(config, metrics_listen))
        }
        Command::Broker { show: Some(BrokerCmd::Config { group, target }), .. } => {
            with_admin(&target, |a| async move { admin::broker_config(&a, group.as_deref()).await })
        }
        Command::Broker { config: Some(config), show: None } => {
            let setup = BrokerSetup::load(&config)?;
            runtime()?.block_on(broker(setup))
        }
        Command::Broker { config: None, show: None } => anyhow::bail!(
            "pass --config FILE to run a replica, or `broker config` to show a running broker's settings"
        ),
        Command::Topic(cmd) => {
            let target = match &cmd {
                TopicCmd::Create { target, .. }
                | TopicCmd::List { target }
                | TopicCmd::Route { target, .. }
                | TopicCmd::Consumers { target, .. }
                | TopicCmd::Delete { target, .. } => target.clone(),
            };
            with_admin(&target, |a| async move {
                match cmd {
                    TopicCmd::Create { topic, queues, cluster, order, .. } => {
                        admin::topic_create(&a, cluster.as_deref(), &topic, queues, order).await
                    }
                    TopicCmd::List { .. } => admin::topic_list(&a).await,
                    TopicCmd::Route { topic, .. } => admin::topic_route(&a, &topic).await,
                    TopicCmd::Consumers { topic, .. } => admin::topic_consumers(&a, &topic).await,
                    TopicCmd::Delete { topic, cluster, .. } => {
                        admin::topic_delete(&a, cluster.as_deref(), &topic).await
                    }
                }
            })
        }
        Command::Cluster(ClusterCmd::List { target }) => {
            with_admin(&target, |a| async move { admin::cluster_list(&a).await })
        }
        Command::Cluster(ClusterCmd::TransferLeader { group, to, timeout_ms, target }) => {
            with_admin(&target, |a| async move {
                admin::cluster_transfer_leader(&a, &group, to, timeout_ms).await
            })
        }
        Command::Cluster(ClusterCmd::AddReplica(r)) => add_replica(r, false),
        Command::Cluster(ClusterCmd::RemoveReplica { group, node, timeout_ms, target }) => {
            with_admin(&target, |a| async move {
                admin::cluster_remove_replica(&a, &group, node, timeout_ms).await
            })
        }
        Command::Cluster(ClusterCmd::RepairReplica(r)) => add_replica(r, true),
        Command::Cluster(ClusterCmd::ReplaceReplica {
            group,
            from,
            to,
            addr,
            timeout_ms,
            target,
        }) => with_admin(&target, |a| async move {
            admin::cluster_replace_replica(&a, &group, from, to, &addr, timeout_ms).await
        }),
        Command::Group(GroupCmd::DeadLetters { group, resend, count, target }) => runtime()?
            .block_on(async {
                init_logging("warn");
                let out = admin::dead_letters(&target.client()?, &group, resend, count)
                    .await
                    .map_err(|e| explain(e, &target))?;
                print_output(&out, target.json);
                anyhow::Ok(())
            }),
        Command::Delayed { target } => {
            with_admin(&target, |a| async move { admin::delayed(&a).await })
        }
        Command::Transactions { topic, group, max, target } => {
            with_admin(&target, |a| async move {
                admin::transactions(&a, topic.as_deref(), group.as_deref(), max).await
            })
        }
        Command::Group(GroupCmd::Connections { group, target }) => {
            with_admin(&target, |a| async move { admin::group_connections(&a, &group).await })
        }
        Command::Group(GroupCmd::ResetOffset { group, topic, to_time, target }) => {
            let timestamp = admin::parse_time(&to_time, rocketraft_raft::clock::now_ms())?;
            with_admin(&target, |a| async move {
                admin::group_reset_offset(&a, &group, &topic, timestamp).await
            })
        }
        Command::Group(GroupCmd::Offsets { group, topic, target }) => {
            with_admin(&target, |a| async move {
                admin::group_offsets(&a, &group, topic.as_deref()).await
            })
        }
        Command::Message(MessageCmd::Query { topic, key, id, target }) => {
            with_admin(&target, |a| async move {
                admin::message_query(&a, topic.as_deref(), key.as_deref(), id.as_deref()).await
            })
        }
        Command::Send {
            topic,
            body,
            tags,
            keys,
            count,
            order_key,
            delay_level,
            properties,
            target,
        } => {
            admin::check_topic_name(&topic)?;
            let properties = properties
                .iter()
                .map(|p| match p.split_once('=') {
                    Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
                    _ => Err(anyhow::anyhow!("--property {p:?}: expected NAME=VALUE")),
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let send =
                SendArgs { topic, body, tags, keys, count, order_key, delay_level, properties };
            runtime()?.block_on(async {
                send_messages(&target, send).await.map_err(|e| explain(e, &target))
            })
        }
        Command::Consume { topic, group, tags, from, count, target } => {
            admin::check_topic_name(&topic)?;
            let from = match from {
                From::First => ConsumeFrom::FirstOffset,
                From::Last => ConsumeFrom::LastOffset,
            };
            runtime()?.block_on(async {
                consume(&target, &topic, &group, &tags, from, count)
                    .await
                    .map_err(|e| explain(e, &target))
            })
        }
        Command::Bench(cmd) => {
            let (kind, args) = match cmd {
                BenchCmd::Produce(a) => (Kind::Produce, a),
                BenchCmd::Consume(a) => (Kind::Consume, a),
                BenchCmd::E2e(a) => (Kind::EndToEnd, a),
            };
            let target = args.target.clone();
            let config = BenchConfig {
                client: args.target.client()?,
                namesrv: args.target.namesrv,
                topic: args.topic,
                queues: args.queues,
                producers: args.producers,
                consumers: args.consumers,
                size: args.size as usize,
                duration: args.duration.map(Duration::from_secs),
                count: args.count,
                asynchronous: args.in_flight > 1,
                in_flight: args.in_flight as usize,
                group: args.group,
                from_first: args.from_first,
                drain: Duration::from_secs(args.drain),
                live: !args.quiet,
                delay_ms: args.delay_ms,
                rate: args.rate,
                transaction_local_ms: args.transaction_local_ms,
                numbered: args.numbered,
                sql: args.sql,
            };
            runtime()?.block_on(async {
                init_logging("warn");
                let (text, json) = bench::run(kind, config, stop_signal())
                    .await
                    .map_err(|e| explain(e, &target))?;
                print_output(&Output { text, json }, target.json);
                anyhow::Ok(())
            })
        }
        Command::Dashboard { listen, allow_host, target } => {
            runtime()?.block_on(dashboard(listen, allow_host, target))
        }
        Command::Msgid { id, json } => {
            let (host, offset) = decode_offset_msg_id(id.trim())
                .with_context(|| format!("{id:?} is not an offset message id"))?;
            if json {
                let v =
                    serde_json::json!({ "storeHost": host.to_string(), "commitLogOffset": offset });
                say!("{v}");
            } else {
                say!("store host:       {host}");
                say!("commitlog offset: {offset}");
            }
            Ok(())
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Logs to stderr, `RUST_LOG` filtered (default `default`, and nothing of openraft's own: it
/// logs an error per failed heartbeat and warnings on every healthy start; our replicas say
/// what an operator needs instead: role changes, peers that keep failing, a fatal stop with
/// its cause. `RUST_LOG=info,openraft=warn` shows openraft's too).
fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("{default},openraft=off")));
    // Colours only on a terminal: a log file or a journal gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .try_init();
}

fn print_output(out: &Output, json: bool) {
    if json {
        emit(&out.json.to_string());
    } else {
        emit(out.text.trim_end_matches('\n'));
    }
}

/// Prints a line to stdout; false once stdout is gone (a closed pipe, as with `| head`),
/// which ends the command quietly instead of panicking as `println!` would.
fn emit(line: &str) -> bool {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").and_then(|()| out.flush()).is_ok()
}

/// Turns an unreachable NameServer into the sentence a user needs.
fn explain(e: anyhow::Error, target: &Target) -> anyhow::Error {
    let chain = format!("{e:#}");
    let unreachable = target.namesrv.split(';').map(str::trim).find(|a| {
        chain.contains(&format!("cannot connect to {a}"))
            || chain.contains(&format!("{a} did not answer"))
    });
    match unreachable {
        Some(addr) => anyhow::anyhow!(
            "cannot reach the NameServer at {addr}: start a cluster (`rocketraft dev`) or pass \
             --namesrv HOST:PORT (or set NAMESRV_ADDR)"
        ),
        // A port that requires TLS closes a plain connection without a word.
        None if target.tls_ca.is_none() && chain.contains(" closed before ") => {
            anyhow::anyhow!("{chain}; if the cluster requires TLS, pass --tls-ca CA.pem")
        }
        None => e,
    }
}

/// Runs an admin call and prints its output.
/// `cluster add-replica`, or with `repair` `cluster repair-replica`.
fn add_replica(r: ReplicaAt, repair: bool) -> anyhow::Result<()> {
    let ReplicaAt { group, node, addr, timeout_ms, target } = r;
    with_admin(&target, |a| async move {
        admin::cluster_add_replica(&a, &group, node, &addr, timeout_ms, repair).await
    })
}

fn with_admin<F, Fut>(target: &Target, f: F) -> anyhow::Result<()>
where
    F: FnOnce(std::sync::Arc<Admin>) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Output>>,
{
    runtime()?.block_on(async {
        init_logging("warn");
        let admin = std::sync::Arc::new(Admin::start(target.client()?).await?);
        let result = f(admin.clone()).await;
        if let Ok(admin) = std::sync::Arc::try_unwrap(admin) {
            admin.shutdown().await;
        }
        let out = result.map_err(|e| explain(e, target))?;
        print_output(&out, target.json);
        Ok(())
    })
}

struct SendArgs {
    topic: String,
    /// None: each non-empty line of stdin, sent as it is read.
    body: Option<String>,
    tags: Option<String>,
    keys: Option<String>,
    count: u64,
    order_key: Option<String>,
    delay_level: Option<u32>,
    properties: Vec<(String, String)>,
}

/// Lines of stdin as they arrive (a thread does the blocking reads), so that
/// `tail -f log | rocketraft send` sends each line at once.
fn stdin_lines() -> tokio::sync::mpsc::Receiver<std::io::Result<String>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    // Blocking reads of a terminal or pipe need a thread of their own (never under madsim).
    #[allow(clippy::disallowed_methods)]
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::stdin().lock().lines() {
            let failed = line.is_err();
            if tx.blocking_send(line).is_err() || failed {
                return;
            }
        }
    });
    rx
}

async fn send_messages(target: &Target, a: SendArgs) -> anyhow::Result<()> {
    init_logging("warn");
    let producer = Producer::start(ProducerConfig {
        client: target.client()?,
        ..ProducerConfig::new(&target.namesrv)
    })
    .await?;
    let mut result = Ok(());
    let mut lines = match &a.body {
        Some(_) => None,
        None => Some(stdin_lines()),
    };
    let mut given = a.body.clone();
    'all: loop {
        let body = match (&mut lines, given.take()) {
            (None, Some(body)) => body,
            (None, None) => break,
            (Some(lines), _) => match lines.recv().await {
                Some(Ok(line)) if line.is_empty() => continue,
                Some(Ok(line)) => line,
                Some(Err(e)) => {
                    result = Err(anyhow::Error::new(e).context("reading stdin"));
                    break;
                }
                None => break,
            },
        };
        for _ in 0..a.count {
            let mut msg = Message::new(a.topic.clone(), body.clone().into_bytes());
            for (k, v) in &a.properties {
                msg = msg.with_property(k.clone(), v.clone());
            }
            if let Some(level) = a.delay_level {
                msg = msg.with_delay_level(level);
            }
            if let Some(t) = &a.tags {
                msg = msg.with_tags(t.clone());
            }
            if let Some(k) = &a.keys {
                msg = msg.with_keys(
                    k.split(',').map(str::trim).filter(|k| !k.is_empty()).map(str::to_owned),
                );
            }
            let sent = match &a.order_key {
                Some(key) => producer.send_ordered(msg, key).await,
                None => producer.send(msg).await,
            };
            let line = match sent {
                Ok(r) if target.json => serde_json::json!({
                    "status": format!("{:?}", r.status), "msgId": r.msg_id,
                    "offsetMsgId": r.offset_msg_id, "brokerGroup": r.queue.broker_name,
                    "queueId": r.queue.queue_id, "queueOffset": r.queue_offset,
                })
                .to_string(),
                Ok(r) => format!(
                    "{:?} msgId={} queue={}#{} offset={}",
                    r.status, r.msg_id, r.queue.broker_name, r.queue.queue_id, r.queue_offset
                ),
                Err(e) => {
                    result = Err(anyhow::Error::new(e).context("send failed"));
                    break 'all;
                }
            };
            if !emit(&line) {
                break 'all;
            }
        }
    }
    producer.shutdown().await;
    result.map_err(|e| explain(e, target))
}

async fn consume(
    target: &Target,
    topic: &str,
    group: &str,
    tags: &str,
    from: ConsumeFrom,
    count: Option<u64>,
) -> anyhow::Result<()> {
    init_logging("warn");
    let mut config = PullConsumerConfig {
        client: target.client()?,
        ..PullConsumerConfig::new(&target.namesrv, group)
    };
    config.consume_from = from;
    let consumer = PullConsumer::start(config).await?;
    let stop = stop_signal();
    tokio::pin!(stop);
    // A topic nobody created yet: wait for it (the first send creates it), as a consumer
    // started before its producers would.
    let mut told = false;
    loop {
        match consumer.subscribe(topic, tags).await {
            Ok(()) => break,
            Err(ClientError::NoRoute { .. }) => {
                if !told {
                    eprintln!(
                        "topic {topic} does not exist yet: waiting for it (send to it, or \
                         `rocketraft topic create {topic}`); Ctrl-C stops"
                    );
                    told = true;
                }
                tokio::select! {
                    biased;
                    _ = &mut stop => {
                        consumer.shutdown().await;
                        return Ok(());
                    }
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
            Err(e) => {
                consumer.shutdown().await;
                return Err(e.into());
            }
        }
    }
    eprintln!("consuming {topic} ({tags}) as group {group}; Ctrl-C stops");
    let mut printed = 0u64;
    let mut result = Ok(());
    let mut closed = false;
    while !closed && count.is_none_or(|n| printed < n) {
        let msgs = tokio::select! {
            biased;
            _ = &mut stop => break,
            polled = consumer.poll(1_000) => polled,
        };
        let msgs = match msgs {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "poll failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        for m in &msgs {
            if count.is_some_and(|n| printed >= n) {
                // Leave the rest for the next run: commit only what was printed.
                if let Err(e) = consumer.seek(&m.queue, m.queue_offset) {
                    result = Err(e.into());
                }
                break;
            }
            let line = if target.json {
                admin::message_json(m).to_string()
            } else {
                format!(
                    "{}#{} offset={} msgId={} tags={} keys={} body={}",
                    m.queue.broker_name,
                    m.queue.queue_id,
                    m.queue_offset,
                    m.msg_id().unwrap_or("-"),
                    m.tags().unwrap_or("-"),
                    m.keys().unwrap_or("-"),
                    admin::body_text(&m.body)
                )
            };
            if !emit(&line) {
                // Nobody reads any more: keep this message for the next run, and stop.
                let _ = consumer.seek(&m.queue, m.queue_offset);
                closed = true;
                break;
            }
            printed += 1;
        }
        if !msgs.is_empty() {
            if let Err(e) = consumer.commit().await {
                tracing::warn!(error = %e, "offset commit failed; the next commit retries");
            }
        }
    }
    if let Err(e) = consumer.commit().await {
        result = result.and(Err(anyhow::Error::new(e).context("committing offsets")));
    }
    consumer.shutdown().await;
    eprintln!("consumed {printed} message(s)");
    result
}

async fn namesrv(config: NamesrvConfig, metrics_listen: String) -> anyhow::Result<()> {
    init_logging("info");
    let listen = config.listen.clone();
    if let Some(file) = &config.acl_file {
        // Read here so that a bad file is reported as such, not as a port problem.
        rocketraft_remoting::acl::Acl::read(file)?;
    }
    let ns = NameServer::start(config).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot listen on {listen}: {e}; {}",
            rocketraft::serve::bind_hint(e.kind(), "--listen")
        )
    })?;
    let metrics = tokio::net::TcpListener::bind(&metrics_listen).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot listen on {metrics_listen}: {e}; {}",
            rocketraft::serve::bind_hint(e.kind(), "--metrics-listen")
        )
    })?;
    let hub = rocketraft_metrics::Hub::new();
    hub.add(Vec::new(), &ns.metrics());
    let metrics = rocketraft::metrics::serve(metrics, hub)?;
    let stop = stop_signal();
    tracing::info!(addr = %ns.local_addr(), "rocketraft namesrv: ready");
    say!(
        "rocketraft namesrv: ready on {}; metrics on http://{}/metrics",
        ns.local_addr(),
        metrics.local_addr()
    );
    stop.await;
    tracing::info!("rocketraft namesrv: stopping");
    ns.shutdown();
    say!("rocketraft namesrv: stopped");
    Ok(())
}

async fn dashboard(listen: String, allow_host: Vec<String>, target: Target) -> anyhow::Result<()> {
    init_logging("warn");
    let listener = tokio::net::TcpListener::bind(&listen).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot listen on {listen}: {e}; {}",
            rocketraft::serve::bind_hint(e.kind(), "--listen")
        )
    })?;
    let admin = std::sync::Arc::new(Admin::start(target.client()?).await?);
    let dashboard = rocketraft::dashboard::Dashboard::start(listener, admin, allow_host)?;
    say!(
        "rocketraft dashboard: ready on http://{}/ for the cluster at {} (Ctrl-C stops)",
        dashboard.local_addr(),
        target.namesrv
    );
    stop_signal().await;
    drop(dashboard);
    Ok(())
}

async fn broker(setup: BrokerSetup) -> anyhow::Result<()> {
    init_logging("info");
    let f = &setup.file;
    let (replica, metrics) = setup.start().await?;
    let stop = stop_signal();
    let node = f.raft.node_id;
    say!(
        "rocketraft broker: {} replica {node} of cluster {}: clients on {}, Raft on {}, metrics on http://{}/metrics, data in {}; ready",
        f.broker_name,
        f.cluster_name,
        replica.broker.local_addr(),
        f.raft_addr().unwrap_or_default(),
        metrics.local_addr(),
        setup.store_dir.display()
    );
    let fatal = tokio::select! {
        biased;
        _ = stop => None,
        why = replica.stopped_on_fatal() => Some(why),
        _ = replica.removed() => {
            say!("rocketraft broker: replica {node} was removed from {}; unregistering and stopping", f.broker_name);
            None
        }
    };
    if let Some(why) = fatal {
        // Exit non-zero, so a supervisor (systemd's Restart=on-failure) starts it again.
        say!("rocketraft broker: replica {node} stopped on a fatal error: {why}; unregistering");
        replica.shutdown().await;
        anyhow::bail!(
            "replica {node} of {} stopped on a fatal error: {why} (the log above has the cause; \
             restart once it is fixed)",
            f.broker_name
        );
    }
    say!("rocketraft broker: stopping (unregistering, syncing files)");
    replica.shutdown().await;
    say!("rocketraft broker: stopped");
    Ok(())
}

async fn dev(config: DevConfig) -> anyhow::Result<()> {
    init_logging("info");
    let data_dir = config.data_dir.clone();
    let acl_file = config.acl.as_ref().map(|a| a.file.clone());
    let cluster = DevCluster::start(config).await?;
    if !cluster.wait_ready(Duration::from_secs(30)).await {
        cluster.shutdown().await;
        anyhow::bail!("the broker group elected no master within 30 s: see the log above");
    }
    let mut stop = std::pin::pin!(stop_signal());
    let mut cluster = cluster;
    let leader = cluster.leader();
    say!("NameServer   {}", cluster.namesrv_addr());
    for (id, addr) in cluster.broker_addrs() {
        let role = if Some(*id) == leader { "leader (master)" } else { "follower (slave)" };
        say!("broker-a-{id}   {addr}   {role}");
    }
    say!("data         {}", data_dir.display());
    if let Some(file) = acl_file {
        say!("acl          {} (every request must be signed)", file.display());
    }
    if let Some(ca) = cluster.tls_ca_file() {
        say!("tls          clients trust {} (--tls-ca); Raft is mutual TLS", ca.display());
    }
    say!(
        "rocketraft dev: ready; clients use the NameServer {}; metrics on http://{}/metrics (Ctrl-C stops)",
        cluster.namesrv_addr(),
        cluster.metrics_addr()
    );
    loop {
        tokio::select! {
            biased;
            _ = &mut stop => break,
            (id, why) = cluster.next_fatal() => {
                // The others go on (a majority still serves); this one is stopped and
                // unregistered, and stays down until `rocketraft dev` is started again.
                say!(
                    "rocketraft dev: replica broker-a-{id} stopped on a fatal error: {why}; the \
                     group goes on with the others ({} running)",
                    cluster.running().len() - 1
                );
                cluster.stop_replica(id).await;
            }
        }
    }
    say!("rocketraft dev: stopping");
    cluster.shutdown().await;
    say!("rocketraft dev: stopped");
    Ok(())
}

/// Parses the command line; a mistake is one line naming it and where the options are listed
/// (clap's own help and version output are printed as they are).
fn parse() -> Result<Cli, ExitCode> {
    use clap::error::ErrorKind;
    match Cli::try_parse() {
        Ok(cli) => Ok(cli),
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            e.exit()
        }
        Err(e) if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            Err(ExitCode::from(2))
        }
        Err(e) => {
            let text = e.render().to_string();
            let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
            let mut first = lines.next().unwrap_or("error: invalid arguments").to_owned();
            if first.ends_with(':') {
                // "the following required arguments were not provided:" then one per line.
                let what: Vec<&str> = lines
                    .clone()
                    .take_while(|l| l.starts_with('<') || l.starts_with("--"))
                    .collect();
                first = format!("{first} {}", what.join(", "));
            }
            let tip = lines
                .find_map(|l| l.strip_prefix("tip: "))
                .map(|t| format!("; {t}"))
                .unwrap_or_default();
            eprintln!("{first}{tip} (see `{} --help`)", command_path());
            Err(ExitCode::from(2))
        }
    }
}

/// The subcommand path the user typed, as far as it names real subcommands.
fn command_path() -> String {
    use clap::CommandFactory;
    let mut cmd = Cli::command();
    let mut path = vec!["rocketraft".to_owned()];
    for word in std::env::args_os().skip(1) {
        let Some(word) = word.to_str().map(str::to_owned) else { break };
        match cmd.find_subcommand(&word) {
            Some(sub) => {
                path.push(word);
                cmd = sub.clone();
            }
            None => break,
        }
    }
    path.join(" ")
}

/// The error and its causes on one line, each cause once (many of our errors already quote
/// their source in their own message).
fn one_sentence(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !text.contains(&c) {
            text.push_str(": ");
            text.push_str(&c);
        }
    }
    text.replace('\n', " ")
}

fn main() -> ExitCode {
    let cli = match parse() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_sentence(&e));
            ExitCode::FAILURE
        }
    }
}
