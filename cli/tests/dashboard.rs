//! `rocketraft dashboard` in a real headless browser (Chromium, from Debian's packages:
//! `scripts/verify` installs it; without it this test fails, it never skips): against
//! `rocketraft dev` under load, each page is loaded with its JavaScript run and its DOM
//! checked: the cluster with its leader and live rates, a topic's queues, a group's lag and
//! consumers, a message found by key. With `RR_DASHBOARD_SHOTS=DIR` it also saves a
//! screenshot of each page there (the README's are made so).
#![cfg(not(madsim))]
// Real processes in real time: wall-clock deadlines and a thread for the load.
#![allow(clippy::disallowed_methods)]

mod support;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rocketraft_client::{
    ConsumeFrom, Message, Producer, ProducerConfig, PullConsumer, PullConsumerConfig,
};
use support::Proc;

/// The browser: `CHROMIUM` or `chromium` on the PATH.
fn chromium() -> String {
    let bin = std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".into());
    let found = Command::new(&bin).arg("--version").output().is_ok_and(|o| o.status.success());
    assert!(
        found,
        "no Chromium ({bin:?}): this test drives the dashboard in a real browser; \
         `apt-get install chromium` (scripts/verify does) or set CHROMIUM"
    );
    bin
}

/// Loads `url` in headless Chromium, lets its scripts run (their fetches included), and
/// answers the DOM as it then stands; with `shot`, also saves a screenshot there.
fn browse(bin: &str, url: &str, shot: Option<&Path>) -> String {
    let headless = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"];
    let out = Command::new(bin)
        .args(headless)
        .args(["--virtual-time-budget=5000", "--dump-dom", url])
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        dom.contains("RocketRaft"),
        "{url}: no page:\n{dom}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    if let Some(path) = shot {
        let status = Command::new(bin)
            .args(headless)
            .args(["--window-size=1100,700", "--virtual-time-budget=5000"])
            .arg(format!("--screenshot={}", path.display()))
            .arg(url)
            .output()
            .unwrap();
        assert!(status.status.success(), "screenshot of {url} failed");
    }
    dom
}

/// The text of the element with id `id` in `dom`.
fn text_of(dom: &str, id: &str) -> String {
    let open = format!("id=\"{id}\">");
    let at = dom.find(&open).unwrap_or_else(|| panic!("no #{id} in:\n{dom}")) + open.len();
    dom[at..].split('<').next().unwrap().to_owned()
}

/// What follows `prefix` in `line` up to the first of `ends`.
fn after<'a>(line: &'a str, prefix: &str, ends: &[char]) -> &'a str {
    let at =
        line.find(prefix).unwrap_or_else(|| panic!("no {prefix:?} in {line:?}")) + prefix.len();
    line[at..].split(ends).next().unwrap()
}

#[test]
fn the_dashboard_shows_the_cluster_topics_groups_and_messages_in_a_browser() {
    let bin = chromium();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let dev_args =
        ["dev", "--data-dir", data.to_str().unwrap(), "--namesrv-port", "0", "--broker-port", "0"];
    let dev = Proc::start(
        "dev",
        &[&dev_args[..], &["--raft-port", "0", "--metrics-port", "0"]].concat(),
        dir.path().join("dev.log"),
    );
    let namesrv = after(dev.ready_line(), "clients use the NameServer ", &[';', ' ']).to_owned();
    let dash = Proc::start(
        "dashboard",
        &["dashboard", "--listen", "127.0.0.1:0", "-n", &namesrv],
        dir.path().join("dashboard.log"),
    );
    let base = after(dash.ready_line(), "ready on ", &[' ']).trim_end_matches('/').to_owned();

    // The load: one message with a key, then a steady stream; a group reads the first 100 and
    // commits, so it lags behind the stream.
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let producer = rt.block_on(Producer::start(ProducerConfig::new(&namesrv))).unwrap();
    let producer = Arc::new(producer);
    rt.block_on(
        producer.send(Message::new("DashTopic", "hello dashboard").with_keys(["order-42"])),
    )
    .unwrap();
    let load = {
        let (producer, stop) = (producer.clone(), stop.clone());
        rt.spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let _ = producer.send(Message::new("DashTopic", format!("m{i}"))).await;
                i += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    rt.block_on(async {
        let mut config = PullConsumerConfig::new(&namesrv, "DashGroup");
        config.consume_from = ConsumeFrom::FirstOffset;
        let consumer = PullConsumer::start(config).await.unwrap();
        consumer.subscribe("DashTopic", "*").await.unwrap();
        let mut got = 0;
        while got < 100 {
            got += consumer.poll(1_000).await.unwrap().len();
        }
        consumer.commit().await.unwrap();
        consumer.shutdown().await;
    });
    // Two samples of the rates at least.
    std::thread::sleep(Duration::from_secs(5));

    let shots = std::env::var_os("RR_DASHBOARD_SHOTS").map(std::path::PathBuf::from);
    let shot = |name: &str| shots.as_ref().map(|d| d.join(format!("{name}.png")));

    let cluster = browse(&bin, &format!("{base}/"), shot("cluster").as_deref());
    assert_eq!(cluster.matches("<td>leader</td>").count(), 1, "one leader:\n{cluster}");
    assert_eq!(cluster.matches("<td>follower</td>").count(), 2, "two followers:\n{cluster}");
    assert!(cluster.contains("<td>broker-a</td>"));
    let stored: f64 = text_of(&cluster, "send-rate").parse().expect("the chart's script ran");
    assert!(stored > 0.0, "messages stored a second: {stored}");
    assert!(
        !after(&cluster, "id=\"send-line\"", &['/']).contains("points=\"\""),
        "a line is drawn"
    );

    let topics = browse(&bin, &format!("{base}/topics"), None);
    assert!(topics.contains("href=\"/topic?name=DashTopic\""), "{topics}");

    let topic = browse(&bin, &format!("{base}/topic?name=DashTopic"), shot("topic").as_deref());
    assert!(topic.contains("<h1>Topic DashTopic</h1>"), "{topic}");
    // One row per queue of the topic (auto-created: 4 or more), in the one group.
    let queues = after(&topic, "<h2>Queues</h2>", &[]).split("<h2>").next().unwrap().to_owned();
    assert!(queues.matches("<tr><td>broker-a</td>").count() >= 4, "{queues}");
    assert!(topic.contains("href=\"/group?name=DashGroup\""), "the group consuming it");

    let group = browse(&bin, &format!("{base}/group?name=DashGroup"), shot("group").as_deref());
    let lag: i64 = text_of(&group, "total-lag").parse().unwrap();
    assert!(lag > 0, "DashGroup lags behind the stream: {lag}\n{group}");
    assert!(group.contains("<td>DashTopic</td>"), "{group}");

    let found = browse(
        &bin,
        &format!("{base}/message?topic=DashTopic&key=order-42&id="),
        shot("message").as_deref(),
    );
    assert!(found.contains("<p>1 found</p>"), "{found}");
    assert!(
        found.contains("<td>hello dashboard</td>") && found.contains("<td>order-42</td>"),
        "{found}"
    );

    stop.store(true, Ordering::Relaxed);
    rt.block_on(load).unwrap();
    drop((dash, dev));
}
