//! Broadcasting: every member of the group gets every message (each keeps its own offsets in
//! a local file). Two members in one program here; in production they are two processes.
//!
//! ```text
//! cargo run -p rocketraft-client --example broadcast
//! ```

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rocketraft_client::{
    ConsumeFrom, ConsumeResult, Message, MessageExt, MessageModel, Producer, ProducerConfig,
    PushConsumer, PushConsumerConfig,
};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let namesrv = std::env::var("NAMESRV_ADDR").unwrap_or_else(|_| "127.0.0.1:9876".into());
    let count = 20;
    let producer = Producer::start(ProducerConfig::new(&namesrv)).await?;
    // The first send creates the topic (auto-creation), so the members find its queues.
    producer.send(Message::new("NewsTopic", "warm-up")).await?;

    let offsets = std::env::temp_dir().join(format!("rocketraft-broadcast-{}", std::process::id()));
    let mut members = Vec::new();
    let mut counters = Vec::new();
    for who in 0..2 {
        let got = Arc::new(AtomicUsize::new(0));
        let g = got.clone();
        let mut config =
            PushConsumerConfig::new(&namesrv, "news_readers").subscribe("NewsTopic", "*");
        config.model = MessageModel::Broadcasting;
        config.consume_from = ConsumeFrom::LastOffset;
        config.offset_dir = Some(offsets.join(format!("member-{who}")));
        let member = PushConsumer::start_concurrently(config, move |msgs: Vec<MessageExt>| {
            for m in &msgs {
                println!("member {who} got {}", String::from_utf8_lossy(&m.body));
            }
            g.fetch_add(
                msgs.iter().filter(|m| &m.body[..] != b"warm-up").count(),
                Ordering::SeqCst,
            );
            async { ConsumeResult::Success }
        })
        .await?;
        members.push(member);
        counters.push(got);
    }
    // Each member reads every queue once it has found them.
    for _ in 0..100 {
        if members.iter().all(|m| !m.assigned_queues().is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for i in 0..count {
        producer.send(Message::new("NewsTopic", format!("news {i}"))).await?;
    }
    for _ in 0..100 {
        if counters.iter().all(|c| c.load(Ordering::SeqCst) >= count) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let got: Vec<usize> = counters.iter().map(|c| c.load(Ordering::SeqCst)).collect();
    println!("each member received {got:?} of {count}");
    for m in members {
        m.shutdown().await;
    }
    producer.shutdown().await;
    let _ = std::fs::remove_dir_all(&offsets);
    if got.iter().any(|&n| n != count) {
        return Err("a member missed messages".into());
    }
    Ok(())
}
