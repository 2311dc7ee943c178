//! The downstream MCP server: what the client sees.
//!
//! [`Bridge`] is an rmcp `ServerHandler` that answers `initialize` at once, serves the
//! merged [`Catalog`] of the upstreams, and routes every request to the upstream behind
//! the exposed name it uses. It owns naming (`naming.rs`), the merged catalog
//! (`catalog/`), the way back from upstreams to the client (`link.rs`) and the stdio
//! transport with its JSON-RPC error handling (`stdio.rs`). It does not own upstream
//! connections: it talks to them only through [`Upstreams`].
//!
//! **Starting.** `Bridge::start` builds the upstream set and the catalog task and returns
//! at once; `Bridge::begin` lets the upstreams connect (the `stdio` command calls it once
//! `initialize` is answered). `Bridge::start_for_shell` (`tools`, `call`, `doctor`) begins
//! at once, and its first list also waits while an upstream signs in, because the user is
//! at the browser. `Bridge::start_inner` is the one place that names `UpstreamSet`.
//!
//! **The catalog task** (`maintain_catalog`) rebuilds the `Catalog` from every new `View`
//! of the upstreams and every reloaded config, keeps the search mode when its input did not
//! change, and sends `notifications/*/list_changed` for the lists that changed.
//!
//! **Routing.** `route` looks an exposed name up in the current catalog (routes of ready
//! upstreams, then of upstreams that are down, so an error can name the upstream). While
//! upstreams are still starting, a miss waits for `settled_catalog` before the name counts
//! as unknown (`-32602`, with the names the caller probably meant).
//!
//! **A `tools/call` on the general route** (`relay_tool_call`: the rmcp handler, the
//! transport's call task and the `call` command all come here):
//!
//! 1. In search mode, `foxxy__search_tools` is answered here, and `foxxy__call_tool` is
//!    unwrapped into the call it names, which then goes the same way as a direct call.
//! 2. The route gives the upstream and the tool's own name. A call of the sign-in
//!    placeholder goes to `sign_in::call`; a call of a tool of an upstream that waits for a
//!    sign-in (a known route, or an unknown name in its namespace) gets an error result
//!    that names the placeholder.
//! 3. The call's name is replaced by the upstream's, and the call goes to
//!    `Upstreams::call_tool` with the request options its caller made (the cancellation
//!    token, the client's progress token, the rest of `_meta`).
//! 4. `tool_outcome` shapes what comes back, on this route and on the transport's direct
//!    lane alike: a result the upstream wrote in the shape the client expects is relayed as
//!    written; an upstream's JSON-RPC error passes through unchanged; a failure of the
//!    bridge (not connected, timeout, transport) becomes an `isError` result "cannot call
//!    `<tool>`: <cause>", so the model sees the reason; a multi-round `InputRequiredResult`
//!    of a newer protocol becomes an error, since a client on an older protocol cannot
//!    answer it.
//!
//! `route_tool_call` does the same for callers that need the result typed.

// Logging, sampling, roots and subscriptions are deprecated by SEP-2577 for protocol
// 2026-07-28, but they are live parts of the 2024-11-05 … 2025-11-25 protocols we serve.
#![allow(deprecated)]

pub mod catalog;
mod catalog_task;
mod handler;
mod instructions;
mod instructions_store;
pub mod link;
pub mod naming;
mod one_upstream;
mod service;
mod sign_in;
pub mod stdio;
pub(crate) mod tasks;
mod upstream_requests;

use std::{
    sync::{Arc, OnceLock},
    time::Duration,
};

use rmcp::model::{CallToolRequestParams, CallToolResult, ContentBlock, ServerResult};
use serde::de::DeserializeOwned;
use tokio::{sync::watch, time::Instant};
use tokio_util::sync::CancellationToken;

pub use self::{catalog::Catalog, instructions_store::InstructionsStore, service::BridgeService};
use self::{
    catalog::{Naming, search},
    instructions_store::Remembered,
    link::DownstreamLink,
};
use crate::{
    config::{Aggregation, Settings},
    hub_socket::HubAddress,
    locks::Unpoisoned,
    oauth::SignInContext,
    upstream::{LaneTicket, RequestOptions, Status, UpstreamError, UpstreamSet, Upstreams, View},
    wire::{ToolAnswer, ToolCall},
};

/// What a bridge that does not remember instructions remembers.
static NOTHING_REMEMBERED: Remembered = Remembered::EMPTY;

/// The aggregating server. Cheap to share: everything inside is behind `Arc`s.
pub struct Bridge {
    upstreams: Arc<dyn Upstreams>,
    catalog: watch::Receiver<Arc<Catalog>>,
    link: Arc<DownstreamLink>,
    /// When the upstreams were let start; the startup deadline counts from here.
    began: OnceLock<Instant>,
    /// How long the first list requests wait for upstreams still connecting.
    startup_timeout: Duration,
    /// From a shell (`tools`, `call`) the wait is extended by this while an upstream is
    /// signing in: the user is at the browser. MCP clients keep the startup deadline.
    sign_in_extension: Option<Duration>,
    aggregation: Aggregation,
    /// Ends the catalog task.
    cancel: CancellationToken,
    /// The settings in force; a config reload replaces them.
    settings: watch::Sender<Arc<Settings>>,
    /// The instructions remembered from earlier sessions, read at start; set by
    /// [`Bridge::remember_instructions`].
    remembered: OnceLock<Remembered>,
    /// The task that remembers instructions; [`Bridge::shutdown`] lets its write in
    /// progress finish, since the process exits without waiting for blocking work.
    remembering: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Set for a bridge that serves one upstream as that server itself
    /// ([`Bridge::for_one_upstream`]): its name.
    serves_as: Option<Arc<str>>,
}

/// How long shutdown waits for an instructions file being written.
const REMEMBERING_LIMIT: Duration = Duration::from_secs(1);

impl Bridge {
    /// Start every upstream of `settings` and the task that keeps the merged catalog
    /// current. Returns at once; upstreams connect in the background.
    pub fn start(settings: Arc<Settings>, oauth: SignInContext, hub: Option<HubAddress>) -> Bridge {
        Self::start_inner(settings, oauth, hub, false)
    }

    /// Like [`Bridge::start`], for shell commands: the upstreams connect at once, and the
    /// first list waits for a sign-in to finish.
    pub fn start_for_shell(settings: Arc<Settings>, oauth: SignInContext, hub: Option<HubAddress>) -> Bridge {
        let bridge = Self::start_inner(settings, oauth, hub, true);
        bridge.begin();
        bridge
    }

    /// Let the upstreams connect (idempotent). In stdio mode this happens after the
    /// client's `initialize` is answered, so that spawning upstreams does not delay the
    /// answer.
    ///
    /// A list or call that arrives before this (rmcp may run the client's first requests
    /// before the task that answered `initialize` gets here) starts the deadline clock
    /// too, but it must not stop the upstreams from being let go.
    pub fn begin(&self) {
        self.began.get_or_init(Instant::now);
        self.upstreams.begin();
    }

    fn start_inner(
        settings: Arc<Settings>,
        oauth: SignInContext,
        hub: Option<HubAddress>,
        wait_for_sign_in: bool,
    ) -> Bridge {
        let sign_in_extension = wait_for_sign_in.then_some(oauth.sign_in_timeout);
        let upstream_settings = settings.clone();
        Self::assemble(settings, sign_in_extension, None, move |link| {
            UpstreamSet::start(&upstream_settings, link, oauth, hub)
        })
    }

    /// The bridge over the upstreams `connect` makes (given the way back to the client),
    /// serving upstream `serves_as` as that server itself if given
    /// ([`Bridge::for_one_upstream`]).
    fn assemble(
        settings: Arc<Settings>,
        sign_in_extension: Option<Duration>,
        serves_as: Option<Arc<str>>,
        connect: impl FnOnce(Arc<DownstreamLink>) -> Arc<dyn Upstreams>,
    ) -> Bridge {
        let (catalog_tx, catalog) = watch::channel(Arc::new(Catalog::default()));
        let as_written = serves_as.is_some();
        let link = Arc::new(DownstreamLink::new(catalog.clone(), as_written));
        let upstreams = connect(link.clone());
        let cancel = CancellationToken::new();
        let (settings_tx, settings_rx) = watch::channel(settings.clone());
        let naming = if as_written { Naming::AsWritten } else { Naming::Exposed };
        tokio::spawn(catalog_task::maintain_catalog(
            upstreams.view(),
            settings_rx,
            catalog_tx,
            naming,
            link.clone(),
            cancel.clone(),
        ));
        Bridge {
            upstreams,
            catalog,
            link,
            began: OnceLock::new(),
            startup_timeout: settings.bridge.startup_timeout,
            sign_in_extension,
            aggregation: settings.bridge.aggregation,
            cancel,
            settings: settings_tx,
            remembered: OnceLock::new(),
            remembering: std::sync::Mutex::new(None),
            serves_as,
        }
    }

    /// Remember each upstream's instructions in `store` for later sessions, and answer
    /// `initialize` with the remembered ones of the upstreams not ready by then. Call it
    /// once, right after start and before serving the client: it reads the store on
    /// this thread.
    pub fn remember_instructions(&self, store: InstructionsStore) {
        let settings = self.settings.borrow().clone();
        let (remembered, on_disk) = store.load(&settings);
        tracing::debug!(upstreams = remembered.len(), "read the remembered instructions");
        if self.remembered.set(remembered).is_err() {
            return;
        }
        let task = tokio::spawn(instructions_store::keep_instructions(
            store,
            on_disk,
            self.settings.subscribe(),
            self.upstreams.view(),
            self.cancel.clone(),
        ));
        *self.remembering.lock_unpoisoned() = Some(task);
    }

    /// Apply a reloaded config: upstreams whose settings changed are restarted, new
    /// ones started, removed ones stopped; naming is recomputed, and the client is told
    /// which lists changed. Bridge-wide limits fixed at start (message size, startup
    /// deadline) keep their values until the next start.
    pub async fn reconfigure(&self, settings: Arc<Settings>) {
        self.upstreams.reconfigure(&settings).await;
        self.settings.send_replace(settings);
    }

    /// The upstreams' states as they change (`doctor` times each upstream's first
    /// connection attempt with it).
    pub fn upstream_view(&self) -> watch::Receiver<Arc<View>> {
        self.upstreams.view()
    }

    /// The catalog as it is now.
    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog.borrow().clone()
    }

    /// The catalog once every upstream has finished its first connection attempt, or the
    /// startup deadline has passed, whichever comes first.
    pub async fn settled_catalog(&self) -> Arc<Catalog> {
        let mut catalog = self.catalog.clone();
        let began = *self.began.get_or_init(Instant::now);
        loop {
            let deadline = {
                let current = catalog.borrow_and_update();
                let deadline = match self.sign_in_extension {
                    Some(extension)
                        if current.statuses.iter().any(|status| status.status == Status::SigningIn) =>
                    {
                        began + self.startup_timeout + extension
                    }
                    _ => began + self.startup_timeout,
                };
                if current.all_settled || Instant::now() >= deadline {
                    return current.clone();
                }
                deadline
            };
            tokio::select! {
                changed = catalog.changed() => {
                    if changed.is_err() {
                        return catalog.borrow().clone();
                    }
                }
                () = tokio::time::sleep_until(deadline) => {}
            }
        }
    }

    /// Call one exposed tool from a shell (`foxxy-bridge call`), through the same
    /// routing the MCP handler uses.
    pub async fn call_tool(&self, params: CallToolRequestParams) -> Result<CallToolResult, rmcp::ErrorData> {
        self.route_tool_call(params, RequestOptions::default()).await
    }

    /// Look `exposed` up with `find`; while upstreams are still starting, a miss waits
    /// for them (bounded by the startup deadline) before it counts.
    async fn route<T>(&self, find: impl Fn(&Catalog) -> Option<T>) -> Option<T> {
        let catalog = self.catalog();
        if let Some(found) = find(&catalog) {
            return Some(found);
        }
        if catalog.all_settled {
            return None;
        }
        find(&*self.settled_catalog().await)
    }

    /// Route a `tools/call` by its exposed name, for a caller that needs the result typed.
    async fn route_tool_call(
        &self,
        params: CallToolRequestParams,
        options: RequestOptions,
    ) -> Result<CallToolResult, rmcp::ErrorData> {
        self.relay_tool_call(ToolCall::from_params(params), options).await?.into_typed()
    }

    /// Route a `tools/call` by its exposed name; the result may come back as the
    /// upstream wrote it, to be relayed unchanged ([`ToolAnswer::Raw`]).
    ///
    /// In search mode, `foxxy__search_tools` is answered here, and `foxxy__call_tool` is
    /// replaced by the call it stands for before routing, so it goes the same way.
    async fn relay_tool_call(
        &self,
        mut call: ToolCall,
        options: RequestOptions,
    ) -> Result<ToolAnswer<CallToolResult>, rmcp::ErrorData> {
        let mut search_mode = None;
        if search::is_meta_tool(&call.name) {
            let catalog = self.settled_catalog().await;
            if let Some(search) = &catalog.search {
                if call.name == search::SEARCH_TOOLS {
                    return Ok(ToolAnswer::Decoded(search.search(&catalog, call.arguments.as_deref())));
                }
                call = match search::unwrap_call(call) {
                    Ok(inner) => inner,
                    Err(result) => return Ok(ToolAnswer::Decoded(result)),
                };
                search_mode = Some(search.clone());
            }
        }
        let Some(route) = self.route(|catalog| catalog.tool(&call.name).cloned()).await else {
            if let Some(placeholder) = sign_in_placeholder_for_name(&self.catalog(), &call.name) {
                return Ok(ToolAnswer::Decoded(sign_in::waiting(&call.name, &placeholder)));
            }
            if let Some(search) = search_mode {
                return Ok(ToolAnswer::Decoded(search.unknown_tool(&self.catalog(), &call.name)));
            }
            let message = unknown_tool(&self.catalog(), &call.name);
            return Err(rmcp::ErrorData::invalid_params(message, None));
        };
        if route.name == sign_in::ROUTE_NAME {
            let arguments = call.arguments.as_deref();
            let result =
                sign_in::call(&*self.upstreams, self.link.peer(), &route.upstream, &call.name, arguments);
            return Ok(ToolAnswer::Decoded(result.await));
        }
        if let Some(placeholder) = sign_in_placeholder_of(&self.catalog(), &route.upstream) {
            return Ok(ToolAnswer::Decoded(sign_in::waiting(&call.name, &placeholder)));
        }
        let exposed = std::mem::replace(&mut call.name, route.name);
        let outcome = self.upstreams.call_tool(&route.upstream, call, options).await;
        tool_outcome(&exposed, outcome)
    }

    /// For a `tools/call` of tool `exposed` that can go straight to its upstream's
    /// direct lane now (`Upstreams::tool_ticket`): the upstream's name for the tool and
    /// the call's ticket. `None` sends the call the general way
    /// ([`Bridge::relay_tool_call`]), which also waits for upstreams still starting.
    pub(crate) fn tool_ticket(&self, exposed: &str) -> Option<(String, LaneTicket)> {
        let catalog = self.catalog();
        if catalog.search.is_some() && search::is_meta_tool(exposed) {
            return None;
        }
        let route = catalog.tool(exposed)?;
        let ticket = self.upstreams.tool_ticket(&route.upstream)?;
        Some((route.name.clone(), ticket))
    }

    /// The merged instructions of the upstreams, for the answer to `initialize`. With
    /// `bridge.instructionsWait`, the upstreams are let go now and waited for (until
    /// all have made their first attempt, at most that long); without, only those
    /// connected already give today's text. The others give the text remembered from
    /// an earlier session ([`Bridge::remember_instructions`]).
    async fn instructions(&self) -> Option<String> {
        let settings = self.settings.borrow().clone();
        let remembered = self.remembered.get().unwrap_or(&NOTHING_REMEMBERED);
        let mut view = self.upstreams.view();
        let wait = settings.bridge.instructions_wait;
        if !wait.is_zero() {
            self.begin();
            let deadline = Instant::now() + wait;
            while !view.borrow_and_update().all_settled() {
                tokio::select! {
                    changed = view.changed() => if changed.is_err() { break },
                    () = tokio::time::sleep_until(deadline) => break,
                }
            }
        }
        instructions::merge(&view.borrow(), &settings, remembered)
    }

    /// Stop the catalog task and every upstream (bounded time).
    pub async fn shutdown(&self) {
        self.cancel.cancel();
        let remembering = self.remembering.lock_unpoisoned().take();
        let remembered = async {
            if let Some(task) = remembering
                && tokio::time::timeout(REMEMBERING_LIMIT, task).await.is_err()
            {
                tracing::warn!("an upstream's instructions were still being remembered at exit");
            }
        };
        // In parallel: the upstreams' processes end as soon as they can either way.
        tokio::join!(remembered, self.upstreams.shutdown());
    }
}

/// The error for a call of tool `name`, which no upstream has: with the exposed names
/// the caller probably meant (the same tool under its prefix, else a near spelling).
fn unknown_tool(catalog: &Catalog, name: &str) -> String {
    let names = catalog.tools.iter().map(|tool| &*tool.name);
    let suffix = format!("__{name}");
    let mut meant: Vec<&str> = names.clone().filter(|exposed| exposed.ends_with(&suffix)).take(3).collect();
    if meant.is_empty() {
        meant.extend(crate::config::did_you_mean(name, names));
    }
    match meant.as_slice() {
        [] => format!("unknown tool `{name}`"),
        [one] => format!("unknown tool `{name}`; did you mean `{one}`?"),
        [first @ .., last] => {
            let first: Vec<String> = first.iter().map(|name| format!("`{name}`")).collect();
            format!("unknown tool `{name}`; did you mean {} or `{last}`?", first.join(", "))
        }
    }
}

/// What the client gets for the `outcome` of a call of tool `exposed`: an upstream's
/// JSON-RPC error stays one, a failure to reach the upstream becomes a tool error
/// result the model can read.
pub(crate) fn tool_outcome(
    exposed: &str,
    outcome: Result<ToolAnswer, UpstreamError>,
) -> Result<ToolAnswer<CallToolResult>, rmcp::ErrorData> {
    let result = match outcome {
        Ok(ToolAnswer::Raw(raw)) => return Ok(ToolAnswer::Raw(raw)),
        Ok(ToolAnswer::Decoded(ServerResult::InputRequiredResult(_))) => {
            Err(rmcp::ErrorData::internal_error(
                format!(
                    "`{exposed}` asked for client input with the 2026-07-28 multi-round flow (MRTR), which foxxy-bridge cannot relay to a client on an older protocol yet"
                ),
                None,
            ))
        }
        Ok(ToolAnswer::Decoded(result)) => expect_result(result, |result| match result {
            ServerResult::CallToolResult(result) => Ok(result),
            other => Err(Box::new(other)),
        }),
        Err(UpstreamError::Mcp(error)) => Err(error),
        Err(UpstreamError::Cancelled) => Err(rmcp::ErrorData::internal_error("request cancelled", None)),
        Err(error) => {
            tracing::warn!(tool = %exposed, "tool call failed: {error}");
            Ok(CallToolResult::error(vec![ContentBlock::text(format!("cannot call `{exposed}`: {error}"))]))
        }
    };
    result.map(ToolAnswer::Decoded)
}

/// The placeholder of `upstream`, if it has one now. Looked up on every routed call: the
/// upstream's status is checked first, and the tools are searched only when it waits.
fn sign_in_placeholder_of(catalog: &Catalog, upstream: &str) -> Option<String> {
    if !catalog.status_of(upstream).is_some_and(|status| sign_in::waits_for_user(&status.status)) {
        return None;
    }
    catalog
        .tools
        .iter()
        .zip(&catalog.tool_upstreams)
        .find(|(tool, owner)| &***owner == upstream && catalog.is_sign_in_placeholder(&tool.name))
        .map(|(tool, _)| tool.name.to_string())
}

/// The placeholder whose namespace `name` is in (`<ns>__…`), for a call of a tool that is
/// not listed because its upstream never signed in.
fn sign_in_placeholder_for_name(catalog: &Catalog, name: &str) -> Option<String> {
    catalog
        .tools
        .iter()
        .filter(|tool| catalog.is_sign_in_placeholder(&tool.name))
        .find(|tool| {
            tool.name.strip_suffix(sign_in::TOOL_NAME).is_some_and(|prefix| name.starts_with(prefix))
        })
        .map(|tool| tool.name.to_string())
}

/// Take the expected variant out of an upstream result. rmcp decodes results as an
/// untagged union, so a result can land in a neighbouring variant; re-decode it then.
fn expect_result<T: DeserializeOwned>(
    result: ServerResult,
    pick: impl FnOnce(ServerResult) -> Result<T, Box<ServerResult>>,
) -> Result<T, rmcp::ErrorData> {
    pick(result).or_else(|other| {
        serde_json::to_value(*other).and_then(serde_json::from_value).map_err(|error| {
            rmcp::ErrorData::internal_error(format!("the upstream sent a malformed result: {error}"), None)
        })
    })
}

#[cfg(test)]
mod tests;
