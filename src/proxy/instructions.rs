//! The bridge's `instructions`: every enabled upstream's own, each under a heading that
//! names the upstream and the prefix of its tools, in config order. A ready upstream
//! gives what it said in this session; one not ready yet gives what it said in an
//! earlier one, as remembered by `instructions_store.rs`.
//!
//! Clients put this text into the model's context, so it is bounded: each upstream's
//! text is cut at [`MAX_PER_UPSTREAM`] bytes and the whole at [`MAX_TOTAL`] bytes (at a
//! character boundary, with a line saying so). An upstream that connects after the
//! client's `initialize` was answered cannot change them: MCP has no way to update them.

use super::instructions_store::Remembered;
use crate::{config::Settings, upstream::View};

/// Most bytes of one upstream's instructions that are passed on.
pub const MAX_PER_UPSTREAM: usize = 8 * 1024;

/// Most bytes of the merged instructions.
pub const MAX_TOTAL: usize = 32 * 1024;

/// The merged instructions of the enabled upstreams of `settings`: those ready in
/// `view` with their own, the others with what `remembered` holds for them; `None` when
/// none has any.
pub fn merge(view: &View, settings: &Settings, remembered: &Remembered) -> Option<String> {
    let mut merged = String::new();
    for server in settings.enabled_servers() {
        let text = match view.get(&server.name).filter(|state| state.is_ready()) {
            Some(state) => state.catalog.as_ref().and_then(|catalog| catalog.instructions.as_deref()),
            None => remembered.get(server),
        };
        let Some(text) = text.map(str::trim).filter(|text| !text.is_empty()) else {
            continue;
        };
        let namespace = server
            .tool_namespace
            .clone()
            .or_else(|| settings.bridge.default_namespace.then(|| server.name.clone()));
        let heading = match namespace {
            Some(namespace) => format!("## {} (tools `{namespace}__*`)", server.name),
            None => format!("## {}", server.name),
        };
        let section = format!("{heading}\n\n{}", bounded(text, MAX_PER_UPSTREAM));
        let separator = if merged.is_empty() { "" } else { "\n\n" };
        if merged.len() + separator.len() + section.len() > MAX_TOTAL {
            merged.push_str(separator);
            merged.push_str(&format!(
                "(instructions of `{}` and later servers left out: too long)",
                server.name
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
            note: None,
            pid: None,
        }
    }

    fn check(upstreams: Vec<UpstreamState>, expected: Option<&str>) {
        let text = r#"{ "mcpServers": { "a": { "command": "x" }, "b": { "command": "x", "toolNamespace": "bee" }, "c": { "command": "x" } } }"#;
        let settings = crate::config::load_str(text, Path::new("c.json5"), &|_| None).unwrap();
        assert_eq!(merge(&View { upstreams }, &settings, &Remembered::default()).as_deref(), expected);
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
    fn upstreams_not_ready_give_their_remembered_instructions() {
        let text = r#"{ "mcpServers": { "a": { "command": "xa" }, "b": { "command": "xb" }, "c": { "command": "xc", "enabled": false } } }"#;
        let settings = crate::config::load_str(text, Path::new("c.json5"), &|_| None).unwrap();
        let mut remembered = Remembered::default();
        for server in &settings.servers {
            remembered.insert(server, &format!("old {}", server.name));
        }
        let merged = |upstreams| merge(&View { upstreams }, &settings, &remembered);
        assert_eq!(
            merged(vec![]).as_deref(),
            Some("## a (tools `a__*`)\n\nold a\n\n## b (tools `b__*`)\n\nold b")
        );
        let upstreams =
            vec![state("a", Status::Ready, Some("new a")), state("b", Status::Connecting, Some("new b"))];
        assert_eq!(
            merged(upstreams).as_deref(),
            Some("## a (tools `a__*`)\n\nnew a\n\n## b (tools `b__*`)\n\nold b")
        );
        let upstreams = vec![state("a", Status::Ready, None), state("b", Status::Failed("x".into()), None)];
        assert_eq!(merged(upstreams).as_deref(), Some("## b (tools `b__*`)\n\nold b"), "a said none now");
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
        let merged = merge(&View { upstreams: many }, &settings, &Remembered::default()).unwrap();
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
        merge(
            &View { upstreams: vec![state("a", Status::Ready, Some(text))] },
            &settings,
            &Remembered::default(),
        )
        .unwrap()
    }
}
