//! What ACL costs per send: a client signing a SEND_MESSAGE_V2 of a 1 KiB body (its usual
//! header), and a broker checking it (account, signature, topic permission), as
//! `rocketraft bench` sends them. `cargo bench -p rocketraft-remoting --bench acl`; figures in
//! BENCHMARKS.md.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rocketraft_protocol::acl::Credentials;
use rocketraft_protocol::headers::SendMessageRequestHeaderV2;
use rocketraft_protocol::{request_code, RemotingCommand};
use rocketraft_remoting::acl::{Acl, Scope};

const FILE: &str = r#"
[[accounts]]
access_key = "bench-producer"
secret_key = "bench-secret-1"
topic_perms = ["BenchTopic=PUB"]
"#;

fn send() -> RemotingCommand {
    let header = SendMessageRequestHeaderV2 {
        a: "bench_producer_group".into(),
        b: "BenchTopic".into(),
        c: "TBW102".into(),
        d: 4,
        e: 3,
        f: 0,
        g: 1_764_892_800_000,
        h: 0,
        i: Some("UNIQ_KEY\u{1}7F00000100012A9F3A1B2C3D4E5F0001\u{2}WAIT\u{1}true\u{2}".into()),
        j: Some(0),
        k: Some(false),
        l: Some(16),
        m: Some(false),
        n: None,
        broker_name: Some("broker-a".into()),
    };
    RemotingCommand::request(request_code::SEND_MESSAGE_V2, &header).with_body(vec![b'x'; 1024])
}

fn bench(c: &mut Criterion) {
    let creds = Credentials::new("bench-producer", "bench-secret-1");
    let acl = Acl::parse(FILE).unwrap();
    let ip = "10.0.0.9".parse().unwrap();
    let mut g = c.benchmark_group("acl");
    g.throughput(Throughput::Elements(1));
    g.bench_function("sign_1k_send", |b| {
        b.iter_batched(
            send,
            |mut cmd| {
                creds.sign(&mut cmd);
                cmd
            },
            criterion::BatchSize::SmallInput,
        )
    });
    let mut signed = send();
    creds.sign(&mut signed);
    assert!(acl.check(Scope::Broker, &signed, ip).is_ok());
    g.bench_function("check_1k_send", |b| b.iter(|| acl.check(Scope::Broker, &signed, ip)));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
