//! What a message record must be for dispatch to index it, stated once. The leader checks every
//! record with [`check_record`] before it is proposed (the broker's admission step calls it), and
//! dispatch checks it again as a guard: a committed record that fails it is a bug (a typed
//! [`StoreError::Unindexable`] that stops the replica, and an assertion in debug builds), never
//! something a client can cause.
//!
//! The proposer assigns queue offsets to exactly the records [`takes_queue_offset`] names, in
//! log order, and dispatch appends exactly those to their ConsumeQueue: so the queues stay dense.

use rocketraft_protocol::message::RecordView;
use rocketraft_protocol::names::check_topic;
use rocketraft_protocol::sysflag::message as msgflag;

/// Whether a record goes to its topic queue and so takes the next queue offset there: every
/// record but transaction half messages (PREPARED) and rollbacks, which RocketMQ stores with
/// queue offset 0 and does not dispatch.
pub fn takes_queue_offset(sys_flag: i32) -> bool {
    let tran = msgflag::transaction_value(sys_flag);
    tran == msgflag::TRANSACTION_NOT_TYPE || tran == msgflag::TRANSACTION_COMMIT
}

/// Checks what dispatch relies on in a decoded record: a topic name that maps to one directory
/// (`names::check_topic`), a queue id that names one (0 or more), and a queue offset that is not
/// negative. Returns the reason when it fails.
pub fn check_record(view: &RecordView<'_>) -> Result<(), String> {
    check_topic(view.topic).map_err(|e| e.to_string())?;
    if view.queue_id < 0 {
        return Err(format!("queue id {} is negative", view.queue_id));
    }
    if view.queue_offset < 0 {
        return Err(format!("queue offset {} is negative", view.queue_offset));
    }
    Ok(())
}
