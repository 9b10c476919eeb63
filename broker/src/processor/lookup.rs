//! Message lookups: by msgId (VIEW_MESSAGE_BY_ID) and by key or unique key (QUERY_MESSAGE).

use rocketraft_protocol::headers::*;
use rocketraft_protocol::{response_code, RemotingCommand};
use rocketraft_raft::MetaStore;
use rocketraft_store::io::Storage;

use crate::server::Inner;

use super::*;

/// Message lookups by id and by key.
pub(crate) struct LookupProcessor<S: Storage + Clone, M: MetaStore>(pub(crate) Arc<Inner<S, M>>);

impl<S: Storage + Clone, M: MetaStore> LookupProcessor<S, M> {
    pub(crate) const CODES: &'static [i32] = &[rc::VIEW_MESSAGE_BY_ID, rc::QUERY_MESSAGE];
}

impl<S: Storage + Clone, M: MetaStore> Processor for LookupProcessor<S, M> {
    fn process(&self, req: RemotingCommand, _peer: Peer) -> Answer<'_> {
        Box::pin(async move {
            let (req, inner) = (&req, &*self.0);
            match req.code {
                rc::VIEW_MESSAGE_BY_ID => view_message(req, inner),
                rc::QUERY_MESSAGE => query_message(req, inner),
                _ => Err(unsupported(req)),
            }
            .unwrap_or_else(|e| e)
        })
    }
}

/// The record at a CommitLog position (its size is its first field), checked whole.
pub(crate) fn view_message<S: Storage + Clone, M: MetaStore>(
    req: &RemotingCommand,
    inner: &Inner<S, M>,
) -> Result<RemotingCommand, RemotingCommand> {
    let h: ViewMessageRequestHeader = header(req)?;
    let record = u64::try_from(h.offset)
        .map_err(|_| "negative offset".to_owned())
        .and_then(|p| {
            inner.replica.record_at(rocketraft_store::CommitLogOffset(p)).map_err(|e| e.to_string())
        })
        .map_err(|e| {
            reply(
                req,
                response_code::SYSTEM_ERROR,
                format!("can not find message by the offset {}: {e}", h.offset),
            )
        })?;
    Ok(RemotingCommand::response_to(req, response_code::SUCCESS, None).with_body(record))
}

/// The most records one QUERY_MESSAGE by UNIQ_KEY returns (RocketMQ's `defaultQueryMaxNum`).
pub(crate) const UNIQUE_KEY_QUERY_MAX: usize = 32;

/// The most records any QUERY_MESSAGE returns.
pub(crate) const QUERY_MAX: usize = 64;

pub(crate) fn query_message<S: Storage + Clone, M: MetaStore>(
    req: &RemotingCommand,
    inner: &Inner<S, M>,
) -> Result<RemotingCommand, RemotingCommand> {
    use rocketraft_protocol::message::{property, split_keys, RecordView};
    let h: QueryMessageRequestHeader = header(req)?;
    let by_uniq = req.ext_field(UNIQUE_KEY_QUERY).is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let max =
        if by_uniq { UNIQUE_KEY_QUERY_MAX } else { (h.max_num.max(1) as usize).min(QUERY_MAX) };
    let (positions, (last_ts, last_phy)) = inner
        .replica
        .query_key(&h.topic, &h.key, h.begin_timestamp, h.end_timestamp, max)
        .map_err(system_error(req))?;
    let mut body = Vec::new();
    for p in positions {
        let Ok(record) = inner.replica.record_at(p) else { continue };
        let Ok(r) = RecordView::decode(&record) else { continue };
        // The index finds by hash: keep only records that really carry the key.
        let matches = r.topic == h.topic
            && (r.property(property::UNIQ_KEY) == Some(h.key.as_str())
                || r.property(property::KEYS).is_some_and(|k| split_keys(k).any(|k| k == h.key)));
        if matches {
            body.extend_from_slice(&record);
        }
    }
    if body.is_empty() {
        return Err(reply(
            req,
            response_code::QUERY_NOT_FOUND,
            format!("can not find message, maybe time range not correct: key {}", h.key),
        ));
    }
    Ok(RemotingCommand::response_to(req, response_code::SUCCESS, None)
        .with_header(&QueryMessageResponseHeader {
            index_last_update_timestamp: last_ts,
            index_last_update_phyoffset: last_phy,
        })
        .with_body(body))
}

#[cfg(all(test, not(madsim)))]
mod tests {
    use rocketraft_protocol::message::{decode_offset_msg_id, decode_records};

    use super::super::testing::{request, OneReplica};
    use super::*;

    #[tokio::test]
    async fn a_message_is_found_by_its_id_and_by_its_key() {
        let r = OneReplica::start().await;
        r.topic("T").await;
        r.send("T", "a", "k1", "first").await;
        let sent: SendMessageResponseHeader =
            r.send("T", "a", "k2", "second").await.decode_header().unwrap();
        let p = LookupProcessor(r.inner.clone());

        let (_, offset) = decode_offset_msg_id(&sent.msg_id).unwrap();
        let by_id =
            r.call(&p, request(rc::VIEW_MESSAGE_BY_ID, ViewMessageRequestHeader { offset })).await;
        assert_eq!(by_id.code, response_code::SUCCESS, "{:?}", by_id.remark);
        assert_eq!(decode_records(&by_id.body).unwrap()[0].body, b"second");

        let nowhere = request(rc::VIEW_MESSAGE_BY_ID, ViewMessageRequestHeader { offset: 1 << 40 });
        assert_ne!(r.call(&p, nowhere).await.code, response_code::SUCCESS);

        let by_key = QueryMessageRequestHeader {
            topic: "T".into(),
            key: "k1".into(),
            max_num: 32,
            begin_timestamp: 0,
            end_timestamp: i64::MAX,
        };
        let found = r.call(&p, request(rc::QUERY_MESSAGE, by_key)).await;
        assert_eq!(found.code, response_code::SUCCESS, "{:?}", found.remark);
        let bodies: Vec<_> =
            decode_records(&found.body).unwrap().iter().map(|m| m.body.to_vec()).collect();
        assert_eq!(bodies, [b"first".to_vec()]);
        drop(p);
        r.stop().await;
    }
}
