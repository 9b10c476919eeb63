//! The library side of the `rocketraft` command: running a broker replica on real files
//! ([`replica`]) and a whole development cluster in one process ([`dev`]). The binary and the
//! integration tests in `tests/` both use it, so what the tests start is what users run.

pub mod dev;
pub mod replica;
