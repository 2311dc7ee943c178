//! The sign-in placeholder: while a remote upstream waits for an interactive sign-in
//! (it needs one, one is under way, or automatic ones pause after a failure or
//! `oauth logout`), `tools/list` holds one tool for it, `<ns>__sign_in`, instead of its
//! tools (`<ns>`: its tool namespace, else its server name).
//!
//! Calling the placeholder starts (or joins) a sign-in through
//! [`Upstreams::sign_in`] and answers with what the user must do: the URL to open, and
//! for the device grant the code. A client that declared URL-mode elicitation is also
//! sent `elicitation/create` with that URL. A second call with `redirect_url` (the
//! address the browser ended on) or `code` finishes a sign-in whose loopback redirect
//! cannot reach this machine. Calls to the upstream's other tools meanwhile get an error
//! result naming the placeholder.
//!
//! The catalog lookups of placeholders are in `mod.rs`. In search mode the placeholder is listed next to the meta-tools (`search/mod.rs`):
//! it is how the user gets the upstream's tools back, so it must not hide behind a
//! search.
//!
//! The placeholder's route names `ROUTE_NAME`, which no upstream tool can have, so the
//! router tells it from the upstream's own tools by the route alone.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use rmcp::{
    Peer, RoleServer,
    model::{CallToolResult, ContentBlock, Tool},
    service::ElicitationMode,
};
use serde::Deserialize;
use serde_json::{json, value::RawValue};

use super::naming::exposed_name;
use crate::{
    config::{BridgeSettings, ServerSettings, TransportSettings},
    upstream::{SignInStep, Status, UpstreamState, Upstreams},
};

/// The route name of a placeholder; no upstream tool is called by it.
pub const ROUTE_NAME: &str = "\u{0}sign_in";
/// The placeholder's name within its namespace.
pub const TOOL_NAME: &str = "sign_in";

/// Numbers the URL-mode elicitations of this process, for their `elicitationId`.
static ELICITATIONS: AtomicU64 = AtomicU64::new(1);

/// Whether `status` waits for the user to sign in.
pub fn waits_for_user(status: &Status) -> bool {
    matches!(status, Status::NeedsSignIn(_) | Status::SigningIn)
}

/// The exposed name and tool of `state`'s placeholder, when it waits for a sign-in.
pub fn placeholder(
    state: &UpstreamState,
    server: &ServerSettings,
    bridge: &BridgeSettings,
) -> Option<(String, Tool)> {
    let TransportSettings::Remote(remote) = &server.transport else { return None };
    if !waits_for_user(&state.status) || !bridge.aggregation.tools {
        return None;
    }
    let namespace = server.tool_namespace.clone().unwrap_or_else(|| server.name.clone());
    let exposed = exposed_name(Some(&namespace), TOOL_NAME);
    let host = url::Url::parse(&remote.url)
        .ok()
        .and_then(|url| url.host_str().map(str::to_owned))
        .unwrap_or_else(|| remote.url.clone());
    let schema = json!({
        "type": "object",
        "properties": {
            "redirect_url": {
                "type": "string",
                "description": "The address the browser ended on after signing in (an error page is fine), when it could not reach this machine."
            },
            "code": { "type": "string", "description": "Just the `code` of that address." }
        }
    });
    let serde_json::Value::Object(schema) = schema else { return None };
    let mut tool = Tool::new(
        exposed.clone(),
        format!(
            "Sign in to `{}` ({host}): its tools appear once you are signed in. Call without arguments to get the sign-in URL to open.",
            server.name
        ),
        Arc::new(schema),
    );
    tool.title = Some(format!("Sign in to {}", server.name));
    Some((exposed, tool))
}

/// The answer to a call of a tool whose upstream waits for a sign-in.
pub fn waiting(tool: &str, placeholder: &str) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(format!(
        "cannot call `{tool}`: its server needs a sign-in; call `{placeholder}` first"
    ))])
}

#[derive(Deserialize, Default)]
struct Arguments {
    redirect_url: Option<String>,
    code: Option<String>,
}

/// A call of placeholder `exposed` of `upstream`; `client` is the MCP client's peer.
pub async fn call(
    upstreams: &dyn Upstreams,
    client: Option<&Peer<RoleServer>>,
    upstream: &str,
    exposed: &str,
    arguments: Option<&RawValue>,
) -> CallToolResult {
    let arguments: Arguments = match arguments.map(|raw| serde_json::from_str(raw.get())) {
        None => Arguments::default(),
        Some(Ok(arguments)) => arguments,
        Some(Err(error)) => {
            return CallToolResult::error(vec![ContentBlock::text(format!(
                "`{exposed}` takes `redirect_url` or `code` (strings), or nothing: {error}"
            ))]);
        }
    };
    let pasted = arguments.redirect_url.or(arguments.code).filter(|text| !text.trim().is_empty());
    match upstreams.sign_in(upstream, pasted).await {
        Ok(SignInStep::Done) => CallToolResult::success(vec![ContentBlock::text(format!(
            "Signed in to `{upstream}`; its tools replace `{exposed}` as soon as it is connected."
        ))]),
        Ok(SignInStep::Open { url, user_code, accepts_paste }) => {
            elicit(client, upstream, &url);
            let text = match user_code {
                Some(code) => format!(
                    "To sign in to `{upstream}`, open {url} and enter the code {code}. Its tools appear here once the sign-in is approved."
                ),
                None if accepts_paste => format!(
                    "To sign in to `{upstream}`, open this URL in a browser:\n{url}\n\nIts tools appear here once you are signed in. If the browser cannot reach this machine afterwards (it ends on an error page), call `{exposed}` again with {{\"redirect_url\": \"<the address the browser ended on>\"}}."
                ),
                None => format!("To sign in to `{upstream}`, open this URL in a browser:\n{url}"),
            };
            CallToolResult::success(vec![ContentBlock::text(text)])
        }
        Err(error) => CallToolResult::error(vec![ContentBlock::text(error.to_string())]),
    }
}

/// Ask a client that declared URL-mode elicitation to show `url`. Not waited for: the
/// tool's answer carries the URL too, and the client's consent is not needed for the
/// sign-in to finish.
fn elicit(client: Option<&Peer<RoleServer>>, upstream: &str, url: &str) {
    let Some(peer) = client.cloned() else { return };
    if !peer.supported_elicitation_modes().contains(&ElicitationMode::Url) {
        return;
    }
    let Ok(parsed) = url::Url::parse(url) else { return };
    let message = format!("Sign in to `{upstream}` to use its tools");
    let id = format!("foxxy-sign-in-{}", ELICITATIONS.fetch_add(1, Ordering::Relaxed));
    tokio::spawn(async move {
        if let Err(error) = peer.elicit_url(message, parsed, id).await {
            tracing::debug!("the client did not take the sign-in URL: {error}");
        }
    });
}
