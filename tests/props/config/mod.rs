//! Fuzz target: the config loader (`config::load_str`: JSON5, `${VAR}` expansion,
//! schema checks, semantic checks).
//!
//! Inputs come from four generators — arbitrary text, a token soup of JSON5 pieces,
//! documents generated from the real JSON Schema (`config::schema_json()`) with typos,
//! wrong types and junk mixed in, and byte-level mutations of the seed corpus
//! (`tests/fuzz/corpus/config/`) — plus two generators with an oracle: `${VAR}` templates
//! whose expansion is known, and secrets whose value must never be printed.
//!
//! Every load must: not panic; give the same result twice; fail only with
//! `ConfigError::Invalid`, whose message is its problems, one per line, each starting
//! with the file name; put a syntax error at a line and column that exist in the text.
//! A valid result must hold what validation promises (unique server names, http(s) URLs,
//! no empty command or namespace).

use std::{
    collections::BTreeMap,
    path::Path,
    sync::{
        LazyLock,
        atomic::{AtomicU64, Ordering},
    },
};

use foxxy_bridge::config::{self, ConfigError, Location, Settings, TransportSettings};
use proptest::{prelude::*, test_runner::TestCaseResult};

use self::{
    generate::{deep_nesting, env_strategy, mutate, mutation, token_soup},
    schema::schema_document,
};
use crate::harness::{corpus, fuzz};

mod expansion;
mod generate;
mod schema;
mod secrets;

/// The file name every load reports, so each error line can be checked for it.
const FILE: &str = "/fuzz/config.json5";

type Env = BTreeMap<String, String>;

fn load(text: &str, env: &Env) -> Result<Settings, ConfigError> {
    config::load_str(text, Path::new(FILE), &|name| env.get(name).cloned())
}

/// How the loads of one target ended, to show what the generator reached.
#[derive(Default)]
struct Tally {
    valid: AtomicU64,
    invalid: AtomicU64,
    syntax: AtomicU64,
}

impl Tally {
    fn record(&self, result: &Result<Settings, ConfigError>) {
        let counter = match result {
            Ok(_) => &self.valid,
            Err(ConfigError::Invalid { problems, .. })
                if matches!(
                    problems.first().map(|problem| &problem.location),
                    Some(Location::Position { .. })
                ) =>
            {
                &self.syntax
            }
            Err(_) => &self.invalid,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn report(&self, target: &str) {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        #[allow(clippy::print_stderr)]
        {
            eprintln!(
                "fuzz {target}: {} valid, {} invalid, {} syntax errors",
                get(&self.valid),
                get(&self.invalid),
                get(&self.syntax)
            );
        }
    }
}

/// Loads `text` twice and checks every property that holds for any input. Returns the
/// result for target-specific checks.
fn check_load(text: &str, env: &Env, tally: &Tally) -> Result<Result<Settings, ConfigError>, TestCaseError> {
    let first = load(text, env);
    tally.record(&first);
    let second = load(text, env);
    match (&first, &second) {
        (Ok(a), Ok(b)) => prop_assert_eq!(a, b, "same input, different settings"),
        (Err(a), Err(b)) => prop_assert_eq!(a.to_string(), b.to_string(), "same input, different errors"),
        _ => prop_assert!(false, "same input, once Ok and once Err: {first:?} / {second:?}"),
    }
    match &first {
        Ok(settings) => check_settings(settings)?,
        Err(error) => check_error(text, error)?,
    }
    Ok(first)
}

fn check_settings(settings: &Settings) -> TestCaseResult {
    prop_assert_eq!(&settings.source, Path::new(FILE));
    let mut names: Vec<&str> = settings.servers.iter().map(|server| server.name.as_str()).collect();
    names.sort_unstable();
    let count = names.len();
    names.dedup();
    prop_assert_eq!(names.len(), count, "server names are not unique");
    for server in &settings.servers {
        prop_assert!(!server.name.trim().is_empty(), "a server with an empty name was accepted");
        for namespace in [&server.tool_namespace, &server.prompt_namespace, &server.resource_namespace] {
            prop_assert!(namespace.as_ref().is_none_or(|namespace| !namespace.is_empty()), "empty namespace");
        }
        match &server.transport {
            TransportSettings::Stdio { command, .. } => prop_assert!(!command.is_empty(), "empty command"),
            TransportSettings::Remote(remote) => {
                // As the URL parser reads it: tabs and line breaks dropped, surrounding
                // controls and spaces trimmed, the scheme case-insensitive.
                let url: String = remote.url.chars().filter(|c| !matches!(c, '\t' | '\n' | '\r')).collect();
                let url = url.trim_matches(|c: char| c <= ' ').to_ascii_lowercase();
                prop_assert!(
                    url.starts_with("http:") || url.starts_with("https:"),
                    "accepted url `{}`",
                    remote.url
                );
            }
        }
    }
    prop_assert!(settings.bridge.max_message_bytes >= 1024);
    Ok(())
}

fn check_error(text: &str, error: &ConfigError) -> TestCaseResult {
    let ConfigError::Invalid { path, problems } = error else {
        return Err(TestCaseError::fail(format!("load_str can only fail with `Invalid`, got {error:?}")));
    };
    prop_assert_eq!(path, Path::new(FILE));
    prop_assert!(!problems.is_empty(), "an `Invalid` error without problems");
    let rendered = error.to_string();
    prop_assert!(!rendered.trim().is_empty(), "empty error message");
    let lines: Vec<String> = problems.iter().map(|problem| problem.in_file(path).to_string()).collect();
    prop_assert_eq!(&rendered, &lines.join("\n"), "the error is not its problems, one per line");
    for (problem, line) in problems.iter().zip(&lines) {
        prop_assert!(!problem.message.trim().is_empty(), "a problem without a message: {problem:?}");
        prop_assert!(line.starts_with(FILE), "error line does not name the file: {line:?}");
        prop_assert!(
            !line.contains(['\n', '\r', '\u{2028}', '\u{2029}']),
            "user text breaks a problem over lines: {line:?}"
        );
        if let Location::Position { line: row, column } = problem.location {
            prop_assert_eq!(problems.len(), 1, "a syntax error comes alone");
            prop_assert!(line.starts_with(&format!("{FILE}:{row}:{column}: ")), "{line:?}");
            check_position(text, row, column)?;
        }
    }
    Ok(())
}

/// A syntax error's line and column exist in the text (the column may be one past the
/// end of its line: "expected `}`, found the end of the file").
fn check_position(text: &str, row: usize, column: usize) -> TestCaseResult {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines: Vec<&str> = text.split('\n').collect();
    prop_assert!(row >= 1 && column >= 1, "position {row}:{column} is not one-based");
    prop_assert!(row <= lines.len(), "line {row} of a {}-line text", lines.len());
    let width = lines[row - 1].chars().count();
    prop_assert!(column <= width + 1, "column {column} on line {row}, which has {width} characters");
    Ok(())
}

fn config_seeds() -> &'static [(String, String)] {
    static SEEDS: LazyLock<Vec<(String, String)>> = LazyLock::new(|| {
        corpus("config")
            .into_iter()
            .map(|(name, bytes)| (name, String::from_utf8_lossy(&bytes).into_owned()))
            .collect()
    });
    &SEEDS
}

// ---------------------------------------------------------------------------------------
// Targets.

/// The committed seeds: each loads without panicking, with every general property.
#[test]
fn config_corpus() {
    let env: Env = [("HOME", "/home/fox"), ("TOKEN", "t0k3n"), ("EMPTY", "")]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
    let tally = Tally::default();
    for (name, text) in config_seeds() {
        for env in [&env, &Env::new()] {
            if let Err(error) = check_load(text, env, &tally) {
                panic!("corpus file `{name}`: {error}");
            }
        }
    }
    tally.report("config-corpus");
}

#[test]
fn config_any_text() {
    let text = prop_oneof![any::<String>(), token_soup(), deep_nesting()];
    let tally = Tally::default();
    fuzz("config-text", (text, env_strategy()), |(text, env)| check_load(&text, &env, &tally).map(drop));
    tally.report("config-text");
}

#[test]
fn config_from_schema() {
    let tally = Tally::default();
    fuzz("config-schema", (schema_document(), env_strategy()), |(text, env)| {
        check_load(&text, &env, &tally).map(drop)
    });
    tally.report("config-schema");
}

#[test]
fn config_mutated_corpus() {
    let seeds = config_seeds();
    let strategy = (0..seeds.len(), prop::collection::vec(mutation(), 1..8), env_strategy());
    let tally = Tally::default();
    fuzz("config-mutations", strategy, |(seed, mutations, env)| {
        let text = mutate(&seeds[seed].1, &mutations);
        check_load(&text, &env, &tally).map(drop)
    });
    tally.report("config-mutations");
}
