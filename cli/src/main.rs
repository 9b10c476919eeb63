//! `rocketraft`: the one binary a user meets. Today it decodes RocketMQ message ids; the
//! cluster commands (dev, namesrv, broker, admin, send/consume, bench) arrive with their
//! issues.
//!
//! Errors are one sentence on stderr and a non-zero exit code, never a stack trace.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use rocketraft_protocol::message::decode_offset_msg_id;

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

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
