//! What a client's server entry means to foxxy-bridge: reading the entries of a server
//! map, turning one into a foxxy-bridge server entry, and recognising entries that run
//! foxxy-bridge itself.
//!
//! The conversion keeps the entry as the client wrote it wherever the bridge reads it the
//! same way, in the same key order: `command`, `args`, `env`, `cwd`, `url`, `headers`,
//! `type` and the keys clients add (`disabled`, `autoApprove`, ...). What differs:
//! Windsurf's `serverUrl` is `url`; keys the bridge does not know are dropped (and named);
//! and `${...}` in strings follows the bridge's rules. Claude Desktop expands nothing, so
//! each `${` becomes the literal `$${`. Claude Code's `${VAR}` and `${VAR:-default}` are
//! the bridge's own syntax. The editors (Cursor, VS Code, Windsurf) write `${env:VAR}`,
//! which becomes `${VAR:}` (empty when unset, as in the editor), and `${userHome}`, which becomes `${HOME}`; their other
//! variables (`${input:id}`, `${workspaceFolder}`, ...) have no meaning outside the
//! editor, so they are kept as literal text (`$${...}`) and reported, for the user to
//! replace.

use std::{path::Path, sync::OnceLock};

use super::{
    edit::{Document, Json},
    locations::{Client, ClientFile},
};

/// One server entry of a client's file.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientEntry {
    pub name: String,
    pub value: Json,
}

/// The entries of `file`'s server map in `document`, in file order.
pub fn read_entries(document: &Document, file: &ClientFile) -> Vec<ClientEntry> {
    document.members(&file.map_path).into_iter().map(|(name, value)| ClientEntry { name, value }).collect()
}

/// A client's entry as a foxxy-bridge server entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Converted {
    pub value: Json,
    /// Editor variables kept as literal text: `(variable, where)`, e.g.
    /// `("${input:token}", "env.TOKEN")`.
    pub unexpanded: Vec<(String, String)>,
    /// Keys the bridge does not read, left out.
    pub dropped: Vec<String>,
}

/// How `${...}` in a client's strings is meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variables {
    /// Not expanded at all (Claude Desktop).
    Literal,
    /// `${VAR}`, `${VAR:-default}`: the bridge's syntax (Claude Code).
    Shell,
    /// `${env:VAR}`, `${input:id}`, `${workspaceFolder}` (Cursor, VS Code, Windsurf).
    Editor,
}

fn variables_of(file: &ClientFile) -> Variables {
    match file.client {
        Some(Client::ClaudeDesktop) => Variables::Literal,
        Some(Client::ClaudeCode) => Variables::Shell,
        Some(Client::Cursor | Client::Vscode | Client::Windsurf) => Variables::Editor,
        None if file.map_path.first().is_some_and(|key| key == "servers") => Variables::Editor,
        None => Variables::Shell,
    }
}

/// The server keys the bridge's config accepts, from its schema.
fn known_keys() -> &'static [String] {
    static KEYS: OnceLock<Vec<String>> = OnceLock::new();
    KEYS.get_or_init(|| {
        let schema: serde_json::Value =
            serde_json::from_str(crate::config::schema_json()).expect("the embedded schema is JSON");
        schema["$defs"]["Server"]["properties"]
            .as_object()
            .map(|properties| properties.keys().cloned().collect())
            .unwrap_or_default()
    })
}

/// Turns the entry `value` of `file` into a foxxy-bridge server entry, or says why it
/// cannot be one.
pub fn convert(file: &ClientFile, value: &Json) -> Result<Converted, String> {
    let Json::Object(members) = value else {
        return Err("the entry is not an object".to_owned());
    };
    let variables = variables_of(file);
    let mut converted = Converted { value: Json::Null, unexpanded: Vec::new(), dropped: Vec::new() };
    let has_url = members.iter().any(|(key, _)| key == "url");
    let mut kept = Vec::new();
    for (key, member) in members {
        let key = match key.as_str() {
            "serverUrl" if !has_url => "url",
            other => other,
        };
        if !known_keys().iter().any(|known| known == key) {
            converted.dropped.push(key.to_owned());
            continue;
        }
        let member = rewrite_strings(member, variables, key, &mut converted.unexpanded);
        kept.push((key.to_owned(), member));
    }
    let has = |name: &str| kept.iter().any(|(key, _)| key == name);
    if !has("command") && !has("url") {
        return Err("it has neither `command` nor `url`".to_owned());
    }
    converted.value = Json::Object(kept);
    Ok(converted)
}

fn rewrite_strings(
    value: &Json,
    variables: Variables,
    at: &str,
    unexpanded: &mut Vec<(String, String)>,
) -> Json {
    match value {
        Json::String(text) => Json::String(rewrite_variables(text, variables, at, unexpanded)),
        Json::Array(items) => Json::Array(
            items
                .iter()
                .enumerate()
                .map(|(index, item)| rewrite_strings(item, variables, &format!("{at}[{index}]"), unexpanded))
                .collect(),
        ),
        Json::Object(members) => Json::Object(
            members
                .iter()
                .map(|(key, member)| {
                    (key.clone(), rewrite_strings(member, variables, &format!("{at}.{key}"), unexpanded))
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

/// One string under the rules of the module doc.
fn rewrite_variables(
    text: &str,
    variables: Variables,
    at: &str,
    unexpanded: &mut Vec<(String, String)>,
) -> String {
    match variables {
        Variables::Shell => text.to_owned(),
        Variables::Literal => text.replace("${", "$${"),
        Variables::Editor => {
            let mut output = String::with_capacity(text.len());
            let mut rest = text;
            while let Some(start) = rest.find("${") {
                output.push_str(&rest[..start]);
                let after = &rest[start + 2..];
                let Some(end) = after.find('}') else {
                    output.push_str("$${");
                    rest = after;
                    continue;
                };
                let inner = &after[..end];
                match inner.strip_prefix("env:") {
                    Some(name) => output.push_str(&format!("${{{name}:}}")),
                    None if inner == "userHome" => output.push_str("${HOME}"),
                    None => {
                        output.push_str(&format!("$${{{inner}}}"));
                        unexpanded.push((format!("${{{inner}}}"), at.to_owned()));
                    }
                }
                rest = &after[end + 1..];
            }
            output.push_str(rest);
            output
        }
    }
}

/// Whether the entry starts foxxy-bridge (or its predecessor, mcp-foxxy-bridge): its
/// command is this binary, or the command or an argument is a program of that name
/// (`npx foxxy-bridge`, `uvx mcp-foxxy-bridge@latest`).
pub fn runs_foxxy_bridge(value: &Json, own_binary: Option<&Path>) -> bool {
    let is_bridge = |text: &str| {
        if own_binary.is_some_and(|own| Path::new(text) == own) {
            return true;
        }
        let name = Path::new(text).file_name().and_then(|name| name.to_str()).unwrap_or(text);
        let name = name.split('@').next().unwrap_or(name);
        matches!(name, "foxxy-bridge" | "mcp-foxxy-bridge")
    };
    let command = value.get("command").and_then(Json::as_str);
    let args = match value.get("args") {
        Some(Json::Array(args)) => args.iter().filter_map(Json::as_str).collect(),
        _ => Vec::new(),
    };
    command.is_some_and(is_bridge) || args.into_iter().any(is_bridge)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_editor(input: &str, expected: &str, reported: &[&str]) {
        let mut unexpanded = Vec::new();
        assert_eq!(rewrite_variables(input, Variables::Editor, "env.X", &mut unexpanded), expected);
        let found: Vec<&str> = unexpanded.iter().map(|(variable, _)| variable.as_str()).collect();
        assert_eq!(found, reported);
    }

    #[test]
    fn editor_variables() {
        check_editor("plain", "plain", &[]);
        check_editor("${env:TOKEN}", "${TOKEN:}", &[]);
        check_editor("Bearer ${env:A}-${env:B}", "Bearer ${A:}-${B:}", &[]);
        check_editor("${userHome}/x", "${HOME}/x", &[]);
        check_editor("${input:api-key}", "$${input:api-key}", &["${input:api-key}"]);
        check_editor("${workspaceFolder}/src", "$${workspaceFolder}/src", &["${workspaceFolder}"]);
        check_editor("cost $5 ${", "cost $5 $${", &[]);
    }

    #[test]
    fn literal_variables_are_escaped() {
        let mut unexpanded = Vec::new();
        assert_eq!(rewrite_variables("a${B}c", Variables::Literal, "", &mut unexpanded), "a$${B}c");
    }

    fn check_self(command: &str, args: &[&str], expected: bool) {
        let value = Json::Object(vec![
            ("command".into(), Json::String(command.into())),
            ("args".into(), Json::Array(args.iter().map(|arg| Json::String((*arg).into())).collect())),
        ]);
        assert_eq!(
            runs_foxxy_bridge(&value, Some(Path::new("/opt/fb/bin/fb"))),
            expected,
            "{command} {args:?}"
        );
    }

    #[test]
    fn recognises_foxxy_bridge() {
        check_self("/usr/local/bin/foxxy-bridge", &["stdio"], true);
        check_self("foxxy-bridge", &[], true);
        check_self("/opt/fb/bin/fb", &["stdio"], true);
        check_self("uvx", &["mcp-foxxy-bridge@latest", "--bridge-config", "x.json"], true);
        check_self(
            "npx",
            &["-y", "@modelcontextprotocol/server-filesystem", "/home/u/.foxxy-bridge/x"],
            false,
        );
        check_self("node", &["server.js"], false);
    }
}
