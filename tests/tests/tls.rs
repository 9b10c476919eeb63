//! TLS over real TCP with the SDK: a dev cluster whose client ports (the NameServer's and the
//! replicas') require TLS and whose replicas talk Raft over mutual TLS.
//!
//! ```text
//!   SDK --TLS (trusting the cluster's CA)--> NameServer, leader --mTLS--> followers
//!   SDK, plain -------------------------x   (closed: the ports are enforcing)
//! ```

// Real processes, files and sockets: not for the madsim build.
#![cfg(not(madsim))]
#![allow(clippy::disallowed_methods)] // tests read the clock to bound their waits

use std::time::{Duration, Instant};

use rocketraft::dev::TlsMode;

use rocketraft_client::{
    ClientConfig, ClientTls, ConsumeFrom, Message, Producer, ProducerConfig, PullConsumer,
    PullConsumerConfig,
};

#[path = "support/dev.rs"]
mod dev;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_the_sdk_sends_and_consumes_over_tls_and_plain_clients_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = dev::start_cluster_with(&dir, 8 << 20, Duration::from_secs(15), |c| {
        c.tls = true;
        c.tls_client_mode = TlsMode::Enforcing;
    })
    .await;
    let ca = cluster.tls_ca_file().expect("a CA file").to_owned();
    let namesrv = cluster.namesrv_addr().to_string();
    let tls = ClientTls::from_ca_file(&ca).unwrap();
    let client = || ClientConfig::new(&namesrv).with_tls(tls.clone());

    tracing::info!("over TLS: create a topic, send, consume");
    dev::create_topic(client(), "Secure", 2).await;
    let producer =
        Producer::start(ProducerConfig { client: client(), ..ProducerConfig::new(&namesrv) })
            .await
            .unwrap();
    for i in 0..20 {
        producer.send(Message::new("Secure", format!("s{i}"))).await.unwrap();
    }
    let mut pc =
        PullConsumerConfig { client: client(), ..PullConsumerConfig::new(&namesrv, "readers") };
    pc.consume_from = ConsumeFrom::FirstOffset;
    let consumer = PullConsumer::start(pc).await.unwrap();
    consumer.assign(consumer.topic_queues("Secure").await.unwrap());
    let mut got = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    while got < 20 {
        assert!(Instant::now() < deadline, "consumed {got} of 20 over TLS");
        got += consumer.poll(1_000).await.unwrap().len();
    }

    tracing::info!("plain: the enforcing ports close the connection, nothing is sent");
    let mut plain = ProducerConfig::new(&namesrv);
    plain.retries = 0;
    plain.client.call_timeout_ms = 1_000;
    plain.send_timeout_ms = 2_000;
    let plain = Producer::start(plain).await.unwrap();
    assert!(plain.send(Message::new("Secure", "plain")).await.is_err());
    cluster.shutdown().await;
}
