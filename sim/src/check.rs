//! The history of a simulated run and the pure checkers that judge it
//! (shared/reference/simulation-checks.md B.5). Checkers are plain functions of a history, with
//! unit tests on synthetic histories, each shown to catch the anomaly it names.
//!
//! Vocabulary: a send is *acked* when the producer got SEND_OK; *failed* when it got a final
//! error (the broker refused it; it is not stored); *indeterminate* when it timed out or its
//! connection broke (it may be stored). Messages are identified by their body, unique per run.

use std::collections::{BTreeMap, BTreeSet};

/// A queue: (broker group, queue id).
pub type Queue = (String, i32);

/// How a send ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// SEND_OK for (broker, queue) at `offset`, received `at_ms` after the run's start.
    Acked {
        queue: (String, i32),
        offset: i64,
        at_ms: i64,
    },
    Failed,
    Indeterminate,
}

/// One observation of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A producer is about to send `id`, with this sharding key if ordered.
    Send { id: String, key: Option<String> },
    /// The send of `id` ended so.
    Sent { id: String, outcome: SendOutcome },
    /// A consumer of `group` was handed `id` from (broker, queue) at `offset`.
    Delivered { consumer: String, group: String, id: String, queue: (String, i32), offset: i64 },
    /// A broker group's committed consumer offset of (group, broker, queue), as read back.
    OffsetSeen { group: String, queue: (String, i32), offset: i64 },
    /// Replica `seen_by` of `broker` (its id, `#` and how many times its data was wiped)
    /// saw `leader` leading in `term`.
    Leader { broker: String, seen_by: String, term: u64, leader: u64 },
    /// The delayed message `id` may not be delivered before `not_before_ms` (ms since the
    /// run's start: its send started then, plus its delay).
    Due { id: String, not_before_ms: i64 },
    /// A consumer of `group` was handed the delayed message `id`, moved by the broker from
    /// the parked record `origin` (its `RR_MOVED_FROM`) to (broker, queue) at `offset`, at
    /// `at_ms` since the run's start.
    Moved {
        group: String,
        id: String,
        origin: String,
        queue: (String, i32),
        offset: i64,
        at_ms: i64,
    },
    /// Replicas lost power (the last such moment of the run), at `at_ms` since its start.
    PowerLoss { at_ms: i64 },
    /// A consumer of `group` asked for `id` again later (its listener answered "later"; its
    /// client sends the message back to the broker right after), at `at_ms` since the run's
    /// start: from then on, the group's copy of `id` is the one sent back.
    SentBack { group: String, id: String, at_ms: i64 },
    /// The transaction of `id` (its half message) is to commit, or to roll back: what its
    /// producer group's local state says, whoever asks (the local transaction or a check-back).
    TxIntent { id: String, commit: bool },
    /// A transaction's half message was still unresolved by `broker` when the run ended.
    Unresolved { broker: String, id: String, half_offset: i64 },
    /// Consumer `consumer` of `group` (orderly or not) started consuming `queue` of the plain
    /// workload's topic at `offset`, the first it pulls; it holds the queue until its
    /// [`Event::Released`] (or until it starts again after a crash).
    Taken { consumer: String, group: String, queue: Queue, offset: i64, orderly: bool },
    /// Consumer `consumer` stopped consuming `queue`: it is handed nothing of it after this.
    Released { consumer: String, queue: Queue },
    /// The message `id` is stored in `queue` at `offset`, as a replica's queue showed.
    Stored { id: String, queue: Queue, offset: i64 },
    /// One pull of `queue` that asked for `asked` messages returned `messages`, whose bodies
    /// hold `bytes`.
    Pulled { queue: Queue, asked: i32, messages: usize, bytes: usize },
}

/// The delayed workload's message ids start so (only its consumers receive them).
pub const DELAYED_PREFIX: &str = "d-";
/// The transactional workload's message ids start so (only its consumers receive them).
pub const TX_PREFIX: &str = "x-";

/// Whether `id` is the plain workload's (neither delayed nor transactional).
fn plain(id: &str) -> bool {
    !id.starts_with(DELAYED_PREFIX) && !id.starts_with(TX_PREFIX)
}

/// A run's events in the order they were observed; shared behind a mutex by the run's tasks.
#[derive(Debug, Clone, Default)]
pub struct History {
    pub events: Vec<Event>,
}

impl History {
    pub fn push(&mut self, e: Event) {
        self.events.push(e);
    }

    fn outcomes(&self) -> BTreeMap<&str, &SendOutcome> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Sent { id, outcome } => Some((id.as_str(), outcome)),
                _ => None,
            })
            .collect()
    }

    fn deliveries(&self) -> impl Iterator<Item = (&str, &str, &str, &(String, i32), i64)> {
        self.events.iter().filter_map(|e| match e {
            Event::Delivered { consumer, group, id, queue, offset } => {
                Some((consumer.as_str(), group.as_str(), id.as_str(), queue, *offset))
            }
            _ => None,
        })
    }
}

/// Acked sends no consumer of `group` ever received (B.5 #14), of the plain workload (not the
/// delayed or transactional ones, whose consumers are others: [`lost_delayed`],
/// [`lost_transactions`]). Must be empty after a drain.
pub fn lost(h: &History, group: &str) -> Vec<String> {
    lost_among(h, group, plain)
}

/// Acked delayed sends no consumer of `group` ever received. Must be empty after a drain.
pub fn lost_delayed(h: &History, group: &str) -> Vec<String> {
    lost_among(h, group, |id| id.starts_with(DELAYED_PREFIX))
}

/// Transactions to commit whose half message was acked (stored) that no consumer of `group`
/// ever received: a commit lost, or an unknown outcome never checked back. Must be empty
/// after a drain.
pub fn lost_transactions(h: &History, group: &str) -> Vec<String> {
    let commit = intents(h, true);
    lost_among(h, group, |id| commit.contains(id))
}

/// Transactions to roll back that a consumer (of any group) received. Must be empty.
pub fn rolled_back_delivered(h: &History) -> Vec<String> {
    let rollback = intents(h, false);
    let seen: BTreeSet<&str> =
        h.deliveries().map(|d| d.2).filter(|id| rollback.contains(id)).collect();
    seen.into_iter().map(str::to_owned).collect()
}

/// The transactions whose intent is to commit (`true`) or to roll back.
fn intents(h: &History, commit: bool) -> BTreeSet<&str> {
    h.events
        .iter()
        .filter_map(|e| match e {
            Event::TxIntent { id, commit: c } if *c == commit => Some(id.as_str()),
            _ => None,
        })
        .collect()
}

/// Half messages a broker group still held unresolved at the end: (broker, id, half offset).
/// Must be empty once producers of the group have been connected long enough to be checked.
pub fn unresolved(h: &History) -> Vec<(String, String, i64)> {
    h.events
        .iter()
        .filter_map(|e| match e {
            Event::Unresolved { broker, id, half_offset } => {
                Some((broker.clone(), id.clone(), *half_offset))
            }
            _ => None,
        })
        .collect()
}

fn lost_among(h: &History, group: &str, ours: impl Fn(&str) -> bool) -> Vec<String> {
    let delivered: BTreeSet<&str> = h.deliveries().filter(|d| d.1 == group).map(|d| d.2).collect();
    h.outcomes()
        .into_iter()
        .filter(|(id, o)| {
            ours(id) && matches!(o, SendOutcome::Acked { .. }) && !delivered.contains(id)
        })
        .map(|(id, _)| id.to_owned())
        .collect()
}

/// Delayed messages handed to a consumer before their time: (id, delivered at, due at).
/// Must be empty.
pub fn early(h: &History) -> Vec<(String, i64, i64)> {
    let due: BTreeMap<&str, i64> = h
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Due { id, not_before_ms } => Some((id.as_str(), *not_before_ms)),
            _ => None,
        })
        .collect();
    h.events
        .iter()
        .filter_map(|e| match e {
            Event::Moved { id, at_ms, .. } => match due.get(id.as_str()) {
                Some(d) if at_ms < d => Some((id.clone(), *at_ms, *d)),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// Parked records (or transaction half messages) the broker moved more than once, as `group`
/// saw them: one origin, two stored copies (different queue or offset). A producer's retry
/// parks a message twice, at two origins, so it never shows here; a move repeated after a
/// failover, or a transaction committed twice, does. Must be empty.
pub fn moved_twice(h: &History, group: &str) -> Vec<String> {
    let mut copies: BTreeMap<&str, BTreeSet<(&Queue, i64)>> = BTreeMap::new();
    for e in &h.events {
        if let Event::Moved { group: g, origin, queue, offset, .. } = e {
            if g == group {
                copies.entry(origin.as_str()).or_default().insert((queue, *offset));
            }
        }
    }
    copies.into_iter().filter(|(_, c)| c.len() > 1).map(|(o, _)| o.to_owned()).collect()
}

/// Deliveries of messages never sent, or whose send definitely failed (B.5 #15).
pub fn unexpected(h: &History) -> Vec<String> {
    let sent: BTreeSet<&str> = h
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Send { id, .. } => Some(id.as_str()),
            _ => None,
        })
        .collect();
    let outcomes = h.outcomes();
    let mut bad: BTreeSet<String> = BTreeSet::new();
    for (_, _, id, _, _) in h.deliveries() {
        let failed = matches!(outcomes.get(id), Some(SendOutcome::Failed));
        if !sent.contains(id) || failed {
            bad.insert(id.to_owned());
        }
    }
    bad.into_iter().collect()
}

/// Duplicate deliveries within a group, classified (B.5 #16).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Duplicates {
    /// Extra deliveries of one stored record (same queue and offset): a consumer redelivered
    /// it (crash or hand-over before the offset commit).
    pub redelivered: usize,
    /// One message stored twice (different queue or offset): a producer retry after an
    /// indeterminate send.
    pub stored_twice: usize,
    /// Stored more than once although the send definitely failed (or was never made). Must
    /// be 0.
    pub unexplained: usize,
}

pub fn duplicates(h: &History, group: &str) -> Duplicates {
    // id -> the (queue, offset) of each delivery
    let mut by_id: BTreeMap<&str, Vec<(&Queue, i64)>> = BTreeMap::new();
    for (_, g, id, q, o) in h.deliveries() {
        if g == group {
            by_id.entry(id).or_default().push((q, o));
        }
    }
    let outcomes = h.outcomes();
    let mut d = Duplicates::default();
    for (id, copies) in by_id {
        let records: BTreeSet<_> = copies.iter().copied().collect();
        d.redelivered += copies.len() - records.len();
        let extra = records.len().saturating_sub(1);
        // The producer retries inside one call after an attempt times out or breaks (which may
        // still have stored the message), so an acked or indeterminate send may be stored more
        // than once; a failed one never should.
        match outcomes.get(id) {
            Some(SendOutcome::Acked { .. } | SendOutcome::Indeterminate) => d.stored_twice += extra,
            _ => d.unexplained += extra,
        }
    }
    d
}

/// Per sharding key, the acked sends must appear in the consumer's delivery order (each key's
/// acked sequence is a subsequence of its first deliveries; B.5 #17). Returns the keys whose
/// order broke, with the first pair out of order. Sends `skip` names are left out of the
/// sequence (those a run's allowance explains: see the judge).
pub fn order_violations(
    h: &History,
    group: &str,
    skip: impl Fn(&str) -> bool,
) -> Vec<(String, String, String)> {
    let mut key_of: BTreeMap<&str, &str> = BTreeMap::new();
    let mut acked_seq: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut send_order: Vec<&str> = Vec::new();
    for e in &h.events {
        if let Event::Send { id, key: Some(k) } = e {
            key_of.insert(id.as_str(), k.as_str());
            send_order.push(id.as_str());
        }
    }
    let outcomes = h.outcomes();
    for id in send_order {
        if matches!(outcomes.get(id), Some(SendOutcome::Acked { .. })) && !skip(id) {
            acked_seq.entry(key_of[id]).or_default().push(id);
        }
    }
    let mut first_seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, (_, g, id, _, _)) in h.deliveries().enumerate() {
        if g == group {
            first_seen.entry(id).or_insert(i);
        }
    }
    let mut bad = Vec::new();
    for (key, ids) in acked_seq {
        let seen: Vec<(&str, usize)> =
            ids.iter().filter_map(|id| first_seen.get(id).map(|&i| (*id, i))).collect();
        if let Some(w) = seen.windows(2).find(|w| w[0].1 > w[1].1) {
            bad.push((key.to_owned(), w[0].0.to_owned(), w[1].0.to_owned()));
        }
    }
    bad
}

/// Committed consumer offsets read back over time must never go backwards (B.5 #19).
/// Returns (group, queue, before, after) for each regression.
pub fn offset_regressions(h: &History) -> Vec<(String, (String, i32), i64, i64)> {
    let mut last: BTreeMap<(&str, &(String, i32)), i64> = BTreeMap::new();
    let mut bad = Vec::new();
    for e in &h.events {
        if let Event::OffsetSeen { group, queue, offset } = e {
            if let Some(prev) = last.insert((group.as_str(), queue), *offset) {
                if *offset < prev {
                    bad.push((group.clone(), queue.clone(), prev, *offset));
                }
            }
        }
    }
    bad
}

/// Consumers never skip or go back while their assignment is stable (B.5 #18), checked on the
/// consumers whose queue changes the history records ([`Event::Taken`], [`Event::Released`]):
/// - a member takes a queue at or before the first offset its group was not handed yet (its
///   furthest delivery there, plus one), or past it only over offsets retention may have
///   deleted (`retained_from(queue)`: the furthest start the queue had on any replica);
/// - while it holds a queue it is handed only offsets at or after where it took it, each once
///   (a second time is going back), and nothing of a queue it does not hold;
/// - an orderly member is handed them in order and without a gap (but over deleted offsets).
///
/// A concurrent member's gaps are not judged here: its listener calls run in parallel and a
/// queue given up mid-batch leaves gaps its next owner fills (the lost-message check holds the
/// group to every acknowledged send). Returns each break seen, described.
pub fn consumption_breaks(h: &History, retained_from: impl Fn(&Queue) -> i64) -> Vec<String> {
    struct Held {
        start: i64,
        next: i64,
        handed: BTreeSet<i64>,
        orderly: bool,
    }
    let tracked: BTreeSet<&str> = h
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Taken { consumer, .. } => Some(consumer.as_str()),
            _ => None,
        })
        .collect();
    let mut held: BTreeMap<(&str, &Queue), Held> = BTreeMap::new();
    let mut furthest: BTreeMap<(&str, &Queue), i64> = BTreeMap::new();
    let mut bad = Vec::new();
    for e in &h.events {
        match e {
            Event::Taken { consumer, group, queue, offset, orderly } => {
                let first_unhanded = furthest.get(&(group.as_str(), queue)).map_or(0, |f| f + 1);
                if *offset > first_unhanded && *offset > retained_from(queue) {
                    bad.push(format!(
                        "{consumer} took {queue:?} at {offset}: skipped from {first_unhanded}, \
                         the first offset {group} was not handed"
                    ));
                }
                let taken = Held {
                    start: *offset,
                    next: *offset,
                    handed: BTreeSet::new(),
                    orderly: *orderly,
                };
                held.insert((consumer.as_str(), queue), taken);
            }
            Event::Released { consumer, queue } => {
                held.remove(&(consumer.as_str(), queue));
            }
            Event::Delivered { consumer, group, queue, offset, .. } => {
                let f = furthest.entry((group.as_str(), queue)).or_insert(*offset);
                *f = (*f).max(*offset);
                if !tracked.contains(consumer.as_str()) {
                    continue;
                }
                let Some(q) = held.get_mut(&(consumer.as_str(), queue)) else {
                    bad.push(format!(
                        "{consumer} was handed {queue:?} at {offset}, not holding it"
                    ));
                    continue;
                };
                if *offset < q.start || !q.handed.insert(*offset) {
                    bad.push(format!(
                        "{consumer} went back: handed {queue:?} at {offset} again (held from {})",
                        q.start
                    ));
                    continue;
                }
                if q.orderly && *offset > q.next && *offset > retained_from(queue) {
                    bad.push(format!(
                        "{consumer} skipped {queue:?} offsets {}..{offset} (orderly)",
                        q.next
                    ));
                }
                q.next = q.next.max(offset + 1);
            }
            _ => {}
        }
    }
    bad
}

/// Pulls stay within the brokers' bounds however many messages a client asks for (B.5 #26): at
/// most `batch_max` messages, and more than one only within `bytes_max` (counted on bodies,
/// which are smaller than the records the broker counts). Returns each pull over them.
pub fn pulls_over_bounds(h: &History, batch_max: usize, bytes_max: usize) -> Vec<String> {
    h.events
        .iter()
        .filter_map(|e| match e {
            Event::Pulled { queue, asked, messages, bytes }
                if *messages > batch_max || (*messages > 1 && *bytes > bytes_max) =>
            {
                Some(format!(
                    "a pull of {queue:?} asking for {asked} returned {messages} messages of {bytes} bytes"
                ))
            }
            _ => None,
        })
        .collect()
}

/// A leader id as openraft orders it: (term, node id).
pub type LeaderId = (u64, u64);

/// Election safety (B.5 #1) as openraft defines it: a leader is elected by a quorum for a
/// leader id (term, node id), ordered by term then node id, and a replica votes only for
/// leader ids above the one it holds. So a term may see several leaders in turn (openraft's
/// default mode: candidates that stand in one term at once can each win it, the higher node
/// id last, as if it were a later term), but a replica never goes back to an older leader id
/// (a vote lost or given twice would show as one). Returns (broker, replica, from, to) for
/// each step back: leader ids as (term, node).
pub fn split_brains(h: &History) -> Vec<(String, String, LeaderId, LeaderId)> {
    let mut last: BTreeMap<(&str, &str), (u64, u64)> = BTreeMap::new();
    let mut bad = Vec::new();
    for e in &h.events {
        if let Event::Leader { broker, seen_by, term, leader } = e {
            let id = (*term, *leader);
            let seen = last.entry((broker.as_str(), seen_by.as_str())).or_insert(id);
            if id < *seen {
                bad.push((broker.clone(), seen_by.clone(), *seen, id));
            }
            *seen = (*seen).max(id);
        }
    }
    bad
}

/// One replica's Raft state at one observation (see [`RaftInvariants`]).
#[derive(Debug, Clone, Default)]
pub struct RaftSample {
    /// The replica: its id, `#` and how many times its data was wiped.
    pub replica: String,
    pub voter: bool,
    pub leader: bool,
    pub term: u64,
    pub last_log: Option<u64>,
    pub applied: Option<u64>,
    pub snapshot: Option<u64>,
    pub purged: Option<u64>,
    /// The first log index not yet durable on its disk.
    pub durable_next: u64,
    /// The log ids (index, term, node) of the entries it applied since its last observation.
    pub newly_applied: Vec<(u64, u64, u64)>,
    /// Its replicated metadata (key, value), in key order; `None` while it applies again,
    /// after a restart, entries it had applied before (the changes of some may be there
    /// already: they are written before the applied id, and applying them again is
    /// idempotent).
    pub metadata: Option<Vec<(Vec<u8>, Vec<u8>)>>,
}

/// A broken Raft invariant, by its number in B.5 and what was seen.
pub type RaftViolation = (u8, String);

/// The Raft invariants of B.5 checked on every observation of a group's replicas (every 100
/// ms in a run): #3, an index applied anywhere holds the same entry (leader id) everywhere
/// and forever; #4, the leader's applied (so committed) index is on a majority's disks
/// (where sync flush and quorum replication promise it); #5, a replica's term never goes
/// back, restarts included; #6, purged <= snapshot <= applied <= last log on each replica;
/// #22, replicas that applied the same entries hold the same replicated metadata (applying
/// is deterministic: a difference is a change lost or made twice, e.g. in a restart).
#[derive(Debug, Default)]
pub struct RaftInvariants {
    applied: BTreeMap<(String, u64), (u64, u64)>,
    terms: BTreeMap<(String, String), u64>,
    pub violations: Vec<RaftViolation>,
}

impl RaftInvariants {
    /// Checks one observation of broker group `group`: `samples` of its running replicas,
    /// `voters` in its membership; `quorum_durable`: whether an applied entry must be on a
    /// majority's disks. #4 is checked only when every voter was observed (a replica that is
    /// down may hold the entry on its disk).
    pub fn observe(
        &mut self,
        group: &str,
        voters: usize,
        quorum_durable: bool,
        samples: &[RaftSample],
    ) {
        let mut bad = Vec::new();
        for s in samples {
            let chain = [s.purged, s.snapshot, s.applied, s.last_log];
            if chain.windows(2).any(|w| w[0] > w[1]) {
                bad.push((
                    6,
                    format!("{group}-{}: purged, snapshot, applied, last log {chain:?}", s.replica),
                ));
            }
            let term = self.terms.entry((group.to_owned(), s.replica.clone())).or_insert(s.term);
            if s.term < *term {
                bad.push((5, format!("{group}-{}: term {} after {}", s.replica, s.term, *term)));
            }
            *term = (*term).max(s.term);
            for (index, term, node) in &s.newly_applied {
                let id = (*term, *node);
                let seen = self.applied.entry((group.to_owned(), *index)).or_insert(id);
                if *seen != id {
                    bad.push((
                        3,
                        format!(
                            "{group}-{}: applied (term, node) {id:?} at index {index}, where {seen:?} was applied",
                            s.replica
                        ),
                    ));
                }
            }
        }
        // #22: one report per pair of replicas at one applied index.
        for (i, a) in samples.iter().enumerate() {
            for b in &samples[i + 1..] {
                let (Some(ma), Some(mb)) = (&a.metadata, &b.metadata) else { continue };
                if a.applied.is_some() && a.applied == b.applied && ma != mb {
                    let first = ma
                        .iter()
                        .zip(mb)
                        .find(|(x, y)| x != y)
                        .map(|(x, _)| String::from_utf8_lossy(&x.0).into_owned());
                    bad.push((
                        22,
                        format!(
                            "{group}-{} and {group}-{} applied through {:?}, their metadata differ ({} and {} keys, first at {first:?})",
                            a.replica,
                            b.replica,
                            a.applied,
                            ma.len(),
                            mb.len()
                        ),
                    ));
                }
            }
        }
        let observed_voters = samples.iter().filter(|s| s.voter).count();
        if quorum_durable && observed_voters == voters {
            if let Some((leader, Some(applied))) =
                samples.iter().find(|s| s.leader).map(|s| (s, s.applied))
            {
                let durable =
                    samples.iter().filter(|s| s.voter && s.durable_next > applied).count();
                if durable * 2 <= voters {
                    bad.push((
                        4,
                        format!(
                            "{group}: leader {} applied index {applied}, durable on {durable} of {voters} voters",
                            leader.replica
                        ),
                    ));
                }
            }
        }
        self.violations.extend(bad);
    }
}

/// Each queue offset holds one message: two different ids delivered from one (queue, offset)
/// mean a replica served data that was later replaced (B.5 #13, #20).
pub fn inconsistent_offsets(h: &History) -> Vec<((String, i32), i64, BTreeSet<String>)> {
    // The plain workload's topic only: the other topics' queues have the same ids.
    let ours = h.deliveries().filter(|d| plain(d.2));
    one_offset_many_ids(ours.map(|(_, _, id, q, o)| (id, q, o)))
}

/// As [`inconsistent_offsets`], for the messages `group` received that the broker moved
/// there (delayed messages, committed transactions: each such record holds one message).
pub fn inconsistent_delayed_offsets(
    h: &History,
    group: &str,
) -> Vec<((String, i32), i64, BTreeSet<String>)> {
    one_offset_many_ids(h.events.iter().filter_map(|e| match e {
        Event::Moved { group: g, id, queue, offset, .. } if g == group => {
            Some((id.as_str(), queue, *offset))
        }
        _ => None,
    }))
}

fn one_offset_many_ids<'a>(
    deliveries: impl Iterator<Item = (&'a str, &'a Queue, i64)>,
) -> Vec<((String, i32), i64, BTreeSet<String>)> {
    let mut at: BTreeMap<(&Queue, i64), BTreeSet<&str>> = BTreeMap::new();
    for (id, q, o) in deliveries {
        at.entry((q, o)).or_default().insert(id);
    }
    at.into_iter()
        .filter(|(_, ids)| ids.len() > 1)
        .map(|((q, o), ids)| (q.clone(), o, ids.into_iter().map(str::to_owned).collect()))
        .collect()
}

/// A replica's state at quiesce.
#[derive(Debug, Clone)]
pub struct ReplicaState {
    pub id: u64,
    /// Its applied index.
    pub applied: u64,
    /// The CommitLog position its log starts at (retention deletes whole segments from the
    /// front, each replica on its own schedule).
    pub start: u64,
    /// Its log's bytes from `start` to its end.
    pub log: Vec<u8>,
    /// Its replicated metadata (topics, groups, offsets, progress), key and value in key order.
    pub metadata: Vec<(Vec<u8>, Vec<u8>)>,
}

/// At quiesce, no follower is ahead of the leader and every replica's log is byte-identical
/// to the leader's (B.5 #7) over the range both still hold, and ends where the leader's ends.
/// Returns what differs.
pub fn replicas_diverge(leader: u64, replicas: &[ReplicaState]) -> Vec<String> {
    let Some(lead) = replicas.iter().find(|r| r.id == leader) else {
        return vec![format!("leader {leader} is not among the replicas")];
    };
    let lead_end = lead.start + lead.log.len() as u64;
    let mut bad = Vec::new();
    for r in replicas {
        if r.applied > lead.applied {
            bad.push(format!("replica {} applied {} > leader's {}", r.id, r.applied, lead.applied));
        }
        let end = r.start + r.log.len() as u64;
        let from = r.start.max(lead.start);
        let same = end == lead_end
            && (from >= end
                || r.log[(from - r.start) as usize..] == lead.log[(from - lead.start) as usize..]);
        if !same {
            bad.push(format!(
                "replica {}'s log [{}, {end}) differs from the leader's [{}, {lead_end}) over \
                 what both hold",
                r.id, r.start, lead.start
            ));
        }
        // B.5 #22: what was applied to the metadata converges too.
        if r.metadata != lead.metadata {
            let first = r
                .metadata
                .iter()
                .zip(&lead.metadata)
                .find(|(a, b)| a != b)
                .map(|(a, _)| String::from_utf8_lossy(&a.0).into_owned());
            bad.push(format!(
                "replica {}'s metadata ({} keys) differs from the leader's ({} keys), first at {first:?}",
                r.id,
                r.metadata.len(),
                lead.metadata.len()
            ));
        }
    }
    bad
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(n: i32) -> (String, i32) {
        ("broker-a".to_owned(), n)
    }

    fn send(h: &mut History, id: &str, key: Option<&str>, outcome: SendOutcome) {
        h.push(Event::Send { id: id.into(), key: key.map(str::to_owned) });
        h.push(Event::Sent { id: id.into(), outcome });
    }

    fn acked(queue: i32, offset: i64) -> SendOutcome {
        SendOutcome::Acked { queue: q(queue), offset, at_ms: 0 }
    }

    fn deliver(h: &mut History, id: &str, queue: i32, offset: i64) {
        h.push(Event::Delivered {
            consumer: "c1".into(),
            group: "G".into(),
            id: id.into(),
            queue: q(queue),
            offset,
        });
    }

    #[test]
    fn delayed_checkers_catch_early_lost_and_repeated_moves() {
        let moved = |id: &str, origin: &str, offset: i64, at_ms: i64| Event::Moved {
            group: "D".into(),
            id: id.into(),
            origin: origin.into(),
            queue: ("broker-a".into(), 0),
            offset,
            at_ms,
        };
        let acked = |id: &str| Event::Sent {
            id: id.into(),
            outcome: SendOutcome::Acked { queue: ("broker-a".into(), 0), offset: 0, at_ms: 0 },
        };
        let delivered = |id: &str, offset: i64| Event::Delivered {
            consumer: "c".into(),
            group: "D".into(),
            id: id.into(),
            queue: ("broker-a".into(), 0),
            offset,
        };
        let mut h = History::default();
        for id in ["d-1", "d-2", "m-1"] {
            h.push(acked(id));
        }
        h.push(Event::Due { id: "d-1".into(), not_before_ms: 1_000 });
        h.push(Event::Due { id: "d-2".into(), not_before_ms: 3_000 });
        h.push(delivered("d-1", 0));
        h.push(moved("d-1", "S:0:0", 0, 1_200));
        assert_eq!(lost_delayed(&h, "D"), vec!["d-2".to_owned()]);
        assert_eq!(lost(&h, "D"), vec!["m-1".to_owned()], "the plain workload's are apart");
        assert!(early(&h).is_empty() && moved_twice(&h, "D").is_empty());
        h.push(delivered("d-2", 1));
        h.push(moved("d-2", "S:2:0", 1, 2_999));
        assert_eq!(early(&h), vec![("d-2".to_owned(), 2_999, 3_000)]);
        // A redelivery of one copy is the consumer's; a second copy of one origin is not.
        h.push(moved("d-1", "S:0:0", 0, 5_000));
        assert!(moved_twice(&h, "D").is_empty());
        h.push(moved("d-1", "S:0:0", 7, 6_000));
        assert_eq!(moved_twice(&h, "D"), vec!["S:0:0".to_owned()]);
    }

    #[test]
    fn transaction_checkers_catch_lost_commits_rollbacks_delivered_and_unresolved_halves() {
        let mut h = History::default();
        let intent = |id: &str, commit| Event::TxIntent { id: id.into(), commit };
        for (id, commit, outcome) in [
            ("x-0", true, acked(0, 0)),
            ("x-1", false, acked(0, 1)),
            ("x-2", true, SendOutcome::Indeterminate),
            ("x-3", true, acked(1, 0)),
        ] {
            h.push(Event::Send { id: id.into(), key: None });
            h.push(intent(id, commit));
            h.push(Event::Sent { id: id.into(), outcome });
        }
        send(&mut h, "m-1", None, acked(0, 5));
        deliver(&mut h, "x-0", 0, 0);
        // x-3 committed, not yet consumed; x-2's half may never have been stored.
        assert_eq!(lost_transactions(&h, "G"), vec!["x-3".to_owned()]);
        assert_eq!(lost(&h, "G"), vec!["m-1".to_owned()], "the plain workload's are apart");
        deliver(&mut h, "x-3", 1, 0);
        assert!(lost_transactions(&h, "G").is_empty());
        assert!(rolled_back_delivered(&h).is_empty());
        deliver(&mut h, "x-1", 0, 1);
        assert_eq!(rolled_back_delivered(&h), vec!["x-1".to_owned()]);
        assert!(unresolved(&h).is_empty());
        h.push(Event::Unresolved { broker: "broker-a".into(), id: "U".into(), half_offset: 4 });
        assert_eq!(unresolved(&h), vec![("broker-a".to_owned(), "U".to_owned(), 4)]);
        // A transactional queue's offsets are not the plain topic's.
        deliver(&mut h, "m-1", 0, 0);
        assert!(inconsistent_offsets(&h).is_empty());
    }

    #[test]
    fn lost_finds_acked_sends_never_delivered_only() {
        let mut h = History::default();
        send(&mut h, "a", None, acked(0, 0));
        send(&mut h, "b", None, acked(0, 1));
        send(&mut h, "c", None, SendOutcome::Indeterminate);
        send(&mut h, "d", None, SendOutcome::Failed);
        deliver(&mut h, "a", 0, 0);
        assert_eq!(lost(&h, "G"), vec!["b".to_owned()], "c and d were never promised");
        deliver(&mut h, "b", 0, 1);
        assert!(lost(&h, "G").is_empty());
        assert_eq!(lost(&h, "other"), vec!["a".to_owned(), "b".to_owned()], "per group");
    }

    #[test]
    fn unexpected_finds_phantoms_and_failed_sends_delivered() {
        let mut h = History::default();
        send(&mut h, "a", None, acked(0, 0));
        send(&mut h, "f", None, SendOutcome::Failed);
        send(&mut h, "i", None, SendOutcome::Indeterminate);
        deliver(&mut h, "a", 0, 0);
        deliver(&mut h, "i", 0, 1);
        assert!(unexpected(&h).is_empty(), "an indeterminate send may well be stored");
        deliver(&mut h, "f", 0, 2);
        deliver(&mut h, "ghost", 0, 3);
        assert_eq!(unexpected(&h), vec!["f".to_owned(), "ghost".to_owned()]);
    }

    #[test]
    fn duplicates_are_classified() {
        let mut h = History::default();
        send(&mut h, "a", None, acked(0, 0));
        send(&mut h, "b", None, acked(0, 2));
        send(&mut h, "c", None, SendOutcome::Failed);
        deliver(&mut h, "a", 0, 0);
        deliver(&mut h, "a", 0, 0); // redelivered after a consumer crash
        deliver(&mut h, "b", 0, 1); // stored by an attempt that timed out ...
        deliver(&mut h, "b", 0, 2); // ... and by the retry that was acked
        assert_eq!(
            duplicates(&h, "G"),
            Duplicates { redelivered: 1, stored_twice: 1, unexplained: 0 }
        );
        deliver(&mut h, "c", 0, 3);
        deliver(&mut h, "c", 0, 4);
        assert_eq!(duplicates(&h, "G").unexplained, 1, "a failed send stored twice");
    }

    #[test]
    fn order_is_checked_per_key_on_first_deliveries() {
        let mut h = History::default();
        send(&mut h, "k1-0", Some("k1"), acked(0, 0));
        send(&mut h, "k2-0", Some("k2"), acked(1, 0));
        send(&mut h, "k1-1", Some("k1"), acked(0, 1));
        send(&mut h, "k1-2", Some("k1"), SendOutcome::Indeterminate);
        deliver(&mut h, "k2-0", 1, 0);
        deliver(&mut h, "k1-0", 0, 0);
        deliver(&mut h, "k1-2", 0, 2); // unacked: may appear anywhere
        deliver(&mut h, "k1-1", 0, 1);
        deliver(&mut h, "k1-0", 0, 0); // a redelivery does not count as reordering
        assert!(order_violations(&h, "G", |_| false).is_empty());
        let mut bad = History::default();
        send(&mut bad, "x0", Some("x"), acked(0, 0));
        send(&mut bad, "x1", Some("x"), acked(0, 1));
        deliver(&mut bad, "x1", 0, 1);
        deliver(&mut bad, "x0", 0, 0);
        assert_eq!(
            order_violations(&bad, "G", |_| false),
            vec![("x".to_owned(), "x0".to_owned(), "x1".to_owned())]
        );
    }

    #[test]
    fn offsets_must_not_go_backwards() {
        let mut h = History::default();
        let seen = |o| Event::OffsetSeen { group: "G".into(), queue: q(0), offset: o };
        h.push(seen(3));
        h.push(seen(3));
        h.push(seen(7));
        h.push(Event::OffsetSeen { group: "H".into(), queue: q(0), offset: 1 });
        assert!(offset_regressions(&h).is_empty());
        h.push(seen(5));
        assert_eq!(offset_regressions(&h), vec![("G".to_owned(), q(0), 7, 5)]);
    }

    #[test]
    fn consumers_never_skip_or_go_back_while_they_hold_a_queue() {
        let taken = |c: &str, offset, orderly| Event::Taken {
            consumer: c.into(),
            group: "G".into(),
            queue: q(0),
            offset,
            orderly,
        };
        let handed = |c: &str, offset| Event::Delivered {
            consumer: c.into(),
            group: "G".into(),
            id: format!("m-{offset}"),
            queue: q(0),
            offset,
        };
        let released = |c: &str| Event::Released { consumer: c.into(), queue: q(0) };
        let nothing_deleted = |_: &Queue| 0;
        let run = |events: Vec<Event>, retained_from: &dyn Fn(&Queue) -> i64| {
            consumption_breaks(&History { events }, retained_from)
        };
        // A concurrent member in any order, then a hand-over at the first offset not handed
        // (and one before it: redelivery after a hand-over is no break).
        let good = vec![
            taken("c1", 0, false),
            handed("c1", 1),
            handed("c1", 0),
            handed("c1", 2),
            released("c1"),
            taken("c2", 3, true),
            handed("c2", 3),
            handed("c2", 4),
            released("c2"),
            taken("c1", 2, true),
            handed("c1", 2),
            handed("c1", 3),
        ];
        assert!(run(good.clone(), &nothing_deleted).is_empty());
        // Nothing handed yet, taken past the queue's start: a skip, unless retention deleted it.
        let late = vec![taken("c1", 5, true), handed("c1", 5)];
        assert_eq!(run(late.clone(), &nothing_deleted).len(), 1);
        assert!(run(late, &|_: &Queue| 5).is_empty());
        // Each break alone.
        let mut skipped_take = good.clone();
        skipped_take.push(released("c1"));
        skipped_take.push(taken("c2", 6, false));
        assert!(run(skipped_take, &nothing_deleted)[0].contains("skipped from 5"));
        let mut again = good.clone();
        again.push(handed("c1", 3));
        assert!(run(again, &nothing_deleted)[0].contains("went back"));
        let mut before_start = good.clone();
        before_start.push(handed("c1", 1));
        assert!(run(before_start, &nothing_deleted)[0].contains("went back"));
        let mut gap = good.clone();
        gap.push(handed("c1", 6));
        assert!(run(gap.clone(), &nothing_deleted)[0].contains("skipped"));
        assert!(run(gap, &|_: &Queue| 6).is_empty(), "a gap over deleted offsets is allowed");
        let mut not_held = good.clone();
        not_held.push(handed("c2", 5));
        assert!(run(not_held, &nothing_deleted)[0].contains("not holding"));
        // A consumer whose queue changes are not recorded is not judged.
        assert!(run(vec![handed("x", 7), handed("x", 7)], &nothing_deleted).is_empty());
    }

    #[test]
    fn pulls_over_the_bounds_are_found() {
        let pulled = |messages, bytes| Event::Pulled { queue: q(0), asked: 1_000, messages, bytes };
        let h = History { events: vec![pulled(32, 1_000), pulled(1, 5 << 20), pulled(2, 300)] };
        assert!(pulls_over_bounds(&h, 32, 256 << 10).is_empty());
        let h = History { events: vec![pulled(33, 1_000), pulled(2, 300 << 10), pulled(3, 10)] };
        assert_eq!(pulls_over_bounds(&h, 32, 256 << 10).len(), 2);
    }

    #[test]
    fn a_replica_never_goes_back_to_an_older_leader_id() {
        let mut h = History::default();
        let l = |b: &str, by: &str, term, leader| Event::Leader {
            broker: b.into(),
            seen_by: by.into(),
            term,
            leader,
        };
        h.push(l("a", "0#0", 1, 0));
        h.push(l("a", "0#0", 1, 0));
        h.push(l("a", "0#0", 2, 1));
        // Two leaders of one term in turn, the higher node id last: openraft's leader ids.
        h.push(l("a", "0#0", 2, 2));
        h.push(l("a", "1#0", 2, 1));
        h.push(l("b", "0#0", 1, 2));
        // A wiped replica starts its views again.
        h.push(l("a", "0#1", 1, 0));
        assert!(split_brains(&h).is_empty());
        h.push(l("a", "1#0", 1, 2));
        assert_eq!(split_brains(&h), vec![("a".to_owned(), "1#0".to_owned(), (2, 1), (1, 2))]);
        h.push(l("a", "0#0", 2, 1));
        assert_eq!(split_brains(&h).len(), 2, "back to a lower node id within one term");
    }

    #[test]
    fn the_raft_invariants_catch_what_they_name() {
        let replica = |name: &str, term, applied: u64, durable_next| RaftSample {
            replica: name.into(),
            voter: true,
            leader: name == "0#0",
            term,
            last_log: Some(applied),
            applied: Some(applied),
            snapshot: None,
            purged: None,
            durable_next,
            newly_applied: vec![(applied, term, 0)],
            metadata: Some(vec![(b"group/G".to_vec(), b"{}".to_vec())]),
        };
        let sound = [replica("0#0", 2, 5, 6), replica("1#0", 2, 5, 6), replica("2#0", 2, 5, 3)];
        let mut c = RaftInvariants::default();
        c.observe("a", 3, true, &sound);
        assert!(c.violations.is_empty(), "{:?}", c.violations);
        // #4: applied on the leader, durable on one voter of three.
        let undurable = [replica("0#0", 2, 7, 8), replica("1#0", 2, 7, 6), replica("2#0", 2, 7, 3)];
        c.observe("a", 3, true, &undurable);
        assert_eq!(c.violations.iter().map(|v| v.0).collect::<Vec<_>>(), vec![4]);
        // ...not checked when async flush allows it, nor with a voter unobserved.
        let mut c = RaftInvariants::default();
        c.observe("a", 3, false, &undurable);
        c.observe("a", 3, true, &undurable[..2]);
        assert!(c.violations.is_empty(), "{:?}", c.violations);
        // #3: another entry applied at an index; #5: a term going back.
        let mut other = replica("1#0", 1, 7, 8);
        other.newly_applied = vec![(7, 1, 1)];
        c.observe("a", 3, true, &[other]);
        assert_eq!(c.violations.iter().map(|v| v.0).collect::<Vec<_>>(), vec![5, 3]);
        // #6: a snapshot past what was applied.
        let mut ahead = replica("2#0", 2, 7, 8);
        ahead.snapshot = Some(9);
        ahead.newly_applied.clear();
        let mut c = RaftInvariants::default();
        c.observe("a", 3, true, &[ahead]);
        assert_eq!(c.violations.iter().map(|v| v.0).collect::<Vec<_>>(), vec![6]);
        // #22: two replicas through one index with different metadata; a replica behind
        // may differ.
        let mut lost = replica("1#0", 2, 5, 6);
        lost.metadata = Some(Vec::new());
        let mut c = RaftInvariants::default();
        c.observe("a", 3, true, &[replica("0#0", 2, 5, 6), lost.clone()]);
        assert_eq!(c.violations.iter().map(|v| v.0).collect::<Vec<_>>(), vec![22]);
        let mut c = RaftInvariants::default();
        c.observe("a", 3, true, &[replica("0#0", 2, 6, 7), lost.clone()]);
        assert!(c.violations.is_empty(), "{:?}", c.violations);
        // ...and one applying again after a restart is not compared.
        lost.metadata = None;
        c.observe("a", 3, true, &[replica("0#0", 2, 5, 6), lost]);
        assert!(c.violations.is_empty(), "{:?}", c.violations);
    }

    #[test]
    fn one_offset_holds_one_message() {
        let mut h = History::default();
        deliver(&mut h, "a", 0, 0);
        deliver(&mut h, "a", 0, 0);
        deliver(&mut h, "b", 0, 1);
        assert!(inconsistent_offsets(&h).is_empty());
        deliver(&mut h, "c", 0, 1);
        assert_eq!(inconsistent_offsets(&h).len(), 1);
    }

    #[test]
    fn replicas_must_match_the_leader() {
        let at = |id, applied, start, log: &[u8]| ReplicaState {
            id,
            applied,
            start,
            log: log.to_vec(),
            metadata: vec![(b"topic/T".to_vec(), b"4".to_vec())],
        };
        // (the leader 0, a follower, how many differences)
        let cases = [
            (at(0, 10, 0, b"log"), at(1, 10, 0, b"log"), 0),
            (at(0, 10, 0, b"log"), at(1, 11, 0, b"log"), 1), // ahead of the leader
            (at(0, 10, 0, b"log"), at(1, 10, 0, b"lag"), 1),
            // Logs trimmed at different points compare over what both hold...
            (at(0, 10, 1, b"og"), at(1, 10, 2, b"g"), 0),
            (at(0, 10, 0, b"log"), at(1, 10, 1, b"ag"), 1),
            // ...and must end at the same place.
            (at(0, 10, 0, b"log"), at(1, 10, 1, b"o"), 1),
        ];
        for (leader, follower, n) in cases {
            let (l, f) = (format!("{leader:?}"), format!("{follower:?}"));
            assert_eq!(replicas_diverge(0, &[leader, follower]).len(), n, "{l} {f}");
        }
        let same = [at(0, 10, 0, b"log"), at(1, 10, 0, b"log")];
        assert_eq!(replicas_diverge(5, &same).len(), 1, "no such leader");
        // Metadata that differs (#22).
        let mut other = at(1, 10, 0, b"log");
        other.metadata[0].1 = b"8".to_vec();
        assert_eq!(replicas_diverge(0, &[at(0, 10, 0, b"log"), other]).len(), 1);
    }
}
