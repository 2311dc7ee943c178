//! Connects to every upstream the way `tools` does (`proxy::Bridge::start_for_shell`),
//! bounded in time, and reports for each one its connect time, protocol version and
//! tool count, or the cause of its failure with the fix; then the merged catalog's size
//! and name clashes.
//!
//! Nothing here may start a sign-in: upstreams that need one are left out (see
//! `signin.rs`), remote upstreams without tokens connect with OAuth off, and the browser
//! is never opened (the caller passes a sign-in context that opens none).
//!
//! It watches `Bridge::upstream_view` until every upstream's first attempt has ended or
//! `bridge.startupTimeout` has passed. Each upstream reports its connect time, transport,
//! protocol version and tool count, or its cause; a local upstream's cause already ends
//! with the last lines it wrote on stderr. A local upstream whose command is missing is not
//! started: its check is a warning that points at the missing-command finding of
//! `local.rs`. Then the merged catalog: its size (a warning above `TOOL_LIMIT`), the
//! clashes that `conflictResolution: "error"` refuses, and the tools that clashes hide
//! under `priority` or `first`.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::Duration,
};

use tokio::time::Instant;

use super::{Check, CheckCode, TOOL_LIMIT, signin::SignIns};
use crate::{
    config::{ConflictResolution, OAuthSettings, ServerSettings, Settings, TransportSettings},
    oauth::SignInContext,
    proxy::Bridge,
    upstream::{Status, UpstreamState, View},
};

/// How long the catalog may take to catch up once every upstream has settled.
const CATALOG_WAIT: Duration = Duration::from_secs(2);

/// An upstream's first connection attempt, as seen from the start.
struct FirstAttempt {
    elapsed: Duration,
    state: UpstreamState,
}

/// Connects to the enabled upstreams, except those `sign_ins` blocks (left out) and
/// those in `missing_commands`, whose command `local.rs` did not find: their check is a
/// warning that points at FB012 rather than a second error for the same cause.
pub async fn check(
    settings: &Settings,
    sign_ins: &SignIns,
    missing_commands: &BTreeSet<String>,
    oauth: SignInContext,
    limit: Duration,
) -> Vec<Check> {
    let all = settings;
    let settings = Arc::new(settings_for_doctor(settings, sign_ins, missing_commands));
    let skipped = |server: &ServerSettings| {
        Check::skip(
            CheckCode::UpstreamConnects,
            server.name.as_str(),
            "not connected: its command was not found (FB012)",
            CheckCode::CommandMissing,
        )
    };
    let to_check = || all.enabled_servers().filter(|server| !sign_ins.blocked.contains(&server.name));
    if settings.servers.is_empty() {
        return to_check().map(skipped).collect();
    }
    let started = Instant::now();
    let bridge = Bridge::start_for_shell(settings.clone(), oauth, None);
    let attempts = first_attempts(&bridge, started, started + limit).await;
    let catalog = tokio::time::timeout(CATALOG_WAIT, bridge.settled_catalog())
        .await
        .unwrap_or_else(|_| bridge.catalog());
    let offered = offered_tools(&settings, &bridge.upstream_view().borrow());
    bridge.shutdown().await;

    let mut checks: Vec<Check> = to_check()
        .map(|server| match settings.server(&server.name) {
            Some(server) => upstream_check(server, attempts.get(&server.name), limit),
            None => skipped(server),
        })
        .collect();
    let count = catalog.tools.len();
    checks.push(if count > TOOL_LIMIT {
        Check::warn(
            CheckCode::ToolCount,
            "catalog",
            format!("{count} tools exposed, more than {TOOL_LIMIT}: some clients refuse or cut the list, and every tool costs the model context"),
            "narrow it with `toolFilter` on the largest upstreams, or disable the ones you do not use",
        )
    } else {
        Check::ok(CheckCode::ToolCount, "catalog", format!("{count} tools exposed"))
    });
    let hidden = offered.saturating_sub(count);
    let policy = settings.bridge.conflict_resolution;
    if hidden > 0 && matches!(policy, ConflictResolution::Priority | ConflictResolution::First) {
        checks.push(Check::warn(
            CheckCode::NameClashHidden,
            "catalog",
            format!("{hidden} tools are hidden: another upstream offers the same name and wins under `conflictResolution: {}`", policy_name(policy)),
            "set `toolNamespace` on the upstreams whose tools you miss, or use `conflictResolution: \"namespace\"`",
        ));
    }
    for conflict in &catalog.conflicts {
        checks.push(Check::error(
            CheckCode::NameClash,
            "catalog",
            conflict.clone(),
            "set `toolNamespace` on one of the upstreams, or choose another `bridge.conflictResolution` (namespace, priority, first)",
        ));
    }
    checks
}

/// Tools the ready upstreams offer after their `toolFilter`, before clashes are resolved.
fn offered_tools(settings: &Settings, view: &View) -> usize {
    if !settings.bridge.aggregation.tools {
        return 0;
    }
    view.upstreams
        .iter()
        .filter(|state| state.is_ready())
        .filter_map(|state| Some((settings.server(&state.name)?, state.catalog.as_deref()?)))
        .map(|(server, catalog)| {
            catalog.tools.iter().filter(|tool| server.tool_filter.allows(&tool.name)).count()
        })
        .sum()
}

fn policy_name(policy: ConflictResolution) -> &'static str {
    match policy {
        ConflictResolution::Namespace => "namespace",
        ConflictResolution::Priority => "priority",
        ConflictResolution::First => "first",
        ConflictResolution::Error => "error",
    }
}

/// The enabled servers doctor may connect to, with OAuth off for remote ones that have
/// no tokens (so a 401 is a finding, not a sign-in).
fn settings_for_doctor(
    settings: &Settings,
    sign_ins: &SignIns,
    missing_commands: &BTreeSet<String>,
) -> Settings {
    let mut settings = settings.clone();
    settings.servers.retain(|server| {
        server.enabled && !sign_ins.blocked.contains(&server.name) && !missing_commands.contains(&server.name)
    });
    for server in &mut settings.servers {
        // The check is of the server itself: a shared one is started here, as if unshared.
        server.shared = false;
        if let TransportSettings::Remote(remote) = &mut server.transport
            && sign_ins.unsigned.contains(&server.name)
        {
            remote.oauth = Some(OAuthSettings { enabled: false, ..OAuthSettings::defaults() });
        }
    }
    settings
}

/// Watches the upstreams until each has finished its first attempt, or `deadline`.
async fn first_attempts(
    bridge: &Bridge,
    started: Instant,
    deadline: Instant,
) -> BTreeMap<String, FirstAttempt> {
    let mut view = bridge.upstream_view();
    let mut attempts = BTreeMap::new();
    loop {
        let current = view.borrow_and_update().clone();
        for state in &current.upstreams {
            if state.settled && !attempts.contains_key(&*state.name) {
                attempts.insert(
                    state.name.to_string(),
                    FirstAttempt { elapsed: started.elapsed(), state: state.clone() },
                );
            }
        }
        if !current.upstreams.is_empty()
            && current.upstreams.iter().all(|state| attempts.contains_key(&*state.name))
        {
            return attempts;
        }
        tokio::select! {
            changed = view.changed() => if changed.is_err() { return attempts },
            () = tokio::time::sleep_until(deadline) => return attempts,
        }
    }
}

fn upstream_check(server: &ServerSettings, attempt: Option<&FirstAttempt>, limit: Duration) -> Check {
    let name = server.name.as_str();
    let Some(FirstAttempt { elapsed, state }) = attempt else {
        return Check::error(
            CheckCode::UpstreamTimedOut,
            name,
            format!("did not finish connecting within {} s", limit.as_secs()),
            match &server.transport {
                TransportSettings::Stdio { .. } => {
                    "run its command in a shell: a server that waits for input on the terminal, downloads itself first or hangs shows it there"
                }
                TransportSettings::Remote(_) => "check that the server answers at its `url`",
            },
        );
    };
    let fix = |cause: &str| match &server.transport {
        TransportSettings::Stdio { command, args, .. } => {
            let mut line = vec![command.as_str()];
            line.extend(args.iter().map(String::as_str));
            format!("run `{}` in a shell to see why it fails; its stderr is in the log", line.join(" "))
        }
        TransportSettings::Remote(_) if cause.contains("401") => {
            format!("the server wants a sign-in: run `foxxy-bridge oauth login {name}`")
        }
        TransportSettings::Remote(_) => "check that the server is running and that `url` is right".to_owned(),
    };
    match &state.status {
        Status::Ready => {
            let catalog = state.catalog.as_deref();
            let protocol = catalog.map_or("?", |catalog| catalog.protocol_version.as_str());
            let tools = catalog.map_or(0, |catalog| catalog.tools.len());
            Check::ok(
                CheckCode::UpstreamConnects,
                name,
                format!(
                    "connected over {} in {} ms; protocol {protocol}; {tools} tools",
                    state.transport,
                    elapsed.as_millis()
                ),
            )
        }
        Status::NeedsSignIn(reason) => Check::error(
            CheckCode::UpstreamNeedsSignIn,
            name,
            format!("needs a sign-in: {reason}"),
            format!("run `foxxy-bridge oauth login {name}`"),
        ),
        Status::SigningIn => Check::error(
            CheckCode::UpstreamNeedsSignIn,
            name,
            "the server rejected the stored token and asked for a new sign-in",
            format!("run `foxxy-bridge oauth login {name}`"),
        ),
        Status::Retrying(cause) | Status::Failed(cause) => {
            Check::error(CheckCode::UpstreamConnects, name, format!("cannot connect: {cause}"), fix(cause))
        }
        Status::Connecting => Check::error(
            CheckCode::UpstreamTimedOut,
            name,
            format!("still connecting after {} s", limit.as_secs()),
            fix(""),
        ),
    }
}
