//! Search mode (`bridge.toolMode: "search"`): instead of every tool, `tools/list` holds
//! the pinned tools and two meta-tools, `foxxy__search_tools` (find tools by what they
//! do) and `foxxy__call_tool` (call any exposed tool by name).
//!
//! A [`SearchMode`] belongs to one [`Catalog`]: the catalog task builds it with the
//! catalog, and keeps the previous one when the catalog's tools and the pinned globs did
//! not change, so a query never rebuilds anything. `foxxy__call_tool` is unwrapped into
//! the named tool's own call ([`unwrap_call`]) before routing, so it is routed, timed
//! out, cancelled and answered exactly as a direct call of that tool.
//!
//! The index reads tools only through [`tool_fields`].
//!
//! In search mode `tools/list` holds the meta-tools, then the pinned tools and the sign-in
//! placeholders, and `tools/list_changed` follows that list, not the catalog. A meta-tool
//! call always takes the general route (`Bridge::relay_tool_call`), never the transport's
//! direct lane; a `foxxy__call_tool` of an unknown name is answered with the closest names.

pub mod index;

use std::sync::Arc;

use rmcp::model::{CallToolResult, ContentBlock, JsonObject, Tool, ToolAnnotations};
use serde::Deserialize;
use serde_json::{Value, json, value::RawValue};

pub use self::index::{Ranking, ToolIndex, ToolText};
use super::Catalog;
use crate::{
    config::{BridgeSettings, ToolMode},
    wire::ToolCall,
};

pub const SEARCH_TOOLS: &str = "foxxy__search_tools";
pub const CALL_TOOL: &str = "foxxy__call_tool";
const DEFAULT_LIMIT: usize = 8;
const MAX_LIMIT: usize = 50;
/// How many names an unknown `foxxy__call_tool` name is answered with.
const SUGGESTIONS: usize = 5;

/// Whether `name` is one of the meta-tools.
pub fn is_meta_tool(name: &str) -> bool {
    name == SEARCH_TOOLS || name == CALL_TOOL
}

/// The search index of one catalog and the tools listed in search mode.
#[derive(Debug)]
pub struct SearchMode {
    index: ToolIndex,
    /// What `tools/list` holds: the meta-tools, then the pinned tools and the sign-in
    /// placeholders in catalog order.
    pub listed: Vec<Tool>,
    /// The same tools as the client sees them: the pinned ones as their upstreams wrote
    /// them but the name (the catalog's `tool_objects`).
    pub listed_objects: Vec<Arc<JsonObject>>,
    /// The `pinnedTools` globs `listed` was made with.
    pinned: Vec<String>,
}

impl SearchMode {
    /// The search mode of catalog `next`, or `None` in all mode. `previous` (the search
    /// mode of catalog `before`) is kept when the tools it indexed did not change.
    pub fn follow(
        previous: Option<&Arc<SearchMode>>,
        before: &Catalog,
        next: &Catalog,
        bridge: &BridgeSettings,
    ) -> Option<Arc<SearchMode>> {
        if bridge.tool_mode != ToolMode::Search {
            return None;
        }
        if let Some(previous) = previous
            && previous.pinned == bridge.pinned_tools
            && before.tools == next.tools
            && before.tool_objects == next.tool_objects
            && before.tool_upstreams == next.tool_upstreams
        {
            return Some(previous.clone());
        }
        Some(Arc::new(SearchMode::build(next, &bridge.pinned_tools, Ranking::Tuned)))
    }

    pub fn build(catalog: &Catalog, pinned: &[String], ranking: Ranking) -> SearchMode {
        let texts: Vec<ToolText> = catalog
            .tools
            .iter()
            .zip(&catalog.tool_upstreams)
            .map(|(tool, upstream)| tool_text(tool, upstream))
            .collect();
        let index = ToolIndex::build(&texts, ranking);
        let patterns: Vec<glob::Pattern> =
            pinned.iter().filter_map(|pattern| glob::Pattern::new(pattern).ok()).collect();
        let mut listed = meta_tools();
        let mut listed_objects: Vec<Arc<JsonObject>> = listed.iter().map(tool_object).collect();
        for (tool, object) in catalog.tools.iter().zip(&catalog.tool_objects) {
            let shown = patterns.iter().any(|pattern| pattern.matches(&tool.name))
                || catalog.is_sign_in_placeholder(&tool.name);
            if !is_meta_tool(&tool.name) && shown {
                listed.push(tool.clone());
                listed_objects.push(object.clone());
            }
        }
        SearchMode { index, listed, listed_objects, pinned: pinned.to_vec() }
    }

    /// Catalog positions of the tools that best match `query`, best first.
    pub fn rank(&self, query: &str, limit: usize, admit: impl Fn(usize) -> bool) -> Vec<usize> {
        self.index.search(query, limit, admit).into_iter().map(|(document, _)| document).collect()
    }

    /// The answer to a `foxxy__search_tools` call with `arguments`, over `catalog`
    /// (the catalog this search mode was built with).
    pub fn search(&self, catalog: &Catalog, arguments: Option<&RawValue>) -> CallToolResult {
        #[derive(Deserialize)]
        struct Arguments {
            query: String,
            limit: Option<f64>,
            upstream: Option<String>,
        }
        let arguments: Arguments = match parse_arguments(arguments) {
            Ok(arguments) => arguments,
            Err(error) => {
                return tool_error(format!(
                    "{SEARCH_TOOLS} takes {{\"query\": string, \"limit\"?: integer, \"upstream\"?: string}}: {error}"
                ));
            }
        };
        let limit = match arguments.limit {
            None => DEFAULT_LIMIT,
            Some(limit) if limit.is_finite() && limit >= 1.0 => (limit as usize).min(MAX_LIMIT),
            Some(limit) => {
                return tool_error(format!("`limit` must be an integer from 1 to {MAX_LIMIT}, got {limit}"));
            }
        };
        if let Some(upstream) = &arguments.upstream
            && !catalog.tool_upstreams.iter().any(|name| **name == **upstream)
        {
            let mut names: Vec<&str> = catalog.tool_upstreams.iter().map(|name| &**name).collect();
            names.dedup();
            return tool_error(format!(
                "no server `{upstream}` has tools; the servers with tools are: {}",
                names.join(", ")
            ));
        }
        let upstream = arguments.upstream.as_deref();
        let found = self.rank(&arguments.query, limit, |document| {
            upstream.is_none_or(|upstream| {
                catalog.tool_upstreams.get(document).is_some_and(|name| **name == *upstream)
            })
        });
        let tools: Vec<Value> = found
            .into_iter()
            .filter_map(|document| {
                Some(tool_summary(catalog.tools.get(document)?, catalog.tool_upstreams.get(document)?))
            })
            .collect();
        // The text content is the same JSON.
        CallToolResult::structured(json!({ "tools": tools }))
    }

    /// The answer to a `foxxy__call_tool` of `name`, which no tool has: the closest
    /// names, by spelling and by words.
    pub fn unknown_tool(&self, catalog: &Catalog, name: &str) -> CallToolResult {
        let mut close: Vec<(usize, &str)> = catalog
            .tools
            .iter()
            .map(|tool| (edit_distance(name, &tool.name), &*tool.name))
            .filter(|(distance, candidate)| *distance <= (name.len().max(candidate.len()) / 3).max(2))
            .collect();
        close.sort_by_key(|(distance, _)| *distance);
        let mut names: Vec<&str> = close.into_iter().map(|(_, name)| name).collect();
        for document in self.rank(name, SUGGESTIONS, |_| true) {
            if let Some(tool) = catalog.tools.get(document)
                && !names.contains(&&*tool.name)
            {
                names.push(&tool.name);
            }
        }
        names.truncate(SUGGESTIONS);
        let hint = if names.is_empty() {
            format!("use {SEARCH_TOOLS} to find tools")
        } else {
            format!("the closest names are: {}", names.join(", "))
        };
        tool_error(format!("unknown tool `{name}`; {hint}"))
    }
}

/// The tools `tools/list` answers with for `catalog`.
pub fn listed_tools(catalog: &Catalog) -> Vec<Tool> {
    match &catalog.search {
        Some(search) => search.listed.clone(),
        None => catalog.tools.clone(),
    }
}

/// The call a `foxxy__call_tool` call stands for: the named tool with the given
/// arguments, and the outer call's `_meta` (progress token and all). A malformed call
/// is answered with an error result instead.
pub fn unwrap_call(call: ToolCall) -> Result<ToolCall, CallToolResult> {
    #[derive(Deserialize)]
    struct Arguments {
        name: String,
        arguments: Option<Box<RawValue>>,
    }
    let usage = "{\"name\": string, \"arguments\"?: object}";
    let inner: Arguments = parse_arguments(call.arguments.as_deref())
        .map_err(|error| tool_error(format!("{CALL_TOOL} takes {usage}: {error}")))?;
    let arguments = match inner.arguments {
        Some(arguments) if arguments.get().trim_start().starts_with('{') => Some(arguments),
        Some(arguments) if arguments.get() == "null" => None,
        None => None,
        Some(_) => {
            return Err(tool_error(format!("{CALL_TOOL} takes {usage}: `arguments` must be an object")));
        }
    };
    if is_meta_tool(&inner.name) {
        return Err(tool_error(format!("{CALL_TOOL} calls the servers' tools, not `{}`", inner.name)));
    }
    Ok(ToolCall { name: inner.name, arguments, meta: call.meta })
}

fn parse_arguments<T: for<'de> Deserialize<'de>>(arguments: Option<&RawValue>) -> serde_json::Result<T> {
    serde_json::from_str(arguments.map_or("{}", RawValue::get))
}

fn tool_error(message: String) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(message)])
}

/// What search mode reads from a tool: the one place that knows how the catalog holds
/// tools.
pub struct ToolFields<'a> {
    pub name: &'a str,
    pub title: Option<&'a str>,
    pub description: Option<&'a str>,
    pub input_schema: &'a JsonObject,
    pub annotations: Option<&'a ToolAnnotations>,
}

pub fn tool_fields(tool: &Tool) -> ToolFields<'_> {
    ToolFields {
        name: &tool.name,
        title: tool.title.as_deref().or_else(|| tool.annotations.as_ref()?.title.as_deref()),
        description: tool.description.as_deref(),
        input_schema: &tool.input_schema,
        annotations: tool.annotations.as_ref(),
    }
}

/// The words of `tool` (of `upstream`) for the index.
pub fn tool_text(tool: &Tool, upstream: &str) -> ToolText {
    let fields = tool_fields(tool);
    let mut parameters = String::new();
    collect_parameters(fields.input_schema, 0, &mut parameters);
    ToolText {
        name: fields.name.to_owned(),
        title: fields.title.unwrap_or_default().to_owned(),
        description: fields.description.unwrap_or_default().to_owned(),
        parameters,
        upstream: upstream.to_owned(),
    }
}

/// Parameter names and descriptions of `schema`, nested objects two levels deep.
fn collect_parameters(schema: &JsonObject, depth: usize, into: &mut String) {
    let Some(Value::Object(properties)) = schema.get("properties") else { return };
    for (name, property) in properties {
        into.push_str(name);
        into.push(' ');
        if let Value::Object(property) = property {
            if let Some(Value::String(description)) = property.get("description") {
                into.push_str(description);
                into.push(' ');
            }
            if depth < 2 {
                collect_parameters(property, depth + 1, into);
                if let Some(Value::Object(items)) = property.get("items") {
                    collect_parameters(items, depth + 1, into);
                }
            }
        }
    }
}

/// One search result.
fn tool_summary(tool: &Tool, upstream: &str) -> Value {
    let fields = tool_fields(tool);
    json!({
        "name": fields.name,
        "title": fields.title,
        "description": fields.description,
        "upstream": upstream,
        "inputSchema": fields.input_schema,
        "annotations": fields.annotations,
    })
}

/// The two meta-tools as `tools/list` shows them.
/// A tool the bridge itself defines, as the JSON object the client receives.
fn tool_object(tool: &Tool) -> Arc<JsonObject> {
    match serde_json::to_value(tool) {
        Ok(Value::Object(object)) => Arc::new(object),
        _ => Arc::default(),
    }
}

fn meta_tools() -> Vec<Tool> {
    let object = |value: Value| match value {
        Value::Object(object) => Arc::new(object),
        _ => Arc::default(),
    };
    let mut search = Tool::new(
        SEARCH_TOOLS,
        "Find tools by what they do, across every connected server. Describe the task in a few words \
         (e.g. \"open a ticket\", \"send an email\", \"query a table\"); the best matches come back with \
         their input schemas. Call one with foxxy__call_tool.",
        object(json!({
            "type": "object",
            "properties": {
                "query": { "type": "string", "description": "What you want to do, in a few words." },
                "limit": {
                    "type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT,
                    "description": "How many tools to return."
                },
                "upstream": { "type": "string", "description": "Only tools of this server (its `upstream` in results)." }
            },
            "required": ["query"]
        })),
    );
    search.title = Some("Search tools".to_owned());
    search.output_schema = Some(object(json!({
        "type": "object",
        "properties": {
            "tools": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "name": { "type": "string" },
                        "title": { "type": ["string", "null"] },
                        "description": { "type": ["string", "null"] },
                        "upstream": { "type": "string" },
                        "inputSchema": { "type": "object" },
                        "annotations": { "type": ["object", "null"] }
                    },
                    "required": ["name", "upstream", "inputSchema"]
                }
            }
        },
        "required": ["tools"]
    })));
    search.annotations = Some(ToolAnnotations::new().read_only(true).open_world(false));
    let mut call = Tool::new(
        CALL_TOOL,
        "Call a tool found with foxxy__search_tools, by its name, with arguments that follow its \
         inputSchema. The result is the tool's own.",
        object(json!({
            "type": "object",
            "properties": {
                "name": { "type": "string", "description": "The tool's `name` from foxxy__search_tools." },
                "arguments": { "type": "object", "description": "The tool's arguments, as its inputSchema describes." }
            },
            "required": ["name"]
        })),
    );
    call.title = Some("Call a tool".to_owned());
    vec![search, call]
}

/// Levenshtein distance, by characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, a_char) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, b_char) in b.iter().enumerate() {
            let substitution = previous + usize::from(a_char != *b_char);
            previous = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(previous + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
    }

    fn catalog(names: &[&str]) -> Catalog {
        let mut catalog = Catalog::default();
        for name in names {
            let tool = Tool::new(name.to_string(), "a tool", Arc::new(JsonObject::new()));
            // `tool_objects` runs parallel to `tools`, as `Catalog::build` makes it.
            catalog.tool_objects.push(tool_object(&tool));
            catalog.tools.push(tool);
            catalog.tool_upstreams.push(name.split("__").next().unwrap_or_default().into());
        }
        catalog
    }

    #[test]
    fn the_index_is_kept_until_the_tools_or_pins_change() {
        let mut bridge =
            crate::config::load_str("{\"mcpServers\": {}}", std::path::Path::new("c.json5"), &|_| None)
                .unwrap()
                .bridge;
        let before = catalog(&["a__one", "a__two"]);
        assert!(SearchMode::follow(None, &Catalog::default(), &before, &bridge).is_none(), "all mode");
        bridge.tool_mode = ToolMode::Search;
        bridge.pinned_tools = vec!["a__t*".to_owned()];
        let first = SearchMode::follow(None, &Catalog::default(), &before, &bridge).unwrap();
        let listed: Vec<&str> = first.listed.iter().map(|tool| &*tool.name).collect();
        assert_eq!(listed, [SEARCH_TOOLS, CALL_TOOL, "a__two"]);
        let same = catalog(&["a__one", "a__two"]);
        let kept = SearchMode::follow(Some(&first), &before, &same, &bridge).unwrap();
        assert!(Arc::ptr_eq(&first, &kept), "same tools: the index is kept");
        let grown = catalog(&["a__one", "a__two", "b__three"]);
        let rebuilt = SearchMode::follow(Some(&first), &same, &grown, &bridge).unwrap();
        assert!(!Arc::ptr_eq(&first, &rebuilt));
        assert_eq!(rebuilt.rank("three", 5, |_| true), [2]);
        assert_eq!(rebuilt.listed, first.listed, "the listed tools did not change");
        assert_eq!(rebuilt.listed_objects, first.listed_objects);
        assert_eq!(rebuilt.listed_objects[2]["name"], "a__two");
    }

    #[test]
    fn unwraps_a_call() {
        let call = |arguments: &str| ToolCall {
            name: CALL_TOOL.to_owned(),
            arguments: Some(RawValue::from_string(arguments.to_owned()).unwrap()),
            meta: None,
        };
        let inner = unwrap_call(call(r#"{"name":"a__b","arguments":{"x":1}}"#)).ok().unwrap();
        assert_eq!((inner.name.as_str(), inner.arguments.unwrap().get()), ("a__b", r#"{"x":1}"#));
        assert!(unwrap_call(call(r#"{"name":"a__b"}"#)).ok().unwrap().arguments.is_none());
        for bad in
            [r#"{"arguments":{}}"#, r#"{"name":"a","arguments":[1]}"#, r#"{"name":"foxxy__call_tool"}"#]
        {
            assert_eq!(unwrap_call(call(bad)).err().unwrap().is_error, Some(true), "{bad}");
        }
    }
}
