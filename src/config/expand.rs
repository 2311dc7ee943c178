//! `${VAR}` expansion in every string value of the config document.
//!
//! Syntax, applied to string values (array items and map values included) but never to
//! keys:
//!
//! - `${NAME}` is the value of the environment variable `NAME`; unset is a problem that
//!   names the variable and the JSON path. A variable set to the empty string expands to
//!   the empty string.
//! - `${NAME:default}` (or `${NAME:-default}`, as shells and docker compose write it) is
//!   `default` when `NAME` is unset. The default may itself contain `${...}`.
//! - `$${` is a literal `${`. Any other `$` is just a `$`.
//!
//! Expansion is not recursive: a variable's value is inserted as it is. The lookup is a
//! function so tests never touch the process environment.

use std::collections::BTreeSet;

use super::{
    error::Problem,
    node::{Node, child_path, index_path},
};

/// Looks up an environment variable; `None` when it is not set.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// What expanding a document found.
#[derive(Debug, Default)]
pub struct Expansion {
    /// Problems, each at its string's path.
    pub problems: Vec<Problem>,
    /// Paths of the strings a variable was substituted into. Their values may hold
    /// secrets, so later errors about them do not quote them.
    pub substituted: BTreeSet<String>,
}

/// Expands every string value under `node` in place. A string with a problem is left
/// unchanged and each of its problems is reported at its path.
pub fn expand_node(node: &mut Node, path: &str, env: EnvLookup<'_>, found: &mut Expansion) {
    match node {
        Node::String(text) => match expand_str(text, env) {
            Ok(expanded) => {
                if expanded != *text {
                    found.substituted.insert(path.to_owned());
                }
                *text = expanded;
            }
            Err(messages) => {
                found.problems.extend(messages.into_iter().map(|message| Problem::at(path, message)));
            }
        },
        Node::Array(items) => {
            for (index, item) in items.iter_mut().enumerate() {
                expand_node(item, &index_path(path, index), env, found);
            }
        }
        Node::Object(members) => {
            for (key, value) in members {
                expand_node(value, &child_path(path, key), env, found);
            }
        }
        Node::Null | Node::Bool(_) | Node::Integer(_) | Node::Float(_) => {}
    }
}

/// Expands one string; on failure, every problem in it (lowercase messages).
pub fn expand_str(text: &str, env: EnvLookup<'_>) -> Result<String, Vec<String>> {
    let mut output = String::with_capacity(text.len());
    let mut problems = Vec::new();
    let mut rest = text;
    while let Some(dollar) = rest.find('$') {
        output.push_str(&rest[..dollar]);
        rest = &rest[dollar..];
        if let Some(after) = rest.strip_prefix("$${") {
            output.push_str("${");
            rest = after;
        } else if let Some(after) = rest.strip_prefix("${") {
            let Some(end) = closing_brace(after) else {
                // The text is not quoted back: it may be a header value, i.e. a secret.
                problems.push(
                    "unterminated `${`; close it with `}`, or write `$${` for a literal `${`".to_owned(),
                );
                return Err(problems);
            };
            match expand_reference(&after[..end], env) {
                Ok(value) => output.push_str(&value),
                Err(mut more) => problems.append(&mut more),
            }
            rest = &after[end + 1..];
        } else {
            output.push('$');
            rest = &rest[1..];
        }
    }
    output.push_str(rest);
    if problems.is_empty() { Ok(output) } else { Err(problems) }
}

/// The index of the `}` that closes a `${` whose contents start `text`, counting nested
/// `${...}` in defaults and skipping `$${` escapes.
fn closing_brace(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index..].starts_with(b"$${") {
            index += 3;
            continue;
        }
        if bytes[index..].starts_with(b"${") {
            depth += 1;
            index += 2;
            continue;
        }
        if bytes[index] == b'}' {
            if depth == 0 {
                return Some(index);
            }
            depth -= 1;
        }
        index += 1;
    }
    None
}

/// Expands the inside of one `${...}`: `NAME`, `NAME:default` or `NAME:-default`.
fn expand_reference(reference: &str, env: EnvLookup<'_>) -> Result<String, Vec<String>> {
    let (name, default) = match reference.split_once(':') {
        Some((name, default)) => (name, Some(default.strip_prefix('-').unwrap_or(default))),
        None => (reference, None),
    };
    if !is_variable_name(name) {
        return Err(vec![format!(
            "`${{{reference}}}`: `{name}` is not a variable name (letters, digits and `_`, not starting with a digit); write `$${{` for a literal `${{`"
        )]);
    }
    match (env(name), default) {
        (Some(value), _) => Ok(value),
        (None, Some(default)) => expand_str(default, env),
        (None, None) => Err(vec![format!(
            "environment variable `{name}` is not set; set it, or give a default: `${{{name}:default}}`"
        )]),
    }
}

fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        let value = match name {
            "HOME" => "/home/fox",
            "TOKEN" => "s3cret",
            "EMPTY" => "",
            "DOLLARS" => "${HOME}",
            "_UNDER9" => "u",
            _ => return None,
        };
        Some(value.to_owned())
    }

    /// `expected` is the expansion, or `error: ` and the problems joined by ` | `.
    #[track_caller]
    fn check(input: &str, expected: &str) {
        let actual = match expand_str(input, &env) {
            Ok(expanded) => expanded,
            Err(problems) => format!("error: {}", problems.join(" | ")),
        };
        assert_eq!(actual, expected, "input: {input}");
    }

    #[test]
    fn plain_text() {
        check("", "");
        check("npx", "npx");
        check("a $ b", "a $ b");
        check("$HOME", "$HOME");
        check("cost: $5 {x}", "cost: $5 {x}");
        check("trailing $", "trailing $");
        check("}", "}");
        check("$$", "$$");
        check("ünïcødé ${HOME} ✓", "ünïcødé /home/fox ✓");
    }

    #[test]
    fn variables() {
        check("${HOME}", "/home/fox");
        check("${HOME}/.config", "/home/fox/.config");
        check("Bearer ${TOKEN}", "Bearer s3cret");
        check("${HOME}${TOKEN}", "/home/foxs3cret");
        check("${EMPTY}", "");
        check("[${EMPTY}]", "[]");
        check("${_UNDER9}", "u");
        check("${DOLLARS}", "${HOME}");
    }

    #[test]
    fn defaults() {
        check("${MODE:dev}", "dev");
        check("${MODE:-dev}", "dev");
        check("${MODE:}", "");
        check("${MODE:--x}", "-x");
        check("${HOME:/tmp}", "/home/fox");
        check("${EMPTY:fallback}", "");
        check("${URL:http://localhost:8080/mcp}", "http://localhost:8080/mcp");
        check("${A:${HOME}/x}", "/home/fox/x");
        check("${A:${B:deep}}", "deep");
        check("${A:$${literal}}", "${literal}");
        check("${A:a}-${B:b}", "a-b");
    }

    #[test]
    fn escapes() {
        check("$${HOME}", "${HOME}");
        check("$${", "${");
        check("$${MISSING}", "${MISSING}");
        check("a$${b}c${TOKEN}", "a${b}cs3cret");
        check("$$${HOME}", "$${HOME}");
    }

    #[test]
    fn problems() {
        check(
            "${MISSING}",
            "error: environment variable `MISSING` is not set; set it, or give a default: `${MISSING:default}`",
        );
        check(
            "${A}/${B}",
            "error: environment variable `A` is not set; set it, or give a default: `${A:default}` | environment variable `B` is not set; set it, or give a default: `${B:default}`",
        );
        check(
            "${A:${B}}",
            "error: environment variable `B` is not set; set it, or give a default: `${B:default}`",
        );
        check("${HOME", "error: unterminated `${`; close it with `}`, or write `$${` for a literal `${`");
        check(
            "${}",
            "error: `${}`: `` is not a variable name (letters, digits and `_`, not starting with a digit); write `$${` for a literal `${`",
        );
        check(
            "${1X}",
            "error: `${1X}`: `1X` is not a variable name (letters, digits and `_`, not starting with a digit); write `$${` for a literal `${`",
        );
        check(
            "${MY-VAR}",
            "error: `${MY-VAR}`: `MY-VAR` is not a variable name (letters, digits and `_`, not starting with a digit); write `$${` for a literal `${`",
        );
    }

    #[test]
    fn node_paths() {
        let mut node: Node = json5::from_str(
            r#"{ "a": ["${HOME}", "${NOPE}"], "${KEY}": { "b.c": "${ALSO_NOPE}" }, "n": 1 }"#,
        )
        .unwrap();
        let mut found = Expansion::default();
        expand_node(&mut node, "", &env, &mut found);
        assert_eq!(found.substituted, BTreeSet::from(["a[0]".to_owned()]));
        let rendered: Vec<String> = found.problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            rendered,
            [
                "a[1]: environment variable `NOPE` is not set; set it, or give a default: `${NOPE:default}`",
                "[\"${KEY}\"][\"b.c\"]: environment variable `ALSO_NOPE` is not set; set it, or give a default: `${ALSO_NOPE:default}`",
            ]
        );
        let Node::Object(members) = &node else { panic!("not an object") };
        assert_eq!(
            members[0].1,
            Node::Array(vec![Node::String("/home/fox".into()), Node::String("${NOPE}".into())])
        );
        assert_eq!(members[1].0, "${KEY}", "keys are not expanded");
    }
}
