//! Local upstreams over stdio: spawning the child process in its own process group
//! (`child`), what it writes besides MCP (`child_output`), newline-delimited JSON-RPC
//! over its pipes (`transport`, with the write queue `write_queue` and the over-limit
//! line reader `oversize`), the direct lane for `tools/call` (`lane`), and the watchdog
//! process that ends every child group when the bridge dies (`watchdog`).

pub mod child;
pub mod child_output;
pub mod lane;
pub mod oversize;
pub mod transport;
pub mod watchdog;
pub mod write_queue;
