//! The transactional producer (RocketMQ's `TransactionMQProducer`).
//!
//! [`TransactionProducer::send`] sends a half message (the broker stores it where no consumer
//! sees it), runs the listener's local transaction, and tells the broker the outcome with
//! END_TRANSACTION: commit makes the message visible in its topic, rollback drops it. If the
//! broker never hears the outcome (the producer crashed, the answer was lost, or the local
//! transaction said [`TransactionState::Unknown`]), the broker's master asks a producer of the
//! same group later (CHECK_TRANSACTION_STATE), and the listener's [`TransactionListener::check`]
//! answers it. So `check` must be able to answer for any producer of the group: it looks the
//! outcome up in the application's own state (the transaction id is the message's UNIQ_KEY,
//! [`MessageExt::msg_id`]).

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use rocketraft_protocol::headers::{
    CheckTransactionStateRequestHeader, EndTransactionRequestHeader,
};
use rocketraft_protocol::message::{decode_offset_msg_id, property, RecordView};
use rocketraft_protocol::sysflag::message as msgflag;
use rocketraft_protocol::{request_code, RemotingCommand};
use tokio::sync::Semaphore;

use crate::consumer::CatchPanic;
use crate::core::{expect_success, Core};
use crate::error::{ClientError, Result};
use crate::message::{Message, MessageExt};
use crate::producer::{Producer, ProducerConfig, SendResult, SendStatus};

/// Check-backs answered at once, at most (more wait for a turn).
const CHECKS_IN_FLIGHT_MAX: usize = 16;

/// What became of a local transaction (RocketMQ's `LocalTransactionState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionState {
    /// Deliver the message.
    Commit,
    /// Drop the message.
    Rollback,
    /// Not known yet: the broker asks again later (every `transaction_check_interval_ms`, at
    /// most `transaction_check_max` times, then it discards the message).
    Unknown,
}

/// Runs a producer's local transactions and answers the broker's questions about them. A
/// listener that panics is taken as having answered [`TransactionState::Unknown`].
pub trait TransactionListener: Send + Sync + 'static {
    /// Runs the local transaction of `msg`, whose half message the broker stored (`sent`).
    fn execute_local(
        &self,
        msg: &Message,
        sent: &SendResult,
    ) -> impl Future<Output = TransactionState> + Send;

    /// The broker heard no outcome for `msg` (sent by this producer group, perhaps by another
    /// member or an earlier run): what became of its transaction?
    fn check(&self, msg: MessageExt) -> impl Future<Output = TransactionState> + Send;
}

/// A transactional send's result: where the half message went, and the outcome told to the
/// broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionSendResult {
    pub sent: SendResult,
    pub state: TransactionState,
}

/// A producer of transactional messages; cheap to clone.
pub struct TransactionProducer<L: TransactionListener> {
    producer: Producer,
    listener: Arc<L>,
    /// Masters (by address) this producer has introduced itself to since it sent there first.
    greeted: Arc<Mutex<BTreeSet<String>>>,
}

impl<L: TransactionListener> Clone for TransactionProducer<L> {
    fn clone(&self) -> Self {
        TransactionProducer {
            producer: self.producer.clone(),
            listener: self.listener.clone(),
            greeted: self.greeted.clone(),
        }
    }
}

impl<L: TransactionListener> TransactionProducer<L> {
    /// Starts a producer whose group's half messages `listener` answers for.
    pub async fn start(config: ProducerConfig, listener: L) -> Result<Self> {
        let listener = Arc::new(listener);
        // The handler runs on a connection's reader task: it only hands the check to a task.
        let core_slot: Arc<OnceLock<Weak<Core>>> = Arc::default();
        let permits = Arc::new(Semaphore::new(CHECKS_IN_FLIGHT_MAX));
        let handler: crate::remoting::InboundHandler = {
            let (listener, core_slot) = (listener.clone(), core_slot.clone());
            Arc::new(move |addr, req| {
                if req.code == request_code::CHECK_TRANSACTION_STATE {
                    let core = core_slot.get().and_then(Weak::upgrade);
                    if let Some(core) = core {
                        let (listener, permits) = (listener.clone(), permits.clone());
                        let (addr, req) = (addr.to_owned(), req.clone());
                        tokio::spawn(async move {
                            let Ok(_permit) = permits.acquire_owned().await else { return };
                            answer_check(&core, &*listener, &addr, &req).await;
                        });
                    }
                }
                None
            })
        };
        let producer = Producer::start_with(config, Some(handler)).await?;
        let _ = core_slot.set(Arc::downgrade(producer.core()));
        Ok(TransactionProducer { producer, listener, greeted: Arc::default() })
    }

    /// Sends `msg` as a transaction: the half message, then the local transaction, then its
    /// outcome to the broker. A failed half send is an error (nothing was stored, or the
    /// broker will roll it back: no outcome was given); an outcome the broker did not get is
    /// not, since the broker asks for it again (logged).
    pub async fn send(&self, mut msg: Message) -> Result<TransactionSendResult> {
        if msg.properties.contains_key(property::DELAY) {
            // RocketMQ's producers clear it: a half message is never delayed.
            msg.properties.remove(property::DELAY);
        }
        msg.properties.insert(property::TRAN_MSG.to_owned(), "true".to_owned());
        msg.properties.insert(property::PGROUP.to_owned(), self.producer.group().to_owned());
        let started = crate::clock::instant();
        let sent = self.producer.send(msg.clone()).await?;
        let half_sent = crate::clock::instant();
        // The first half to a master (a new one after a failover too): introduce the producer
        // now, so that the master can check this half (and older ones) back before the next
        // periodic heartbeat.
        let master = self.master_of(&sent).await.unwrap_or_else(|_| sent.queue.broker_name.clone());
        let first = self.greeted.lock().unwrap_or_else(|p| p.into_inner()).insert(master);
        if first {
            self.producer.heartbeat_now().await;
        }
        let state = if sent.status == SendStatus::SendOk {
            CatchPanic(Box::pin(self.listener.execute_local(&msg, &sent)))
                .await
                .unwrap_or(TransactionState::Unknown)
        } else {
            TransactionState::Rollback
        };
        let decided = crate::clock::instant();
        if let Err(e) = self.end(&sent, state).await {
            tracing::warn!(error = %e, id = %sent.msg_id, ?state, "the broker did not take the transaction's outcome; it will ask again");
        }
        tracing::debug!(
            id = %sent.msg_id,
            half_us = (half_sent - started).as_micros() as u64,
            local_us = (decided - half_sent).as_micros() as u64,
            end_us = decided.elapsed().as_micros() as u64,
            "transaction sent"
        );
        Ok(TransactionSendResult { sent, state })
    }

    /// The address of the master of the broker group that stored `sent`, as routed now.
    async fn master_of(&self, sent: &SendResult) -> Result<String> {
        let route = self.producer.core().routes.get(&sent.queue.topic).await?;
        route.master_addr(&sent.queue.broker_name).map(str::to_owned).ok_or_else(|| {
            ClientError::NoRoute { topic: sent.queue.topic.clone(), reason: "no master".into() }
        })
    }

    /// END_TRANSACTION for a half message this producer sent.
    async fn end(&self, sent: &SendResult, state: TransactionState) -> Result<()> {
        let core = self.producer.core();
        let (_, commit_log_offset) = decode_offset_msg_id(&sent.offset_msg_id)
            .map_err(|e| ClientError::InvalidArgument(e.to_string()))?;
        let addr = self.master_of(sent).await?;
        let header = EndTransactionRequestHeader {
            producer_group: self.producer.group().to_owned(),
            tran_state_table_offset: sent.queue_offset,
            commit_log_offset,
            commit_or_rollback: flag_of(state),
            from_transaction_check: Some(false),
            msg_id: sent.msg_id.clone(),
            transaction_id: Some(sent.msg_id.clone()),
        };
        let req = RemotingCommand::request(request_code::END_TRANSACTION, &header);
        let resp = core.remoting.call(&addr, req, core.config.call_timeout_ms).await?;
        expect_success(&addr, resp).map(|_| ())
    }

    /// The plain producer underneath (for non-transactional sends of the same group).
    pub fn producer(&self) -> &Producer {
        &self.producer
    }

    /// Leaves the producer group on the brokers and closes connections.
    pub async fn shutdown(&self) {
        self.producer.shutdown().await;
    }
}

fn flag_of(state: TransactionState) -> i32 {
    match state {
        TransactionState::Commit => msgflag::TRANSACTION_COMMIT,
        TransactionState::Rollback => msgflag::TRANSACTION_ROLLBACK,
        TransactionState::Unknown => msgflag::TRANSACTION_NOT_TYPE,
    }
}

/// Answers a broker's CHECK_TRANSACTION_STATE with the listener's verdict (nothing for
/// Unknown: the broker asks again).
async fn answer_check<L: TransactionListener>(
    core: &Core,
    listener: &L,
    addr: &str,
    req: &RemotingCommand,
) {
    let Ok(h) = req.decode_header::<CheckTransactionStateRequestHeader>() else {
        tracing::warn!(%addr, "a malformed CHECK_TRANSACTION_STATE: ignored");
        return;
    };
    let Ok(view) = RecordView::decode(&req.body) else {
        tracing::warn!(%addr, "CHECK_TRANSACTION_STATE without a readable message: ignored");
        return;
    };
    let msg = MessageExt::from_record(&view, "");
    let group = msg.properties.get(property::PGROUP).cloned().unwrap_or_default();
    let id = msg.msg_id().map(str::to_owned).or(h.msg_id.clone()).unwrap_or_default();
    let state =
        CatchPanic(Box::pin(listener.check(msg))).await.unwrap_or(TransactionState::Unknown);
    if state == TransactionState::Unknown {
        return;
    }
    let header = EndTransactionRequestHeader {
        producer_group: group,
        tran_state_table_offset: h.tran_state_table_offset,
        commit_log_offset: h.commit_log_offset,
        commit_or_rollback: flag_of(state),
        from_transaction_check: Some(true),
        msg_id: id.clone(),
        transaction_id: h.transaction_id.clone(),
    };
    let req = RemotingCommand::request(request_code::END_TRANSACTION, &header);
    match core.remoting.call(addr, req, core.config.call_timeout_ms).await {
        Ok(resp) => {
            if let Err(e) = expect_success(addr, resp) {
                tracing::warn!(error = %e, %id, "the broker refused a check-back answer");
            }
        }
        Err(e) => tracing::warn!(error = %e, %id, "a check-back answer was not delivered"),
    }
}
