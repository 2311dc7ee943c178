//! foxxy-bridge: a stdio-first MCP proxy that serves many upstream MCP servers as one.
//!
//! `main.rs` only parses the command line and maps the result of [`run`] to an exit
//! code; everything else lives here so the tests can reach it. See `ARCHITECTURE.md`
//! for the codemap.

#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod cli;
pub mod clients;
pub mod commands;
pub mod config;
pub mod descriptor_limit;
pub mod doctor;
pub mod http_client;
pub mod hub;
pub mod hub_socket;
pub mod locks;
pub mod logging;
pub mod memory;
pub mod oauth;
pub mod output;
pub mod paths;
pub mod proxy;
pub mod socket_halves;
pub mod upstream;
pub mod wire;
