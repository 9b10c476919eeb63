//! Transactional messages: each order is written to the "database" (a map here) in the local
//! transaction, and its message is committed only if that worked. An order the local
//! transaction could not decide yet is answered later, when the broker checks it back.
//!
//! ```text
//! cargo run -p rocketraft-client --example transaction
//! ```

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use rocketraft_client::{
    Admin, ClientConfig, ConsumeFrom, Message, MessageExt, ProducerConfig, PullConsumer,
    PullConsumerConfig, SendResult, TransactionListener, TransactionProducer, TransactionState,
};

/// The application's own record of its orders: what a check-back looks up.
#[derive(Clone, Default)]
struct Orders {
    saved: Arc<Mutex<BTreeMap<String, bool>>>,
}

impl TransactionListener for Orders {
    async fn execute_local(&self, msg: &Message, _sent: &SendResult) -> TransactionState {
        let order = String::from_utf8_lossy(&msg.body).into_owned();
        // Every third order's outcome is not known at once (say, a slow payment service):
        // the broker asks again after its check interval.
        let n: u32 = order.rsplit('-').next().and_then(|n| n.parse().ok()).unwrap_or(0);
        let saved = n % 4 != 1; // order 1, 5, 9 ... fails: rolled back
        self.saved.lock().unwrap().insert(order, saved);
        match (n % 3 == 2, saved) {
            (true, _) => TransactionState::Unknown,
            (false, true) => TransactionState::Commit,
            (false, false) => TransactionState::Rollback,
        }
    }

    async fn check(&self, msg: MessageExt) -> TransactionState {
        let order = String::from_utf8_lossy(&msg.body).into_owned();
        match self.saved.lock().unwrap().get(&order) {
            Some(true) => TransactionState::Commit,
            Some(false) => TransactionState::Rollback,
            None => TransactionState::Unknown,
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let namesrv = std::env::var("NAMESRV_ADDR").unwrap_or_else(|_| "127.0.0.1:9876".into());
    let run = format!("run{}", std::process::id());
    let admin = Admin::start(ClientConfig::new(&namesrv)).await?;
    admin.create_topic(None, "PaymentTopic", 1, true).await?;
    admin.shutdown().await;

    let orders = Orders::default();
    let mut config = ProducerConfig::new(&namesrv);
    config.group = "payment_tx_group".into();
    let producer = TransactionProducer::start(config, orders.clone()).await?;
    let total = 8;
    for i in 0..total {
        let r = producer.send(Message::new("PaymentTopic", format!("{run}-order-{i}"))).await?;
        println!("order {i}: {:?}", r.state);
    }
    let expected: usize = orders.saved.lock().unwrap().values().filter(|s| **s).count();

    // Read this run's committed orders; the undecided ones arrive once checked back.
    let mut pcfg = PullConsumerConfig::new(&namesrv, format!("payment_reader_{run}"));
    pcfg.consume_from = ConsumeFrom::FirstOffset;
    let reader = PullConsumer::start(pcfg).await?;
    reader.assign(reader.topic_queues("PaymentTopic").await?);
    let mut delivered = Vec::new();
    // Up to two minutes (the default check-back interval is 30 s).
    for _ in 0..120 {
        if delivered.len() >= expected {
            break;
        }
        for m in reader.poll(1_000).await? {
            let body = String::from_utf8_lossy(&m.body).into_owned();
            if body.starts_with(&run) {
                delivered.push(body);
            }
        }
    }
    let saved = orders.saved.lock().unwrap().clone();
    let only_saved = delivered.iter().all(|o| saved.get(o) == Some(&true));
    println!(
        "{} of {total} orders delivered, every delivered order was saved: {only_saved}",
        delivered.len()
    );
    reader.shutdown().await;
    producer.shutdown().await;
    Ok(())
}
