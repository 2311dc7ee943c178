//! The one place that prints: CLI results to stdout, diagnostics to stderr.
//!
//! Everything else logs through `tracing` into the log file. In `stdio` mode nothing
//! here is called except for a fatal start-up error, because stdout belongs to MCP.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::Write;

/// Print a line of command output.
pub fn line(text: impl std::fmt::Display) {
    println!("{text}");
}

/// Print command output exactly as given (no newline added).
pub fn raw(text: &str) {
    print!("{text}");
    let _ = std::io::stdout().flush();
}

/// Print a diagnostic on stderr.
pub fn error_line(text: impl std::fmt::Display) {
    eprintln!("{text}");
}

/// Render rows as an aligned table with a header, using box-drawing characters like
/// the predecessor's CLI did.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let columns = header.len();
    let mut widths: Vec<usize> = header.iter().map(|title| title.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let rule = |left: &str, middle: &str, right: &str| {
        let parts: Vec<String> = widths.iter().map(|width| "─".repeat(width + 2)).collect();
        format!("{left}{}{right}\n", parts.join(middle))
    };
    let render = |cells: &[String]| {
        let parts: Vec<String> = (0..columns)
            .map(|column| {
                let cell = cells.get(column).map(String::as_str).unwrap_or("");
                let pad = widths[column] - cell.chars().count();
                format!(" {cell}{} ", " ".repeat(pad))
            })
            .collect();
        format!("│{}│\n", parts.join("│"))
    };
    let mut text = rule("╭", "┬", "╮");
    text.push_str(&render(&header.iter().map(|title| (*title).to_owned()).collect::<Vec<_>>()));
    text.push_str(&rule("├", "┼", "┤"));
    for row in rows {
        text.push_str(&render(row));
    }
    text.push_str(&rule("╰", "┴", "╯"));
    text
}
