//! `rocketraft dashboard`: a small web page over a cluster, server-rendered HTML with a little
//! JavaScript for the live chart. It reads the cluster through the admin calls the CLI makes
//! (`cluster list`, `topic route`, `group offsets`, `group connections`, `message query`, topic
//! and consume statistics): what it shows is what `rocketraft` prints.
//!
//! Pages: `/` the cluster (groups, replicas, roles, terms, lag) and live send and consume
//! rates; `/topics` and `/topic?name=T` (its route and each queue's offsets); `/groups` and
//! `/group?name=G` (lag per queue, consumers connected); `/message?topic=T&key=K` (or
//! `&id=ID`) finds messages. `/api/rates` is the chart's data: messages stored and consumed
//! per second, sampled every [`SAMPLE_MS`] from the queues' ends and the groups' committed
//! offsets.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rocketraft_client::Admin;
use rocketraft_remoting::http::{HttpHandler, HttpRequest, HttpResponse, HttpServer};
use serde_json::{json, Value};
use tokio::net::TcpListener;

use crate::admin;

/// How often the rates are sampled.
pub const SAMPLE_MS: u64 = 2_000;
/// Samples kept for the chart (three minutes).
const SAMPLES_MAX: usize = 90;

const HTML: &str = "text/html; charset=utf-8";

/// A running dashboard: its HTTP server and its sampler (both stop when it is dropped).
pub struct Dashboard {
    server: HttpServer,
    sampler: tokio::task::JoinHandle<()>,
}

impl Dashboard {
    /// Serves the dashboard of the cluster `admin` reaches on `listener`.
    /// Host names besides IP addresses and `localhost` that may name it are `allowed` (see
    /// [`host_allowed`]).
    pub fn start(
        listener: TcpListener,
        admin: Arc<Admin>,
        allowed: Vec<String>,
    ) -> std::io::Result<Dashboard> {
        let samples: Arc<Mutex<VecDeque<Sample>>> = Arc::default();
        let sampler = tokio::spawn(sample(admin.clone(), samples.clone()));
        let allowed = Arc::new(allowed);
        let handler: HttpHandler = Arc::new(move |req: HttpRequest| {
            let (admin, samples, allowed) = (admin.clone(), samples.clone(), allowed.clone());
            Box::pin(async move {
                if !host_allowed(&req, &allowed) {
                    return HttpResponse::text(
                        403,
                        "unknown Host: start the dashboard with --allow-host NAME to serve it under that name\n",
                    );
                }
                page(&admin, &samples, &req).await
            })
        });
        let server = HttpServer::start(listener, handler)?;
        Ok(Dashboard { server, sampler })
    }

    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.server.local_addr()
    }
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        self.sampler.abort();
    }
}

/// The cluster at one moment: messages stored per topic (the sum of its queues' ends) and
/// consumed per group (the sum of its committed offsets). Rates compare only the topics and
/// groups both samples read: one that appears, or a read that failed once, is no spike.
#[derive(Debug, Clone, Default)]
struct Sample {
    at_ms: i64,
    stored: BTreeMap<String, i64>,
    consumed: BTreeMap<String, i64>,
}

/// Topics the cluster makes for itself (not shown in the chart's totals or the group list).
fn is_system(topic: &str) -> bool {
    topic.starts_with('%')
        || topic.starts_with("RMQ_SYS_")
        || topic.starts_with("rmq_sys_")
        || topic.starts_with("SCHEDULE_TOPIC")
        || topic == "TBW102"
        || topic == "OFFSET_MOVED_EVENT"
        || topic == "SELF_TEST_TOPIC"
        || topic == "BenchmarkTest"
        || topic == "TRANS_CHECK_MAX_TIME_TOPIC"
}

/// The user topics: every topic but the system ones and those named after a cluster or a
/// broker group (RocketMQ registers one for each).
async fn user_topics(admin: &Admin) -> anyhow::Result<Vec<String>> {
    let info = admin.cluster_info().await?;
    let own: BTreeSet<&String> =
        info.cluster_addr_table.keys().chain(info.broker_addr_table.keys()).collect();
    Ok(admin.topics().await?.into_iter().filter(|t| !is_system(t) && !own.contains(t)).collect())
}

/// Every consumer group consuming a user topic (online, or with offsets on it).
async fn groups(admin: &Admin, topics: &[String]) -> BTreeSet<String> {
    let mut groups = BTreeSet::new();
    for t in topics {
        if let Ok(g) = admin.topic_consumers(t).await {
            groups.extend(g);
        }
    }
    groups
}

async fn sample(admin: Arc<Admin>, samples: Arc<Mutex<VecDeque<Sample>>>) {
    loop {
        if let Ok(s) = take_sample(&admin).await {
            let mut samples = samples.lock().unwrap_or_else(|p| p.into_inner());
            samples.push_back(s);
            while samples.len() > SAMPLES_MAX {
                samples.pop_front();
            }
        }
        tokio::time::sleep(Duration::from_millis(SAMPLE_MS)).await;
    }
}

async fn take_sample(admin: &Admin) -> anyhow::Result<Sample> {
    let topics = user_topics(admin).await?;
    let sum = |values: &mut dyn Iterator<Item = i64>| {
        values.fold(0i64, |a, v| a.saturating_add(v.max(0)))
    };
    let mut stored = BTreeMap::new();
    for t in &topics {
        if let Ok(stats) = admin.topic_stats(t).await {
            stored.insert(t.clone(), sum(&mut stats.offset_table.values().map(|o| o.max_offset)));
        }
    }
    let mut consumed = BTreeMap::new();
    for g in groups(admin, &topics).await {
        if let Ok(stats) = admin.consume_stats(&g, None).await {
            consumed.insert(g, sum(&mut stats.offset_table.values().map(|o| o.consumer_offset)));
        }
    }
    Ok(Sample { at_ms: rocketraft_raft::clock::now_ms(), stored, consumed })
}

/// The chart's data: per pair of consecutive samples, messages stored and consumed a second.
fn rates(samples: &VecDeque<Sample>) -> Value {
    let points: Vec<Value> = samples
        .iter()
        .zip(samples.iter().skip(1))
        .map(|(a, b)| {
            let secs = (b.at_ms.saturating_sub(a.at_ms) as f64 / 1000.0).max(0.001);
            let grew = |before: &BTreeMap<String, i64>, after: &BTreeMap<String, i64>| {
                after
                    .iter()
                    .filter_map(|(k, v)| Some(v.saturating_sub(*before.get(k)?).max(0)))
                    .fold(0i64, i64::saturating_add)
            };
            json!({
                "at": b.at_ms,
                "send": (grew(&a.stored, &b.stored) as f64 / secs).round(),
                "consume": (grew(&a.consumed, &b.consumed) as f64 / secs).round(),
            })
        })
        .collect();
    json!(points)
}

/// Whether a request may be answered: its `Host` names this machine by address or as
/// `localhost`, or is one of `allowed`. A page a browser loaded from elsewhere whose name was
/// made to resolve here (DNS rebinding) names that other host, and reads nothing.
pub fn host_allowed(req: &HttpRequest, allowed: &[String]) -> bool {
    match req.host_name() {
        None => false,
        Some(name) => {
            name.eq_ignore_ascii_case("localhost")
                || name.parse::<std::net::IpAddr>().is_ok()
                || allowed.iter().any(|a| a.eq_ignore_ascii_case(name))
        }
    }
}

async fn page(admin: &Admin, samples: &Mutex<VecDeque<Sample>>, req: &HttpRequest) -> HttpResponse {
    let q = |k: &str| form_value(&req.query, k);
    let body = match req.path.as_str() {
        "/" => cluster(admin).await,
        "/topics" => topics(admin).await,
        "/topic" => topic(admin, &q("name").unwrap_or_default()).await,
        "/groups" => group_list(admin).await,
        "/group" => group(admin, &q("name").unwrap_or_default()).await,
        "/message" => message(admin, q("topic"), q("key"), q("id")).await,
        "/api/rates" => {
            let samples = samples.lock().unwrap_or_else(|p| p.into_inner());
            return HttpResponse::ok("application/json", rates(&samples).to_string());
        }
        _ => return HttpResponse::not_found(),
    };
    let (title, html) = match body {
        Ok(page) => page,
        Err(e) => {
            ("Error".to_owned(), format!("<p class=\"error\">{}</p>", esc(&format!("{e:#}"))))
        }
    };
    HttpResponse::ok(HTML, layout(&title, &html))
}

type Page = anyhow::Result<(String, String)>;

async fn cluster(admin: &Admin) -> Page {
    let out = admin::cluster_list(admin).await?;
    let rows = out.json.as_array().cloned().unwrap_or_default();
    let mut html = String::from("<h2>Replicas</h2>");
    html.push_str(&table(
        &[
            ("Cluster", "cluster"),
            ("Group", "group"),
            ("Raft node", "raftNode"),
            ("Role", "role"),
            ("Term", "term"),
            ("Last index", "lastLogIndex"),
            ("Applied", "applied"),
            ("Lag (entries)", "lagEntries"),
            ("Lag (bytes)", "lagBytes"),
            ("Address", "addr"),
        ],
        &rows,
    ));
    html.push_str(
        "<h2>Messages a second</h2>\
         <p>stored <b id=\"send-rate\">-</b> &middot; consumed <b id=\"consume-rate\">-</b> \
         (sampled every 2 s; the chart shows the last three minutes)</p>\
         <svg id=\"chart\" width=\"720\" height=\"200\" viewBox=\"0 0 720 200\">\
         <polyline id=\"send-line\" fill=\"none\" stroke=\"#1f6feb\" stroke-width=\"2\" points=\"\"/>\
         <polyline id=\"consume-line\" fill=\"none\" stroke=\"#2da44e\" stroke-width=\"2\" points=\"\"/>\
         <text id=\"chart-max\" x=\"4\" y=\"14\" font-size=\"12\"></text></svg>",
    );
    html.push_str(CHART_JS);
    Ok(("Cluster".to_owned(), html))
}

const CHART_JS: &str = r#"<script>
function draw(points) {
  const last = points[points.length - 1];
  if (last) {
    document.getElementById('send-rate').textContent = last.send;
    document.getElementById('consume-rate').textContent = last.consume;
  }
  const max = Math.max(1, ...points.map(p => Math.max(p.send, p.consume)));
  const line = key => points.map((p, i) =>
    (i * 720 / Math.max(1, points.length - 1)).toFixed(1) + ',' +
    (195 - p[key] * 180 / max).toFixed(1)).join(' ');
  document.getElementById('send-line').setAttribute('points', line('send'));
  document.getElementById('consume-line').setAttribute('points', line('consume'));
  document.getElementById('chart-max').textContent = max + ' msg/s';
}
function refresh() {
  fetch('/api/rates').then(r => r.json()).then(draw).catch(() => {});
}
refresh();
setInterval(refresh, 2000);
</script>"#;

async fn topics(admin: &Admin) -> Page {
    let topics = user_topics(admin).await?;
    let html =
        if topics.is_empty() { "<p>No topic yet.</p>".into() } else { links("/topic", &topics) };
    Ok((format!("Topics ({})", topics.len()), html))
}

async fn topic(admin: &Admin, name: &str) -> Page {
    admin::check_topic_name(name)?;
    let route = admin::topic_route(admin, name).await?.json;
    let stats = admin.topic_stats(name).await?;
    let queues: Vec<Value> = stats
        .offset_table
        .iter()
        .map(|(q, o)| {
            let last = if o.last_update_timestamp > 0 {
                admin::format_ms(o.last_update_timestamp)
            } else {
                "-".to_owned()
            };
            json!({
                "group": q.broker_name, "queue": q.queue_id, "min": o.min_offset,
                "max": o.max_offset, "messages": o.max_offset.saturating_sub(o.min_offset),
                "last": last,
            })
        })
        .collect();
    let groups = admin.topic_consumers(name).await.unwrap_or_default();
    let mut html = String::from("<h2>Queues</h2>");
    html.push_str(&table(
        &[
            ("Broker group", "group"),
            ("Queue", "queue"),
            ("Min offset", "min"),
            ("Max offset", "max"),
            ("Messages", "messages"),
            ("Last stored", "last"),
        ],
        &queues,
    ));
    html.push_str("<h2>Route</h2>");
    html.push_str(&table(
        &[
            ("Broker group", "group"),
            ("Read queues", "readQueues"),
            ("Write queues", "writeQueues"),
        ],
        route["queues"].as_array().map_or(&[][..], Vec::as_slice),
    ));
    html.push_str("<h2>Consumer groups</h2>");
    html.push_str(&links("/group", &groups));
    Ok((format!("Topic {name}"), html))
}

async fn group_list(admin: &Admin) -> Page {
    let topics = user_topics(admin).await?;
    let groups = groups(admin, &topics).await;
    let html = if groups.is_empty() {
        "<p>No consumer group yet.</p>".into()
    } else {
        links("/group", &groups)
    };
    Ok((format!("Consumer groups ({})", groups.len()), html))
}

async fn group(admin: &Admin, name: &str) -> Page {
    if name.is_empty() {
        anyhow::bail!("name a consumer group");
    }
    let offsets = admin::group_offsets(admin, name, None).await?.json;
    let connections = admin::group_connections(admin, name).await?.json;
    let mut html = format!("<p>Total lag: <b id=\"total-lag\">{}</b></p>", offsets["totalLag"]);
    html.push_str("<h2>Lag per queue</h2>");
    html.push_str(&table(
        &[
            ("Topic", "topic"),
            ("Broker group", "brokerGroup"),
            ("Queue", "queueId"),
            ("Broker offset", "brokerOffset"),
            ("Consumer offset", "consumerOffset"),
            ("Lag", "lag"),
        ],
        offsets["queues"].as_array().map_or(&[][..], Vec::as_slice),
    ));
    html.push_str("<h2>Consumers connected</h2>");
    html.push_str(&table(
        &[
            ("Client id", "clientId"),
            ("Address", "clientAddr"),
            ("Language", "language"),
            ("Version", "version"),
        ],
        connections["connections"].as_array().map_or(&[][..], Vec::as_slice),
    ));
    Ok((format!("Consumer group {name}"), html))
}

async fn message(
    admin: &Admin,
    topic: Option<String>,
    key: Option<String>,
    id: Option<String>,
) -> Page {
    let (topic, key, id) = (
        topic.filter(|t| !t.is_empty()),
        key.filter(|k| !k.is_empty()),
        id.filter(|i| !i.is_empty()),
    );
    if key.is_none() && id.is_none() {
        return Ok((
            "Find a message".into(),
            "<p>Give a topic and a key, or a message id.</p>".into(),
        ));
    }
    let found =
        admin::message_query(admin, topic.as_deref(), key.as_deref(), id.as_deref()).await?;
    let rows: Vec<Value> = found
        .json
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|mut m| {
            let at = m["storeTimestamp"].as_i64().map(admin::format_ms).unwrap_or_default();
            m["stored"] = json!(at);
            m
        })
        .collect();
    let mut html = format!("<p>{} found</p>", rows.len());
    html.push_str(&table(
        &[
            ("Message id", "msgId"),
            ("Topic", "topic"),
            ("Broker group", "brokerGroup"),
            ("Queue", "queueId"),
            ("Offset", "queueOffset"),
            ("Keys", "keys"),
            ("Tags", "tags"),
            ("Stored", "stored"),
            ("Body", "body"),
        ],
        &rows,
    ));
    let what = key.map_or_else(|| format!("id {}", id.unwrap_or_default()), |k| format!("key {k}"));
    Ok((format!("Messages with {what}"), html))
}

/// A list of `names`, each a link to the page `path?name=NAME`.
fn links<'a>(path: &str, names: impl IntoIterator<Item = &'a String>) -> String {
    let mut html = String::from("<ul class=\"names\">");
    for n in names {
        let _ = write!(html, "<li><a href=\"{path}?name={}\">{}</a></li>", url(n), esc(n));
    }
    html.push_str("</ul>");
    html
}

/// An HTML table of `rows` (JSON objects), one column per (label, key).
fn table(columns: &[(&str, &str)], rows: &[Value]) -> String {
    if rows.is_empty() {
        return "<p class=\"empty\">none</p>".into();
    }
    let mut html = String::from("<table><thead><tr>");
    for (label, _) in columns {
        let _ = write!(html, "<th>{}</th>", esc(label));
    }
    html.push_str("</tr></thead><tbody>");
    for row in rows {
        html.push_str("<tr>");
        for (_, key) in columns {
            let cell = match &row[*key] {
                Value::Null => String::new(),
                Value::String(s) => s.clone(),
                Value::Array(a) => a
                    .iter()
                    .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                    .collect::<Vec<_>>()
                    .join(", "),
                v => v.to_string(),
            };
            let class = if row[*key].is_number() { " class=\"num\"" } else { "" };
            let _ = write!(html, "<td{class}>{}</td>", esc(&cell));
        }
        html.push_str("</tr>");
    }
    html.push_str("</tbody></table>");
    html
}

fn layout(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t} - RocketRaft</title>\
         <style>{STYLE}</style></head><body><header><b>RocketRaft</b> \
         <a href=\"/\">Cluster</a> <a href=\"/topics\">Topics</a> <a href=\"/groups\">Groups</a>\
         <form action=\"/message\"><input name=\"topic\" placeholder=\"topic\">\
         <input name=\"key\" placeholder=\"key\"><input name=\"id\" placeholder=\"or message id\">\
         <button>Find</button></form></header><main><h1>{t}</h1>{body}</main></body></html>",
        t = esc(title)
    )
}

const STYLE: &str = "body{font-family:sans-serif;margin:0;color:#222}\
header{background:#24292f;color:#fff;padding:8px 16px;display:flex;gap:16px;align-items:center}\
header a{color:#fff}header form{margin-left:auto}main{padding:8px 16px}\
table{border-collapse:collapse;margin:8px 0}th,td{border:1px solid #ccc;padding:3px 8px;text-align:left}\
td.num{text-align:right}th{background:#f3f3f3}.error{color:#b00}svg{border:1px solid #ccc}";

/// Text made safe to put in HTML.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Text made safe to put in a query string.
fn url(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

/// The value of `key` in a form-encoded query (`+` for spaces, `%XX` escapes), if present.
pub fn form_value(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (decode(k) == key).then(|| decode(v))
    })
}

fn decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(high), Some(low)) => {
                    out.push(high * 16 + low);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode_and_text_is_escaped() {
        assert_eq!(form_value("topic=Order+Topic&key=a%2Fb%", "key").as_deref(), Some("a/b%"));
        assert_eq!(form_value("topic=Order+Topic&key=a", "topic").as_deref(), Some("Order Topic"));
        assert_eq!(form_value("x", "x").as_deref(), Some(""));
        assert_eq!(form_value("a=1", "b"), None);
        assert_eq!(form_value("k=%zz%4", "k").as_deref(), Some("%zz%4"));
        assert_eq!(esc("<a href=\"x\">&'"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
        assert_eq!(url("a b/é"), "a%20b%2F%C3%A9");
    }

    #[test]
    fn only_addresses_localhost_and_allowed_names_are_served() {
        let req = |host: Option<&str>| HttpRequest {
            method: "GET".into(),
            path: "/".into(),
            query: String::new(),
            host: host.map(str::to_owned),
        };
        let allowed = vec!["dash.internal".to_owned()];
        for ok in ["127.0.0.1:8088", "localhost:8088", "[::1]:8088", "10.0.0.9", "DASH.internal:80"]
        {
            assert!(host_allowed(&req(Some(ok)), &allowed), "{ok}");
        }
        for refused in [Some("evil.example:8088"), Some("localhost.evil.example"), None] {
            assert!(!host_allowed(&req(refused), &allowed), "{refused:?}");
        }
    }

    #[test]
    fn tables_show_the_columns_asked_for() {
        let rows = vec![json!({"a": 1, "b": "<x>", "c": ["k1", "k2"]}), json!({"a": 2})];
        let html = table(&[("A", "a"), ("B", "b"), ("C", "c")], &rows);
        assert!(html.contains("<th>A</th><th>B</th><th>C</th>"), "{html}");
        assert!(
            html.contains("<td class=\"num\">1</td><td>&lt;x&gt;</td><td>k1, k2</td>"),
            "{html}"
        );
        assert!(html.contains("<td class=\"num\">2</td><td></td><td></td>"), "{html}");
        assert_eq!(table(&[("A", "a")], &[]), "<p class=\"empty\">none</p>");
    }

    #[test]
    fn rates_are_per_second_between_samples() {
        let sample = |at_ms, stored: &[(&str, i64)], consumed: &[(&str, i64)]| Sample {
            at_ms,
            stored: stored.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            consumed: consumed.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        };
        let s: VecDeque<Sample> = [
            sample(0, &[("T", 0)], &[("G", 0)]),
            // A new topic's whole backlog is not a rate; nor is a topic read once only.
            sample(2_000, &[("T", 400), ("New", 1_000_000)], &[("G", 100)]),
            sample(4_000, &[("T", 300), ("New", 1_000_200)], &[("G", 300)]),
        ]
        .into();
        assert_eq!(
            rates(&s),
            json!([{"at": 2000, "send": 200.0, "consume": 50.0}, {"at": 4000, "send": 100.0, "consume": 100.0}])
        );
    }
}
