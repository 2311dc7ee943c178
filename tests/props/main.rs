//! Property-based fuzzing: the config loader, exposed-name mapping, the merged catalog,
//! the hub's reading of upstream answers, and the bridge's handling of client messages
//! (through the built binary).
//!
//! These stand in for `cargo fuzz`, which needs a nightly toolchain: each target is a
//! proptest strategy run for a time budget (`FOXXY_FUZZ_SECONDS` per target, a few
//! seconds by default; `scripts/fuzz` runs 60 s per target in release mode, as CI does).
//! Seeds live in `tests/fuzz/corpus/`, the seeds of failures found so far in
//! `tests/fuzz/regressions/`; both are replayed on every run. See `tests/fuzz/README.md`.

mod answers;
mod catalog;
mod config;
mod harness;
mod messages;
mod naming;
