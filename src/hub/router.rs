//! The way back from the hub's shared upstreams to the bridges attached to it
//! ([`AttachedBridges`], the [`ClientLink`] of the hub's upstream set).
//!
//! Each attached connection serves one upstream to one bridge. What an upstream sends
//! toward "the client" goes to:
//! - progress: the connection whose request it belongs to. Progress tokens are made
//!   unique in the hub on the way in ([`AttachedBridges::begin_request`]) and
//!   restored here on the way out, so two bridges may both use token `1`;
//! - a request (sampling, elicitation, roots): the connection with a request in flight
//!   on that upstream (the most recent one when several have), else the connection of
//!   that upstream attached most recently;
//! - `notifications/resources/updated`: the connections subscribed to that resource (the
//!   upstream stays subscribed while one of them is);
//! - a log message (`notifications/message`): every connection of that upstream whose
//!   bridge set no level or one the message meets. The upstream itself runs at the most
//!   verbose level its connections set ([`AttachedBridges::set_log_level`]);
//! - any other notification: every connection of that upstream.
//!
//! The client capabilities an upstream is initialized with are those of the bridge
//! attached most recently, which is the one whose need starts an upstream.

// Logging is deprecated by SEP-2577 for protocol 2026-07-28, but it is a live part of
// 2025-11-25, which the hub speaks.
#![allow(deprecated)]

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use futures::future::{BoxFuture, FutureExt};
use rmcp::{
    ErrorData,
    model::{
        ClientCapabilities, ClientResult, LoggingLevel, NumberOrString, ProgressToken, ServerNotification,
        ServerRequest,
    },
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::{locks::Unpoisoned, proxy::link::DownstreamLink, upstream::ClientLink};

/// A resource of an upstream: the upstream's name and the resource's URI.
type SubscribedResource = (Arc<str>, String);

/// One attached connection.
struct Attached {
    id: u64,
    upstream: Arc<str>,
    link: Arc<DownstreamLink>,
    /// The peer's process id, for counting bridges.
    pid: Option<i32>,
    /// When it attached, on the router's clock.
    attached: u64,
    /// Its requests in flight on the upstream, and when the last of them started.
    in_flight: usize,
    last_request: u64,
    /// The level its bridge set with `logging/setLevel`, if any.
    log_level: Option<LoggingLevel>,
}

/// Every bridge connection attached to the hub.
#[derive(Default)]
pub struct AttachedBridges {
    connections: Mutex<Vec<Attached>>,
    /// Progress tokens given to the upstreams (numbers, unique in the hub) → the
    /// connection and its own token.
    progress: Mutex<foldhash::HashMap<i64, (u64, ProgressToken)>>,
    /// Orders attachments and requests.
    clock: AtomicU64,
    /// How many connections are attached; the hub's idle timer watches it.
    count: watch::Sender<usize>,
    /// Which connections subscribed to each resource of each upstream. The upstream is
    /// subscribed while any of them is.
    subscriptions: Mutex<HashMap<SubscribedResource, Vec<u64>>>,
}

/// A request of one connection, in flight: ends its bookkeeping when dropped.
pub struct RequestInFlight {
    bridges: Arc<AttachedBridges>,
    connection: u64,
    token: Option<i64>,
}

impl AttachedBridges {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn tick(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::Relaxed)
    }

    /// A new connection's id.
    pub fn next_id(&self) -> u64 {
        self.tick()
    }

    /// Attach connection `id`, serving `upstream` to the bridge behind `link`.
    pub fn attach(&self, id: u64, upstream: Arc<str>, link: Arc<DownstreamLink>, pid: Option<i32>) {
        let attached = self.tick();
        let mut connections = self.connections.lock_unpoisoned();
        connections.push(Attached {
            id,
            upstream,
            link,
            pid,
            attached,
            in_flight: 0,
            last_request: 0,
            log_level: None,
        });
        self.count.send_replace(connections.len());
    }

    /// Detach connection `id`; returns the resources it alone was subscribed to, which
    /// the upstream should be unsubscribed from.
    pub fn detach(&self, id: u64) -> Vec<String> {
        let mut connections = self.connections.lock_unpoisoned();
        connections.retain(|connection| connection.id != id);
        self.count.send_replace(connections.len());
        drop(connections);
        self.progress.lock_unpoisoned().retain(|_, (connection, _)| *connection != id);
        let mut orphaned = Vec::new();
        self.subscriptions.lock_unpoisoned().retain(|(_, uri), subscribers| {
            let before = subscribers.len();
            subscribers.retain(|subscriber| *subscriber != id);
            let keep = !subscribers.is_empty();
            if !keep && before > 0 {
                orphaned.push(uri.clone());
            }
            keep
        });
        orphaned
    }

    /// Connection `id` subscribes to `uri` of `upstream`: true when no connection was
    /// subscribed to it, so the upstream must be.
    pub fn subscribe(&self, id: u64, upstream: &Arc<str>, uri: &str) -> bool {
        let mut subscriptions = self.subscriptions.lock_unpoisoned();
        let subscribers = subscriptions.entry((upstream.clone(), uri.to_owned())).or_default();
        let first = subscribers.is_empty();
        if !subscribers.contains(&id) {
            subscribers.push(id);
        }
        first
    }

    /// Connection `id` unsubscribes from `uri` of `upstream`: true when it was the last
    /// subscriber, so the upstream must be unsubscribed.
    pub fn unsubscribe(&self, id: u64, upstream: &Arc<str>, uri: &str) -> bool {
        let mut subscriptions = self.subscriptions.lock_unpoisoned();
        let key = (upstream.clone(), uri.to_owned());
        let Some(subscribers) = subscriptions.get_mut(&key) else { return false };
        let before = subscribers.len();
        subscribers.retain(|subscriber| *subscriber != id);
        let last = subscribers.is_empty() && before > 0;
        if subscribers.is_empty() {
            subscriptions.remove(&key);
        }
        last
    }

    fn subscribers_of(&self, upstream: &str, uri: &str) -> Vec<Arc<DownstreamLink>> {
        let subscribed = self
            .subscriptions
            .lock_unpoisoned()
            .get(&(Arc::from(upstream), uri.to_owned()))
            .cloned()
            .unwrap_or_default();
        subscribed.into_iter().filter_map(|id| self.link_of(id)).collect()
    }

    /// Connection `id`'s bridge set log level `level`: the level its upstream should
    /// run at now, the most verbose one its connections set.
    pub fn set_log_level(&self, id: u64, level: LoggingLevel) -> Option<LoggingLevel> {
        let mut connections = self.connections.lock_unpoisoned();
        let connection = connections.iter_mut().find(|connection| connection.id == id)?;
        connection.log_level = Some(level);
        let upstream = connection.upstream.clone();
        most_verbose(&connections, &upstream)
    }

    /// The log level connection `id`'s bridge set, if any.
    pub fn log_level_of(&self, id: u64) -> Option<LoggingLevel> {
        let connections = self.connections.lock_unpoisoned();
        connections.iter().find(|connection| connection.id == id).and_then(|connection| connection.log_level)
    }

    /// The level `upstream` should run at: the most verbose one its connections set.
    pub fn wanted_log_level(&self, upstream: &str) -> Option<LoggingLevel> {
        most_verbose(&self.connections.lock_unpoisoned(), upstream)
    }

    /// The links of `upstream`'s connections that hear a log message at `level`.
    fn listeners_at(&self, upstream: &str, level: LoggingLevel) -> Vec<Arc<DownstreamLink>> {
        let connections = self.connections.lock_unpoisoned();
        connections
            .iter()
            .filter(|connection| &*connection.upstream == upstream)
            .filter(|connection| connection.log_level.is_none_or(|wanted| level as u8 >= wanted as u8))
            .map(|connection| connection.link.clone())
            .collect()
    }

    /// How many connections are attached, as it changes.
    pub fn count(&self) -> watch::Receiver<usize> {
        self.count.subscribe()
    }

    /// How many distinct bridge processes are attached.
    pub fn bridges(&self) -> usize {
        let connections = self.connections.lock_unpoisoned();
        let mut pids: Vec<Option<i32>> = connections.iter().map(|connection| connection.pid).collect();
        pids.sort_unstable();
        pids.dedup();
        pids.len()
    }

    /// Connection `id` starts a request with the client's progress token `token`: the
    /// token the upstream gets instead, and the guard that ends the request.
    pub fn begin_request(
        self: &Arc<Self>,
        id: u64,
        token: Option<ProgressToken>,
    ) -> (RequestInFlight, Option<ProgressToken>) {
        let now = self.tick();
        if let Some(connection) = self.connections.lock_unpoisoned().iter_mut().find(|c| c.id == id) {
            connection.in_flight += 1;
            connection.last_request = now;
        }
        // The request's place on the clock is unique in the hub.
        let unique = token.and_then(|token| {
            let unique = i64::try_from(now).ok()?;
            self.progress.lock_unpoisoned().insert(unique, (id, token));
            Some(unique)
        });
        let replaced = unique.map(|unique| ProgressToken(NumberOrString::Number(unique)));
        (RequestInFlight { bridges: self.clone(), connection: id, token: unique }, replaced)
    }

    /// The link a request from `upstream` goes to.
    fn link_for_request(&self, upstream: &str) -> Option<Arc<DownstreamLink>> {
        let connections = self.connections.lock_unpoisoned();
        let of_upstream = connections.iter().filter(|connection| &*connection.upstream == upstream);
        let busy = of_upstream.clone().filter(|connection| connection.in_flight > 0);
        busy.max_by_key(|connection| connection.last_request)
            .or_else(|| of_upstream.max_by_key(|connection| connection.attached))
            .map(|connection| connection.link.clone())
    }

    fn links_of(&self, upstream: &str) -> Vec<Arc<DownstreamLink>> {
        let connections = self.connections.lock_unpoisoned();
        connections
            .iter()
            .filter(|connection| &*connection.upstream == upstream)
            .map(|connection| connection.link.clone())
            .collect()
    }

    fn newest_link(&self) -> Option<Arc<DownstreamLink>> {
        let connections = self.connections.lock_unpoisoned();
        connections
            .iter()
            .max_by_key(|connection| connection.attached)
            .map(|connection| connection.link.clone())
    }

    fn link_of(&self, id: u64) -> Option<Arc<DownstreamLink>> {
        let connections = self.connections.lock_unpoisoned();
        connections.iter().find(|connection| connection.id == id).map(|connection| connection.link.clone())
    }
}

/// The most verbose level the connections of `upstream` set.
fn most_verbose(connections: &[Attached], upstream: &str) -> Option<LoggingLevel> {
    connections
        .iter()
        .filter(|connection| &*connection.upstream == upstream)
        .filter_map(|connection| connection.log_level)
        .min_by_key(|level| *level as u8)
}

impl Drop for RequestInFlight {
    fn drop(&mut self) {
        if let Some(connection) =
            self.bridges.connections.lock_unpoisoned().iter_mut().find(|c| c.id == self.connection)
        {
            connection.in_flight = connection.in_flight.saturating_sub(1);
        }
        if let Some(token) = &self.token {
            self.bridges.progress.lock_unpoisoned().remove(token);
        }
    }
}

/// The hub's way back: the [`ClientLink`] of its upstream set.
pub struct HubLink(pub Arc<AttachedBridges>);

impl ClientLink for HubLink {
    fn request(
        &self,
        from: &str,
        request: ServerRequest,
        cancel: CancellationToken,
    ) -> BoxFuture<'_, Result<ClientResult, ErrorData>> {
        let from = from.to_owned();
        async move {
            let Some(link) = self.0.link_for_request(&from) else {
                return Err(ErrorData::internal_error(
                    format!("no bridge is attached to the hub for `{from}`"),
                    None,
                ));
            };
            link.request(&from, request, cancel).await
        }
        .boxed()
    }

    fn notify(&self, from: &str, mut notification: ServerNotification) -> BoxFuture<'_, ()> {
        let from = from.to_owned();
        async move {
            if let ServerNotification::ProgressNotification(progress) = &mut notification {
                let NumberOrString::Number(token) = &progress.params.progress_token.0 else { return };
                let owner = self.0.progress.lock_unpoisoned().get(token).cloned();
                let Some((connection, own)) = owner else { return };
                progress.params.progress_token = own;
                if let Some(link) = self.0.link_of(connection) {
                    link.notify(&from, notification).await;
                }
                return;
            }
            let links = match &notification {
                ServerNotification::ResourceUpdatedNotification(updated) => {
                    self.0.subscribers_of(&from, &updated.params.uri)
                }
                ServerNotification::LoggingMessageNotification(message) => {
                    self.0.listeners_at(&from, message.params.level)
                }
                _ => self.0.links_of(&from),
            };
            for link in links {
                link.notify(&from, notification.clone()).await;
            }
        }
        .boxed()
    }

    fn client_capabilities(&self) -> ClientCapabilities {
        self.0.newest_link().map(|link| link.client_capabilities()).unwrap_or_default()
    }

    fn client_tasks(&self) -> Option<serde_json::Value> {
        self.0.newest_link().and_then(|link| link.client_tasks())
    }

    fn reads_tool_answers(&self) -> bool {
        // A bridge reads each answer as it would the server's own.
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::Catalog;

    fn link() -> Arc<DownstreamLink> {
        let (_, catalog) = watch::channel(Arc::new(Catalog::default()));
        Arc::new(DownstreamLink::new(catalog, false))
    }

    fn token(value: i64) -> ProgressToken {
        ProgressToken(NumberOrString::Number(value))
    }

    #[test]
    fn a_request_goes_to_the_newest_caller_in_flight_else_the_newest_connection() {
        let bridges = AttachedBridges::new();
        let (first, second, other) = (link(), link(), link());
        bridges.attach(1, "fx".into(), first.clone(), Some(100));
        bridges.attach(2, "fx".into(), second.clone(), Some(200));
        bridges.attach(3, "ev".into(), other.clone(), Some(200));
        let chosen = |upstream| bridges.link_for_request(upstream).expect("a connection of the upstream");
        assert!(Arc::ptr_eq(&chosen("fx"), &second), "none in flight: the newest connection");
        let (first_call, _) = bridges.begin_request(1, None);
        assert!(Arc::ptr_eq(&chosen("fx"), &first), "the one connection with a request in flight");
        let (second_call, _) = bridges.begin_request(2, None);
        assert!(Arc::ptr_eq(&chosen("fx"), &second), "the most recent request in flight");
        drop(second_call);
        assert!(Arc::ptr_eq(&chosen("fx"), &first), "the request still in flight");
        drop(first_call);
        assert!(Arc::ptr_eq(&chosen("ev"), &other), "another upstream's own connection");
        assert!(bridges.link_for_request("none").is_none());
        assert_eq!(bridges.bridges(), 2, "two processes, three connections");
        bridges.detach(2);
        assert!(Arc::ptr_eq(&chosen("fx"), &first));
        assert_eq!(*bridges.count().borrow(), 2);
    }

    #[test]
    fn equal_progress_tokens_of_two_connections_stay_apart_until_their_requests_end() {
        let bridges = AttachedBridges::new();
        bridges.attach(1, "fx".into(), link(), Some(100));
        bridges.attach(2, "fx".into(), link(), Some(200));
        let (first_call, first_token) = bridges.begin_request(1, Some(token(1)));
        let (second_call, second_token) = bridges.begin_request(2, Some(token(1)));
        let (first_token, second_token) = (first_token.expect("a token"), second_token.expect("a token"));
        assert_ne!(first_token, second_token);
        let owner = |unique: &ProgressToken| {
            let NumberOrString::Number(unique) = &unique.0 else { panic!("a number token") };
            bridges.progress.lock_unpoisoned().get(unique).cloned()
        };
        assert_eq!(owner(&first_token), Some((1, token(1))));
        assert_eq!(owner(&second_token), Some((2, token(1))));
        drop(first_call);
        assert_eq!(owner(&first_token), None, "forgotten with its request");
        bridges.detach(2);
        assert_eq!(owner(&second_token), None, "forgotten with its connection");
        drop(second_call);
        let (_, none) = bridges.begin_request(1, None);
        assert!(none.is_none(), "no token where the caller gave none");
    }
}
