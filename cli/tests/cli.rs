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
