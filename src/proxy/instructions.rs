//! The bridge's `instructions`: every ready upstream's own, each under a heading that
//! names the upstream and the prefix of its tools, in config order.
//!
//! Clients put this text into the model's context, so it is bounded: each upstream's
//! text is cut at [`MAX_PER_UPSTREAM`] bytes and the whole at [`MAX_TOTAL`] bytes (at a
//! character boundary, with a line saying so). An upstream that connects after the
//! client's `initialize` was answered cannot be added: MCP has no way to update them.
//!
//! The answer to `initialize` waits for upstreams only as long as `bridge.instructionsWait`
//! says (`Bridge::instructions`); by default it holds the instructions of the upstreams
//! connected already.

use crate::{config::Settings, upstream::View};

/// Most bytes of one upstream's instructions that are passed on.
pub const MAX_PER_UPSTREAM: usize = 8 * 1024;

/// Most bytes of the merged instructions.
pub const MAX_TOTAL: usize = 32 * 1024;

/// The merged instructions of the ready upstreams in `view`; `None` when none has any.
pub fn merge(view: &View, settings: &Settings) -> Option<String> {
    let mut merged = String::new();
    for state in view.upstreams.iter().filter(|state| state.is_ready()) {
        let Some(text) = state.catalog.as_ref().and_then(|catalog| catalog.instructions.as_deref()) else {
            continue;
        };
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        let namespace = settings.server(&state.name).and_then(|server| {
            server
                .tool_namespace
                .clone()
                .or_else(|| settings.bridge.default_namespace.then(|| server.name.clone()))
        });
        let heading = match namespace {
            Some(namespace) => format!("## {} (tools `{namespace}__*`)", state.name),
            None => format!("## {}", state.name),
        };
        let section = format!("{heading}\n\n{}", bounded(text, MAX_PER_UPSTREAM));
        let separator = if merged.is_empty() { "" } else { "\n\n" };
        if merged.len() + separator.len() + section.len() > MAX_TOTAL {
            merged.push_str(separator);
            merged.push_str(&format!(
                "(instructions of `{}` and later servers left out: too long)",
                state.name
            ));
            break;
        }
        merged.push_str(separator);
        merged.push_str(&section);
    }
    (!merged.is_empty()).then_some(merged)
}

/// `text` cut to at most `max` bytes at a character boundary, with a line saying so.
fn bounded(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}\n(cut at {max} bytes)", &text[..end])
}

#[cfg(test)]
mod tests {
    use std::{path::Path, sync::Arc};

    use super::*;
    use crate::upstream::{Status, UpstreamCatalog, UpstreamState};

    fn state(name: &str, status: Status, instructions: Option<&str>) -> UpstreamState {
        UpstreamState {
            name: name.into(),
            transport: "stdio",
            status,
            settled: true,
            catalog: Some(Arc::new(UpstreamCatalog {
                instructions: instructions.map(str::to_owned),
                ..UpstreamCatalog::default()
            })),
            generation: 0,
        }
    }

    fn check(upstreams: Vec<UpstreamState>, expected: Option<&str>) {
        let text = r#"{ "mcpServers": { "a": { "command": "x" }, "b": { "command": "x", "toolNamespace": "bee" }, "c": { "command": "x" } } }"#;
        let settings = crate::config::load_str(text, Path::new("c.json5"), &|_| None).unwrap();
        assert_eq!(merge(&View { upstreams }, &settings).as_deref(), expected);
    }

    #[test]
    fn merges_ready_upstreams_under_their_names_and_prefixes() {
        check(vec![], None);
        check(vec![state("a", Status::Ready, None), state("b", Status::Ready, Some("  "))], None);
        check(
            vec![
                state("a", Status::Ready, Some("use a\n")),
                state("b", Status::Ready, Some("use b")),
                state("c", Status::Connecting, Some("use c")),
            ],
            Some("## a (tools `a__*`)\n\nuse a\n\n## b (tools `bee__*`)\n\nuse b"),
        );
    }

    #[test]
    fn long_texts_are_cut() {
        let long = "é".repeat(MAX_PER_UPSTREAM);
        let merged = merge_one(&long);
        assert!(
            merged.ends_with(&format!("\n(cut at {MAX_PER_UPSTREAM} bytes)")),
            "{}",
            &merged[merged.len() - 40..]
        );
        assert!(merged.len() < MAX_PER_UPSTREAM + 100);
        let names = ["a", "b", "c", "d", "e"];
        let many: Vec<_> = names.iter().map(|name| state(name, Status::Ready, Some(&long))).collect();
        let text = r#"{ "mcpServers": { "a": { "command": "x" }, "b": { "command": "x" }, "c": { "command": "x" }, "d": { "command": "x" }, "e": { "command": "x" } } }"#;
        let settings = crate::config::load_str(text, Path::new("c.json5"), &|_| None).unwrap();
        let merged = merge(&View { upstreams: many }, &settings).unwrap();
        assert!(merged.len() <= MAX_TOTAL, "{}", merged.len());
        assert!(merged.contains("## c") && !merged.contains("## d"), "three fit");
        assert!(merged.ends_with("(instructions of `d` and later servers left out: too long)"));
    }

    fn merge_one(text: &str) -> String {
        let settings = crate::config::load_str(
            r#"{ "mcpServers": { "a": { "command": "x" } } }"#,
            Path::new("c.json5"),
            &|_| None,
        )
        .unwrap();
        merge(&View { upstreams: vec![state("a", Status::Ready, Some(text))] }, &settings).unwrap()
    }
}
