//! Integration tests: the built `foxxy-bridge` binary, driven as MCP clients and users
//! drive it, against real MCP servers (the rmcp fixture in `tests/fixture/` and
//! third-party peers).
//!
//! Rules every test here keeps: it goes through the real boundary (the binary from
//! `CARGO_BIN_EXE_foxxy-bridge`, with a temporary `FOXXY_BRIDGE_HOME`, over pipes);
//! upstreams are the fixture (over stdio, or HTTP on `127.0.0.1` with a port the OS picks,
//! optionally behind its mock authorization server, with its scripted browser as
//! `FOXXY_BRIDGE_BROWSER`) or real third-party peers (`peers.rs`); no test is `#[ignore]`d,
//! and a missing peer is a failure. The conformance runs and the DNS-failure test run in a
//! private network namespace with only loopback (`unshare --net`). `structure.rs` checks
//! the module graph of `src/` itself.

mod cli;
mod conformance;
mod core;
mod doctor;
mod fidelity;
mod hub;
mod hub_cli;
mod interop;
mod interop_http;
mod jsonrpc;
mod lifecycle;
mod logging;
mod naming;
mod oauth;
mod oauth_client;
mod oauth_hardening;
mod oauth_once;
mod oauth_shell;
mod onboarding;
mod orphans;
mod oversize;
mod peers;
mod reconnect;
mod remote;
mod resilience;
mod search;
mod streams;
mod structure;
mod support;
