//! One configured upstream as the set and its supervisor see it ([`Entry`]: settings,
//! the live connection, attempt counters, subscriptions, its token source), and what
//! the set shares with every supervisor and session ([`Shared`]: the client link, the
//! view of every upstream's state, start permits, the client's log level).

use std::{
    collections::BTreeSet,
    sync::{
        Arc, Mutex, OnceLock, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use rmcp::model::{ClientRequest, LoggingLevel};
use tokio::sync::{Notify, Semaphore, watch};
use tokio_util::sync::CancellationToken;

use super::{ClientLink, UpstreamState, View, connection::Connection};
use crate::{
    config::{FailoverSettings, ServerSettings},
    hub_socket::HubAddress,
    locks::{Unpoisoned, UnpoisonedRw},
    oauth::{SignInContext, TokenSource},
};

/// State shared by the set and every supervisor.
pub struct Shared {
    pub link: Arc<dyn ClientLink>,
    pub(super) view: watch::Sender<Arc<View>>,
    /// Bounds how many upstreams start at once (`bridge.maxConcurrentStarts`).
    pub start_permits: Semaphore,
    pub max_message_bytes: usize,
    pub recovery_interval: Duration,
    pub failover: FailoverSettings,
    /// The level the client last set with `logging/setLevel`, re-applied on reconnect.
    pub(super) log_level: Mutex<Option<LoggingLevel>>,
    /// Token cache and sign-in settings for remote upstreams that use OAuth.
    pub oauth: SignInContext,
    /// Where the hub that runs the `shared` upstreams listens; `None` in the hub itself.
    pub hub: Option<HubAddress>,
    /// Supervisors wait for this before their first connection attempt.
    pub go: CancellationToken,
}

impl Shared {
    /// Change `entry`'s state in the view and notify watchers. Updates from an entry
    /// that a config reload replaced are ignored.
    pub fn publish(&self, entry: &Entry, change: impl FnOnce(&mut UpstreamState)) {
        self.view.send_modify(|view| {
            let view = Arc::make_mut(view);
            if let Some(state) = view
                .upstreams
                .iter_mut()
                .find(|state| state.name == entry.name && state.generation == entry.generation)
            {
                change(state);
            }
        });
    }

    pub fn log_level(&self) -> Option<LoggingLevel> {
        *self.log_level.lock_unpoisoned()
    }
}

/// One configured upstream. Its supervisor task is the only writer of `connection`.
pub struct Entry {
    pub name: Arc<str>,
    /// Distinguishes this entry from an earlier one of the same name (config reload).
    pub generation: u64,
    pub settings: ServerSettings,
    /// Ends this upstream's supervisor (bridge shutdown, or the upstream removed).
    pub cancel: CancellationToken,
    /// The live session, if any. Read by every request, written by the supervisor.
    connection: RwLock<Option<Arc<Connection>>>,
    /// Signalled by a request that found no session: retry now instead of after backoff.
    pub reconnect: Notify,
    /// Signalled by the session handler when the upstream announces a list change.
    pub lists_changed: Arc<Notify>,
    /// Counts finished connection attempts, so a waiting request sees the next one end.
    pub(super) attempts: watch::Sender<u64>,
    /// Counts started connection attempts; written by the supervisor only.
    pub(super) attempts_started: AtomicU64,
    /// Why the last failed attempt failed, for requests that waited for it (the view
    /// may already show the next attempt). Written by the supervisor only.
    pub(super) last_failure: Mutex<Option<String>>,
    /// URIs the client subscribed to on this upstream, re-subscribed on reconnect.
    subscriptions: Mutex<BTreeSet<String>>,
    /// The OAuth token source of a remote upstream, made on first use and shared by
    /// its sessions; `None` inside when OAuth is off for it.
    pub tokens: OnceLock<Option<Arc<TokenSource>>>,
}

impl Entry {
    pub(super) fn new(settings: ServerSettings, cancel: CancellationToken, generation: u64) -> Self {
        Self {
            name: Arc::from(settings.name.as_str()),
            generation,
            settings,
            cancel,
            connection: RwLock::new(None),
            reconnect: Notify::new(),
            lists_changed: Arc::new(Notify::new()),
            attempts: watch::Sender::new(0),
            attempts_started: AtomicU64::new(0),
            last_failure: Mutex::new(None),
            subscriptions: Mutex::new(BTreeSet::new()),
            tokens: OnceLock::new(),
        }
    }

    pub fn connection(&self) -> Option<Arc<Connection>> {
        self.connection.read_unpoisoned().clone()
    }

    /// The session, unless a request has found it broken (the supervisor is about to
    /// end it): requests then wait for the next one instead of failing on this one.
    pub(super) fn live_connection(&self) -> Option<Arc<Connection>> {
        self.connection().filter(|connection| !connection.is_broken())
    }

    pub fn set_connection(&self, connection: Option<Arc<Connection>>) {
        *self.connection.write_unpoisoned() = connection;
    }

    pub fn attempt_started(&self) {
        self.attempts_started.fetch_add(1, Ordering::Release);
    }

    /// An attempt failed because of `cause`; call before [`Entry::attempt_finished`].
    pub fn attempt_failed(&self, cause: &str) {
        *self.last_failure.lock_unpoisoned() = Some(cause.to_owned());
    }

    pub fn attempt_finished(&self) {
        self.attempts.send_modify(|count| *count += 1);
    }

    pub fn subscriptions(&self) -> Vec<String> {
        self.subscriptions.lock_unpoisoned().iter().cloned().collect()
    }

    pub(super) fn track_subscription(&self, request: &ClientRequest) {
        let mut subscriptions = self.subscriptions.lock_unpoisoned();
        match request {
            ClientRequest::SubscribeRequest(request) => {
                subscriptions.insert(request.params.uri.clone());
            }
            ClientRequest::UnsubscribeRequest(request) => {
                subscriptions.remove(&request.params.uri);
            }
            _ => {}
        }
    }
}
