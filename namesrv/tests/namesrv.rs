//! The NameServer over real TCP, one module per theme.

mod support {
    use bytes::BytesMut;
    use rocketraft_protocol::frame::{encode_frame, FrameDecoder};
    use rocketraft_protocol::RemotingCommand;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    /// A raw remoting client: what a broker or a RocketMQ client sends.
    pub struct Conn {
        stream: TcpStream,
        decoder: FrameDecoder,
        buf: BytesMut,
        opaque: i32,
    }

    impl Conn {
        pub async fn connect(addr: std::net::SocketAddr) -> Conn {
            Conn {
                stream: TcpStream::connect(addr).await.unwrap(),
                decoder: FrameDecoder::default(),
                buf: BytesMut::new(),
                opaque: 0,
            }
        }

        pub async fn send_raw(&mut self, bytes: &[u8]) {
            self.stream.write_all(bytes).await.unwrap();
            self.stream.flush().await.unwrap();
        }

        /// Sends `cmd` and waits for its response.
        pub async fn call(&mut self, mut cmd: RemotingCommand) -> RemotingCommand {
            self.opaque += 1;
            cmd.opaque = self.opaque;
            let mut out = BytesMut::new();
            encode_frame(&cmd, &mut out).unwrap();
            self.send_raw(&out).await;
            self.read().await.expect("a response")
        }

        /// The next command, or `None` when the server closed the connection.
        pub async fn read(&mut self) -> Option<RemotingCommand> {
            loop {
                if let Some(c) = self.decoder.decode(&mut self.buf).unwrap() {
                    return Some(c);
                }
                if self.stream.read_buf(&mut self.buf).await.unwrap_or(0) == 0 {
                    return None;
                }
            }
        }
    }
}

mod routes {
    //! ```text
    //!   broker-a (fake) --REGISTER_BROKER(T1)--> NameServer <--GET_ROUTEINFO_BY_TOPIC-- client
    //!   broker-a goes silent -> evicted on the first scan after the expiry (1.5 s here)
    //!   broker-b registers, then its connection closes -> evicted at once
    //! ```
    use std::time::Duration;

    use rocketraft_namesrv::{NameServer, NamesrvConfig};
    use rocketraft_protocol::body::*;
    use rocketraft_protocol::headers::*;
    use rocketraft_protocol::{request_code, response_code, RemotingCommand};

    use super::support::Conn;

    pub fn register(
        name: &str,
        addr: &str,
        id: i64,
        topics: &[&str],
        crc_ok: bool,
    ) -> RemotingCommand {
        let body = RegisterBrokerBody {
            filter_server_list: vec![],
            topic_config_serialize_wrapper: TopicConfigSerializeWrapper {
                data_version: DataVersion { counter: 1, timestamp: 1, ..Default::default() },
                topic_config_table: topics
                    .iter()
                    .map(|t| (t.to_string(), TopicConfig::new(*t, 4)))
                    .collect(),
                ..Default::default()
            },
        }
        .to_json(JsonStyle::Standard);
        let crc = RegisterBrokerBody::crc32(&body);
        let header = RegisterBrokerRequestHeader {
            broker_name: name.into(),
            broker_addr: addr.into(),
            cluster_name: "DefaultCluster".into(),
            ha_server_addr: format!("{addr}-ha"),
            broker_id: id,
            compressed: Some(false),
            body_crc32: Some(if crc_ok { crc } else { crc ^ 1 }),
            raft_term: None,
            raft_leader: None,
        };
        RemotingCommand::request(request_code::REGISTER_BROKER, &header).with_body(body)
    }

    fn route_request(topic: &str, version: i32) -> RemotingCommand {
        let mut cmd = RemotingCommand::request(
            request_code::GET_ROUTEINFO_BY_TOPIC,
            &GetRouteInfoRequestHeader { topic: topic.into(), accept_standard_json_only: None },
        );
        cmd.version = version;
        cmd
    }

    fn config() -> NamesrvConfig {
        NamesrvConfig {
            listen: "127.0.0.1:0".into(),
            scan_interval_ms: 100,
            broker_expiry_ms: 1500,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn register_route_in_both_json_forms_and_evict() {
        let ns = NameServer::start(config()).await.unwrap();
        let mut broker = Conn::connect(ns.local_addr()).await;
        let resp = broker.call(register("broker-a", "127.0.0.1:10911", 0, &["T1"], true)).await;
        assert_eq!(resp.code, response_code::SUCCESS, "{:?}", resp.remark);

        tracing::info!("--- a slave learns its master's address");
        let mut slave = Conn::connect(ns.local_addr()).await;
        let resp = slave.call(register("broker-a", "127.0.0.1:10921", 1, &["T1"], true)).await;
        let h: RegisterBrokerResponseHeader = resp.decode_header().unwrap();
        assert_eq!(h.master_addr.as_deref(), Some("127.0.0.1:10911"));

        tracing::info!("--- the route, in fastjson form for old clients, standard for 4.9.4+");
        let mut client = Conn::connect(ns.local_addr()).await;
        let old = client.call(route_request("T1", 400)).await;
        assert_eq!(old.code, response_code::SUCCESS);
        let text = String::from_utf8(old.body.to_vec()).unwrap();
        assert!(text.contains(r#"{0:"127.0.0.1:10911""#), "{text}");
        let new = client.call(route_request("T1", 409)).await;
        let text = String::from_utf8(new.body.to_vec()).unwrap();
        assert!(text.contains(r#"{"0":"127.0.0.1:10911""#), "{text}");
        let route = TopicRouteData::from_json(&new.body).unwrap();
        assert_eq!(route.queue_datas[0].write_queue_nums, 4);
        assert_eq!(route.broker_datas[0].broker_addrs.len(), 2);
        let missing = client.call(route_request("Nope", 409)).await;
        assert_eq!(missing.code, response_code::TOPIC_NOT_EXIST);

        tracing::info!("--- the brokers stop registering: evicted on the first scan after 1.5 s");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            client.call(route_request("T1", 409)).await.code,
            response_code::SUCCESS,
            "still alive before the expiry"
        );
        tokio::time::sleep(Duration::from_millis(1700)).await;
        assert_eq!(
            client.call(route_request("T1", 409)).await.code,
            response_code::TOPIC_NOT_EXIST,
            "evicted after it"
        );
        drop((broker, slave));

        tracing::info!("--- a closed connection evicts at once");
        let mut b = Conn::connect(ns.local_addr()).await;
        assert_eq!(
            b.call(register("broker-b", "127.0.0.1:20911", 0, &["T2"], true)).await.code,
            response_code::SUCCESS
        );
        assert_eq!(client.call(route_request("T2", 409)).await.code, response_code::SUCCESS);
        drop(b);
        let mut gone = false;
        for _ in 0..50 {
            if client.call(route_request("T2", 409)).await.code == response_code::TOPIC_NOT_EXIST {
                gone = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(gone, "the route outlived its broker's connection");
        let info = client
            .call(RemotingCommand::request_without_header(request_code::GET_BROKER_CLUSTER_INFO))
            .await;
        assert!(ClusterInfo::from_json(&info.body).unwrap().broker_addr_table.is_empty());
        ns.shutdown();
    }

    /// What `mqadmin getNamesrvConfig`, `wipeWritePerm`/`addWritePerm` and the system topic
    /// list read, in the shapes RocketMQ's admin client parses.
    #[tokio::test]
    async fn admin_calls_read_the_config_list_system_topics_and_wipe_write_permission() {
        let ns = NameServer::start(config()).await.unwrap();
        let mut broker = Conn::connect(ns.local_addr()).await;
        let resp =
            broker.call(register("broker-a", "127.0.0.1:10911", 0, &["T1", "T2"], true)).await;
        assert_eq!(resp.code, response_code::SUCCESS);
        let mut admin = Conn::connect(ns.local_addr()).await;

        let resp = admin
            .call(RemotingCommand::request_without_header(request_code::GET_NAMESRV_CONFIG))
            .await;
        assert_eq!(resp.code, response_code::SUCCESS);
        let props =
            rocketraft_protocol::admin::parse_properties(std::str::from_utf8(&resp.body).unwrap());
        assert_eq!(props["brokerExpiryMs"], "1500");
        assert_eq!(props["listen"], "127.0.0.1:0");

        let resp = admin
            .call(RemotingCommand::request_without_header(
                request_code::GET_SYSTEM_TOPIC_LIST_FROM_NS,
            ))
            .await;
        let list = TopicList::from_json(&resp.body).unwrap();
        assert_eq!(list.topic_list, ["DefaultCluster".to_owned(), "broker-a".to_owned()].into());
        assert_eq!(list.broker_addr.as_deref(), Some("127.0.0.1:10911"));

        let perm_of_t1 = |route: RemotingCommand| {
            TopicRouteData::from_json(&route.body).unwrap().queue_datas[0].perm
        };
        let wipe = RemotingCommand::request(
            request_code::WIPE_WRITE_PERM_OF_BROKER,
            &WritePermOfBrokerRequestHeader { broker_name: "broker-a".into() },
        );
        let resp = admin.call(wipe).await;
        let h: WipeWritePermOfBrokerResponseHeader = resp.decode_header().unwrap();
        assert_eq!(h.wipe_topic_count, 2);
        assert_eq!(perm_of_t1(admin.call(route_request("T1", 409)).await), 4, "read only");
        // The broker's next periodic registration does not undo it.
        broker.call(register("broker-a", "127.0.0.1:10911", 0, &["T1", "T2"], true)).await;
        assert_eq!(perm_of_t1(admin.call(route_request("T1", 409)).await), 4);
        let add = RemotingCommand::request(
            request_code::ADD_WRITE_PERM_OF_BROKER,
            &WritePermOfBrokerRequestHeader { broker_name: "broker-a".into() },
        );
        let h: AddWritePermOfBrokerResponseHeader = admin.call(add).await.decode_header().unwrap();
        assert_eq!(h.add_topic_count, 2);
        assert_eq!(perm_of_t1(admin.call(route_request("T1", 409)).await), 6);
        ns.shutdown();
    }

    #[tokio::test]
    async fn bad_requests_get_errors_and_garbage_closes_the_connection() {
        let ns = NameServer::start(config()).await.unwrap();
        let mut c = Conn::connect(ns.local_addr()).await;
        let resp = c.call(register("broker-a", "127.0.0.1:10911", 0, &["T1"], false)).await;
        assert_eq!(resp.code, response_code::SYSTEM_ERROR);
        assert!(resp.remark.unwrap().contains("crc32 not match"));
        let mut no_fields = RemotingCommand::request_without_header(request_code::REGISTER_BROKER);
        no_fields.set_ext_field("brokerName", "x");
        let resp = c.call(no_fields).await;
        assert_eq!(resp.code, response_code::SYSTEM_ERROR);
        assert!(resp.remark.unwrap().contains("is null"));
        let resp = c
            .call(RemotingCommand::request_without_header(request_code::UPDATE_NAMESRV_CONFIG))
            .await;
        assert_eq!(resp.code, response_code::NO_PERMISSION);
        let resp = c.call(RemotingCommand::request_without_header(9999).into_oneway()).await;
        assert_eq!(
            resp.code,
            response_code::REQUEST_CODE_NOT_SUPPORTED,
            "answered even for oneway"
        );
        assert_eq!(ns.registry().topics().len(), 0, "nothing was registered");

        let mut bad = Conn::connect(ns.local_addr()).await;
        bad.send_raw(&[0, 0, 0, 6, 9, 0, 0, 0, 1, 2]).await; // serialize type 9
        assert!(bad.read().await.is_none(), "a malformed frame closes the connection");
        assert_eq!(
            c.call(route_request("T1", 409)).await.code,
            response_code::TOPIC_NOT_EXIST,
            "the server goes on"
        );
        ns.shutdown();
    }
}

mod limits {
    //! What one client can make the NameServer hold is bounded: compressed registrations are
    //! read within their limits, and registrations, brokers and KV entries past theirs are
    //! refused with SYSTEM_ERROR, changing nothing.
    use rocketraft_namesrv::{NameServer, NamesrvConfig};
    use rocketraft_protocol::body::*;
    use rocketraft_protocol::headers::*;
    use rocketraft_protocol::register::encode_compressed;
    use rocketraft_protocol::{request_code, response_code, RemotingCommand};

    use super::routes::register;
    use super::support::Conn;

    fn config() -> NamesrvConfig {
        NamesrvConfig {
            listen: "127.0.0.1:0".into(),
            brokers_max: 2,
            registration_topics_max: 100,
            registration_inflated_max_bytes: 4 << 10,
            kv_entries_max: 3,
            kv_bytes_max: 1_000,
            ..Default::default()
        }
    }

    /// A compressed registration (RocketMQ's `compressedRegister`) of `topics` topics named
    /// `prefix` and a number.
    fn compressed(addr: &str, prefix: &str, topics: usize) -> RemotingCommand {
        let mut body = RegisterBrokerBody::default();
        let w = &mut body.topic_config_serialize_wrapper;
        w.data_version = DataVersion { counter: 1, timestamp: 1, ..Default::default() };
        for i in 0..topics {
            let name = format!("{prefix}{i}");
            w.topic_config_table.insert(name.clone(), TopicConfig::new(name, 2));
        }
        let body = encode_compressed(&body);
        let header = RegisterBrokerRequestHeader {
            broker_name: "broker-z".into(),
            broker_addr: addr.into(),
            cluster_name: "DefaultCluster".into(),
            ha_server_addr: format!("{addr}-ha"),
            broker_id: 0,
            compressed: Some(true),
            body_crc32: Some(RegisterBrokerBody::crc32(&body)),
            raft_term: None,
            raft_leader: None,
        };
        RemotingCommand::request(request_code::REGISTER_BROKER, &header).with_body(body)
    }

    fn put_kv(key: &str, value: &str) -> RemotingCommand {
        RemotingCommand::request(
            request_code::PUT_KV_CONFIG,
            &PutKvConfigRequestHeader {
                namespace: "ORDER_TOPIC_CONFIG".into(),
                key: key.into(),
                value: value.into(),
            },
        )
    }

    fn refused(resp: &RemotingCommand, says: &str) {
        assert_eq!(resp.code, response_code::SYSTEM_ERROR, "{:?}", resp.remark);
        let remark = resp.remark.clone().unwrap_or_default();
        assert!(remark.contains(says), "{remark}");
    }

    #[tokio::test]
    async fn compressed_registrations_and_the_limits_on_what_a_client_can_make_it_hold() {
        let ns = NameServer::start(config()).await.unwrap();
        let mut b = Conn::connect(ns.local_addr()).await;

        // A compressed registration is read and routed like a plain one.
        let resp = b.call(compressed("127.0.0.1:30911", "Zipped", 40)).await;
        assert_eq!(resp.code, response_code::SUCCESS, "{:?}", resp.remark);
        assert_eq!(ns.registry().topics().len(), 40);

        // Too many topics, plain or compressed: refused, the earlier registration stands.
        refused(&b.call(compressed("127.0.0.1:30911", "Zipped", 101)).await, "101 topics");
        let names: Vec<String> = (0..101).map(|i| format!("Plain{i}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        refused(
            &b.call(register("broker-p", "127.0.0.1:40911", 0, &names, true)).await,
            "registration_topics_max",
        );
        assert_eq!(ns.registry().topics().len(), 40, "nothing changed");

        // A compressed body that inflates past its limit, or is not zlib at all.
        let long = "L".repeat(100);
        refused(&b.call(compressed("127.0.0.1:30911", &long, 90)).await, "inflates to more than");
        let mut junk = compressed("127.0.0.1:30911", "Zipped", 1);
        junk.body = bytes::Bytes::from_static(b"definitely not zlib");
        junk.set_ext_field("bodyCrc32", "0");
        refused(&b.call(junk).await, "compressed registration body");

        // Brokers: two addresses at most; a known one may register again.
        let ok = b.call(register("broker-b", "127.0.0.1:20911", 0, &["T2"], true)).await;
        assert_eq!(ok.code, response_code::SUCCESS);
        refused(
            &b.call(register("broker-c", "127.0.0.1:21911", 0, &["T3"], true)).await,
            "brokers_max",
        );
        let again = b.call(register("broker-b", "127.0.0.1:20911", 0, &["T2"], true)).await;
        assert_eq!(again.code, response_code::SUCCESS);

        // KV: three entries and 1,000 bytes at most; replacing and deleting make room.
        let mut admin = Conn::connect(ns.local_addr()).await;
        for k in ["A", "B", "C"] {
            assert_eq!(admin.call(put_kv(k, "broker-a:4")).await.code, response_code::SUCCESS);
        }
        refused(&admin.call(put_kv("D", "broker-a:4")).await, "kv_entries_max");
        assert_eq!(admin.call(put_kv("A", "broker-b:8")).await.code, response_code::SUCCESS);
        refused(&admin.call(put_kv("B", &"x".repeat(1_000))).await, "kv_bytes_max");
        let delete = RemotingCommand::request(
            request_code::DELETE_KV_CONFIG,
            &KvConfigKeyRequestHeader { namespace: "ORDER_TOPIC_CONFIG".into(), key: "C".into() },
        );
        assert_eq!(admin.call(delete).await.code, response_code::SUCCESS);
        assert_eq!(admin.call(put_kv("D", "broker-a:4")).await.code, response_code::SUCCESS);
        let list = admin
            .call(RemotingCommand::request(
                request_code::GET_KVLIST_BY_NAMESPACE,
                &GetKvListByNamespaceRequestHeader { namespace: "ORDER_TOPIC_CONFIG".into() },
            ))
            .await;
        let table = KvTable::from_json(&list.body).unwrap().table;
        let keys: Vec<&str> = table.keys().map(String::as_str).collect();
        assert_eq!(keys, ["A", "B", "D"]);
        assert_eq!(table["A"], "broker-b:8");
        assert_eq!(table["B"], "broker-a:4", "the refused value did not land");
        // Emptied, the namespace gives all its bytes back: a value of exactly the room left.
        for key in ["A", "B", "D"] {
            let delete = RemotingCommand::request(
                request_code::DELETE_KV_CONFIG,
                &KvConfigKeyRequestHeader {
                    namespace: "ORDER_TOPIC_CONFIG".into(),
                    key: key.into(),
                },
            );
            assert_eq!(admin.call(delete).await.code, response_code::SUCCESS);
        }
        let room = 1_000 - "ORDER_TOPIC_CONFIG".len() - "A".len();
        assert_eq!(admin.call(put_kv("A", &"x".repeat(room))).await.code, response_code::SUCCESS);
        refused(&admin.call(put_kv("B", "y")).await, "kv_bytes_max");
        ns.shutdown();
    }
}

// Drives a real external process: real tokio only, never part of the simulation build.
#[cfg(not(madsim))]
mod interop {
    //! A real RocketMQ client from a public registry: ali-ons (npm, pure JavaScript, speaks the
    //! 4.x remoting protocol) fetches a route from our NameServer. It reports version 121, so it
    //! gets fastjson's unquoted integer keys (`{0:"addr"}`) and parses them with its own JSON2.
    //! Needs Node.js and `npm ci --prefix interop` (scripts/verify runs it).
    use rocketraft_namesrv::{NameServer, NamesrvConfig};
    use rocketraft_protocol::response_code;

    use super::support::Conn;

    #[tokio::test]
    async fn ali_ons_fetches_a_route() {
        let ns =
            NameServer::start(NamesrvConfig { listen: "127.0.0.1:0".into(), ..Default::default() })
                .await
                .unwrap();
        let mut broker = Conn::connect(ns.local_addr()).await;
        let resp = broker
            .call(super::routes::register(
                "broker-a",
                "127.0.0.1:10911",
                0,
                &["InteropTopic"],
                true,
            ))
            .await;
        assert_eq!(resp.code, response_code::SUCCESS);

        let args = [ns.local_addr().to_string(), "InteropTopic".to_owned()];
        let route = tokio::task::spawn_blocking(move || {
            rocketraft_tests::interop::run_node("ons_route.js", &args)
        })
        .await
        .unwrap();
        assert_eq!(route["brokerDatas"][0]["brokerName"], "broker-a");
        assert_eq!(route["brokerDatas"][0]["brokerAddrs"]["0"], "127.0.0.1:10911");
        assert_eq!(route["queueDatas"][0]["writeQueueNums"], 4);
        ns.shutdown();
    }
}

mod tls {
    //! TLS on a NameServer's port in RocketMQ's modes, over real TCP: an enforcing port serves
    //! TLS clients only, a permissive one both, and a client trusting another CA (or a server
    //! certificate another CA signed) never gets an answer.
    use rocketraft_namesrv::{NameServer, NamesrvConfig};
    use rocketraft_protocol::headers::GetRouteInfoRequestHeader;
    use rocketraft_protocol::{request_code, response_code, RemotingCommand};
    use rocketraft_remoting::tls::{throwaway, ClientTls, ServerTls, TlsMode};
    use rocketraft_remoting::{CallError, Remoting, RemotingConfig};

    async fn start(mode: TlsMode) -> (NameServer, rocketraft_remoting::tls::Throwaway) {
        let key = throwaway(&["127.0.0.1"]).unwrap();
        let tls = Some(ServerTls::new(&key.pem(false), mode).unwrap());
        let config = NamesrvConfig { listen: "127.0.0.1:0".into(), tls, ..Default::default() };
        (NameServer::start(config).await.unwrap(), key)
    }

    /// A route lookup (TOPIC_NOT_EXIST: nothing is registered) with `tls`, or why it failed.
    async fn lookup(ns: &NameServer, tls: Option<ClientTls>) -> Result<i32, CallError> {
        let remoting = Remoting::new(RemotingConfig { tls, ..Default::default() }, None);
        let header =
            GetRouteInfoRequestHeader { topic: "T".into(), accept_standard_json_only: None };
        let cmd = RemotingCommand::request(request_code::GET_ROUTEINFO_BY_TOPIC, &header);
        let answer = remoting.call(&ns.local_addr().to_string(), cmd, 3_000).await;
        remoting.shutdown();
        answer.map(|r| r.code)
    }

    #[tokio::test]
    async fn tls_enforcing_serves_tls_clients_only() {
        let (ns, key) = start(TlsMode::Enforcing).await;
        let trusted = ClientTls::new(&key.ca_pem, None).unwrap();
        assert_eq!(lookup(&ns, Some(trusted)).await.unwrap(), response_code::TOPIC_NOT_EXIST);
        let plain = lookup(&ns, None).await.expect_err("a plain client was answered");
        assert!(matches!(plain, CallError::ConnectionClosed { .. }), "{plain}");
        let other = throwaway(&["127.0.0.1"]).unwrap();
        let wrong_ca = ClientTls::new(&other.ca_pem, None).unwrap();
        let e = lookup(&ns, Some(wrong_ca)).await.expect_err("a certificate of another CA");
        assert!(matches!(e, CallError::Connect { .. }), "{e}");
        ns.shutdown();
    }

    #[tokio::test]
    async fn tls_permissive_serves_tls_and_plain_clients_on_one_port() {
        let (ns, key) = start(TlsMode::Permissive).await;
        let trusted = ClientTls::new(&key.ca_pem, None).unwrap();
        assert_eq!(lookup(&ns, Some(trusted)).await.unwrap(), response_code::TOPIC_NOT_EXIST);
        assert_eq!(lookup(&ns, None).await.unwrap(), response_code::TOPIC_NOT_EXIST);
        ns.shutdown();
    }
}
