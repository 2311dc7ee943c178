//! The hub: one process per user and config file that runs the upstreams marked
//! `shared`, for every bridge of that config.
//!
//! `foxxy-bridge hub serve` is started, detached, by the first bridge that needs it
//! (`hub_socket::launch`). It listens on a Unix socket only its user may reach
//! (`hub_socket::socket`), and serves each bridge one MCP session per shared upstream
//! the bridge uses: to the bridge, the hub looks like that server itself
//! (`proxy::Bridge::for_one_upstream`), so every feature of an unshared upstream
//! (progress, cancellation, tasks, server→client requests, tool objects as written)
//! works the same way through it.
//!
//! Its parts:
//! - [`HubUpstreams`] (here): the one upstream set of the hub. An upstream starts when a
//!   bridge first needs it, and a config reload restarts only what it changes.
//! - `router.rs`: every attached connection, and where what an upstream sends to "the
//!   client" goes (progress to its request's bridge, requests to the bridge with a request
//!   in flight, other notifications to all).
//! - `bridge_upstreams.rs`: one connection's view of the set, the `Upstreams` of its
//!   `Bridge`.
//! - `server.rs`: the socket, each connection from its first line (a control request or
//!   `initialize`) to its end, the idle exit and config reload.
//!
//! It does not own how a bridge reaches it (`hub_socket`, `upstream`'s shared sessions).

mod bridge_upstreams;
mod router;
mod server;

use std::{collections::BTreeSet, sync::Arc};

pub use server::serve;

use crate::{
    config::{ServerSettings, Settings},
    locks::Unpoisoned,
    upstream::{UpstreamSet, Upstreams},
};

/// How much longer a shared upstream's request may take in the hub than in a bridge.
const REQUEST_TIMEOUT_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// The hub's upstream set, and which of the config's shared upstreams it runs.
pub struct HubUpstreams {
    set: Arc<UpstreamSet>,
    /// The config's shared upstreams, as the hub runs them (not shared again).
    config: std::sync::Mutex<Arc<Settings>>,
    /// The upstreams some bridge has needed; they run until the hub ends or the config
    /// drops them.
    started: tokio::sync::Mutex<BTreeSet<String>>,
}

impl HubUpstreams {
    fn new(set: Arc<UpstreamSet>, config: Arc<Settings>) -> Self {
        Self { set, config: std::sync::Mutex::new(config), started: tokio::sync::Mutex::default() }
    }

    /// `settings` narrowed to the servers a hub runs: the shared ones, run by the hub
    /// itself. Their requests may take a little longer here than in the bridge, so that a
    /// request that times out does so in the bridge, which names the tool as its client
    /// knows it (and cancels the request here).
    fn shared_only(settings: &Settings) -> Arc<Settings> {
        let mut shared = settings.clone();
        shared.servers.retain(|server| server.shared);
        for server in &mut shared.servers {
            server.shared = false;
            server.request_timeout += REQUEST_TIMEOUT_GRACE;
        }
        Arc::new(shared)
    }

    /// The settings of shared upstream `name`, if the config has it.
    fn server(&self, name: &str) -> Option<ServerSettings> {
        self.config.lock_unpoisoned().server(name).filter(|server| server.enabled).cloned()
    }

    fn config(&self) -> Arc<Settings> {
        self.config.lock_unpoisoned().clone()
    }

    /// The config with only the upstreams in `started`.
    fn running(&self, started: &BTreeSet<String>) -> Settings {
        let mut running = (*self.config()).clone();
        running.servers.retain(|server| started.contains(&server.name));
        running
    }

    /// Start upstream `name` if no bridge has needed it yet, and let the set go.
    pub async fn start(&self, name: &str) {
        let mut started = self.started.lock().await;
        if started.insert(name.to_owned()) {
            tracing::info!(upstream = %name, "a bridge needs it; starting it");
            self.set.reconfigure(&self.running(&started)).await;
        }
        self.set.begin();
    }

    /// Apply a reloaded config to the upstreams running.
    async fn reload(&self, settings: &Settings) {
        let mut started = self.started.lock().await;
        *self.config.lock_unpoisoned() = Self::shared_only(settings);
        let config = self.config();
        started.retain(|name| config.server(name).is_some());
        self.set.reconfigure(&self.running(&started)).await;
    }
}
