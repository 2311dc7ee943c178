//! Integration tests: the built `foxxy-bridge` binary, driven as MCP clients and users
//! drive it, against real MCP servers (the rmcp fixture in `tests/fixture/` and
//! third-party peers).

mod cli;
mod conformance;
mod core;
mod fidelity;
mod interop;
mod interop_http;
mod jsonrpc;
mod lifecycle;
mod naming;
mod oauth;
mod peers;
mod remote;
mod resilience;
mod streams;
mod support;
