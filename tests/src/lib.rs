//! Integration tests that run RocketRaft as users do: real sockets, real files, several crates
//! together (one test binary, modules named by theme). Tests of the `rocketraft` binary as a
//! process live in `cli/tests/`, where Cargo hands them the freshly built binary.

pub mod interop {
    //! Runs the scripts in `interop/`, which drive RocketRaft with real RocketMQ clients: ali-ons
    //! from npm (needs Node.js and `npm ci --prefix interop`) and Apache rocketmq-client-cpp
    //! from PyPI (needs Python 3 and `python3 -m venv interop/.venv && interop/.venv/bin/pip
    //! install -r interop/requirements.txt`). scripts/verify installs both.

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

    /// Runs `interop/.venv/bin/python interop/<script> <args>` to completion (its client logs in
    /// a temporary HOME) and parses the JSON line it prints. Panics with the script's output if
    /// it fails: this is a test helper.
    pub fn run_python(script: &str, args: &[String]) -> serde_json::Value {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../interop");
        let python = dir.join(".venv/bin/python");
        assert!(
            python.exists(),
            "the Python interop client is not installed: run `python3 -m venv interop/.venv && \
             interop/.venv/bin/pip install -r interop/requirements.txt`"
        );
        let home = std::env::temp_dir().join(format!("rocketraft-interop-{}", std::process::id()));
        std::fs::create_dir_all(&home).expect("a temporary HOME for the client's logs");
        let out = Command::new(python)
            .arg(dir.join(script))
            .args(args)
            .env("HOME", &home)
            .output()
            .expect("python runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{script} failed: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let last = stdout.lines().last().unwrap_or_default();
        serde_json::from_str(last)
            .unwrap_or_else(|e| panic!("{script} printed no JSON line ({e}): {stdout}"))
    }
}
