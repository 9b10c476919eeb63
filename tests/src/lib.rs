//! Integration tests that run RocketRaft as users do: real sockets, real files, several crates
//! together (one test binary, modules named by theme). Tests of the `rocketraft` binary as a
//! process live in `cli/tests/`, where Cargo hands them the freshly built binary.
