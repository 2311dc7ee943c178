//! Finding the config file and loading it: read → parse JSON5 → expand `${VAR}` → check
//! against the schema → resolve to [`Settings`].
//!
//! Every stage after parsing adds to one list of problems instead of stopping at the
//! first, so a user fixing a file sees everything that is wrong with it at once. Only a
//! syntax error stops early, because nothing after it can be trusted.
//!
//! The problems of all stages are sorted in document order before they are reported, so
//! they read top to bottom like the file.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use super::{
    error::{ConfigError, Problem},
    expand::{Expansion, expand_node},
    node::{Node, child_path, index_path},
    resolve::resolve,
    settings::Settings,
    syntax,
    validate::{Report, SCHEMA, check},
};

/// File names looked for in each directory, in order.
const FILE_NAMES: [&str; 2] = ["config.json5", "config.json"];

/// Where to look for the config when no `--config`/`FOXXY_BRIDGE_CONFIG` was given:
/// `<state_root>/config.json5`, then `<state_root>/config.json`, then the same two names
/// in the platform config dir (`directories::ProjectDirs::from("", "", "foxxy-bridge")`,
/// e.g. `~/.config/foxxy-bridge/`). Returns the first that exists, else an error listing
/// every path tried.
///
/// An `explicit` path is returned as it is, existing or not: loading it then fails with
/// the reason the file cannot be read, which says more than "not found".
pub fn locate(explicit: Option<&Path>, state_root: &Path) -> Result<PathBuf, ConfigError> {
    if let Some(explicit) = explicit {
        return Ok(explicit.to_path_buf());
    }
    let platform_dir =
        directories::ProjectDirs::from("", "", "foxxy-bridge").map(|dirs| dirs.config_dir().to_path_buf());
    let mut tried: Vec<PathBuf> = Vec::new();
    for dir in std::iter::once(state_root.to_path_buf()).chain(platform_dir) {
        for name in FILE_NAMES {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Ok(candidate);
            }
            if !tried.contains(&candidate) {
                tried.push(candidate);
            }
        }
    }
    Err(ConfigError::NotFound { tried })
}

/// Reads, parses (JSON5), expands `${VAR}` from the process environment, validates and
/// resolves the config file at `path`.
pub fn load(path: &Path) -> Result<Settings, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
    // A variable that is set but not valid UTF-8 counts as unset: it could not be put in
    // a JSON string anyway.
    load_str(&text, path, &|name| std::env::var(name).ok())
}

/// Same as [`load`], from text, with an injectable environment lookup (tests, fuzzing).
/// `path` is only used in messages and as [`Settings::source`].
pub fn load_str(
    text: &str,
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Settings, ConfigError> {
    let invalid = |problems| ConfigError::Invalid { path: path.to_path_buf(), problems };
    let mut document = parse(text).map_err(|problem| invalid(vec![problem]))?;
    if !matches!(document, Node::Object(_)) {
        let problem = Problem::at(
            "",
            format!(
                "the config must be a JSON5 object such as `{{ \"mcpServers\": {{ ... }} }}`, found {}",
                document.kind()
            ),
        );
        return Err(invalid(vec![problem]));
    }

    let mut report = Report::default();
    let mut expansion = Expansion::default();
    expand_node(&mut document, "", env, &mut expansion);
    for problem in expansion.problems {
        let path = problem.path().unwrap_or_default().to_owned();
        report.problem(&path, problem.message);
    }
    report.substituted = expansion.substituted;

    let checked = check(&document, &SCHEMA, "", &mut report).unwrap_or_default();
    let settings = resolve(path, &checked, &server_order(&document), &mut report);
    if report.problems.is_empty() {
        Ok(settings)
    } else {
        let mut problems = report.problems;
        sort_in_document_order(&mut problems, &document);
        Err(invalid(problems))
    }
}

/// Orders problems as their places appear in the file (stably, so the problems of one
/// place keep the order the stages found them in), so a user can fix them top to bottom.
/// A problem about something absent (a defaulted field) sorts with its nearest present
/// parent.
fn sort_in_document_order(problems: &mut [Problem], document: &Node) {
    let mut order = HashMap::new();
    number_paths(document, String::new(), &mut order);
    let rank = |problem: &Problem| {
        let mut path = problem.path().unwrap_or_default();
        loop {
            if let Some(rank) = order.get(path) {
                return *rank;
            }
            match path.rfind(['.', '[']) {
                Some(cut) => path = &path[..cut],
                None => return 0,
            }
        }
    };
    problems.sort_by_cached_key(rank);
}

/// Numbers every path in the document in pre-order (file order).
fn number_paths(node: &Node, path: String, order: &mut HashMap<String, usize>) {
    let children: Vec<(String, &Node)> = match node {
        Node::Object(members) => members.iter().map(|(key, value)| (child_path(&path, key), value)).collect(),
        Node::Array(items) => {
            items.iter().enumerate().map(|(index, item)| (index_path(&path, index), item)).collect()
        }
        _ => Vec::new(),
    };
    let next = order.len();
    order.entry(path).or_insert(next);
    for (child, value) in children {
        number_paths(value, child, order);
    }
}

/// Parses JSON5 text; a syntax error becomes a problem at its line and column.
fn parse(text: &str) -> Result<Node, Problem> {
    // Editors on Windows like to start files with a byte order mark; JSON5 does not allow one.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if is_blank(text) {
        return Err(Problem::position(
            1,
            1,
            "the config file is empty; it must hold a JSON5 object such as `{ \"mcpServers\": { ... } }`",
        ));
    }
    if let Some((line, column, message)) = syntax::too_deep(text) {
        return Err(Problem::position(line, column, format!("syntax error: {message}")));
    }
    json5::from_str(text).map_err(|json5::Error::Message { msg, location }| {
        // `json5`'s position is often off (see `syntax.rs`); prefer the scanner's when it
        // finds the error, else keep what `json5` said.
        let (line, column, message) = syntax::first_error(text).unwrap_or_else(|| {
            let (line, column) = location.map_or((1, 1), |location| (location.line, location.column));
            (line, column, syntax_message(&msg))
        });
        Problem::position(line, column, format!("syntax error: {message}"))
    })
}

/// Whether the text holds nothing but whitespace and comments.
fn is_blank(text: &str) -> bool {
    let mut rest = text.trim_start();
    loop {
        if let Some(comment) = rest.strip_prefix("//") {
            rest = comment.split_once('\n').map_or("", |(_, after)| after).trim_start();
        } else if let Some(comment) = rest.strip_prefix("/*") {
            match comment.split_once("*/") {
                Some((_, after)) => rest = after.trim_start(),
                None => return false,
            }
        } else {
            return rest.is_empty();
        }
    }
}

/// json5 (through pest) renders a syntax error as several lines that draw the offending
/// line with a caret, ending in `= expected ...`; only that last part is new
/// information, because the problem carries the line and column already.
fn syntax_message(message: &str) -> String {
    let detail =
        message.lines().find_map(|line| line.trim_start().strip_prefix("= ")).unwrap_or(message).trim();
    detail.to_owned()
}

/// The server names in file order (the checked document's maps are sorted by key).
fn server_order(document: &Node) -> Vec<String> {
    let Node::Object(members) = document else {
        return Vec::new();
    };
    let servers = members.iter().rev().find(|(key, _)| key == "mcpServers");
    let Some((_, Node::Object(servers))) = servers else {
        return Vec::new();
    };
    let mut names: Vec<String> = Vec::new();
    for (name, _) in servers {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    names
}
