//! The plumbing between bridges and the hub that runs their shared upstreams: where a
//! hub's socket and lock files are (`address`), binding and connecting the socket and
//! checking its peers (`socket`), finding or starting the hub of a config file and
//! holding its life lock (`launch`), and the two control requests that `hub status` and
//! `hub stop` send (`control`).
//!
//! It sits with `config` and `paths` at the bottom, so that both the bridge's upstream
//! code (which reaches a hub) and the serving hub (which uses the proxy) can use it. It
//! does not serve MCP, route messages or run upstreams: that is `hub/` on the hub's side
//! and the upstream sessions on the bridge's side.

pub mod address;
pub mod control;
pub mod launch;
pub mod socket;

pub use address::HubAddress;
pub use control::{
    Control, ControlKind, HubStatus, HubUpstreamStatus, answer_line, parse_control, query_status,
    request_stop,
};
pub use launch::{HubLifeLock, connect_or_start};
pub use socket::{Peer, PeerRefused, bind, check_peer, connect};
