//! Integration tests that run RocketRaft as users do: built binaries as real processes, real
//! sockets, real files. The tests live in `tests/`, one binary with modules named by theme.
