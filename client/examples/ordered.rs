//! Ordered messages: each order's steps are sent with the order id as sharding key, so they
//! land in one queue, and an orderly consumer gets them in send order.
//!
//! ```text
//! cargo run -p rocketraft-client --example ordered
//! ```

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rocketraft_client::{
    Admin, ClientConfig, ConsumeFrom, ConsumeResult, Message, MessageExt, Producer, ProducerConfig,
    PushConsumer, PushConsumerConfig,
};

const STEPS: [&str; 4] = ["created", "paid", "shipped", "done"];

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let namesrv = std::env::var("NAMESRV_ADDR").unwrap_or_else(|_| "127.0.0.1:9876".into());
    let orders = 10;
    // A topic with 4 queues (created on every broker group; repeated runs just update it).
    let admin = Admin::start(ClientConfig::new(&namesrv)).await?;
    admin.create_topic(None, "OrderTopic", 4, true).await?;
    admin.shutdown().await;

    // Messages of earlier runs may still be waiting for this group: count this run's only.
    let run = format!("run{}", std::process::id());
    let seen: Arc<Mutex<BTreeMap<String, Vec<String>>>> = Arc::default();
    let (s, r) = (seen.clone(), run.clone());
    let mut config = PushConsumerConfig::new(&namesrv, "order_group").subscribe("OrderTopic", "*");
    config.consume_from = ConsumeFrom::LastOffset;
    let consumer = PushConsumer::start_orderly(config, move |msgs: Vec<MessageExt>| {
        for m in &msgs {
            let body = String::from_utf8_lossy(&m.body).into_owned();
            let mut parts = body.splitn(3, ':');
            let (run, order, step) = (parts.next(), parts.next(), parts.next());
            println!("queue {} got {body}", m.queue.queue_id);
            if let (Some(order), Some(step)) = (order, step) {
                if run == Some(r.as_str()) {
                    s.lock().unwrap().entry(order.to_owned()).or_default().push(step.to_owned());
                }
            }
        }
        async { ConsumeResult::Success }
    })
    .await?;
    // Let the consumer take its queues before sending (it starts at the queues' ends).
    for _ in 0..100 {
        if consumer.assigned_queues().len() == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let producer = Producer::start(ProducerConfig::new(&namesrv)).await?;
    for step in STEPS {
        for o in 0..orders {
            let order = format!("order-{o}");
            let body = format!("{run}:{order}:{step}");
            producer.send_ordered(Message::new("OrderTopic", body), &order).await?;
        }
    }
    for _ in 0..100 {
        if seen.lock().unwrap().values().map(Vec::len).sum::<usize>() >= orders * STEPS.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seen = seen.lock().unwrap().clone();
    let in_order = seen.values().all(|steps| steps.iter().map(String::as_str).eq(STEPS));
    println!("{} orders, every order's steps in order: {in_order}", seen.len());
    consumer.shutdown().await;
    producer.shutdown().await;
    if !in_order || seen.len() != orders {
        return Err("steps missing or out of order".into());
    }
    Ok(())
}
