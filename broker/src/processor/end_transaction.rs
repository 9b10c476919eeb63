//! END_TRANSACTION: a producer (on its own, or answering a check-back) commits or rolls back a
//! transaction half message. See [`crate::transaction`] for how a resolution is replicated.
//! Java producers send it oneway; the answer is for the others. Also GET_UNRESOLVED_HALVES,
//! the half messages still waiting (for `rocketraft transactions`).

use rocketraft_protocol::body::{JsonBody, JsonStyle, UnresolvedHalves};
use rocketraft_protocol::headers::{EndTransactionRequestHeader, UnresolvedHalvesRequestHeader};
use rocketraft_protocol::message::{offset_msg_id, property, RecordView};
use rocketraft_protocol::names::TRANS_HALF_TOPIC;
use rocketraft_protocol::sysflag::message as msgflag;
use rocketraft_protocol::{response_code, RemotingCommand};
use rocketraft_raft::{HalfOutcome, MetaCommand, MetaStore};
use rocketraft_remoting::acl::resources::Perm;
use rocketraft_store::io::Storage;
use rocketraft_store::CommitLogOffset;

use crate::server::{group_now_ms, Inner};
use crate::transaction::{commit_record, real_place, state_is_current};

use super::*;

/// END_TRANSACTION.
pub(crate) struct EndTransactionProcessor<S: Storage + Clone, M: MetaStore>(
    pub(crate) Arc<Inner<S, M>>,
);

impl<S: Storage + Clone, M: MetaStore> EndTransactionProcessor<S, M> {
    pub(crate) const CODES: &'static [i32] = &[rc::END_TRANSACTION, rc::GET_UNRESOLVED_HALVES];
}

impl<S: Storage + Clone, M: MetaStore> Processor for EndTransactionProcessor<S, M> {
    fn process(&self, req: RemotingCommand, peer: Peer) -> Answer<'_> {
        Box::pin(async move {
            match req.code {
                rc::END_TRANSACTION => end_transaction(&req, peer, &self.0).await,
                rc::GET_UNRESOLVED_HALVES => unresolved_halves(&req, &self.0),
                _ => Ok(unsupported(&req)),
            }
            .unwrap_or_else(|e| e)
        })
    }
}

/// The most halves one GET_UNRESOLVED_HALVES returns.
const LIST_MAX: i32 = 10_000;

fn unresolved_halves<S: Storage + Clone, M: MetaStore>(
    req: &RemotingCommand,
    inner: &Inner<S, M>,
) -> Result<RemotingCommand, RemotingCommand> {
    let h: UnresolvedHalvesRequestHeader = header(req)?;
    let max = h.max.unwrap_or(1_000).clamp(1, LIST_MAX) as usize;
    let nonempty = |s: &Option<String>| s.as_deref().filter(|s| !s.is_empty()).map(str::to_owned);
    let (topic, group) = (nonempty(&h.topic), nonempty(&h.producer_group));
    let (halves, more) =
        crate::transaction::unresolved(inner, topic.as_deref(), group.as_deref(), max)
            .map_err(system_error(req))?;
    let body = UnresolvedHalves { halves, more };
    Ok(RemotingCommand::response_to(req, response_code::SUCCESS, None)
        .with_body(body.to_json(JsonStyle::Standard)))
}

/// Commit or rollback, as the request's `commitOrRollback` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    Commit,
    RollBack,
}

fn wrong(req: &RemotingCommand, remark: impl Into<String>) -> RemotingCommand {
    reply(req, response_code::SYSTEM_ERROR, remark)
}

async fn end_transaction<S: Storage + Clone, M: MetaStore>(
    req: &RemotingCommand,
    peer: Peer,
    inner: &Inner<S, M>,
) -> Result<RemotingCommand, RemotingCommand> {
    let h: EndTransactionRequestHeader = header(req)?;
    #[allow(unused_mut)] // changed only by the simulation's planted bug
    let mut decision = match h.commit_or_rollback {
        msgflag::TRANSACTION_COMMIT => Decision::Commit,
        msgflag::TRANSACTION_ROLLBACK => Decision::RollBack,
        msgflag::TRANSACTION_NOT_TYPE => {
            // The producer does not know yet: the check-back will ask again.
            tracing::debug!(group = %h.producer_group, id = %h.msg_id, "transaction state unknown");
            return Ok(RemotingCommand::response_to(req, response_code::SUCCESS, None));
        }
        other => return Err(wrong(req, format!("commitOrRollback {other} is not 0, 8 or 12"))),
    };
    #[cfg(madsim)]
    if inner.config.sim_bug_tx_check_answer_commits && h.from_transaction_check == Some(true) {
        decision = Decision::Commit;
    }
    if !state_is_current(inner).await {
        return Err(not_master(req, inner));
    }
    let not_found = || wrong(req, "Find prepared transaction message failed");
    let position = u64::try_from(h.commit_log_offset).map_err(|_| not_found())?;
    let raw = inner.replica.record_at(CommitLogOffset(position)).map_err(|_| not_found())?;
    let half = RecordView::decode(&raw).map_err(|_| not_found())?;
    let Some((real_topic, _)) = real_place(&half).filter(|_| half.topic == TRANS_HALF_TOPIC) else {
        return Err(not_found());
    };
    // The request names the half only by offsets: with ACL on, ending it needs PUB on the
    // topic it is bound for (what sending it needed).
    if let Some(acl) = &inner.acl {
        acl.permits(req, peer.addr.ip(), real_topic, Perm::Pub)
            .map_err(|remark| reply(req, response_code::NO_PERMISSION, remark))?;
    }
    // RocketMQ's checks of the request against the half message it names.
    if half.property(property::PGROUP) != Some(h.producer_group.as_str()) {
        return Err(wrong(req, "The producer group wrong"));
    }
    if half.queue_offset != h.tran_state_table_offset {
        return Err(wrong(req, "The transaction state table offset wrong"));
    }
    if half.physical_offset != h.commit_log_offset {
        return Err(wrong(req, "The commit log offset wrong"));
    }
    let offset_id = offset_msg_id(half.store_host, half.physical_offset);
    if !h.msg_id.is_empty()
        && half.property(property::UNIQ_KEY) != Some(h.msg_id.as_str())
        && !h.msg_id.eq_ignore_ascii_case(&offset_id)
    {
        return Err(wrong(req, "The message id wrong"));
    }
    let offset = half.queue_offset as u64;
    let Some(_held) = inner.resolving.hold(offset) else {
        return Err(reply(
            req,
            response_code::SYSTEM_BUSY,
            "this transaction is being resolved by another request; try again",
        ));
    };
    let done = inner.replica.metadata().half_outcome(offset).map_err(system_error(req))?;
    #[cfg(madsim)]
    let done = done.filter(|_| !inner.config.sim_bug_tx_end_unchecked);
    if let Some(outcome) = done {
        return match (outcome, decision) {
            (HalfOutcome::Committed, Decision::Commit)
            | (HalfOutcome::RolledBack, Decision::RollBack)
            | (HalfOutcome::Forgotten, _) => Ok(RemotingCommand::response_to(
                req,
                response_code::SUCCESS,
                Some(format!(
                    "the transaction was already resolved ({outcome:?}); nothing changed"
                )),
            )),
            (outcome, _) => Err(wrong(
                req,
                format!("the transaction was already resolved ({outcome:?}); nothing changed"),
            )),
        };
    }
    let proposed = match decision {
        Decision::Commit => {
            let (topic, _) = real_place(&half).ok_or_else(not_found)?;
            topic_of(req, inner, topic)?;
            let record = commit_record(&half, group_now_ms(inner), inner.config.advertised_addr)
                .map_err(system_error(req))?;
            // A commit the disk cannot take now is resolved later, by the next check-back.
            admit(inner, req, record.len())?;
            inner.replica.propose(vec![record]).await.map(|_| ())
        }
        Decision::RollBack => {
            let command = MetaCommand::RollBackHalf { half_offset: offset };
            inner.replica.propose_metadata(vec![command]).await
        }
    };
    match proposed {
        Ok(()) => Ok(RemotingCommand::response_to(req, response_code::SUCCESS, None)),
        Err(e) => Err(proposal_refused(req, inner, e)),
    }
}

#[cfg(all(test, not(madsim)))]
mod tests {
    use rocketraft_protocol::headers::{
        PullMessageRequestHeader, SendMessageRequestHeader, SendMessageRequestHeaderV2,
        SendMessageResponseHeader,
    };
    use rocketraft_protocol::message::{decode_offset_msg_id, properties_to_string};
    use rocketraft_protocol::sysflag::message as msgflag;

    use super::super::pull::PullProcessor;
    use super::super::send::SendProcessor;
    use super::super::testing::{request, OneReplica};
    use super::*;

    /// A half message to queue 0 of `topic`: (queue offset, CommitLog offset, UNIQ_KEY).
    async fn half(r: &OneReplica, topic: &str, uniq: &str) -> (i64, i64) {
        let props =
            properties_to_string([("TRAN_MSG", "true"), ("PGROUP", "PG"), ("UNIQ_KEY", uniq)]);
        let h = SendMessageRequestHeader {
            producer_group: "PG".into(),
            topic: topic.into(),
            sys_flag: msgflag::TRANSACTION_PREPARED,
            properties: Some(props),
            ..Default::default()
        };
        let req = request(rc::SEND_MESSAGE_V2, SendMessageRequestHeaderV2::from(h))
            .with_body(b"half".to_vec());
        let answer = r.call(&SendProcessor(r.inner.clone()), req).await;
        assert_eq!(answer.code, response_code::SUCCESS, "{:?}", answer.remark);
        let h: SendMessageResponseHeader = answer.decode_header().unwrap();
        (h.queue_offset, decode_offset_msg_id(&h.msg_id).unwrap().1)
    }

    fn end(
        group: &str,
        queue_offset: i64,
        position: i64,
        msg_id: &str,
        how: i32,
    ) -> RemotingCommand {
        let h = EndTransactionRequestHeader {
            producer_group: group.into(),
            tran_state_table_offset: queue_offset,
            commit_log_offset: position,
            commit_or_rollback: how,
            from_transaction_check: Some(false),
            msg_id: msg_id.into(),
            transaction_id: None,
        };
        request(rc::END_TRANSACTION, h)
    }

    async fn visible(r: &OneReplica, topic: &str) -> usize {
        let h = PullMessageRequestHeader {
            consumer_group: "CG".into(),
            topic: topic.into(),
            max_msg_nums: 32,
            ..Default::default()
        };
        let answer = r.call(&PullProcessor(r.inner.clone()), request(rc::PULL_MESSAGE, h)).await;
        if answer.code != response_code::SUCCESS {
            return 0;
        }
        rocketraft_protocol::message::decode_records(&answer.body).unwrap().len()
    }

    #[tokio::test]
    async fn end_transaction_checks_what_it_names_and_resolves_a_half_once() {
        let r = OneReplica::start().await;
        r.topic("T").await;
        let (q, pos) = half(&r, "T", "U1").await;
        assert_eq!(visible(&r, "T").await, 0, "a half is not consumable");
        let p = EndTransactionProcessor(r.inner.clone());
        let waiting = |topic: &str| {
            let h = UnresolvedHalvesRequestHeader {
                topic: Some(topic.into()),
                producer_group: None,
                max: None,
            };
            request(rc::GET_UNRESOLVED_HALVES, h)
        };
        let list = r.call(&p, waiting("T")).await;
        let list = UnresolvedHalves::from_json(&list.body).unwrap();
        assert_eq!(list.halves.len(), 1);
        let w = &list.halves[0];
        assert_eq!((w.half_offset, w.commit_log_offset, w.queue_id), (q, pos, 0));
        assert_eq!((w.producer_group.as_str(), w.msg_id.as_str(), w.check_times), ("PG", "U1", 0));
        let other = UnresolvedHalves::from_json(&r.call(&p, waiting("Other")).await.body).unwrap();
        assert!(other.halves.is_empty());
        let commit = msgflag::TRANSACTION_COMMIT;
        let remark = |a: RemotingCommand| {
            assert_eq!(a.code, response_code::SYSTEM_ERROR, "{:?}", a.remark);
            a.remark.unwrap_or_default()
        };
        let cases = [
            (end("Other", q, pos, "U1", commit), "The producer group wrong"),
            (end("PG", q + 1, pos, "U1", commit), "The transaction state table offset wrong"),
            (end("PG", q, pos + 1, "U1", commit), "Find prepared transaction message failed"),
            (end("PG", q, -1, "U1", commit), "Find prepared transaction message failed"),
            (end("PG", q, pos, "U2", commit), "The message id wrong"),
            (end("PG", q, pos, "U1", 5), "commitOrRollback 5 is not 0, 8 or 12"),
        ];
        for (req, want) in cases {
            assert_eq!(remark(r.call(&p, req).await), want);
        }
        // Unknown changes nothing; a commit makes the message visible, once.
        let unknown = r.call(&p, end("PG", q, pos, "U1", msgflag::TRANSACTION_NOT_TYPE)).await;
        assert_eq!(unknown.code, response_code::SUCCESS);
        assert_eq!(visible(&r, "T").await, 0);
        let ok = r.call(&p, end("PG", q, pos, "U1", commit)).await;
        assert_eq!(ok.code, response_code::SUCCESS, "{:?}", ok.remark);
        assert_eq!(visible(&r, "T").await, 1);
        let again = r.call(&p, end("PG", q, pos, "", commit)).await;
        assert_eq!(again.code, response_code::SUCCESS);
        assert!(again.remark.unwrap_or_default().contains("already resolved"));
        let undo = r.call(&p, end("PG", q, pos, "U1", msgflag::TRANSACTION_ROLLBACK)).await;
        assert!(remark(undo).contains("already resolved (Committed)"));
        assert_eq!(visible(&r, "T").await, 1, "still one message");
        assert_eq!(
            r.inner.replica.metadata().half_outcome(q as u64).unwrap(),
            Some(HalfOutcome::Committed)
        );
        let list = UnresolvedHalves::from_json(&r.call(&p, waiting("T")).await.body).unwrap();
        assert!(list.halves.is_empty(), "resolved: {list:?}");

        // A rollback resolves its half with no message; a plain message is no half.
        let (q2, pos2) = half(&r, "T", "U3").await;
        let back = r.call(&p, end("PG", q2, pos2, "U3", msgflag::TRANSACTION_ROLLBACK)).await;
        assert_eq!(back.code, response_code::SUCCESS);
        assert_eq!(
            r.inner.replica.metadata().half_outcome(q2 as u64).unwrap(),
            Some(HalfOutcome::RolledBack)
        );
        let plain = r.send("T", "a", "k", "plain").await;
        let h: SendMessageResponseHeader = plain.decode_header().unwrap();
        let (_, plain_pos) = decode_offset_msg_id(&h.msg_id).unwrap();
        let not_half = r.call(&p, end("PG", 1, plain_pos, "", commit)).await;
        assert_eq!(remark(not_half), "Find prepared transaction message failed");
        assert_eq!(visible(&r, "T").await, 2, "the committed one and the plain one, dense");
        drop(p);
        r.stop().await;
    }
}
