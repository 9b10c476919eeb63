//! `rocketraft`: the one binary a user meets. `dev` runs a whole cluster in one process;
//! `msgid` decodes RocketMQ message ids. The production processes (namesrv, broker), admin,
//! send/consume and bench arrive with the CLI issue.
//!
//! Errors are one sentence on stderr and a non-zero exit code, never a stack trace.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use rocketraft::dev::{DevCluster, DevConfig};
use rocketraft_protocol::message::decode_offset_msg_id;
use rocketraft_store::flush::FlushMode;

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

#[derive(Subcommand)]
enum Command {
    /// Run a development cluster in this process: a NameServer and one broker group of three
    /// replicas on loopback, data under --data-dir. Stops cleanly on Ctrl-C or SIGTERM.
    Dev {
        /// Where the replicas keep their files (created if missing; reused on restart).
        #[arg(long, default_value = "rocketraft-data")]
        data_dir: std::path::PathBuf,
        /// The NameServer's port (clients connect here).
        #[arg(long, default_value_t = 9876)]
        namesrv_port: u16,
        /// Replica i serves clients on this port + 10 * i.
        #[arg(long, default_value_t = 10911)]
        broker_port: u16,
        /// Replica i talks Raft on this port + i.
        #[arg(long, default_value_t = 40911)]
        raft_port: u16,
        /// "sync": a send is acknowledged once on a majority's disks; "async": once written,
        /// synced every 500 ms.
        #[arg(long, default_value = "sync")]
        flush: String,
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

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Dev { data_dir, namesrv_port, broker_port, raft_port, flush } => {
            let flush = match flush.as_str() {
                "sync" => FlushMode::Sync,
                "async" => FlushMode::Async { interval_ms: 500 },
                other => anyhow::bail!("--flush {other:?}: use sync or async"),
            };
            let config = DevConfig {
                data_dir,
                namesrv_port,
                broker_port,
                raft_port,
                flush,
                ..Default::default()
            };
            runtime()?.block_on(dev(config))?;
        }
        Command::Msgid { id, json } => {
            let (host, offset) = decode_offset_msg_id(id.trim())
                .with_context(|| format!("{id:?} is not an offset message id"))?;
            if json {
                let v =
                    serde_json::json!({ "storeHost": host.to_string(), "commitLogOffset": offset });
                println!("{v}");
            } else {
                println!("store host:       {host}");
                println!("commitlog offset: {offset}");
            }
        }
    }
    Ok(())
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Logs to stderr, `RUST_LOG` filtered (default: our info lines, openraft's errors only).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=error"));
    let _ =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

/// Resolves on Ctrl-C or SIGTERM.
async fn stop_signal() {
    // madsim has no unix signals (the binary never runs under it; only clippy builds it).
    #[cfg(all(unix, not(madsim)))]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
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

async fn dev(config: DevConfig) -> anyhow::Result<()> {
    init_logging();
    let data_dir = config.data_dir.clone();
    let cluster = DevCluster::start(config).await?;
    if !cluster.wait_ready(std::time::Duration::from_secs(30)).await {
        cluster.shutdown().await;
        anyhow::bail!("the broker group elected no master within 30 s: see the log above");
    }
    let leader = cluster.leader();
    println!("NameServer   {}", cluster.namesrv_addr());
    for (id, addr) in cluster.broker_addrs() {
        let role = if Some(*id) == leader { "leader (master)" } else { "follower (slave)" };
        println!("broker-a-{id}   {addr}   {role}");
    }
    println!("data         {}", data_dir.display());
    println!(
        "rocketraft dev: ready; clients use the NameServer {} (Ctrl-C stops)",
        cluster.namesrv_addr()
    );
    stop_signal().await;
    println!("rocketraft dev: stopping");
    cluster.shutdown().await;
    println!("rocketraft dev: stopped");
    Ok(())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
