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

    /// `rocketraft dev` prints the addresses and a ready line, serves a client, and stops
    /// cleanly on SIGTERM (exit 0).
    #[test]
    fn dev_runs_a_cluster_until_sigterm() {
        use std::io::{BufRead, BufReader};
        use std::process::Stdio;
        let dir = tempfile::tempdir().unwrap();
        let mut child = rocketraft()
            .args(["dev", "--namesrv-port", "0", "--broker-port", "0", "--raft-port", "0"])
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

    /// A port in use is one sentence naming it and the fix, and a failing exit code.
    #[test]
    fn dev_refuses_a_port_in_use_in_one_line() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port().to_string();
        let dir = tempfile::tempdir().unwrap();
        let out = rocketraft()
            .args(["dev", "--namesrv-port", &port, "--broker-port", "0", "--raft-port", "0"])
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
                "listen = \"127.0.0.1:{0}\"\nadvertised_addr = \"127.0.0.1:{0}\"\nstore_dir = \"data\"\n[raft]\nnode_id = 0\npeers = {{ \"0\" = \"127.0.0.1:{1}\" }}\n",
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
    }
}
