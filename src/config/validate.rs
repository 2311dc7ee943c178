//! Checks a parsed document against the generated JSON Schema and reports every problem.
//!
//! The schema generated from `raw.rs` is the one description of the file's shape, so the
//! walker here reads it instead of keeping its own lists of keys, types and enum values:
//! unknown keys (with a "did you mean" hint), wrong types, unknown enum values, numbers
//! out of range and empty strings are all found by comparing the document with the
//! schema's `properties`, `type`, `enum`, `minimum`/`maximum` and `minLength`. It
//! understands only the keywords schemars emits for our types; a unit test keeps it that
//! way. Invalid members are dropped from the result, so what survives always
//! deserializes into the raw types and the semantic checks (`resolve.rs`) can still run.
//!
//! This module does not know what fields mean; that is `resolve.rs`.
//!
//! The schema read here is the committed file, embedded with `include_str!`; a test keeps
//! it equal to the one `raw.rs` generates, so the binary never runs schemars' generator.

use std::{collections::BTreeSet, sync::LazyLock};

use serde_json::{Map, Value};

use super::{
    error::Problem,
    node::{Node, child_path, index_path},
};

/// The committed schema file, which a test keeps identical to what `raw::schema_value`
/// generates from the config types. Reading it instead of generating it at run time
/// keeps schemars' generator out of the binary and out of every bridge's start-up.
pub const SCHEMA_TEXT: &str = include_str!("../../schema/foxxy-bridge.schema.json");

/// The schema, parsed once per process.
pub static SCHEMA: LazyLock<Value> = LazyLock::new(|| {
    serde_json::from_str(SCHEMA_TEXT).expect("the committed schema is JSON (a test checks it)")
});

/// Problems found so far, and the JSON paths they make unreliable. A semantic check about
/// a field that already has a problem (or that an unknown key probably meant) is skipped,
/// so one mistake is reported once.
#[derive(Debug, Default)]
pub struct Report {
    pub problems: Vec<Problem>,
    tainted: BTreeSet<String>,
    /// Paths of strings with `${VAR}` values in them: messages must not quote those.
    pub substituted: BTreeSet<String>,
}

impl Report {
    pub fn problem(&mut self, path: &str, message: impl Into<String>) {
        self.tainted.insert(path.to_owned());
        self.problems.push(Problem::at(path, message));
    }

    /// Marks `path` as unreliable without reporting anything.
    pub fn taint(&mut self, path: String) {
        self.tainted.insert(path);
    }

    /// Whether `path`, or something inside it, already has a problem.
    pub fn is_tainted(&self, path: &str) -> bool {
        self.tainted.range(path.to_owned()..).take_while(|tainted| tainted.starts_with(path)).any(|tainted| {
            let rest = &tainted[path.len()..];
            rest.is_empty() || rest.starts_with(['.', '['])
        })
    }
}

/// Checks `node` against `schema` (the root schema or one of its subschemas). Returns the
/// checked value with every invalid member removed, or `None` when `node` itself is
/// invalid.
pub fn check(node: &Node, schema: &Value, path: &str, report: &mut Report) -> Option<Value> {
    let schema = resolve_ref(schema);
    if let Some(branches) = schema.get("anyOf").and_then(Value::as_array) {
        // schemars writes `Option<T>` as `anyOf: [T, {type: null}]`.
        if matches!(node, Node::Null) && branches.iter().any(allows_null) {
            return Some(Value::Null);
        }
        let branch = branches.iter().find(|branch| !allows_null(branch))?;
        return check(node, branch, path, report);
    }
    if !type_matches(node, schema) {
        report.problem(path, format!("expected {}, found {}", describe(schema), node.kind()));
        return None;
    }
    match node {
        Node::Null => Some(Value::Null),
        Node::Bool(value) => Some(Value::Bool(*value)),
        Node::Integer(value) => check_range(*value as f64, schema, path, report).then(|| Value::from(*value)),
        Node::Float(value) => match serde_json::Number::from_f64(*value) {
            Some(number) => check_range(*value, schema, path, report).then_some(Value::Number(number)),
            None => {
                report.problem(path, format!("expected a finite number, found `{value}`"));
                None
            }
        },
        Node::String(text) => check_string(text, schema, path, report).then(|| Value::String(text.clone())),
        Node::Array(items) => {
            let item_schema = schema.get("items");
            let checked = items.iter().enumerate().filter_map(|(index, item)| match item_schema {
                Some(item_schema) => check(item, item_schema, &index_path(path, index), report),
                None => Some(to_value(item)),
            });
            Some(Value::Array(checked.collect()))
        }
        Node::Object(members) => Some(Value::Object(check_object(members, schema, path, report))),
    }
}

fn check_object(
    members: &[(String, Node)],
    schema: &Value,
    path: &str,
    report: &mut Report,
) -> Map<String, Value> {
    let empty = Map::new();
    let properties = schema.get("properties").and_then(Value::as_object).unwrap_or(&empty);
    let additional = schema.get("additionalProperties");
    let mut checked = Map::new();
    let mut seen = BTreeSet::new();
    for (key, value) in members {
        let member_path = child_path(path, key);
        if !seen.insert(key.as_str()) {
            report.problem(path, format!("duplicate key `{key}`; each key may appear only once"));
        }
        let member_schema = match (properties.get(key), additional) {
            (Some(member_schema), _) => member_schema,
            (None, Some(Value::Bool(false))) => {
                unknown_key(key, value, properties, path, report);
                continue;
            }
            (None, Some(member_schema)) => member_schema,
            (None, None) => &Value::Bool(true),
        };
        if let Some(value) = check(value, member_schema, &member_path, report) {
            checked.insert(key.clone(), value);
        }
    }
    for required in schema.get("required").and_then(Value::as_array).into_iter().flatten() {
        if let Some(required) = required.as_str().filter(|required| !seen.contains(required)) {
            report.problem(path, format!("missing field `{required}`"));
        }
    }
    checked
}

fn unknown_key(key: &str, value: &Node, properties: &Map<String, Value>, path: &str, report: &mut Report) {
    report.taint(child_path(path, key));
    let looks_like_server = matches!(value, Node::Object(members)
        if members.iter().any(|(name, _)| name == "command" || name == "url"));
    let message = if path.is_empty() && looks_like_server {
        format!(
            "unknown field `{key}`; servers go inside `mcpServers`: {{ \"mcpServers\": {{ \"{key}\": {{ ... }} }} }}"
        )
    } else if let Some(suggestion) = did_you_mean(key, properties.keys().map(String::as_str)) {
        report.taint(child_path(path, suggestion));
        format!("unknown field `{key}`; did you mean `{suggestion}`?")
    } else {
        format!("unknown field `{key}`; expected one of {}", backticked(properties.keys()))
    };
    report.problem(path, message);
}

fn check_string(text: &str, schema: &Value, path: &str, report: &mut Report) -> bool {
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
        if allowed.iter().any(|allowed| allowed.as_str() == Some(text)) {
            return true;
        }
        let names = allowed.iter().filter_map(Value::as_str);
        let hint = did_you_mean(text, names.clone())
            .map(|name| format!("; did you mean `{name}`?"))
            .unwrap_or_default();
        report.problem(path, format!("unknown value `{text}`{hint} (expected one of {})", backticked(names)));
        return false;
    }
    let min_length = schema.get("minLength").and_then(Value::as_u64).unwrap_or(0);
    if (text.chars().count() as u64) < min_length {
        let message = match min_length {
            1 => "must not be empty".to_owned(),
            _ => format!("must be at least {min_length} characters long"),
        };
        report.problem(path, message);
        return false;
    }
    true
}

fn check_range(value: f64, schema: &Value, path: &str, report: &mut Report) -> bool {
    let (format_min, format_max) = format_bounds(schema.get("format").and_then(Value::as_str));
    let minimum = schema.get("minimum").and_then(Value::as_f64).or(format_min);
    let maximum = schema.get("maximum").and_then(Value::as_f64).or(format_max);
    let message = match (minimum, maximum) {
        (Some(0.0), _) if value < 0.0 => format!("must not be negative, found `{value}`"),
        (Some(minimum), _) if value < minimum => {
            format!("must be at least {minimum}, found `{value}`")
        }
        (_, Some(maximum)) if value > maximum => {
            format!("must be at most {maximum}, found `{value}`")
        }
        _ => return true,
    };
    report.problem(path, message);
    false
}

/// The range implied by a schemars integer `format`, for the formats that carry no
/// explicit `maximum` (e.g. `uint32`).
fn format_bounds(format: Option<&str>) -> (Option<f64>, Option<f64>) {
    match format {
        Some("uint8") => (Some(0.0), Some(f64::from(u8::MAX))),
        Some("uint16") => (Some(0.0), Some(f64::from(u16::MAX))),
        Some("uint32") => (Some(0.0), Some(f64::from(u32::MAX))),
        Some("int32") => (Some(f64::from(i32::MIN)), Some(f64::from(i32::MAX))),
        Some("uint" | "uint64") => (Some(0.0), None),
        _ => (None, None),
    }
}

fn resolve_ref(schema: &Value) -> &Value {
    let target = schema
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|reference| reference.strip_prefix('#'))
        .and_then(|pointer| SCHEMA.pointer(pointer));
    match target {
        Some(target) => resolve_ref(target),
        None => schema,
    }
}

fn allows_null(schema: &Value) -> bool {
    schema_types(resolve_ref(schema)).contains(&"null")
}

fn schema_types(schema: &Value) -> Vec<&str> {
    match schema.get("type") {
        Some(Value::String(name)) => vec![name.as_str()],
        Some(Value::Array(names)) => names.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

fn type_matches(node: &Node, schema: &Value) -> bool {
    let types = schema_types(schema);
    types.is_empty()
        || types.iter().any(|name| match *name {
            "null" => matches!(node, Node::Null),
            "boolean" => matches!(node, Node::Bool(_)),
            "integer" => matches!(node, Node::Integer(_)),
            "number" => matches!(node, Node::Integer(_) | Node::Float(_)),
            "string" => matches!(node, Node::String(_)),
            "array" => matches!(node, Node::Array(_)),
            "object" => matches!(node, Node::Object(_)),
            _ => false,
        })
}

/// What a schema expects, for messages: "a string", "an array of strings", "one of `a`, `b`".
fn describe(schema: &Value) -> String {
    let schema = resolve_ref(schema);
    if let Some(branch) = schema
        .get("anyOf")
        .and_then(Value::as_array)
        .and_then(|branches| branches.iter().find(|branch| !allows_null(branch)))
    {
        return describe(branch);
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
        return format!("one of {}", backticked(allowed.iter().filter_map(Value::as_str)));
    }
    let kind = schema_types(schema).into_iter().find(|name| *name != "null").unwrap_or("any value");
    match kind {
        "boolean" => "`true` or `false`".to_owned(),
        "integer" => "an integer".to_owned(),
        "number" => "a number".to_owned(),
        "string" => "a string".to_owned(),
        "array" => match schema.get("items").map(describe) {
            Some(item) if item.starts_with("a ") || item.starts_with("an ") => {
                let (_, noun) = item.split_once(' ').unwrap_or(("", &item));
                format!("an array of {noun}s")
            }
            _ => "an array".to_owned(),
        },
        "object" => "an object".to_owned(),
        other => other.to_owned(),
    }
}

/// Converts a node that the schema does not constrain.
fn to_value(node: &Node) -> Value {
    match node {
        Node::Null => Value::Null,
        Node::Bool(value) => Value::Bool(*value),
        Node::Integer(value) => Value::from(*value),
        Node::Float(value) => serde_json::Number::from_f64(*value).map_or(Value::Null, Value::Number),
        Node::String(text) => Value::String(text.clone()),
        Node::Array(items) => Value::Array(items.iter().map(to_value).collect()),
        Node::Object(members) => {
            Value::Object(members.iter().map(|(key, value)| (key.clone(), to_value(value))).collect())
        }
    }
}

fn backticked<S: AsRef<str>>(names: impl IntoIterator<Item = S>) -> String {
    let names: Vec<String> = names.into_iter().map(|name| format!("`{}`", name.as_ref())).collect();
    names.join(", ")
}

/// The known name closest to `unknown`, if one is close enough to be a likely typo.
/// Case, `_` and `-` are ignored (`tool_namespace` → `toolNamespace`), and a known name
/// that ends or starts with the unknown one counts too (`servers` → `mcpServers`).
pub fn did_you_mean<'a>(unknown: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let normalize = |name: &str| -> Vec<char> {
        name.chars().filter(|c| !matches!(c, '_' | '-')).flat_map(char::to_lowercase).collect()
    };
    let unknown = normalize(unknown);
    let limit = (unknown.len() / 3).clamp(1, 3);
    known
        .into_iter()
        .filter_map(|name| {
            let candidate = normalize(name);
            let affix =
                unknown.len() >= 5 && (candidate.ends_with(&unknown) || candidate.starts_with(&unknown));
            let distance = if affix { 1 } else { levenshtein(&unknown, &candidate) };
            (distance <= limit).then_some((distance, name))
        })
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, name)| name)
}

/// Edit distance (insertions, deletions, substitutions, and swaps of two neighbouring
/// characters, the commonest typo: `arsg` → `args`) between two strings.
fn levenshtein(a: &[char], b: &[char]) -> usize {
    // Three rows: a swap looks two rows back.
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, a_char) in a.iter().enumerate() {
        current[0] = i + 1;
        for (j, b_char) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(a_char != b_char);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
            if i > 0 && j > 0 && *a_char == b[j - 1] && a[i - 1] == *b_char {
                current[j + 1] = current[j + 1].min(before[j - 1] + 1);
            }
        }
        std::mem::swap(&mut before, &mut previous);
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check_suggestion(unknown: &str, expected: Option<&str>) {
        let known =
            ["command", "args", "env", "url", "toolNamespace", "mcpServers", "verify_ssl", "timeout", "tags"];
        assert_eq!(did_you_mean(unknown, known), expected, "unknown: {unknown}");
    }

    #[test]
    fn suggestions() {
        check_suggestion("comand", Some("command"));
        check_suggestion("commands", Some("command"));
        check_suggestion("Command", Some("command"));
        check_suggestion("arg", Some("args"));
        check_suggestion("arsg", Some("args"));
        check_suggestion("comamnd", Some("command"));
        check_suggestion("urls", Some("url"));
        check_suggestion("tool_namespace", Some("toolNamespace"));
        check_suggestion("toolNameSpace", Some("toolNamespace"));
        check_suggestion("verifySsl", Some("verify_ssl"));
        check_suggestion("verify-ssl", Some("verify_ssl"));
        check_suggestion("servers", Some("mcpServers"));
        check_suggestion("mcp_servers", Some("mcpServers"));
        check_suggestion("timout", Some("timeout"));
        check_suggestion("tag", Some("tags"));
        check_suggestion("x", None);
        check_suggestion("cmd", None);
        check_suggestion("environment", None);
        check_suggestion("something", None);
    }

    #[test]
    fn distances() {
        let distance =
            |a: &str, b: &str| levenshtein(&a.chars().collect::<Vec<_>>(), &b.chars().collect::<Vec<_>>());
        assert_eq!(distance("", ""), 0);
        assert_eq!(distance("abc", ""), 3);
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(distance("flaw", "lawn"), 2);
        assert_eq!(distance("same", "same"), 0);
        assert_eq!(distance("ab", "ba"), 1);
    }

    #[test]
    fn tainted_paths() {
        let mut report = Report::default();
        report.taint("mcpServers.a.url".to_owned());
        report.taint("mcpServers.b[0]".to_owned());
        report.taint("mcpServers.c-d".to_owned());
        report.taint("mcpServers.c.url".to_owned());
        assert!(report.is_tainted("mcpServers.a.url"));
        assert!(report.is_tainted("mcpServers.a"));
        assert!(report.is_tainted("mcpServers.b"));
        assert!(!report.is_tainted("mcpServers.a.urls"));
        assert!(!report.is_tainted("mcpServers.a.command"));
        assert!(!report.is_tainted("mcpServers.ab"));
        assert!(report.is_tainted("mcpServers.c"));
    }

    /// The walker gives meaning to these keywords and ignores the annotations; a schema
    /// using anything else would be checked wrongly, so generating one fails this test.
    #[test]
    fn schema_uses_only_understood_keywords() {
        const UNDERSTOOD: &[&str] = &[
            "$ref",
            "anyOf",
            "type",
            "enum",
            "properties",
            "additionalProperties",
            "required",
            "items",
            "minimum",
            "maximum",
            "minLength",
            "format",
            // Alternatives of `required` only (a server's `command` or `url`): the walker
            // leaves them to `resolve.rs`, which says which key is missing or extra.
            "oneOf",
        ];
        const ANNOTATIONS: &[&str] = &["$schema", "$defs", "title", "description", "default"];
        fn visit(schema: &Value, path: &str) {
            let Some(object) = schema.as_object() else {
                return;
            };
            for (keyword, value) in object {
                let here = format!("{path}/{keyword}");
                assert!(
                    UNDERSTOOD.contains(&keyword.as_str()) || ANNOTATIONS.contains(&keyword.as_str()),
                    "the validator does not understand `{here}`"
                );
                match keyword.as_str() {
                    "properties" | "$defs" => value
                        .as_object()
                        .into_iter()
                        .flatten()
                        .for_each(|(name, sub)| visit(sub, &format!("{here}/{name}"))),
                    "anyOf" => value.as_array().into_iter().flatten().for_each(|sub| visit(sub, &here)),
                    "oneOf" => {
                        for branch in value.as_array().into_iter().flatten() {
                            let keys: Vec<&String> =
                                branch.as_object().into_iter().flatten().map(|(key, _)| key).collect();
                            assert_eq!(keys, ["required"], "`{here}` may only list required keys");
                        }
                    }
                    "items" | "additionalProperties" => visit(value, &here),
                    _ => {}
                }
            }
        }
        visit(&SCHEMA, "#");
    }
}
