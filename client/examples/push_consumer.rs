//! Consumes `TopicTest` (tags TagA or TagB) in the clustering group `example_group`: start it
//! twice and the two share the topic's queues. Stops after COUNT messages, or on Ctrl-C;
//! either way it commits its offsets first, so a restart continues where it stopped.
//!
//! ```text
//! cargo run -p rocketraft-client --example push_consumer -- 20
//! ```

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rocketraft_client::{ConsumeFrom, ConsumeResult, MessageExt, PushConsumer, PushConsumerConfig};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let namesrv = std::env::var("NAMESRV_ADDR").unwrap_or_else(|_| "127.0.0.1:9876".into());
    let count: Option<usize> = std::env::args().nth(1).map(|n| n.parse()).transpose()?;
    let mut config =
        PushConsumerConfig::new(&namesrv, "example_group").subscribe("TopicTest", "TagA || TagB");
    config.consume_from = ConsumeFrom::FirstOffset;
    let seen = Arc::new(AtomicUsize::new(0));
    let enough = Arc::new(tokio::sync::Notify::new());
    let (s, e) = (seen.clone(), enough.clone());
    let consumer = PushConsumer::start_concurrently(config, move |msgs: Vec<MessageExt>| {
        for m in &msgs {
            println!(
                "{} queue={} offset={} tags={:?} keys={:?} body={}",
                m.msg_id().unwrap_or("-"),
                m.queue.queue_id,
                m.queue_offset,
                m.tags(),
                m.keys(),
                String::from_utf8_lossy(&m.body)
            );
        }
        if count.is_some_and(|c| s.fetch_add(msgs.len(), Ordering::SeqCst) + msgs.len() >= c) {
            e.notify_one();
        }
        async { ConsumeResult::Success }
    })
    .await?;
    println!("consuming as {} (Ctrl-C stops)", consumer.client_id());
    tokio::select! {
        _ = enough.notified() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    consumer.shutdown().await;
    println!("consumed {}", seen.load(Ordering::SeqCst));
    Ok(())
}
