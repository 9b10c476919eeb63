//! The madsim simulation of a RocketRaft cluster: nodes, fault schedules, history recording
//! and pure checkers. It only builds under `--cfg madsim`; run it with `scripts/simtest`.
//!
//! Every failure prints its seed and the command that replays it ([`replay_hint`]).

#[cfg(not(madsim))]
compile_error!(
    "rocketraft-sim only builds under `--cfg madsim`: run `scripts/simtest` \
     (an inherited RUSTFLAGS without the cfg would silently give 0 tests)"
);

pub mod check;
pub mod cluster;
pub mod workload;

/// The command that replays one seed of one test.
pub fn replay_hint(test: &str, seed: u64) -> String {
    format!("MADSIM_TEST_SEED={seed} scripts/simtest {test} -- --nocapture")
}

/// FNV-1a over a trace: cheap, stable across platforms and releases (unlike `DefaultHasher`).
#[derive(Debug, Clone, Copy)]
pub struct TraceHash(u64);

impl Default for TraceHash {
    fn default() -> Self {
        TraceHash(0xcbf2_9ce4_8422_2325)
    }
}

impl TraceHash {
    pub fn record(&mut self, event: &[u8]) {
        for b in event.iter().chain(&[0xFF]) {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    pub fn value(self) -> u64 {
        self.0
    }
}
