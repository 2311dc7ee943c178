//! The errors of the config module: a file that cannot be found or read, and an invalid
//! file with every [`Problem`] found in it.
//!
//! Problems are collected, not thrown one at a time, so `config validate` can show them
//! all at once. Each one points either at a position in the file (syntax errors) or at a
//! JSON path inside the document (everything found after parsing).

use std::{
    fmt,
    path::{Path, PathBuf},
};

/// Why the config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file `{}`", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// No `--config` was given and none of the default locations holds a file.
    #[error(
        "no config file found; tried:{}\nhint: create one of these, or pass `--config PATH` or set `FOXXY_BRIDGE_CONFIG`",
        tried.iter().map(|path| format!("\n  {}", path.display())).collect::<String>()
    )]
    NotFound { tried: Vec<PathBuf> },
    /// The file was read but is not a valid config; one problem per line.
    #[error("{}", render_problems(path, problems))]
    Invalid { path: PathBuf, problems: Vec<Problem> },
}

fn render_problems(path: &Path, problems: &[Problem]) -> String {
    let lines: Vec<String> = problems.iter().map(|problem| problem.in_file(path).to_string()).collect();
    lines.join("\n")
}

/// One thing wrong with a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub location: Location,
    /// Lowercase, no trailing period, user values in backticks.
    pub message: String,
}

/// Where a [`Problem`] is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// One-based line and column in the file (syntax errors).
    Position { line: usize, column: usize },
    /// A JSON path such as `mcpServers.github.args[0]`; empty for the document itself.
    Path(String),
}

impl Problem {
    /// A problem at a JSON path.
    pub fn at(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self { location: Location::Path(path.into()), message: message.into() }
    }

    /// A problem at a position in the file.
    pub fn position(line: usize, column: usize, message: impl Into<String>) -> Self {
        Self { location: Location::Position { line, column }, message: message.into() }
    }

    /// The JSON path of a semantic problem, `None` for a syntax error.
    pub fn path(&self) -> Option<&str> {
        match &self.location {
            Location::Path(path) => Some(path),
            Location::Position { .. } => None,
        }
    }

    /// Renders as `<file>:<line>:<col>: <message>` or `<file>: <json.path>: <message>`.
    pub fn in_file<'a>(&'a self, file: &'a Path) -> impl fmt::Display + 'a {
        InFile { problem: self, file }
    }
}

/// Without the file name: `<line>:<col>: <message>` or `<json.path>: <message>`.
impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Location::Position { line, column } => write!(f, "{line}:{column}: "),
            Location::Path(path) if path.is_empty() => Ok(()),
            Location::Path(path) => write!(f, "{path}: "),
        }?;
        f.write_str(&self.message)
    }
}

struct InFile<'a> {
    problem: &'a Problem,
    file: &'a Path,
}

impl fmt::Display for InFile<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let separator = match self.problem.location {
            Location::Position { .. } => ":",
            Location::Path(_) => ": ",
        };
        write!(f, "{}{separator}{}", self.file.display(), self.problem)
    }
}
