//! Integration tests: the built `foxxy-bridge` binary, driven as MCP clients and users
//! drive it, against real MCP servers (the rmcp fixture in `tests/fixture/` and
//! third-party peers).

mod cli;
mod conformance;
mod core;
mod doctor;
mod fidelity;
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
