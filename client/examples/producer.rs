//! Sends messages three ways (sync, async, oneway) to `TopicTest`.
//!
//! ```text
//! rocketraft dev                                   # terminal 1: a cluster on 127.0.0.1:9876
//! cargo run -p rocketraft-client --example producer -- 10
//! ```
//! `NAMESRV_ADDR` points elsewhere (RocketMQ's variable, e.g. `10.0.0.1:9876;10.0.0.2:9876`).
//! The broker creates `TopicTest` on the first send (auto-creation is on in `rocketraft dev`).

use rocketraft_client::{Message, Producer, ProducerConfig};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let namesrv = std::env::var("NAMESRV_ADDR").unwrap_or_else(|_| "127.0.0.1:9876".into());
    let count: usize = std::env::args().nth(1).map_or(Ok(10), |n| n.parse())?;
    let producer = Producer::start(ProducerConfig::new(&namesrv)).await?;

    // Sync: returns once the broker group has the message (on a majority's disks).
    for i in 0..count {
        let msg = Message::new("TopicTest", format!("Hello RocketRaft {i}"))
            .with_tags("TagA")
            .with_keys([format!("order-{i}")]);
        let r = producer.send(msg).await?;
        println!(
            "sync  {i}: {:?} msgId={} queue={} offset={}",
            r.status, r.msg_id, r.queue.queue_id, r.queue_offset
        );
    }

    // Async: start many sends, then collect the results.
    let mut pending = Vec::new();
    for i in 0..count {
        let msg = Message::new("TopicTest", format!("Hello async {i}")).with_tags("TagB");
        pending.push(producer.send_async(msg).await?);
    }
    for (i, handle) in pending.into_iter().enumerate() {
        let r = handle.await?;
        println!(
            "async {i}: msgId={} queue={} offset={}",
            r.msg_id, r.queue.queue_id, r.queue_offset
        );
    }

    // Oneway: no acknowledgement (logs, metrics).
    for i in 0..count {
        producer
            .send_oneway(Message::new("TopicTest", format!("Hello oneway {i}")).with_tags("TagC"))
            .await?;
    }
    println!("sent {} messages", 3 * count);
    producer.shutdown().await;
    Ok(())
}
