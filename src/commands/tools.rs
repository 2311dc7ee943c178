//! `foxxy-bridge tools` and `foxxy-bridge call`: the `stdio` machinery (upstream set,
//! merged catalog, routing) driven from a shell instead of by an MCP client.
//!
//! Both start the bridge with `Bridge::start_for_shell`: the upstreams connect at once, and
//! while one of them is signing in the first list also waits for the sign-in, because the
//! user is at the browser. `tools` prints the settled catalog (`Bridge::settled_catalog`)
//! with each upstream's status, as a table or JSON; `call` goes through
//! `Bridge::call_tool`, the routing of MCP requests, with no progress token and no
//! cancellation.

use std::sync::Arc;

use rmcp::model::{CallToolRequestParams, CallToolResult, ContentBlock, JsonObject};
use serde_json::{Value, json};

use super::{Context, Outcome, UsageError, selection::Narrowing};
use crate::{
    output,
    proxy::{Bridge, Catalog},
};

pub async fn list(context: &Context, narrowing: &Narrowing, json: bool) -> anyhow::Result<Outcome> {
    let settings = Arc::new(narrowing.apply(&*context.load_settings()?)?);
    let _log = context.start_logging(Some(&settings), false);
    let oauth = context.sign_in_context(&settings)?;
    let hub = context.hub_address(&settings);
    let bridge = Bridge::start_for_shell(settings, oauth, hub);
    let catalog = bridge.settled_catalog().await;
    bridge.shutdown().await;
    if json {
        output::line(catalog_json(&catalog));
    } else {
        print_catalog(&catalog);
        // Where to look next when an upstream failed: its stderr and every attempt.
        output::line(format_args!("log: {}", context.paths.logs_dir().join("foxxy-bridge.log").display()));
    }
    let all_ready = catalog.statuses.iter().all(|status| status.status == crate::upstream::Status::Ready);
    Ok(if all_ready && catalog.conflicts.is_empty() { Outcome::Success } else { Outcome::Failure })
}

fn catalog_json(catalog: &Catalog) -> Value {
    let tools: Vec<Value> = catalog
        .tools
        .iter()
        .zip(&catalog.tool_upstreams)
        .map(|(tool, upstream)| {
            json!({
                "name": tool.name,
                "upstream": upstream.as_ref(),
                "title": tool.title.clone().or_else(|| tool.annotations.as_ref().and_then(|a| a.title.clone())),
                "description": tool.description,
            })
        })
        .collect();
    let upstreams: Vec<Value> = catalog
        .statuses
        .iter()
        .map(|status| {
            json!({
                "name": status.name.as_ref(),
                "transport": status.transport,
                "status": status.status.label(),
                "error": status.problem(),
            })
        })
        .collect();
    json!({ "tools": tools, "upstreams": upstreams, "conflicts": catalog.conflicts })
}

fn print_catalog(catalog: &Catalog) {
    let rows: Vec<Vec<String>> = catalog
        .tools
        .iter()
        .zip(&catalog.tool_upstreams)
        .map(|(tool, upstream)| {
            let description = tool.description.as_deref().unwrap_or("").lines().next().unwrap_or("");
            vec![tool.name.to_string(), upstream.to_string(), shorten(description, 60)]
        })
        .collect();
    output::raw(&output::table(&["Tool", "Upstream", "Description"], &rows));
    let rows: Vec<Vec<String>> = catalog
        .statuses
        .iter()
        .map(|status| {
            vec![
                status.name.to_string(),
                status.transport.to_owned(),
                status.status.label().to_owned(),
                status.problem().unwrap_or("").to_owned(),
            ]
        })
        .collect();
    output::raw(&output::table(&["Upstream", "Transport", "Status", "Error"], &rows));
    for conflict in &catalog.conflicts {
        output::error_line(format_args!("error: {conflict}"));
    }
}

fn shorten(text: &str, limit: usize) -> String {
    if text.chars().count() <= limit {
        return text.to_owned();
    }
    let kept: String = text.chars().take(limit - 1).collect();
    format!("{kept}…")
}

pub async fn call(
    context: &Context,
    name: &str,
    arguments: Option<&str>,
    json: bool,
) -> anyhow::Result<Outcome> {
    let arguments = parse_arguments(arguments)?;
    let settings = context.load_settings()?;
    let _log = context.start_logging(Some(&settings), false);
    let oauth = context.sign_in_context(&settings)?;
    let hub = context.hub_address(&settings);
    let bridge = Arc::new(Bridge::start_for_shell(settings, oauth, hub));
    let mut params = CallToolRequestParams::new(name.to_owned());
    params.arguments = arguments;
    let result = bridge.call_tool(params).await;
    bridge.shutdown().await;
    let result = result.map_err(|error| anyhow::anyhow!("{}", error.message))?;
    if json {
        output::line(serde_json::to_string_pretty(&result)?);
    } else {
        print_result(&result);
    }
    Ok(if result.is_error == Some(true) { Outcome::Failure } else { Outcome::Success })
}

fn parse_arguments(arguments: Option<&str>) -> Result<Option<JsonObject>, UsageError> {
    let Some(text) = arguments else { return Ok(None) };
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(object)) => Ok(Some(object)),
        Ok(_) => Err(UsageError(format!("arguments must be a JSON object, got `{text}`"))),
        Err(error) => Err(UsageError(format!("arguments are not valid JSON: {error}"))),
    }
}

/// Text content as is; other content and structured content as JSON.
fn print_result(result: &CallToolResult) {
    for content in &result.content {
        match content {
            ContentBlock::Text(text) => output::line(&text.text),
            other => output::line(serde_json::to_string(other).unwrap_or_default()),
        }
    }
    if result.content.is_empty()
        && let Some(structured) = &result.structured_content
    {
        output::line(structured);
    }
}
