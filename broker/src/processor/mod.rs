//! The broker's processors, one module per request family, each a small struct registered
//! with the remoting server's [`Router`] for its request codes ([`router`] is the table).
//! They reach the replica only through `rocketraft_raft::Replica`.

pub(crate) use std::sync::Arc;

use rocketraft_protocol::body::DataVersion;
use rocketraft_protocol::names::{self};
pub(crate) use rocketraft_protocol::request_code as rc;
use rocketraft_protocol::{response_code, CommandHeader, RemotingCommand};
use rocketraft_raft::types::TopicMeta;
use rocketraft_raft::{MetaCommand, MetaStore, ProposeError};
pub(crate) use rocketraft_remoting::{Answer, Peer, Processor, Router};
use rocketraft_store::io::Storage;

use crate::server::Inner;

pub(crate) mod admin;
pub(crate) mod clients;
pub(crate) mod cluster;
pub(crate) mod end_transaction;
pub(crate) mod inspect;
pub(crate) mod lookup;
pub(crate) mod offsets;
pub(crate) mod pull;
pub(crate) mod reply;
pub(crate) mod send;
pub(crate) mod send_back;
pub(crate) mod stats;
#[cfg(all(test, not(madsim)))]
mod testing;

/// The broker's processor table: every request code it answers, and who answers it.
pub(crate) fn router<S: Storage + Clone, M: MetaStore>(inner: &Arc<Inner<S, M>>) -> Router {
    Router::new()
        .register(send::SendProcessor::<S, M>::CODES, Arc::new(send::SendProcessor(inner.clone())))
        .register(
            reply::ReplyProcessor::<S, M>::CODES,
            Arc::new(reply::ReplyProcessor(inner.clone())),
        )
        .register(
            send_back::SendBackProcessor::<S, M>::CODES,
            Arc::new(send_back::SendBackProcessor(inner.clone())),
        )
        .register(pull::PullProcessor::<S, M>::CODES, Arc::new(pull::PullProcessor(inner.clone())))
        .register(
            offsets::OffsetsProcessor::<S, M>::CODES,
            Arc::new(offsets::OffsetsProcessor(inner.clone())),
        )
        .register(
            admin::AdminProcessor::<S, M>::CODES,
            Arc::new(admin::AdminProcessor(inner.clone())),
        )
        .register(
            lookup::LookupProcessor::<S, M>::CODES,
            Arc::new(lookup::LookupProcessor(inner.clone())),
        )
        .register(
            clients::ClientsProcessor::<S, M>::CODES,
            Arc::new(clients::ClientsProcessor(inner.clone())),
        )
        .register(
            stats::StatsProcessor::<S, M>::CODES,
            Arc::new(stats::StatsProcessor(inner.clone())),
        )
        .register(
            inspect::InspectProcessor::<S, M>::CODES,
            Arc::new(inspect::InspectProcessor(inner.clone())),
        )
        .register(
            end_transaction::EndTransactionProcessor::<S, M>::CODES,
            Arc::new(end_transaction::EndTransactionProcessor(inner.clone())),
        )
        .register(
            cluster::ClusterProcessor::<S, M>::CODES,
            Arc::new(cluster::ClusterProcessor(inner.clone())),
        )
}

/// A code routed to a processor that does not answer it (a table and a processor that
/// disagree): answered as an unknown code is.
pub(crate) fn unsupported(req: &RemotingCommand) -> RemotingCommand {
    reply(
        req,
        response_code::REQUEST_CODE_NOT_SUPPORTED,
        format!(" request type {} not supported", req.code),
    )
}

pub(crate) fn reply(
    req: &RemotingCommand,
    code: i32,
    remark: impl Into<String>,
) -> RemotingCommand {
    RemotingCommand::response_to(req, code, Some(remark.into()))
}

/// Whether the store admits a new write of about `bytes` (a send, a message sent back, a
/// committed transaction's copy): the largest payload one proposal may carry, or the answer
/// to refuse it with (SERVICE_NOT_AVAILABLE: the disk is at its usage limit, or a sync failed).
pub(crate) fn admit<S: Storage + Clone, M: MetaStore>(
    inner: &Inner<S, M>,
    req: &RemotingCommand,
    bytes: usize,
) -> Result<usize, RemotingCommand> {
    inner.replica.admit_new_writes(bytes as u64).map_err(|e| {
        let r = crate::admission::store_refuses(&e);
        reply(req, r.code, r.remark)
    })
}

/// A request refused for a limit or for naming what does not exist: its answer, logged at most
/// once per interval (with a count of the others) so a misbehaving client cannot flood the log.
pub(crate) fn limited<S: Storage + Clone, M: MetaStore>(
    inner: &Inner<S, M>,
    req: &RemotingCommand,
    code: i32,
    remark: impl Into<String>,
) -> RemotingCommand {
    logged(inner, reply(req, code, remark))
}

/// [`limited`] for an answer already made.
pub(crate) fn logged<S: Storage + Clone, M: MetaStore>(
    inner: &Inner<S, M>,
    answer: RemotingCommand,
) -> RemotingCommand {
    if let Some(unlogged) = inner.refusals.due() {
        let remark = answer.remark.as_deref().unwrap_or_default();
        tracing::warn!(
            code = answer.code,
            refused_since_last_line = unlogged,
            "refused a request: {remark}"
        );
    }
    answer
}

/// Maps an internal error (storage, metadata) to SYSTEM_ERROR with its message as the remark.
pub(crate) fn system_error<E: std::fmt::Display>(
    req: &RemotingCommand,
) -> impl Fn(E) -> RemotingCommand + '_ {
    move |e| reply(req, response_code::SYSTEM_ERROR, e.to_string())
}

pub(crate) fn header<H: CommandHeader>(req: &RemotingCommand) -> Result<H, RemotingCommand> {
    req.decode_header::<H>().map_err(system_error(req))
}

/// Checks a topic and a group a request names against RocketMQ's rules (`names`): a name that
/// fails is answered SYSTEM_ERROR with RocketMQ's remark and never reaches Raft or a file name.
pub(crate) fn check_names(
    req: &RemotingCommand,
    topic: Option<&str>,
    group: Option<&str>,
) -> Result<(), RemotingCommand> {
    let bad = |e: names::NameError| reply(req, response_code::SYSTEM_ERROR, e.to_string());
    if let Some(t) = topic {
        names::check_topic(t).map_err(bad)?;
    }
    if let Some(g) = group {
        names::check_group(g).map_err(bad)?;
    }
    Ok(())
}

/// Whether this replica serves as its group's master: it leads, with current state
/// (`leads_with_current_state`: an entry of its own term applied).
pub(crate) fn is_leader<S: Storage + Clone, M: MetaStore>(inner: &Inner<S, M>) -> bool {
    inner.replica.is_master()
}

/// How long a newly elected leader's requests wait for its state to become current before it
/// answers as a follower would (the proposer waits as long before its first send).
pub(crate) const MASTER_CATCH_UP_MS: u64 = 3_000;

/// [`is_leader`], waiting out a new leader's catch-up: a replica that was just elected answers
/// once its state holds everything committed before, not from an older state (a restarted
/// replica rebuilds its applied state from its log, and must not serve a consumer an offset
/// or a queue end older than one already served).
pub(crate) async fn master_ready<S: Storage + Clone, M: MetaStore>(inner: &Inner<S, M>) -> bool {
    inner.replica.master_ready(MASTER_CATCH_UP_MS).await
}

pub(crate) fn not_master<S: Storage + Clone, M: MetaStore>(
    req: &RemotingCommand,
    inner: &Inner<S, M>,
) -> RemotingCommand {
    // SERVICE_NOT_AVAILABLE is retried on another broker by every RocketMQ producer.
    reply(
        req,
        response_code::SERVICE_NOT_AVAILABLE,
        format!(
            "this replica of {} is not its master; send to the master",
            inner.config.broker_name
        ),
    )
}

pub(crate) fn topic_of<S: Storage + Clone, M: MetaStore>(
    req: &RemotingCommand,
    inner: &Inner<S, M>,
    topic: &str,
) -> Result<TopicMeta, RemotingCommand> {
    match inner.replica.metadata().topic(topic) {
        Ok(Some(t)) => Ok(t),
        Ok(None) => Err(reply(
            req,
            response_code::TOPIC_NOT_EXIST,
            format!("topic[{topic}] not exist, apply first please!"),
        )),
        Err(e) => Err(reply(req, response_code::SYSTEM_ERROR, e.to_string())),
    }
}

/// The answer to a proposal Raft did not take: NOT_MASTER-like for a lost leadership,
/// SYSTEM_BUSY (RocketMQ's overload remark) for a full proposer, SYSTEM_ERROR otherwise.
pub(crate) fn proposal_refused<S: Storage + Clone, M: MetaStore>(
    req: &RemotingCommand,
    inner: &Inner<S, M>,
    e: ProposeError,
) -> RemotingCommand {
    match e {
        ProposeError::NotLeader { .. } => not_master(req, inner),
        ProposeError::Overloaded => {
            reply(req, response_code::SYSTEM_BUSY, rocketraft_remoting::server::OVERLOAD_REMARK)
        }
        e => reply(req, response_code::SYSTEM_ERROR, e.to_string()),
    }
}

/// Replicates metadata commands through Raft and answers SUCCESS once they are committed and
/// applied on the leader; followers answer NOT_MASTER with the leader's address.
pub(crate) async fn propose_metadata<S: Storage + Clone, M: MetaStore>(
    req: &RemotingCommand,
    inner: &Inner<S, M>,
    commands: Vec<MetaCommand>,
) -> Result<RemotingCommand, RemotingCommand> {
    if !master_ready(inner).await {
        return Err(not_master(req, inner));
    }
    match inner.replica.propose_metadata(commands).await {
        Ok(()) => Ok(RemotingCommand::response_to(req, response_code::SUCCESS, None)),
        Err(ProposeError::NotLeader { .. }) => Err(not_master(req, inner)),
        Err(e) => Err(reply(req, response_code::SYSTEM_ERROR, e.to_string())),
    }
}

/// A topic of one readable, writable queue: how RocketMQ creates a group's retry and
/// dead-letter topics, a cluster's reply topic and the transaction discard topic.
pub(crate) fn single_queue_topic(name: String) -> TopicMeta {
    TopicMeta {
        name,
        read_queue_nums: 1,
        write_queue_nums: 1,
        perm: rocketraft_protocol::code::perm::READ | rocketraft_protocol::code::perm::WRITE,
        topic_sys_flag: 0,
        order: false,
        filter_type: "SINGLE_TAG".into(),
    }
}

/// The version stamped on metadata tables: the Raft index they were read at.
pub(crate) fn data_version<S: Storage + Clone, M: MetaStore>(inner: &Inner<S, M>) -> DataVersion {
    let applied = inner.replica.applied_index();
    DataVersion { counter: applied as i64, timestamp: applied as i64, ..Default::default() }
}
