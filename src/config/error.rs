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
            Location::Path(path) => write!(f, "{}: ", EscapeControls(path)),
        }?;
        write!(f, "{}", EscapeControls(&self.message))
    }
}

fn is_line_breaking(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}')
}

/// Writes text with its control characters escaped (`\n`, `\t`, `\u{7f}`), so a key or
/// value from the file that holds a line break cannot split one problem over two lines
/// or hide the rest of its line. Escaping here, where problems are rendered, covers
/// every stage that quotes user text.
struct EscapeControls<'a>(&'a str);

impl fmt::Display for EscapeControls<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(at) = rest.find(is_line_breaking) {
            f.write_str(&rest[..at])?;
            let control = rest[at..].chars().next().unwrap_or_default();
            write!(f, "{}", control.escape_default())?;
            rest = &rest[at + control.len_utf8()..];
        }
        f.write_str(rest)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_text_cannot_break_a_problem_over_lines() {
        let problem = Problem::at("mcpServers.a\nb", "unknown key `x\r\ny\u{2028}z\u{7f}`");
        let rendered = problem.in_file(Path::new("c.json5")).to_string();
        assert_eq!(rendered, "c.json5: mcpServers.a\\nb: unknown key `x\\r\\ny\\u{2028}z\\u{7f}`");
        assert_eq!(rendered.lines().count(), 1);
    }
}
