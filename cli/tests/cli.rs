//! Real-process tests of the `rocketraft` binary (Cargo builds it fresh for this package's
//! tests and points `CARGO_BIN_EXE_rocketraft` at it).

mod cli {
    use std::process::Command;

    fn rocketraft() -> Command {
        Command::new(env!("CARGO_BIN_EXE_rocketraft"))
    }

    /// The binary decodes the offset message id of reference §1.2 and prints JSON.
    #[test]
    fn msgid_decodes_an_offset_message_id() {
        let out = rocketraft()
            .args(["msgid", "0A02DFA500002A9F0000000163E60ADB", "--json"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["storeHost"], "10.2.223.165:10911");
        assert_eq!(v["commitLogOffset"], 0x0000_0001_63E6_0ADBi64);
    }

    /// 10,000 connections that never send a frame are all closed by the NameServer's idle
    /// timeout (the server in its own process: the two ends of 10,000 connections would pass
    /// one process's file limit here).
    #[test]
    fn ten_thousand_idle_connections_are_closed_by_the_idle_timeout() {
        use std::io::Read;
        use std::net::{TcpListener, TcpStream};
        use std::time::Duration;
        const CONNECTIONS: usize = 10_000;
        const IDLE_MS: u64 = 3_000;
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr = format!("127.0.0.1:{port}");
        let child = rocketraft()
            .args(["namesrv", "--listen", &addr, "--connections-max", "20000"])
            .args(["--metrics-listen", "127.0.0.1:0"])
            .args(["--connections-per-ip-max", "20000"])
            .args(["--idle-timeout-ms", &IDLE_MS.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        struct Kill(std::process::Child);
        impl Drop for Kill {
            fn drop(&mut self) {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
        let _guard = Kill(child);
        let listening = (0..500).any(|_| {
            let up = TcpStream::connect(&addr).is_ok();
            if !up {
                std::thread::sleep(Duration::from_millis(20));
            }
            up
        });
        assert!(listening, "the NameServer did not start listening within 10 s");
        // In steps, so the server's accept loop keeps up: a full listen backlog (1,024) drops
        // SYNs, and each drop costs its client a 1 s retransmit.
        let conns: Vec<TcpStream> = (0..CONNECTIONS)
            .map(|i| {
                if i % 250 == 249 {
                    std::thread::sleep(Duration::from_millis(20));
                }
                TcpStream::connect(&addr).unwrap()
            })
            .collect();
        // The newest one is still open (well within the timeout): a read finds nothing yet,
        // rather than the end of the stream.
        let newest = &conns[CONNECTIONS - 1];
        newest.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        assert!((&*newest).read(&mut [0u8; 1]).is_err(), "accepted and open before the timeout");
        // The last connection opened is closed by IDLE_MS after it opened (the server checks
        // each connection's idle time on its own timer).
        std::thread::sleep(Duration::from_millis(IDLE_MS * 2));
        let mut closed = 0;
        for c in &conns {
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            if matches!((&*c).read(&mut [0u8; 1]), Ok(0)) {
                closed += 1;
            }
        }
        assert_eq!(closed, CONNECTIONS, "every idle connection closed by the server");
    }

    /// `rocketraft dev` prints the addresses and a ready line, serves a client, and stops
    /// cleanly on SIGTERM (exit 0).
    #[test]
    fn dev_runs_a_cluster_until_sigterm() {
        use std::io::{BufRead, BufReader};
        use std::process::Stdio;
        let dir = tempfile::tempdir().unwrap();
        let mut child = rocketraft()
            .args(["dev", "--namesrv-port", "0", "--broker-port", "0", "--raft-port", "0"])
            .args(["--metrics-port", "0"])
            .arg("--data-dir")
            .arg(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut printed = Vec::new();
        for line in lines.by_ref() {
            let line = line.unwrap();
            let ready = line.contains("ready");
            printed.push(line);
            if ready {
                break;
            }
        }
        assert!(printed.last().is_some_and(|l| l.contains("ready")), "{printed:?}");
        assert!(printed.iter().any(|l| l.starts_with("NameServer")), "{printed:?}");
        assert_eq!(printed.iter().filter(|l| l.starts_with("broker-a-")).count(), 3);
        assert_eq!(printed.iter().filter(|l| l.contains("leader (master)")).count(), 1);
        assert!(dir.path().join("broker-a-0").join("meta").exists(), "data under --data-dir");
        let kill = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
        assert!(kill.success());
        let status = child.wait().unwrap();
        assert!(status.success(), "clean exit on SIGTERM: {status}");
        let rest: Vec<String> = lines.map_while(Result::ok).collect();
        assert!(rest.iter().any(|l| l.contains("stopped")), "{rest:?}");
    }

    /// A replica of `rocketraft dev` whose disk fails (the queue directory it must create is
    /// taken by a file) stops on the fatal error and says so; the others go on serving, and the
    /// whole process still stops cleanly on SIGTERM. (Once, the dead replica's registration
    /// loop spun on a closed channel and SIGTERM no longer stopped `rocketraft dev`.)
    #[test]
    #[allow(clippy::disallowed_methods)] // a real process: a thread drains it, wall-clock deadlines
    fn dev_reports_a_failed_replica_and_still_stops_on_sigterm() {
        use std::io::{BufRead, BufReader};
        use std::process::Stdio;
        use std::time::Duration;
        let dir = tempfile::tempdir().unwrap();
        let mut child = rocketraft()
            .args(["dev", "--namesrv-port", "0", "--broker-port", "0", "--raft-port", "0"])
            .args(["--metrics-port", "0"])
            .arg("--data-dir")
            .arg(dir.path())
            .env("RUST_LOG", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let next_line = |what: &str| {
            rx.recv_timeout(Duration::from_secs(60)).unwrap_or_else(|_| panic!("no line: {what}"))
        };
        let mut printed = Vec::new();
        while !printed.last().is_some_and(|l: &String| l.contains("ready")) {
            printed.push(next_line("ready"));
        }
        let namesrv = printed
            .iter()
            .find_map(|l| l.strip_prefix("NameServer"))
            .map(|a| a.trim().to_owned())
            .unwrap();
        let follower = printed
            .iter()
            .find(|l| l.starts_with("broker-a-") && l.contains("follower"))
            .and_then(|l| l.split_whitespace().next())
            .unwrap()
            .to_owned();
        let queues = dir.path().join(&follower).join("consumequeue");
        std::fs::create_dir_all(&queues).unwrap();
        std::fs::write(queues.join("Doomed"), b"not a directory").unwrap();
        let sent = rocketraft()
            .args(["send", "--topic", "Doomed", "hello", "-n", &namesrv])
            .output()
            .unwrap();
        assert!(sent.status.success(), "{}", String::from_utf8_lossy(&sent.stderr));

        let mut report = String::new();
        while !report.contains("stopped on a fatal error") {
            report = next_line("the fatal error report");
        }
        assert!(report.contains(&follower) && report.contains("Doomed"), "{report}");
        let again = rocketraft()
            .args(["send", "--topic", "Doomed", "again", "-n", &namesrv])
            .output()
            .unwrap();
        assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));

        let kill = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
        assert!(kill.success());
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("rocketraft dev did not stop on SIGTERM after a replica failed");
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        assert!(status.success(), "clean exit on SIGTERM: {status}");
    }

    /// A port in use is one sentence naming it and the fix, and a failing exit code.
    #[test]
    fn dev_refuses_a_port_in_use_in_one_line() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port().to_string();
        let dir = tempfile::tempdir().unwrap();
        let out = rocketraft()
            .args(["dev", "--namesrv-port", &port, "--broker-port", "0", "--raft-port", "0"])
            .args(["--metrics-port", "0"])
            .arg("--data-dir")
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8(out.stderr).unwrap();
        let last = err.trim_end().lines().last().unwrap_or_default().to_owned();
        assert!(last.starts_with("error: cannot listen on 127.0.0.1:"), "{err}");
        assert!(last.contains("choose other ports") && !err.contains("panicked"), "{err}");
    }

    /// A bad id is one sentence on stderr and a failing exit code, no panic.
    #[test]
    fn msgid_refuses_garbage_with_one_clear_line() {
        let out = rocketraft().args(["msgid", "nothex"]).output().unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(err.starts_with("error: \"nothex\" is not an offset message id"), "{err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(!err.contains("panicked"));
    }

    /// Runs the binary, expects failure, returns stderr's one line.
    fn fails_in_one_line(args: &[&str]) -> String {
        let out = rocketraft().args(args).output().unwrap();
        assert!(!out.status.success(), "{args:?} should fail");
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("error: ") && !err.contains("panicked"), "{err}");
        err
    }

    #[test]
    fn wrong_flags_name_the_mistake_and_the_help() {
        let e = fails_in_one_line(&["send", "--topc", "T"]);
        assert!(e.contains("'--topc'") && e.contains("'--topic'"), "{e}");
        assert!(e.contains("rocketraft send --help"), "{e}");
        let e = fails_in_one_line(&["topic", "create"]);
        assert!(e.contains("<TOPIC>") && e.contains("rocketraft topic create --help"), "{e}");
        let e = fails_in_one_line(&["bench", "produce", "--size", "big"]);
        assert!(e.contains("'big'"), "{e}");
    }

    #[test]
    fn an_unreachable_namesrv_says_how_to_fix_it() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr = format!("127.0.0.1:{port}");
        for args in [
            vec!["topic", "list", "-n", &addr],
            vec!["send", "-t", "T", "hello", "-n", &addr],
            vec!["cluster", "list", "-n", &addr],
        ] {
            let e = fails_in_one_line(&args);
            assert!(e.contains(&format!("cannot reach the NameServer at {addr}")), "{e}");
            assert!(e.contains("rocketraft dev") && e.contains("--namesrv"), "{e}");
        }
    }

    #[test]
    fn broker_config_problems_are_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.toml");
        let e = fails_in_one_line(&["broker", "--config", missing.to_str().unwrap()]);
        assert!(e.contains("cannot read the broker config") && e.contains("--config"), "{e}");
        assert_eq!(e.matches("No such file").count(), 1, "the cause once: {e}");

        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, "advertised_addr = \"127.0.0.1:1\"\n[raft]\nnode_id = 3\npeers = { \"0\" = \"127.0.0.1:2\" }\n").unwrap();
        let e = fails_in_one_line(&["broker", "--config", bad.to_str().unwrap()]);
        assert!(e.contains("bad.toml") && e.contains("node_id 3 is not one of peers"), "{e}");

        // A data directory another replica wrote is refused before anything is opened.
        let ports: Vec<u16> = (0..2)
            .map(|_| {
                std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
            })
            .collect();
        let good = dir.path().join("good.toml");
        std::fs::write(
            &good,
            format!(
                "listen = \"127.0.0.1:{0}\"\nmetrics_listen = \"127.0.0.1:0\"\nadvertised_addr = \"127.0.0.1:{0}\"\nstore_dir = \"data\"\n[raft]\nnode_id = 0\npeers = {{ \"0\" = \"127.0.0.1:{1}\" }}\n",
                ports[0], ports[1]
            ),
        )
        .unwrap();
        std::fs::create_dir_all(dir.path().join("data")).unwrap();
        std::fs::write(
            dir.path().join("data").join("replica.id"),
            "cluster DefaultCluster group broker-b node 0\n",
        )
        .unwrap();
        let e = fails_in_one_line(&["broker", "--config", good.to_str().unwrap()]);
        assert!(e.contains("belongs to cluster DefaultCluster group broker-b node 0"), "{e}");
        assert!(e.contains("store_dir"), "{e}");

        // The client port taken by someone else.
        let taken = std::net::TcpListener::bind(("127.0.0.1", ports[0])).unwrap();
        let busy = dir.path().join("busy.toml");
        let text = std::fs::read_to_string(&good).unwrap().replace("\"data\"", "\"data2\"");
        std::fs::write(&busy, text).unwrap();
        let e = fails_in_one_line(&["broker", "--config", busy.to_str().unwrap()]);
        let want = format!("cannot listen on 127.0.0.1:{} (`listen`)", ports[0]);
        assert!(e.contains(&want) && e.contains("Stop it or change `listen`"), "{e}");
        drop(taken);

        // An ACL file with a mistake stops the start and says where (relative to the config).
        std::fs::write(dir.path().join("acl.toml"), "[[accounts]]\naccess_key = \"short\"\n")
            .unwrap();
        let acl = dir.path().join("acl-broker.toml");
        let text = std::fs::read_to_string(&good).unwrap().replace("\"data\"", "\"data3\"");
        std::fs::write(&acl, format!("{text}[acl]\nfile = \"acl.toml\"\n")).unwrap();
        let e = fails_in_one_line(&["broker", "--config", acl.to_str().unwrap()]);
        assert!(e.contains("invalid ACL file") && e.contains("secret_key"), "{e}");
        let e = fails_in_one_line(&["namesrv", "--listen", "127.0.0.1:0", "--acl-file", "/nope"]);
        assert!(e.contains("cannot read the ACL file /nope"), "{e}");
    }

    /// A `rocketraft dev` child on free ports; killed when dropped.
    struct Dev {
        child: std::process::Child,
        namesrv: String,
        _dir: tempfile::TempDir,
    }

    impl Dev {
        fn start() -> Dev {
            // The machine's disk is shared and others fill it: only a full one refuses.
            Self::start_with(&["--disk-max-used-ratio", "1"])
        }

        /// `rocketraft dev` with `args` too.
        fn start_with(args: &[&str]) -> Dev {
            use std::io::{BufRead, BufReader};
            let dir = tempfile::tempdir().unwrap();
            let mut child = rocketraft()
                .args(["dev", "--namesrv-port", "0", "--broker-port", "0", "--raft-port", "0"])
                .args(["--metrics-port", "0"])
                .args(args)
                .arg("--data-dir")
                .arg(dir.path())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            let mut namesrv = String::new();
            for line in BufReader::new(child.stdout.take().unwrap()).lines() {
                let line = line.unwrap();
                if let Some(addr) = line.strip_prefix("NameServer") {
                    namesrv = addr.trim().to_owned();
                }
                if line.contains("ready") {
                    break;
                }
            }
            assert!(!namesrv.is_empty(), "dev printed its NameServer");
            Dev { child, namesrv, _dir: dir }
        }

        /// Runs `rocketraft args -n <namesrv>`, expects success, returns stdout.
        fn run(&self, args: &[&str]) -> String {
            let out = rocketraft().args(args).args(["-n", &self.namesrv]).output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "{args:?} failed: {err}");
            String::from_utf8(out.stdout).unwrap()
        }

        fn json(&self, args: &[&str]) -> serde_json::Value {
            let mut args = args.to_vec();
            args.push("--json");
            serde_json::from_str(self.run(&args).trim()).unwrap()
        }
    }

    impl Drop for Dev {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// `--disk-max-used-ratio`: a volume fuller than it refuses sends from the start, with
    /// RocketMQ's answer naming the disk; admin calls go on. A ratio outside (0, 1] is refused.
    #[test]
    fn dev_refuses_sends_on_a_volume_fuller_than_its_ratio() {
        // Every volume the test can run on holds more than this fraction (the test binary).
        let dev = Dev::start_with(&["--disk-max-used-ratio", "0.000001"]);
        dev.run(&["topic", "create", "Full", "--queues", "1"]);
        let out = rocketraft()
            .args(["send", "-t", "Full", "refused", "-n", &dev.namesrv])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "a send on a full disk was acknowledged");
        assert!(err.contains("disk is") && err.contains("full"), "{err}");

        let out = rocketraft().args(["dev", "--disk-max-used-ratio", "1.5"]).output().unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--disk-max-used-ratio must be above 0 and at most 1"), "{err}");
    }

    /// The admin verbs, send and consume, as a user types them, against a dev cluster.
    #[test]
    fn admin_send_and_consume_against_dev() {
        let dev = Dev::start();
        let created = dev.json(&["topic", "create", "Orders", "--queues", "3"]);
        assert_eq!(created["brokerGroups"], serde_json::json!(["broker-a"]));
        let route = dev.json(&["topic", "route", "Orders"]);
        assert_eq!(route["queues"][0]["writeQueues"], 3);
        assert_eq!(route["brokers"][0]["addrs"].as_object().unwrap().len(), 3, "{route}");
        assert!(dev.json(&["topic", "list"]).as_array().unwrap().contains(&"Orders".into()));

        let sent =
            dev.json(&["send", "-t", "Orders", "paid", "--keys", "order-7", "--tags", "TagA"]);
        assert_eq!(sent["status"], "SendOk");
        let msg_id = sent["msgId"].as_str().unwrap().to_owned();
        let text = dev.run(&["send", "-t", "Orders", "shipped", "--count", "2"]);
        assert_eq!(text.lines().filter(|l| l.starts_with("SendOk msgId=")).count(), 2, "{text}");

        // Each non-empty line of stdin is one message.
        let mut child = rocketraft()
            .args(["send", "-t", "Lines", "-n", &dev.namesrv])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), b"one\n\ntwo\n").unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        let lines = String::from_utf8(out.stdout).unwrap();
        assert_eq!(lines.lines().filter(|l| l.starts_with("SendOk")).count(), 2, "{lines}");

        let found = dev.json(&["message", "query", "-t", "Orders", "--key", "order-7"]);
        assert_eq!(found[0]["body"], "paid");
        let by_id = dev.json(&["message", "query", "-t", "Orders", "--id", &msg_id]);
        assert_eq!(by_id[0]["msgId"], msg_id.as_str());
        let offset_id = by_id[0]["offsetMsgId"].as_str().unwrap().to_owned();
        let by_offset = dev.json(&["message", "query", "--id", &offset_id]);
        assert_eq!(by_offset[0]["body"], "paid");

        // Two messages, then the third: offsets are committed for what was printed only.
        let first =
            dev.run(&["consume", "-t", "Orders", "-g", "g1", "--from", "first", "--count", "2"]);
        let rest =
            dev.run(&["consume", "-t", "Orders", "-g", "g1", "--from", "first", "--count", "1"]);
        let bodies: Vec<&str> =
            first.lines().chain(rest.lines()).filter_map(|l| l.split("body=").nth(1)).collect();
        let mut sorted = bodies.clone();
        sorted.sort();
        assert_eq!(sorted, ["paid", "shipped", "shipped"], "each message once: {first}{rest}");
        let offsets = dev.json(&["group", "offsets", "g1"]);
        assert_eq!(offsets["totalLag"], 0, "{offsets}");
        let committed: i64 = offsets["queues"]
            .as_array()
            .unwrap()
            .iter()
            .map(|q| q["consumerOffset"].as_i64().unwrap())
            .sum();
        assert_eq!(committed, 3);

        // Who consumes the topic (g1 has offsets there), and moving g1 back to the start.
        let consumers = dev.json(&["topic", "consumers", "Orders"]);
        assert_eq!(consumers["groups"], serde_json::json!(["g1"]), "{consumers}");
        let reset = dev.json(&[
            "group",
            "reset-offset",
            "g1",
            "-t",
            "Orders",
            "--to-time",
            "2000-01-01T00:00:00",
        ]);
        let queues = reset["queues"].as_array().unwrap();
        assert_eq!(queues.len(), 3, "{reset}");
        assert!(queues.iter().all(|q| q["offset"] == 0), "{reset}");
        assert_eq!(dev.json(&["group", "offsets", "g1"])["totalLag"], 3);
        let again = dev.run(&["consume", "-t", "Orders", "-g", "g1", "--count", "3"]);
        assert_eq!(again.lines().filter(|l| l.contains("body=")).count(), 3, "{again}");
        // Nobody is connected for g1 once its consumers stopped.
        let conns = dev.json(&["group", "connections", "g1"]);
        assert_eq!(conns["connections"], serde_json::json!([]), "{conns}");
        let config = dev.json(&["broker", "config"]);
        let (_, master) = config.as_object().unwrap().iter().next().unwrap();
        assert_eq!(master["config"]["brokerName"], "broker-a", "{config}");
        assert_eq!(master["config"]["brokerRole"], "SYNC_MASTER", "{config}");
        let replicas = dev.json(&["broker", "config", "--group", "broker-a"]);
        assert_eq!(replicas.as_object().unwrap().len(), 3, "{replicas}");

        let cluster = dev.json(&["cluster", "list"]);
        let roles: Vec<&str> =
            cluster.as_array().unwrap().iter().map(|r| r["role"].as_str().unwrap()).collect();
        assert_eq!(roles.iter().filter(|r| **r == "leader").count(), 1, "{cluster}");
        assert_eq!(roles.iter().filter(|r| **r == "follower").count(), 2, "{cluster}");
        // One machine's clock, no step: no replica was behind its group's time.
        let ahead = |r: &serde_json::Value| r["clockAheadMs"].as_i64();
        assert!(cluster.as_array().unwrap().iter().all(|r| ahead(r) == Some(0)), "{cluster}");

        dev.run(&["topic", "delete", "Orders"]);
        assert!(!dev.json(&["topic", "list"]).as_array().unwrap().contains(&"Orders".into()));
    }

    /// Delayed messages are shown waiting per delay level; a group's dead letters are listed
    /// and re-sent to the topic they were first sent to, once.
    #[test]
    fn delayed_messages_and_dead_letters_against_dev() {
        let dev = Dev::start();
        dev.json(&["topic", "create", "Later", "--queues", "1"]);
        let sent = dev.json(&["send", "-t", "Later", "in two hours", "--delay-level", "18"]);
        assert_eq!(sent["status"], "SendOk");
        // The master registers its parked topics as it starts leading: look until it did.
        let mut waiting = dev.json(&["delayed"]);
        for _ in 0..50 {
            if waiting["waiting"] == 1 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
            waiting = dev.json(&["delayed"]);
        }
        let level_18 = waiting["queues"]
            .as_array()
            .unwrap()
            .iter()
            .find(|q| q["queue"] == "delay level 18")
            .cloned()
            .unwrap_or_else(|| panic!("no level 18 in {waiting}"));
        assert_eq!((level_18["parked"].as_i64(), level_18["waiting"].as_i64()), (Some(1), Some(1)));
        assert_eq!(waiting["waiting"], 1, "{waiting}");
        // Not delivered before its time.
        let early =
            dev.run(&["consume", "-t", "Later", "-g", "g2", "--from", "first", "--count", "0"]);
        assert!(!early.contains("in two hours"), "{early}");

        assert!(dev.run(&["group", "dead-letters", "G"]).contains("has no dead letters"));
        // A dead letter as the broker leaves one: in %DLQ%G, naming the topic it came from.
        dev.json(&["topic", "create", "Jobs", "--queues", "1"]);
        let dead =
            ["send", "-t", "%DLQ%G", "poison", "--keys", "job-1", "--property", "RETRY_TOPIC=Jobs"];
        assert_eq!(dev.json(&dead)["status"], "SendOk");
        let listed = dev.json(&["group", "dead-letters", "G"]);
        assert_eq!(listed["messages"][0]["topic"], "Jobs", "{listed}");
        assert_eq!(listed["messages"][0]["body"], "poison");
        assert_eq!(dev.json(&["group", "dead-letters", "G", "--resend"])["resent"], 1);
        assert_eq!(dev.json(&["group", "dead-letters", "G", "--resend"])["resent"], 0, "once");
        let found = dev.json(&["message", "query", "-t", "Jobs", "--key", "job-1"]);
        assert_eq!(found[0]["body"], "poison", "{found}");
        assert!(found[0]["properties"]["DLQ_ORIGIN_MESSAGE_ID"].is_string(), "{found}");
        assert!(found[0]["properties"].get("RETRY_TOPIC").is_none(), "{found}");

        // A half message no producer resolves: listed with its age and check count (the dev
        // cluster checks back every 30 s, and no producer of its group is connected).
        assert!(dev.run(&["transactions"]).contains("no unresolved transactions"));
        let half = ["send", "-t", "Jobs", "pending", "--property", "TRAN_MSG=true"];
        assert_eq!(dev.json(&half)["status"], "SendOk");
        let open = dev.json(&["transactions", "--topic", "Jobs"]);
        assert_eq!(open["halves"].as_array().map(Vec::len), Some(1), "{open}");
        assert_eq!(open["halves"][0]["checkTimes"], 0, "{open}");
        assert!(open["halves"][0]["ageSeconds"].as_f64().is_some(), "{open}");
        let other = dev.json(&["transactions", "--topic", "Later"]);
        assert_eq!(other["halves"].as_array().map(Vec::len), Some(0), "{other}");
        // Not consumable.
        let none =
            dev.run(&["consume", "-t", "Jobs", "-g", "g3", "--from", "first", "--count", "0"]);
        assert!(!none.contains("pending"), "{none}");
    }

    /// The bench's figures add up: every message counted, e2e finds none missing; the CPU per
    /// message is measured on the dev process the bench found by its ports.
    #[test]
    fn bench_reports_what_it_sent_and_received() {
        let dev = Dev::start();
        let produce = dev.json(&["bench", "produce", "-c", "200", "-p", "2", "-s", "100", "-q"]);
        assert_eq!(produce["produce"]["messages"], 200, "{produce}");
        assert_eq!(produce["produce"]["errors"], 0);
        assert!(produce["produce"]["latencyMs"]["p99"].as_f64().unwrap() > 0.0);
        assert_eq!(produce["cpu"]["serverProcesses"], 1, "the one dev process: {produce}");
        assert!(produce["cpu"]["serverUsPerMsg"].as_f64().unwrap() > 0.0, "{produce}");
        // The bench's own share may be below the 10 ms a CPU tick counts: present, not > 0.
        assert!(produce["cpu"]["benchUsPerMsg"].as_f64().is_some(), "{produce}");
        let e2e = dev.json(&[
            "bench",
            "e2e",
            "-c",
            "300",
            "-p",
            "2",
            "--in-flight",
            "8",
            "-q",
            "-t",
            "E2e",
            "-d",
            "60",
        ]);
        assert_eq!(e2e["produce"]["messages"], 300, "{e2e}");
        assert_eq!(e2e["consume"]["messages"], 300, "{e2e}");
        assert_eq!((e2e["notReceived"].clone(), e2e["duplicates"].clone()), (0.into(), 0.into()));
        let consumed = dev.json(&[
            "bench",
            "consume",
            "-c",
            "200",
            "--from-first",
            "-q",
            "-g",
            "r",
            "-d",
            "60",
        ]);
        assert_eq!(consumed["consume"]["messages"], 200, "{consumed}");
        // Transactional sends: each committed after its local transaction, all delivered.
        let tx = dev.json(&[
            "bench",
            "e2e",
            "-c",
            "100",
            "--in-flight",
            "4",
            "--transaction-local-ms",
            "2",
            "-q",
            "-t",
            "Tx",
            "-d",
            "60",
        ]);
        assert_eq!(tx["produce"]["messages"], 100, "{tx}");
        assert_eq!(tx["consume"]["messages"], 100, "{tx}");
        assert_eq!((tx["notReceived"].clone(), tx["duplicates"].clone()), (0.into(), 0.into()));
        // With neither a count nor a duration, a new group reads the backlog there is and stops.
        let backlog = dev.json(&["bench", "consume", "--from-first", "-q", "-g", "whole"]);
        assert_eq!(backlog["consume"]["messages"], 200, "{backlog}");
        assert_eq!(backlog["consume"]["errors"], 0, "{backlog}");
        // Numbered messages read through a SQL92 selector: exactly the 10 of 100 it matches.
        let numbered =
            dev.json(&["bench", "produce", "-c", "100", "--numbered", "-q", "-t", "Num"]);
        assert_eq!(numbered["produce"]["messages"], 100, "{numbered}");
        let args = ["bench", "consume", "-t", "Num", "-g", "sql", "--from-first", "-q"];
        let filtered =
            dev.json(&[&args[..], &["--sql", "n < 10", "-c", "10", "-d", "60"]].concat());
        assert_eq!(filtered["consume"]["messages"], 10, "{filtered}");
        assert_eq!(filtered["sql"], "n < 10", "{filtered}");
    }
}
