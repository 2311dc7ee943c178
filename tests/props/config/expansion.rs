//! Target: `${VAR}` expansion against its documented meaning. Templates are generated
//! as parts whose expansion (or failure) is known, then written into a config.

use foxxy_bridge::config::{ConfigError, TransportSettings};
use proptest::prelude::*;

use super::{
    Env, Tally, check_load,
    generate::{VARIABLES, env_strategy},
};
use crate::harness::fuzz;

/// One part of a `${...}` template, with the expansion it must have.
#[derive(Debug, Clone)]
enum Part {
    /// Text without `$`; inside a default, also without `{` and `}`.
    Text(String),
    /// `$` followed by a character that does not start `{` or `$`.
    Dollar(char),
    /// `$${`, a literal `${`.
    Escape,
    /// `${NAME}`.
    Variable(String),
    /// `${NAME:default}` or `${NAME:-default}`.
    Default { name: String, dash: bool, default: Vec<Part> },
}

fn parts(in_default: bool, depth: u32) -> BoxedStrategy<Vec<Part>> {
    let text_pattern = if in_default { "[^${}]{1,5}" } else { "[^$]{1,5}" };
    let name = prop_oneof![
        8 => prop::sample::select(VARIABLES).prop_map(str::to_owned),
        1 => prop::sample::select(&["", "1X", "MY-VAR", "a b", "ä"][..]).prop_map(str::to_owned),
    ];
    let mut choices: Vec<BoxedStrategy<Part>> = vec![
        text_pattern.prop_map(Part::Text).boxed(),
        // Inside a default a `}` would close the reference.
        prop::sample::select(if in_default {
            &['x', ' ', '5', 'é'][..]
        } else {
            &['x', ' ', '5', '}', 'é'][..]
        })
        .prop_map(Part::Dollar)
        .boxed(),
        Just(Part::Escape).boxed(),
        name.clone().prop_map(Part::Variable).boxed(),
    ];
    if depth < 3 {
        choices.push(
            (name, any::<bool>(), parts(true, depth + 1))
                .prop_map(|(name, dash, default)| Part::Default { name, dash, default })
                .boxed(),
        );
    }
    prop::collection::vec(prop::strategy::Union::new(choices), 0..5).boxed()
}

fn render_parts(parts: &[Part]) -> String {
    parts
        .iter()
        .map(|part| match part {
            Part::Text(text) => text.clone(),
            Part::Dollar(next) => format!("${next}"),
            Part::Escape => "$${".to_owned(),
            Part::Variable(name) => format!("${{{name}}}"),
            Part::Default { name, dash, default } => {
                format!("${{{name}:{}{}}}", if *dash { "-" } else { "" }, render_parts(default))
            }
        })
        .collect()
}

/// The documented meaning of a template: its expansion, or `Err` when it has a problem.
fn expected_expansion(parts: &[Part], env: &Env) -> Result<String, ()> {
    let mut output = String::new();
    let mut failed = false;
    for part in parts {
        match part {
            Part::Text(text) => output.push_str(text),
            Part::Dollar(next) => {
                output.push('$');
                output.push(*next);
            }
            Part::Escape => output.push_str("${"),
            Part::Variable(name) | Part::Default { name, .. } if !is_variable_name(name) => failed = true,
            Part::Variable(name) => match env.get(name) {
                Some(value) => output.push_str(value),
                None => failed = true,
            },
            Part::Default { name, dash, default } => match env.get(name) {
                Some(value) => output.push_str(value),
                None => {
                    // Without the dash, a default that starts with `-` reads as `:-`.
                    let mut default = default.clone();
                    if !dash
                        && let Some(Part::Text(text)) = default.first_mut()
                        && text.starts_with('-')
                    {
                        text.remove(0);
                    }
                    match expected_expansion(&default, env) {
                        Ok(value) => output.push_str(&value),
                        Err(()) => failed = true,
                    }
                }
            },
        }
    }
    if failed { Err(()) } else { Ok(output) }
}

fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `${VAR}` expansion against its documented meaning, computed from the generated parts.
#[test]
fn config_expansion_oracle() {
    let strategy = (parts(false, 0), env_strategy(), any::<bool>());
    let tally = Tally::default();
    fuzz("config-expansion", strategy, |(parts, env, unterminated)| {
        let mut template = render_parts(&parts);
        if unterminated {
            template.push_str("${HOME");
        }
        let document = serde_json::json!({ "mcpServers": { "s": { "command": "x", "args": [template] } } });
        // JSON (and JSON5) strings may hold U+2028 and U+2029 as they are, but the `json5`
        // crate rejects them with a syntax error (a known limitation of the parser, noted in
        // docs/configuration.md), so they are written escaped.
        let text = serde_json::to_string(&document)
            .expect("a document serializes")
            .replace('\u{2028}', "\\u2028")
            .replace('\u{2029}', "\\u2029");
        let result = check_load(&text, &env, &tally)?;
        let expected = if unterminated { Err(()) } else { expected_expansion(&parts, &env) };
        match (result, expected) {
            (Ok(settings), Ok(expected)) => {
                let TransportSettings::Stdio { args, .. } = &settings.servers[0].transport else {
                    return Err(TestCaseError::fail("not a stdio server"));
                };
                prop_assert_eq!(&args[0], &expected, "template {:?}", template);
            }
            (Err(error), Err(())) => {
                let ConfigError::Invalid { problems, .. } = &error else { unreachable!("checked") };
                prop_assert!(
                    problems.iter().all(|problem| problem.path() == Some("mcpServers.s.args[0]")),
                    "template {:?}: {}",
                    template,
                    error
                );
            }
            (Ok(settings), Err(())) => {
                prop_assert!(
                    false,
                    "template {template:?} should not expand, got {:?}",
                    settings.servers[0].transport
                )
            }
            (Err(error), Ok(expected)) => {
                prop_assert!(false, "template {template:?} should expand to {expected:?}, got: {error}")
            }
        }
        Ok(())
    });
    tally.report("config-expansion");
}
