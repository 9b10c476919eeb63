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
}
