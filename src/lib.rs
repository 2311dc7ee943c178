//! foxxy-bridge: a stdio-first MCP proxy that serves many upstream MCP servers as one.
//!
//! `main.rs` only parses the command line and maps the result of [`run`] to an exit
//! code; everything else lives here so the tests can reach it. See `ARCHITECTURE.md`
//! for the codemap.

pub mod config;
pub mod paths;
pub mod upstream;
pub mod cli;
pub mod commands;
pub mod logging;
pub mod output;
pub mod proxy;
