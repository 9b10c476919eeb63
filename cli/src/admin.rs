//! The admin verbs (`topic`, `cluster`, `group`, `message`): each asks the cluster through the
//! SDK's [`Admin`] and returns both a readable table and JSON for scripts.

use std::collections::BTreeMap;

use rocketraft_client::{Admin, ClientConfig, MessageExt};
use serde_json::{json, Value};

use crate::table::Table;

/// What a command prints: `text` by default, `json` with `--json`.
pub struct Output {
    pub text: String,
    pub json: Value,
}

pub async fn topic_create(
    admin: &Admin,
    cluster: Option<&str>,
    topic: &str,
    queues: i32,
    order: bool,
) -> anyhow::Result<Output> {
    check_topic_name(topic)?;
    let groups = admin.create_topic(cluster, topic, queues, order).await?;
    Ok(Output {
        text: format!("created {topic}: {queues} queues on {}\n", groups.join(", ")),
        json: json!({ "topic": topic, "queues": queues, "order": order, "brokerGroups": groups }),
    })
}

/// RocketMQ's rule (the broker's): 1 to 127 letters, digits, `%`, `-`, `_` and `|`.
pub fn check_topic_name(topic: &str) -> anyhow::Result<()> {
    if !rocketraft_protocol::names::valid_topic_name(topic) {
        anyhow::bail!(
            "{topic:?} is not a valid topic name: use 1 to 127 letters, digits, '-', '_', '|' or '%'"
        );
    }
    Ok(())
}

pub async fn topic_list(admin: &Admin) -> anyhow::Result<Output> {
    let topics = admin.topics().await?;
    let mut text = String::new();
    for t in &topics {
        text.push_str(t);
        text.push('\n');
    }
    Ok(Output { text, json: json!(topics) })
}

pub async fn topic_route(admin: &Admin, topic: &str) -> anyhow::Result<Output> {
    let route = admin.route(topic).await?;
    let mut brokers = Table::new(["GROUP", "CLUSTER", "BROKER ID", "ADDRESS", "ROLE"]);
    for b in &route.broker_datas {
        for (id, addr) in &b.broker_addrs {
            let role = if *id == 0 { "master" } else { "slave" };
            brokers.row([
                b.broker_name.clone(),
                b.cluster.clone(),
                id.to_string(),
                addr.clone(),
                role.into(),
            ]);
        }
    }
    let mut queues = Table::new(["GROUP", "READ QUEUES", "WRITE QUEUES", "PERM"]);
    for q in &route.queue_datas {
        queues.row([
            q.broker_name.clone(),
            q.read_queue_nums.to_string(),
            q.write_queue_nums.to_string(),
            perm_name(q.perm),
        ]);
    }
    let json = json!({
        "topic": topic,
        "brokers": route.broker_datas.iter().map(|b| json!({
            "group": b.broker_name, "cluster": b.cluster, "addrs": b.broker_addrs,
        })).collect::<Vec<_>>(),
        "queues": route.queue_datas.iter().map(|q| json!({
            "group": q.broker_name, "readQueues": q.read_queue_nums,
            "writeQueues": q.write_queue_nums, "perm": q.perm,
        })).collect::<Vec<_>>(),
    });
    Ok(Output { text: format!("{}\n{}", brokers.render(), queues.render()), json })
}

fn perm_name(perm: i32) -> String {
    use rocketraft_protocol::code::perm::{READ, WRITE};
    let mut s = String::new();
    s.push(if perm & READ != 0 { 'r' } else { '-' });
    s.push(if perm & WRITE != 0 { 'w' } else { '-' });
    s
}

pub async fn topic_delete(
    admin: &Admin,
    cluster: Option<&str>,
    topic: &str,
) -> anyhow::Result<Output> {
    admin.delete_topic(cluster, topic).await?;
    Ok(Output { text: format!("deleted {topic}\n"), json: json!({ "deleted": topic }) })
}

/// Every replica of every group with its Raft state, asked of the replica itself. Lag is how
/// far its log is behind its group's leader, in entries (from the leader's replication state
/// where it has one) and CommitLog bytes. Members the leader knows but the NameServers do not
/// (down, or not registered yet) are listed too, with the leader's view of their lag.
pub async fn cluster_list(admin: &Admin) -> anyhow::Result<Output> {
    let info = admin.cluster_info().await?;
    let mut replicas = Vec::new();
    for (cluster, groups) in &info.cluster_addr_table {
        for group in groups {
            let Some(data) = info.broker_addr_table.get(group) else { continue };
            for (id, addr) in &data.broker_addrs {
                let runtime = admin.runtime_info(addr).await.ok();
                replicas.push(ReplicaView {
                    cluster: cluster.clone(),
                    group: group.clone(),
                    broker_id: Some(*id),
                    addr: Some(addr.clone()),
                    runtime,
                });
            }
        }
    }
    // Each group's leader: the replica whose Raft role is Leader (the highest term's, should a
    // deposed leader not know it yet).
    let mut leaders: BTreeMap<String, usize> = BTreeMap::new();
    for (i, r) in replicas.iter().enumerate() {
        let better =
            leaders.get(&r.group).is_none_or(|&j| r.num("raftTerm") > replicas[j].num("raftTerm"));
        if r.get("raftRole") == "Leader" && better {
            leaders.insert(r.group.clone(), i);
        }
    }
    // Members the leader knows that no NameServer lists.
    let mut missing = Vec::new();
    for &i in leaders.values() {
        let leader = &replicas[i];
        let registered: Vec<u64> = replicas
            .iter()
            .filter(|r| r.group == leader.group)
            .filter_map(|r| r.num("raftNodeId"))
            .collect();
        for member in leader.get("raftMembers").split(',').filter_map(|m| m.parse::<u64>().ok()) {
            if !registered.contains(&member) {
                let mut runtime = BTreeMap::new();
                runtime.insert("raftNodeId".to_owned(), member.to_string());
                missing.push(ReplicaView {
                    cluster: leader.cluster.clone(),
                    group: leader.group.clone(),
                    broker_id: None,
                    addr: None,
                    runtime: Some(runtime),
                });
            }
        }
    }
    replicas.extend(missing);
    replicas.sort_by_key(|r| (r.cluster.clone(), r.group.clone(), r.num("raftNodeId")));

    let mut table = Table::new([
        "CLUSTER",
        "GROUP",
        "BROKER ID",
        "ADDRESS",
        "RAFT NODE",
        "ROLE",
        "TERM",
        "LAST INDEX",
        "APPLIED",
        "LAG ENTRIES",
        "LAG BYTES",
    ]);
    let mut rows = Vec::new();
    for r in &replicas {
        let leader = leaders.get(&r.group).map(|&i| &replicas[i]);
        let role = match (&r.addr, &r.runtime, r.get("raftRole").as_str()) {
            (None, _, _) => "not registered".to_owned(),
            (_, None, _) => "unreachable".to_owned(),
            (_, _, "Leader") => "leader".to_owned(),
            (_, _, "Follower") => "follower".to_owned(),
            (_, _, other) => other.to_lowercase(),
        };
        let (lag_entries, lag_bytes) = match leader {
            Some(l) => lag(l, r),
            None => (None, None),
        };
        let show = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_default();
        table.row([
            r.cluster.clone(),
            r.group.clone(),
            r.broker_id.map_or_else(|| "-".to_owned(), |b| b.to_string()),
            r.addr.clone().unwrap_or_else(|| "-".to_owned()),
            r.get("raftNodeId"),
            role.clone(),
            r.get("raftTerm"),
            r.get("raftLastLogIndex"),
            r.get("raftLastApplied"),
            show(lag_entries),
            show(lag_bytes),
        ]);
        rows.push(json!({
            "cluster": r.cluster, "group": r.group, "brokerId": r.broker_id, "addr": r.addr,
            "raftNode": r.num("raftNodeId"), "role": role, "term": r.num("raftTerm"),
            "lastLogIndex": r.num("raftLastLogIndex"), "applied": r.num("raftLastApplied"),
            "lagEntries": lag_entries, "lagBytes": lag_bytes,
            "commitLogAppends": r.num("commitLogAppends"),
            "commitLogFlushes": r.num("commitLogFlushes"),
            "commitLogFileSyncs": r.num("commitLogFileSyncs"),
            "clockAheadMs": r.num("clockAheadMs"),
        }));
    }
    let text = if table.is_empty() {
        "no broker is registered with the NameServer\n".to_owned()
    } else {
        table.render()
    };
    Ok(Output { text, json: json!(rows) })
}

/// One replica as `cluster list` sees it: registered (broker id, address) or only a member the
/// leader knows; its runtime table when it answered.
/// A group's leader as its registered replicas report it: (term, client address, Raft node,
/// its runtime table). The highest term's, should a deposed leader not know it yet.
async fn group_leader(
    admin: &Admin,
    group: &str,
) -> anyhow::Result<(u64, String, u64, BTreeMap<String, String>)> {
    let info = admin.cluster_info().await?;
    let Some(data) = info.broker_addr_table.get(group) else {
        anyhow::bail!("no broker group {group:?} is registered with the NameServers");
    };
    let mut leader: Option<(u64, String, u64, BTreeMap<String, String>)> = None;
    for addr in data.broker_addrs.values() {
        let Ok(t) = admin.runtime_info(addr).await else { continue };
        let num = |k: &str| t.get(k).and_then(|v| v.parse::<u64>().ok());
        if t.get("raftRole").map(String::as_str) != Some("Leader") {
            continue;
        }
        let (Some(term), Some(node)) = (num("raftTerm"), num("raftNodeId")) else { continue };
        if leader.as_ref().is_none_or(|(t, ..)| term > *t) {
            leader = Some((term, addr.clone(), node, t));
        }
    }
    leader.ok_or_else(|| {
        anyhow::anyhow!("group {group} has no leader now (an election may be under way): try again")
    })
}

/// Hands the leadership of broker group `group` to its Raft node `to` (RAFT_TRANSFER_LEADER to
/// the group's leader, found by asking each registered replica its Raft role). Writes wait at
/// most `timeout_ms` on the old leader meanwhile; clients then retry them at the new one.
pub async fn cluster_transfer_leader(
    admin: &Admin,
    group: &str,
    to: u64,
    timeout_ms: u64,
) -> anyhow::Result<Output> {
    let (term, addr, from, _) = group_leader(admin, group).await?;
    if from == to {
        return Ok(Output {
            text: format!("node {to} already leads {group} (term {term})\n"),
            json: json!({ "group": group, "leader": to, "term": term, "moved": false }),
        });
    }
    let (leader, term) = admin.transfer_leader(&addr, to, timeout_ms).await?;
    let text = if leader == to {
        format!("node {to} leads {group} in term {term} (was node {from})\n")
    } else {
        format!(
            "node {leader} leads {group} in term {term} (asked for node {to}; was node {from})\n"
        )
    };
    Ok(Output {
        text,
        json: json!({ "group": group, "from": from, "leader": leader, "term": term, "moved": true }),
    })
}

fn members_output(group: &str, what: String, voters: &[u64], learners: &[u64]) -> Output {
    let list = |ids: &[u64]| ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
    let learners_text =
        if learners.is_empty() { String::new() } else { format!("; learners {}", list(learners)) };
    Output {
        text: format!("{what}; {group} votes with nodes {}{learners_text}\n", list(voters)),
        json: json!({ "group": group, "voters": voters, "learners": learners }),
    }
}

/// Adds Raft node `node` (started already, listening for Raft at `raft_addr`, with an empty
/// data directory) to broker group `group`: it joins as a learner, catches up, then votes.
///
/// With `repair`, the replica is one started again under its id on an empty data directory
/// (its old one quarantined, or lost), which its group refuses as a stranger: it is removed
/// first (if still a member; never while it leads: a replica that leads is not the one to
/// repair), then added again, and copies the group's log from the leader.
pub async fn cluster_add_replica(
    admin: &Admin,
    group: &str,
    node: u64,
    raft_addr: &str,
    timeout_ms: u64,
    repair: bool,
) -> anyhow::Result<Output> {
    let (_, addr, leader, _) = group_leader(admin, group).await?;
    if repair {
        if leader == node {
            anyhow::bail!(
                "node {node} leads {group}: a leading replica is not one to repair (a replica \
                 on damaged or empty data cannot lead); check the node id"
            );
        }
        admin.remove_replica(&addr, node, timeout_ms).await?;
    }
    let (voters, learners) = admin.add_replica(&addr, node, raft_addr, timeout_ms).await?;
    let done = if repair { "repaired" } else { "added" };
    Ok(members_output(group, format!("node {node} {done}"), &voters, &learners))
}

/// Removes Raft node `node` from broker group `group`. If it leads, its leadership goes first
/// to the voter furthest along (as `transfer-leader` would), then the new leader removes it.
/// The removed replica's process unregisters and exits.
pub async fn cluster_remove_replica(
    admin: &Admin,
    group: &str,
    node: u64,
    timeout_ms: u64,
) -> anyhow::Result<Output> {
    let (voters, learners) = remove_replica(admin, group, node, timeout_ms).await?;
    Ok(members_output(group, format!("node {node} removed"), &voters, &learners))
}

async fn remove_replica(
    admin: &Admin,
    group: &str,
    node: u64,
    timeout_ms: u64,
) -> anyhow::Result<(Vec<u64>, Vec<u64>)> {
    let (_, mut addr, leader, table) = group_leader(admin, group).await?;
    if leader == node {
        let members = table.get("raftMembers").cloned().unwrap_or_default();
        let matched =
            |id: u64| table.get(&format!("raftMatched.{id}")).and_then(|m| m.parse::<u64>().ok());
        let to = members
            .split(',')
            .filter_map(|m| m.parse::<u64>().ok())
            .filter(|m| *m != node)
            .max_by_key(|m| (matched(*m), std::cmp::Reverse(*m)))
            .ok_or_else(|| anyhow::anyhow!("node {node} is the only voter of {group}"))?;
        let (now, _) = admin.transfer_leader(&addr, to, TRANSFER_BEFORE_REMOVE_MS).await?;
        // The new leader registers as master within moments; ask the replicas again (for up
        // to 10 s).
        let mut asked = 0;
        loop {
            match group_leader(admin, group).await {
                Ok((_, a, l, _)) if l == now => {
                    addr = a;
                    break;
                }
                _ if asked >= 100 => {
                    anyhow::bail!("node {now} took over {group} but does not answer as its leader")
                }
                _ => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
            }
            asked += 1;
        }
    }
    Ok(admin.remove_replica(&addr, node, timeout_ms).await?)
}

/// How long a removal lets the leader it removes hand its leadership over.
const TRANSFER_BEFORE_REMOVE_MS: u64 = 3_000;

/// Replaces Raft node `from` of broker group `group` by `to` (started already at `raft_addr`):
/// adds `to` (it catches up and votes), then removes `from`. The group never has fewer voters
/// than before.
pub async fn cluster_replace_replica(
    admin: &Admin,
    group: &str,
    from: u64,
    to: u64,
    raft_addr: &str,
    timeout_ms: u64,
) -> anyhow::Result<Output> {
    let (_, addr, _, _) = group_leader(admin, group).await?;
    admin.add_replica(&addr, to, raft_addr, timeout_ms).await?;
    let (voters, learners) = remove_replica(admin, group, from, timeout_ms).await?;
    Ok(members_output(group, format!("node {from} replaced by node {to}"), &voters, &learners))
}

struct ReplicaView {
    cluster: String,
    group: String,
    broker_id: Option<i64>,
    addr: Option<String>,
    runtime: Option<BTreeMap<String, String>>,
}

impl ReplicaView {
    fn get(&self, key: &str) -> String {
        self.runtime.as_ref().and_then(|t| t.get(key)).cloned().unwrap_or_default()
    }

    fn num(&self, key: &str) -> Option<u64> {
        self.runtime.as_ref()?.get(key)?.parse().ok()
    }
}

/// How far `r` is behind `leader`: entries from the leader's replication state (matched index;
/// "none" is nothing matched yet), else from the two last indexes; bytes from the CommitLog ends
/// when `r` answered.
fn lag(leader: &ReplicaView, r: &ReplicaView) -> (Option<u64>, Option<u64>) {
    let last = leader.num("raftLastLogIndex");
    let node = r.get("raftNodeId");
    let entries = if node == leader.get("raftNodeId") {
        Some(0)
    } else {
        match leader.runtime.as_ref().and_then(|t| t.get(&format!("raftMatched.{node}"))) {
            Some(m) if m == "none" => last,
            Some(m) => last.zip(m.parse::<u64>().ok()).map(|(l, m)| l.saturating_sub(m)),
            None => last.zip(r.num("raftLastLogIndex")).map(|(l, mine)| l.saturating_sub(mine)),
        }
    };
    let bytes = r
        .num("commitLogMaxOffset")
        .and_then(|mine| Some(leader.num("commitLogMaxOffset")?.saturating_sub(mine)));
    (entries, bytes)
}

/// A consumer group's committed offset per queue, the queue's end, and the lag between.
pub async fn group_offsets(
    admin: &Admin,
    group: &str,
    topic: Option<&str>,
) -> anyhow::Result<Output> {
    let stats = match admin.consume_stats(group, topic).await {
        Ok(s) => s,
        // RocketMQ's answer for a group the broker has no offsets or subscription for.
        Err(e) if e.code() == Some(rocketraft_protocol::response_code::CONSUMER_NOT_ONLINE) => {
            Default::default()
        }
        Err(e) => return Err(e.into()),
    };
    let mut table = Table::new([
        "TOPIC",
        "GROUP",
        "QUEUE",
        "BROKER OFFSET",
        "CONSUMER OFFSET",
        "LAG",
        "LAST CONSUMED",
    ]);
    let mut rows = Vec::new();
    let mut total: i64 = 0;
    for (q, o) in &stats.offset_table {
        let lag = o.broker_offset.saturating_sub(o.consumer_offset).max(0);
        total = total.saturating_add(lag);
        let last = if o.last_timestamp > 0 { format_ms(o.last_timestamp) } else { "-".into() };
        table.row([
            q.topic.clone(),
            q.broker_name.clone(),
            q.queue_id.to_string(),
            o.broker_offset.to_string(),
            o.consumer_offset.to_string(),
            lag.to_string(),
            last,
        ]);
        rows.push(json!({
            "topic": q.topic, "brokerGroup": q.broker_name, "queueId": q.queue_id,
            "brokerOffset": o.broker_offset, "consumerOffset": o.consumer_offset, "lag": lag,
            "lastTimestamp": o.last_timestamp,
        }));
    }
    let text = if table.is_empty() {
        format!("group {group} has no committed offsets\n")
    } else {
        format!("{}total lag: {total}\n", table.render())
    };
    Ok(Output { text, json: json!({ "group": group, "queues": rows, "totalLag": total }) })
}

/// Messages by key (`KEYS`), or one by id: the producer's msgId (UNIQ_KEY, needs the topic) or
/// the broker's offset msgId.
pub async fn message_query(
    admin: &Admin,
    topic: Option<&str>,
    key: Option<&str>,
    id: Option<&str>,
) -> anyhow::Result<Output> {
    let found: Vec<MessageExt> = match (key, id, topic) {
        (Some(key), _, Some(topic)) => admin.query_by_key(topic, key).await?,
        (Some(_), _, None) => anyhow::bail!("--key needs --topic: keys are indexed per topic"),
        (None, Some(id), Some(topic)) => match admin.query_by_msg_id(topic, id).await? {
            Some(m) => vec![m],
            None if rocketraft_protocol::message::decode_offset_msg_id(id).is_ok() => {
                vec![admin.view_by_offset_id(id).await?]
            }
            None => vec![],
        },
        (None, Some(id), None) => {
            if rocketraft_protocol::message::decode_offset_msg_id(id).is_err() {
                anyhow::bail!(
                    "{id:?} is not a message id: give a msgId (with --topic) or an offsetMsgId"
                );
            }
            vec![admin.view_by_offset_id(id).await?]
        }
        (None, None, _) => anyhow::bail!("give --key KEY or --id MSGID"),
    };
    let mut text = String::new();
    for m in &found {
        text.push_str(&describe(m));
        text.push('\n');
    }
    if found.is_empty() {
        text.push_str("no message found\n");
    }
    Ok(Output { text, json: json!(found.iter().map(message_json).collect::<Vec<_>>()) })
}

/// One message as labelled lines (what `message query` and `consume` print).
pub fn describe(m: &MessageExt) -> String {
    let mut s = String::new();
    let mut line = |k: &str, v: &str| s.push_str(&format!("{k:<14}{v}\n"));
    line("msgId", m.msg_id().unwrap_or("-"));
    line("offsetMsgId", &m.offset_msg_id());
    line("topic", &m.topic);
    line(
        "queue",
        &format!("{} #{} offset {}", m.queue.broker_name, m.queue.queue_id, m.queue_offset),
    );
    line("tags", m.tags().unwrap_or("-"));
    line("keys", m.keys().unwrap_or("-"));
    line("stored", &format!("{} at {}", format_ms(m.store_timestamp_ms), m.store_host));
    line("born", &format!("{} at {}", format_ms(m.born_timestamp_ms), m.born_host));
    if m.reconsume_times > 0 {
        line("reconsumed", &m.reconsume_times.to_string());
    }
    line("body", &body_text(&m.body));
    s
}

/// The body as one line of text: UTF-8 shown with control characters escaped (so a body
/// cannot break the line or drive the terminal), first 1,024 characters; anything else as a
/// length.
pub fn body_text(body: &[u8]) -> String {
    let Ok(s) = std::str::from_utf8(body) else {
        return format!("<{} bytes, not UTF-8>", body.len());
    };
    let mut out = String::new();
    for c in s.chars().take(1024) {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    if s.chars().count() > 1024 {
        out.push_str(&format!("... ({} bytes)", body.len()));
    }
    out
}

pub fn message_json(m: &MessageExt) -> Value {
    json!({
        "msgId": m.msg_id(), "offsetMsgId": m.offset_msg_id(), "topic": m.topic,
        "brokerGroup": m.queue.broker_name, "queueId": m.queue.queue_id,
        "queueOffset": m.queue_offset, "tags": m.tags(), "keys": m.keys(),
        "storeTimestamp": m.store_timestamp_ms, "storeHost": m.store_host.to_string(),
        "bornTimestamp": m.born_timestamp_ms, "bornHost": m.born_host.to_string(),
        "reconsumeTimes": m.reconsume_times, "properties": m.properties,
        "body": String::from_utf8_lossy(&m.body),
    })
}

/// Unix milliseconds as `2026-11-22 11:31:44.123 UTC`.
pub fn format_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = rocketraft_protocol::admin::civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{:03} UTC",
        rest / 3600,
        rest / 60 % 60,
        rest % 60,
        ms.rem_euclid(1000)
    )
}

/// A point in time as `group reset-offset --to-time` takes it: Unix milliseconds, `now`, or a
/// UTC date and time as `2026-12-03T10:00:00` (seconds and `.mmm` optional) or RocketMQ's
/// `2026-12-03#10:00:00:000`.
pub fn parse_time(text: &str, now_ms: i64) -> anyhow::Result<i64> {
    let text = text.trim();
    if text == "now" {
        return Ok(now_ms);
    }
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    let bad = || {
        anyhow::anyhow!(
            "{text:?} is not a time: give Unix milliseconds, `now`, or UTC as 2026-12-03T10:00:00"
        )
    };
    let (date, time) = text.split_once(['T', '#', ' ']).ok_or_else(bad)?;
    let num = |s: &str| s.parse::<u32>().map_err(|_| bad());
    let mut d = date.split('-');
    let (y, m, day) = match (d.next(), d.next(), d.next(), d.next()) {
        (Some(y), Some(m), Some(day), None) => {
            (y.parse::<i64>().map_err(|_| bad())?, num(m)?, num(day)?)
        }
        _ => return Err(bad()),
    };
    let mut t = time.split([':', '.']);
    let hour = num(t.next().ok_or_else(bad)?)?;
    let minute = num(t.next().ok_or_else(bad)?)?;
    let second = t.next().map(num).transpose()?.unwrap_or(0);
    let milli = t.next().map(num).transpose()?.unwrap_or(0);
    if t.next().is_some()
        || !(1..=9999).contains(&y)
        || !(1..=12).contains(&m)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
        || milli > 999
    {
        return Err(bad());
    }
    let days = rocketraft_protocol::admin::days_from_civil(y, m, day);
    Ok(days * 86_400_000
        + i64::from(hour) * 3_600_000
        + i64::from(minute) * 60_000
        + i64::from(second) * 1000
        + i64::from(milli))
}

/// `broker config`: each master's settings (or one broker group's replicas'), key by key.
pub async fn broker_config(admin: &Admin, group: Option<&str>) -> anyhow::Result<Output> {
    let info = admin.cluster_info().await?;
    let mut text = String::new();
    let mut all = serde_json::Map::new();
    for (name, data) in &info.broker_addr_table {
        if group.is_some_and(|g| g != name) {
            continue;
        }
        // One group asked for: every replica; otherwise each group's master.
        let addrs: Vec<&String> = match group {
            Some(_) => data.broker_addrs.values().collect(),
            None => data.broker_addrs.get(&0).into_iter().collect(),
        };
        for addr in addrs {
            let config = admin.broker_config(addr).await?;
            text.push_str(&format!("# {name} at {addr}\n"));
            let mut table = Table::new(["KEY", "VALUE"]);
            for (k, v) in &config {
                table.row([k.clone(), v.clone()]);
            }
            text.push_str(&table.render());
            all.insert(addr.clone(), json!({ "brokerGroup": name, "config": config }));
        }
    }
    if all.is_empty() {
        anyhow::bail!(
            "no broker {} is registered with the NameServer",
            group.map_or("group".to_owned(), |g| format!("group named {g}"))
        );
    }
    Ok(Output { text, json: Value::Object(all) })
}

/// `group connections`: who is connected for a consumer group, from where, with what client,
/// and how the group consumes.
pub async fn group_connections(admin: &Admin, group: &str) -> anyhow::Result<Output> {
    let c = match admin.consumer_connections(group).await {
        Ok(c) => c,
        Err(e) if e.code() == Some(rocketraft_protocol::response_code::CONSUMER_NOT_ONLINE) => {
            return Ok(Output {
                text: format!("no consumer of group {group} is connected\n"),
                json: json!({ "group": group, "connections": [] }),
            });
        }
        Err(e) => return Err(e.into()),
    };
    let mut table = Table::new(["CLIENT ID", "ADDRESS", "LANGUAGE", "VERSION"]);
    for conn in &c.connection_set {
        table.row([
            conn.client_id.clone(),
            conn.client_addr.clone(),
            conn.language.clone(),
            conn.version.to_string(),
        ]);
    }
    let kind = |v: Option<Value>| v.and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
    let (consume_type, model, from) = (
        kind(c.consume_type.map(|t| json!(t))),
        kind(c.message_model.map(|m| json!(m))),
        kind(c.consume_from_where.map(|f| json!(f))),
    );
    let subscriptions: Vec<String> =
        c.subscription_table.values().map(|s| format!("{} ({})", s.topic, s.sub_string)).collect();
    let text = format!(
        "{}consume type: {consume_type}, message model: {model}, from: {from}\nsubscriptions: {}\n",
        table.render(),
        subscriptions.join(", ")
    );
    let connections: Vec<Value> = c
        .connection_set
        .iter()
        .map(|c| json!({ "clientId": c.client_id, "clientAddr": c.client_addr, "language": c.language, "version": c.version }))
        .collect();
    Ok(Output {
        text,
        json: json!({
            "group": group, "connections": connections, "consumeType": consume_type,
            "messageModel": model, "consumeFromWhere": from,
            "subscriptions": c.subscription_table,
        }),
    })
}

/// `topic consumers`: the groups consuming a topic (online, or with offsets on it).
pub async fn topic_consumers(admin: &Admin, topic: &str) -> anyhow::Result<Output> {
    let groups = admin.topic_consumers(topic).await?;
    let text = if groups.is_empty() {
        format!("no group consumes {topic}\n")
    } else {
        groups.iter().map(|g| format!("{g}\n")).collect()
    };
    Ok(Output { text, json: json!({ "topic": topic, "groups": groups }) })
}

/// `group reset-offset`: moves a group's offsets on a topic to a point in time.
pub async fn group_reset_offset(
    admin: &Admin,
    group: &str,
    topic: &str,
    timestamp_ms: i64,
) -> anyhow::Result<Output> {
    let body = admin.reset_offset_by_time(group, topic, timestamp_ms).await?;
    let mut table = Table::new(["TOPIC", "GROUP", "QUEUE", "NEW OFFSET"]);
    let mut rows = Vec::new();
    for (q, offset) in &body.offset_table {
        table.row([
            q.topic.clone(),
            q.broker_name.clone(),
            q.queue_id.to_string(),
            offset.to_string(),
        ]);
        rows.push(json!({ "brokerGroup": q.broker_name, "queueId": q.queue_id, "offset": offset }));
    }
    Ok(Output {
        text: format!(
            "{}reset {group} on {topic} to {}\n",
            table.render(),
            format_ms(timestamp_ms)
        ),
        json: json!({ "group": group, "topic": topic, "timestamp": timestamp_ms, "queues": rows }),
    })
}

/// Messages waiting in the parked queues of every broker group: per delay level's queue of
/// `SCHEDULE_TOPIC_XXXX` and per timer queue of `rmq_sys_wheel_timer` that ever held one, how
/// many were parked, moved on, and are still waiting.
pub async fn delayed(admin: &Admin) -> anyhow::Result<Output> {
    let mut parked = admin.parked().await?;
    parked.retain(|q| q.stored > 0);
    let mut table = Table::new(["GROUP", "QUEUE", "PARKED", "MOVED", "WAITING"]);
    let mut rows = Vec::new();
    let mut waiting = 0i64;
    for q in &parked {
        let name = if q.topic == rocketraft_protocol::names::TIMER_TOPIC {
            let step = rocketraft_protocol::schedule::timer_step_ms(q.queue_id);
            format!("timer {:.1} s", step as f64 / 1_000.0)
        } else {
            format!("delay level {}", q.queue_id + 1)
        };
        waiting += q.pending();
        table.row([
            q.broker_name.clone(),
            name.clone(),
            q.stored.to_string(),
            q.moved.to_string(),
            q.pending().to_string(),
        ]);
        rows.push(json!({
            "brokerGroup": q.broker_name, "topic": q.topic, "queueId": q.queue_id, "queue": name,
            "parked": q.stored, "moved": q.moved, "waiting": q.pending(),
        }));
    }
    let text = if table.is_empty() {
        "no delayed messages\n".to_owned()
    } else {
        format!("{}waiting in all: {waiting}\n", table.render())
    };
    Ok(Output { text, json: json!({ "queues": rows, "waiting": waiting }) })
}

/// `rocketraft transactions`: unresolved half messages, oldest first per broker group.
pub async fn transactions(
    admin: &Admin,
    topic: Option<&str>,
    group: Option<&str>,
    max: i32,
) -> anyhow::Result<Output> {
    let (halves, more) = admin.unresolved_halves(None, topic, group, max).await?;
    let now = rocketraft_raft::clock::now_ms();
    let mut table =
        Table::new(["GROUP", "TOPIC", "QUEUE", "PRODUCER GROUP", "MSG ID", "AGE", "CHECKS"]);
    let mut rows = Vec::new();
    for (broker, h) in &halves {
        let age_s = (now - h.store_timestamp).max(0) as f64 / 1_000.0;
        table.row([
            broker.clone(),
            h.topic.clone(),
            h.queue_id.to_string(),
            h.producer_group.clone(),
            h.msg_id.clone(),
            format!("{age_s:.1} s"),
            h.check_times.to_string(),
        ]);
        rows.push(json!({
            "brokerGroup": broker, "topic": h.topic, "queueId": h.queue_id,
            "producerGroup": h.producer_group, "msgId": h.msg_id, "halfOffset": h.half_offset,
            "commitLogOffset": h.commit_log_offset, "storeTimestamp": h.store_timestamp,
            "ageSeconds": age_s, "checkTimes": h.check_times,
        }));
    }
    let text = if table.is_empty() {
        "no unresolved transactions\n".to_owned()
    } else if more {
        format!("{}(more not shown: raise --max)\n", table.render())
    } else {
        table.render()
    };
    Ok(Output { text, json: json!({ "halves": rows, "more": more }) })
}

/// Properties the broker sets on a message it parks, retries or dead-letters: a re-sent dead
/// letter starts without them.
const BROKER_PROPERTIES: [&str; 11] = [
    "RETRY_TOPIC",
    "ORIGIN_MESSAGE_ID",
    "RECONSUME_TIME",
    "MAX_RECONSUME_TIMES",
    "DELAY",
    "REAL_TOPIC",
    "REAL_QID",
    "TIMER_OUT_MS",
    "RR_MOVED_FROM",
    "MIN_OFFSET",
    "MAX_OFFSET",
];

/// A group's dead letters (`%DLQ%<group>`), at most `max`: listed, or with `resend` sent again
/// to the topic each was first sent to (keys, tags, user properties and body kept; the dead
/// letter's msgId in `DLQ_ORIGIN_MESSAGE_ID`). Re-sending remembers how far it got (as group
/// `rocketraft_dlq_<group>`), so a second run sends only newer dead letters.
pub async fn dead_letters(
    client: &ClientConfig,
    group: &str,
    resend: bool,
    max: usize,
) -> anyhow::Result<Output> {
    use rocketraft_client::{ClientError, PullConsumerConfig};
    use rocketraft_client::{ConsumeFrom, Message, Producer, ProducerConfig, PullConsumer};
    rocketraft_protocol::names::check_group(group)?;
    let dlq = rocketraft_protocol::names::dlq_topic(group);
    let reader =
        if resend { format!("rocketraft_dlq_{group}") } else { "rocketraft_dlq_view".into() };
    let namesrv = &client.namesrv_addrs.join(";");
    let mut config =
        PullConsumerConfig { client: client.clone(), ..PullConsumerConfig::new(namesrv, reader) };
    config.consume_from = ConsumeFrom::FirstOffset;
    let consumer = PullConsumer::start(config).await?;
    let queues = match consumer.topic_queues(&dlq).await {
        Ok(q) => q,
        Err(ClientError::NoRoute { .. }) => {
            consumer.shutdown().await;
            let text = format!("group {group} has no dead letters ({dlq} does not exist)\n");
            return Ok(Output { text, json: json!({ "group": group, "messages": [] }) });
        }
        Err(e) => {
            consumer.shutdown().await;
            return Err(e.into());
        }
    };
    consumer.assign(queues);
    let mut found: Vec<MessageExt> = Vec::new();
    while found.len() < max {
        let got = consumer.poll(1_000).await?;
        if got.is_empty() {
            break;
        }
        found.extend(got);
    }
    found.truncate(max);
    if !resend {
        consumer.shutdown().await;
        let mut table = Table::new(["MSG ID", "TOPIC", "RECONSUMED", "STORED", "BODY"]);
        for m in &found {
            let mut body = body_text(&m.body);
            body.truncate(40);
            table.row([
                m.msg_id().unwrap_or("-").to_owned(),
                m.topic.clone(),
                m.reconsume_times.to_string(),
                format_ms(m.store_timestamp_ms),
                body,
            ]);
        }
        let text = format!("{}{} dead letters of {group}\n", table.render(), found.len());
        let messages: Vec<Value> = found.iter().map(message_json).collect();
        return Ok(Output { text, json: json!({ "group": group, "messages": messages }) });
    }
    let producer =
        Producer::start(ProducerConfig { client: client.clone(), ..ProducerConfig::new(namesrv) })
            .await?;
    let mut sent = 0usize;
    let mut failure = None;
    for m in &found {
        let mut msg = Message::new(m.topic.clone(), m.body.clone());
        msg.flag = m.flag;
        for (k, v) in &m.properties {
            if !BROKER_PROPERTIES.contains(&k.as_str()) && k != "UNIQ_KEY" {
                msg = msg.with_property(k.clone(), v.clone());
            }
        }
        let origin = m.msg_id().map_or_else(|| m.offset_msg_id(), str::to_owned);
        msg = msg.with_property("DLQ_ORIGIN_MESSAGE_ID", origin);
        match producer.send(msg).await {
            Ok(_) => sent += 1,
            Err(e) => {
                // Stop at the first failure; what was read after it is not committed.
                let _ = consumer.seek(&m.queue, m.queue_offset);
                failure = Some(e);
                break;
            }
        }
    }
    if failure.is_none() {
        for m in &found {
            consumer.seek(&m.queue, m.queue_offset + 1)?;
        }
    }
    let committed = consumer.commit().await;
    producer.shutdown().await;
    consumer.shutdown().await;
    committed?;
    if let Some(e) = failure {
        return Err(anyhow::anyhow!("{sent} dead letters of {group} re-sent, then: {e}"));
    }
    let text = format!("{sent} dead letters of {group} re-sent to their topics\n");
    Ok(Output { text, json: json!({ "group": group, "resent": sent }) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_print_in_utc() {
        assert_eq!(format_ms(0), "1970-01-01 00:00:00.000 UTC");
        assert_eq!(parse_time("now", 77).unwrap(), 77);
        assert_eq!(parse_time("1795347104123", 0).unwrap(), 1_795_347_104_123);
        assert_eq!(parse_time("2026-11-22T11:31:44.123", 0).unwrap(), 1_795_347_104_123);
        assert_eq!(parse_time("2026-11-22#11:31:44:123", 0).unwrap(), 1_795_347_104_123);
        assert_eq!(parse_time("2000-02-29T00:00", 0).unwrap(), 951_782_400_000);
        for bad in [
            "yesterday",
            "2026-13-01T00:00",
            "2026-11-22T25:00",
            "2026-11-22",
            "",
            "9223372036854775807-01-01T00:00",
        ] {
            assert!(parse_time(bad, 0).is_err(), "{bad}");
        }
        assert_eq!(format_ms(1_795_347_104_123), "2026-11-22 11:31:44.123 UTC");
        assert_eq!(format_ms(951_782_400_000), "2000-02-29 00:00:00.000 UTC");
    }

    fn view(pairs: &[(&str, &str)], registered: bool) -> ReplicaView {
        ReplicaView {
            cluster: "C".into(),
            group: "g".into(),
            broker_id: registered.then_some(1),
            addr: registered.then(|| "a:1".into()),
            runtime: Some(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
        }
    }

    #[test]
    fn lag_comes_from_the_leaders_replication_state() {
        let leader = view(
            &[
                ("raftNodeId", "0"),
                ("raftLastLogIndex", "100"),
                ("commitLogMaxOffset", "5000"),
                ("raftMatched.1", "90"),
                ("raftMatched.2", "none"),
            ],
            true,
        );
        let behind = view(
            &[("raftNodeId", "1"), ("raftLastLogIndex", "95"), ("commitLogMaxOffset", "4000")],
            true,
        );
        assert_eq!(lag(&leader, &behind), (Some(10), Some(1000)), "matched, not last index");
        assert_eq!(lag(&leader, &view(&[("raftNodeId", "2")], false)), (Some(100), None));
        assert_eq!(lag(&leader, &leader), (Some(0), Some(0)));
        let unknown = view(&[("raftNodeId", "3"), ("raftLastLogIndex", "97")], true);
        assert_eq!(lag(&leader, &unknown), (Some(3), None), "no replication entry: last indexes");
    }

    #[test]
    fn topic_names_follow_rocketmq() {
        assert!(check_topic_name("TopicTest_1-a|b%c").is_ok());
        for bad in ["", "a b", "tópico", &"x".repeat(128)] {
            let e = check_topic_name(bad).unwrap_err().to_string();
            assert!(e.contains("not a valid topic name"), "{e}");
        }
    }

    #[test]
    fn bodies_print_as_text_or_a_length() {
        assert_eq!(body_text(b"hello"), "hello");
        assert_eq!(body_text(&[0xff, 0xfe]), "<2 bytes, not UTF-8>");
        assert_eq!(body_text(b"two\nlines\x1b[2J"), "two\\nlines\\u{1b}[2J");
        assert!(body_text("y".repeat(2000).as_bytes()).ends_with("... (2000 bytes)"));
    }
}
