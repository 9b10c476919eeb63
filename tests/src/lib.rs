//! Integration tests that run RocketRaft as users do: real sockets, real files, several crates
//! together (one test binary, modules named by theme). Tests of the `rocketraft` binary as a
//! process live in `cli/tests/`, where Cargo hands them the freshly built binary.

pub mod interop {
    //! Runs the scripts in `interop/`, which drive RocketRaft with real RocketMQ clients from
    //! npm. They need Node.js and `npm ci --prefix interop` (scripts/verify runs it).

    use std::path::PathBuf;
    use std::process::Command;

    /// Runs `node interop/<script> <args>` to completion and parses the JSON line it prints.
    /// Panics with the script's output if it fails: this is a test helper.
    pub fn run_node(script: &str, args: &[String]) -> serde_json::Value {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../interop");
        assert!(
            dir.join("node_modules/ali-ons").exists(),
            "the interop clients are not installed: run `npm ci --prefix interop` (needs Node.js)"
        );
        let out =
            Command::new("node").arg(dir.join(script)).args(args).output().expect("node runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{script} failed: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_str(stdout.trim())
            .unwrap_or_else(|e| panic!("{script} printed no JSON line ({e}): {stdout}"))
    }
}
