//! The set of upstream MCP servers: starting them, keeping them connected, and sending
//! them requests.
//!
//! This module owns every upstream connection and child process. It does NOT know how
//! the bridge presents itself to the MCP client: naming, merging and routing by exposed
//! name live in `proxy/`. The boundary is deliberately narrow:
//!
//! - [`Upstreams`] is what the proxy calls: a watchable [`View`] of every upstream's
//!   state and last known catalog, and `request`/`notify` addressed by upstream name.
//! - [`ClientLink`] is what upstreams call back into: server→client requests (sampling,
//!   elicitation, roots) and notifications the client should see.
//!
//! A later per-user daemon that shares upstream processes between bridges would be a
//! second implementation of [`Upstreams`], not a rewrite of the proxy.

// Sampling, roots, logging and resource subscriptions are deprecated by SEP-2577 for
// protocol 2026-07-28, but they are live parts of 2025-11-25, which the bridge speaks.
#![allow(deprecated)]

mod client_handler;
mod client_tasks;
mod connection;
mod entry;
mod http;
mod in_flight;
mod listing;
mod raw_results;
mod session;
mod set;
mod sign_in;
mod stdio;
mod supervisor;
mod tap;

use std::{fmt, sync::Arc};

pub use client_tasks::{RequestOrigin, origin_of};
use futures::future::{BoxFuture, FutureExt};
pub use in_flight::AnswerSink;
use rmcp::{
    ErrorData,
    model::{
        ClientCapabilities, ClientNotification, ClientRequest, ClientResult, LoggingLevel, ProgressToken,
        Prompt, Resource, ResourceTemplate, ServerCapabilities, ServerNotification, ServerRequest,
        ServerResult, Tool,
    },
};
pub use session::{NEEDS_SIGN_IN, UPSTREAM_META};
pub use set::UpstreamSet;
pub use stdio::lane::{LaneCallEnd, LaneCallOrigin, LaneTicket};
pub use stdio::watchdog;
pub use tap::drop_progress_token;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::wire::{ToolAnswer, ToolCall};

/// What the proxy needs from the upstreams. Implemented by [`UpstreamSet`].
pub trait Upstreams: Send + Sync + 'static {
    /// The current state of every configured upstream, updated on every change.
    fn view(&self) -> watch::Receiver<Arc<View>>;

    /// Send one request to one upstream and wait for its result.
    ///
    /// Cancelling `options.cancel` sends `notifications/cancelled` upstream and returns
    /// [`UpstreamError::Cancelled`]. Progress for this request is forwarded to the
    /// [`ClientLink`] under `options.progress_token`.
    fn request(
        &self,
        upstream: &str,
        request: ClientRequest,
        options: RequestOptions,
    ) -> BoxFuture<'_, Result<ServerResult, UpstreamError>>;

    /// Call a tool of one upstream: [`Upstreams::request`] for a `tools/call`, whose
    /// result may come back as the upstream wrote it, to be relayed unchanged.
    fn call_tool(
        &self,
        upstream: &str,
        call: ToolCall,
        options: RequestOptions,
    ) -> BoxFuture<'_, Result<ToolAnswer, UpstreamError>> {
        self.request(upstream, call.into_request(), options)
            .map(|result| result.map(ToolAnswer::Decoded))
            .boxed()
    }

    /// A `tools/call` to one upstream that no task waits for: an id on its session's
    /// direct lane, to [`LaneTicket::send`] the call with. Its answer then goes to an
    /// [`AnswerSink`], with the contract of [`Upstreams::call_tool`] (timeout, progress,
    /// cancellation by [`LaneTicket::cancel`]). `None` when the upstream has no such
    /// lane right now: use [`Upstreams::call_tool`].
    fn tool_ticket(&self, upstream: &str) -> Option<LaneTicket> {
        let _ = upstream;
        None
    }

    /// Send the request `method` with `params` to one upstream and return its result as
    /// the upstream wrote it: for what rmcp's types do not model (tasks). The contract of
    /// [`Upstreams::request`] otherwise.
    fn request_raw(
        &self,
        upstream: &str,
        method: String,
        params: serde_json::Map<String, serde_json::Value>,
        options: RequestOptions,
    ) -> BoxFuture<'_, Result<serde_json::Value, UpstreamError>> {
        let request =
            ClientRequest::CustomRequest(rmcp::model::CustomRequest::new(method, Some(params.into())));
        self.request(upstream, request, options)
            .map(|result| result.map(|result| serde_json::to_value(result).unwrap_or_default()))
            .boxed()
    }

    /// Start (or join) the interactive sign-in of one upstream that needs it, at the
    /// user's request, and return what the user must do; with `pasted`, hand it the
    /// address the browser ended on (or the bare code) and wait for the outcome.
    fn sign_in(
        &self,
        upstream: &str,
        pasted: Option<String>,
    ) -> BoxFuture<'_, Result<SignInStep, UpstreamError>> {
        let error =
            UpstreamError::SignIn { name: upstream.to_owned(), cause: "it does not sign in".to_owned() };
        let _ = pasted;
        async move { Err(error) }.boxed()
    }

    /// Send a notification to every connected upstream (e.g. roots list changed).
    fn notify_all(&self, notification: ClientNotification) -> BoxFuture<'_, ()>;

    /// Set the log level on every upstream that supports logging, now and on reconnect.
    fn set_log_level(&self, level: LoggingLevel) -> BoxFuture<'_, ()>;

    /// Let the upstreams start connecting (they wait for this, so that the client's
    /// `initialize` is answered first).
    fn begin(&self);

    /// Apply a reloaded config: start, stop or restart only the upstreams it changes.
    fn reconfigure(&self, settings: &crate::config::Settings) -> BoxFuture<'_, ()>;

    /// Stop every upstream: close connections, end child processes (bounded time).
    fn shutdown(&self) -> BoxFuture<'_, ()>;
}

/// What upstreams need from the client side of the bridge.
pub trait ClientLink: Send + Sync + 'static {
    /// A request from upstream `from` to the client (sampling, elicitation, roots).
    /// `cancel` fires when the upstream cancels its request.
    fn request(
        &self,
        from: &str,
        request: ServerRequest,
        cancel: CancellationToken,
    ) -> BoxFuture<'_, Result<ClientResult, ErrorData>>;

    /// A notification from upstream `from` that the client should see: progress (its
    /// token already mapped back to the client's), log messages, resource updates.
    /// Awaiting it means it has been handed to the client transport, which is what keeps
    /// progress ahead of the result it belongs to.
    fn notify(&self, from: &str, notification: ServerNotification) -> BoxFuture<'_, ()>;

    /// What the client declared it can do for servers (sampling, elicitation with its
    /// modes, roots), declared in turn to each upstream so that it offers nothing the
    /// client cannot use. Empty before the client's `initialize`, and without a client
    /// (`tools` and `call` from a shell); upstreams start only after it.
    fn client_capabilities(&self) -> ClientCapabilities {
        ClientCapabilities::default()
    }

    /// The client's `capabilities.tasks` as it declared them, limited to what the bridge
    /// relays, declared in turn to each upstream (rmcp's capability type has no `tasks`).
    /// `None` when the client declared none.
    fn client_tasks(&self) -> Option<serde_json::Value> {
        None
    }

    /// Whether the client reads and checks each tool answer itself, as it would a
    /// server's (the bridges a hub serves): a stdio upstream's answers to lane calls then
    /// go on as written and are read only up to their id
    /// ([`stdio::lane::AnswerReading::UpToId`]).
    fn reads_tool_answers(&self) -> bool {
        false
    }
}

/// Per-request options for [`Upstreams::request`].
#[derive(Debug, Clone, Default)]
pub struct RequestOptions {
    /// Cancelled when the client cancels the request it made to the bridge.
    pub cancel: CancellationToken,
    /// The client's progress token: upstream progress is forwarded under it.
    pub progress_token: Option<ProgressToken>,
    /// `_meta` fields of the client's request other than the progress token.
    pub meta: Option<rmcp::model::RequestMetaObject>,
    /// How long the request may be quiet, instead of the upstream's `requestTimeout`
    /// (for `tasks/result`, which waits as long as its task runs).
    pub timeout: Option<std::time::Duration>,
}

impl RequestOptions {
    /// The options of a client request with this `_meta`, cancelled by `cancel`: the
    /// progress token is taken out (the upstream session uses its own), the rest is
    /// forwarded.
    pub fn for_client(cancel: CancellationToken, mut meta: rmcp::model::RequestMetaObject) -> Self {
        let progress_token = meta.get_progress_token();
        meta.0.0.remove("progressToken");
        let meta = (!meta.0.0.is_empty()).then_some(meta);
        Self { cancel, progress_token, meta, timeout: None }
    }
}

/// A snapshot of every configured, enabled upstream, in config order.
#[derive(Debug, Clone, Default)]
pub struct View {
    pub upstreams: Vec<UpstreamState>,
}

impl View {
    /// True once every upstream has finished its first connection attempt.
    pub fn all_settled(&self) -> bool {
        self.upstreams.iter().all(|upstream| upstream.settled)
    }

    pub fn get(&self, name: &str) -> Option<&UpstreamState> {
        self.upstreams.iter().find(|upstream| &*upstream.name == name)
    }
}

#[derive(Debug, Clone)]
pub struct UpstreamState {
    pub name: Arc<str>,
    /// `stdio`, `streamable-http` or `sse`.
    pub transport: &'static str,
    pub status: Status,
    /// Set once the first connection attempt has ended, either way.
    pub settled: bool,
    /// The last catalog listed by this upstream; kept while it is down so calls to its
    /// tools can be answered with an error that names it.
    pub catalog: Option<Arc<UpstreamCatalog>>,
    /// Which incarnation of the upstream this is: a config reload that restarts an
    /// upstream makes a new one, and the old supervisor's late updates are ignored.
    pub generation: u64,
    /// While `Connecting`: what the upstream did in this attempt that may be why it does
    /// not finish (a line on stdout that is not JSON-RPC). Cleared by the next attempt.
    pub note: Option<String>,
    /// The process id of its local server while a session with it runs.
    pub pid: Option<u32>,
}

impl UpstreamState {
    pub fn is_ready(&self) -> bool {
        matches!(self.status, Status::Ready)
    }
}

/// Where an upstream is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Starting or initializing (first time or after a failure).
    Connecting,
    /// Connected and listed.
    Ready,
    /// Down, will be retried after a backoff; holds the cause.
    Retrying(String),
    /// `retryAttempts` consecutive failures; retried only every `recoveryInterval` or
    /// when a call needs it. Holds the cause.
    Failed(String),
    /// Waiting for the user to finish a browser sign-in.
    SigningIn,
    /// No usable tokens and no sign-in under way; reconnects as soon as tokens appear
    /// (e.g. after `foxxy-bridge oauth login`). Holds the reason.
    NeedsSignIn(String),
}

impl Status {
    pub fn label(&self) -> &'static str {
        match self {
            Status::Connecting => "connecting",
            Status::Ready => "ready",
            Status::Retrying(_) => "retrying",
            Status::Failed(_) => "failed",
            Status::SigningIn => "signing in",
            Status::NeedsSignIn(_) => "needs sign-in",
        }
    }

    pub fn error(&self) -> Option<&str> {
        match self {
            Status::Retrying(error) | Status::Failed(error) | Status::NeedsSignIn(error) => Some(error),
            Status::Connecting | Status::Ready | Status::SigningIn => None,
        }
    }
}

/// Everything one upstream lists.
#[derive(Debug, Clone, Default)]
pub struct UpstreamCatalog {
    /// The protocol version the session speaks, as the upstream's `initialize` said.
    pub protocol_version: String,
    pub capabilities: ServerCapabilities,
    /// `capabilities.tasks` as the upstream declared it (rmcp's type drops it); `None`
    /// when it declared none, or it is not known.
    pub tasks: Option<serde_json::Value>,
    pub instructions: Option<String>,
    pub tools: Vec<Tool>,
    /// Each of `tools` as the upstream wrote it (same order): fields the decoded `Tool`
    /// does not know are kept, to be served unchanged but for the name.
    pub tool_objects: Vec<Arc<rmcp::model::JsonObject>>,
    pub prompts: Vec<Prompt>,
    pub resources: Vec<Resource>,
    pub resource_templates: Vec<ResourceTemplate>,
}

/// Where a sign-in the user asked for ([`Upstreams::sign_in`]) stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignInStep {
    /// The user must open `url` (and there enter `user_code`, for the device grant).
    /// `accepts_paste`: the address the browser ended on, or its code, may be handed back.
    Open { url: String, user_code: Option<String>, accepts_paste: bool },
    /// Signed in; the upstream connects with the new tokens.
    Done,
}

/// Why a request to an upstream did not produce a result.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream `{0}` is not configured")]
    Unknown(String),
    #[error("upstream `{name}` is not connected: {cause}")]
    NotConnected { name: String, cause: String },
    #[error("upstream `{name}` did not answer within {seconds} s")]
    Timeout { name: String, seconds: u64 },
    #[error("request cancelled")]
    Cancelled,
    /// The upstream answered with a JSON-RPC error: passed through as is.
    #[error("{}", .0.message)]
    Mcp(ErrorData),
    #[error("upstream `{name}` failed: {cause}")]
    Transport { name: String, cause: String },
    #[error("sign-in to `{name}` failed: {cause}")]
    SignIn { name: String, cause: String },
}

impl UpstreamError {
    /// The JSON-RPC error the client gets for this failure.
    pub fn into_error_data(self) -> ErrorData {
        match self {
            UpstreamError::Mcp(error) => error,
            UpstreamError::Unknown(_) => ErrorData::invalid_params(self.to_string(), None),
            other => ErrorData::internal_error(other.to_string(), None),
        }
    }
}

/// Kinds of upstream catalog lists, for list_changed bookkeeping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListKind {
    Tools,
    Prompts,
    Resources,
}

impl fmt::Display for ListKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ListKind::Tools => "tools",
            ListKind::Prompts => "prompts",
            ListKind::Resources => "resources",
        })
    }
}
