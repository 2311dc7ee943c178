//! Statistics over samples, the result table (printed as Markdown, so a run can be
//! pasted into `docs/performance.md` as is), and the machine description that goes
//! with it.

use std::{fmt::Write as _, process::Command, time::Duration};

/// The value at quantile `q` (0..=1) by the nearest-rank method.
pub fn quantile(samples: &[Duration], q: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len().max(1));
    sorted.get(rank - 1).copied().unwrap_or_default()
}

pub fn median(samples: &[Duration]) -> Duration {
    quantile(samples, 0.5)
}

pub fn median_f64(samples: &[f64]) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len().saturating_sub(1) / 2).copied().unwrap_or(f64::NAN)
}

pub fn ms(duration: Duration) -> String {
    format!("{:.1} ms", duration.as_secs_f64() * 1e3)
}

pub fn us(duration: Duration) -> String {
    format!("{:.1} µs", duration.as_secs_f64() * 1e6)
}

/// `bridge - direct`, signed, in the unit of `show`.
pub fn added(direct: Duration, bridge: Duration, show: fn(Duration) -> String) -> String {
    if bridge >= direct {
        format!("+{}", show(bridge - direct))
    } else {
        format!("−{}", show(direct - bridge))
    }
}

pub fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// One line of the result table.
#[derive(Debug, Default)]
pub struct Row {
    pub metric: String,
    pub direct: String,
    pub bridge: String,
    /// bridge / direct.
    pub ratio: Option<f64>,
    /// bridge − direct, formatted.
    pub added: String,
    /// The issue's target for this row, if it sets one.
    pub target: &'static str,
    /// Whether this run meets the target (reported, never asserted).
    pub met: Option<bool>,
}

impl Row {
    pub fn new(metric: impl Into<String>) -> Row {
        Row { metric: metric.into(), ..Row::default() }
    }

    /// A row comparing two durations.
    pub fn durations(
        metric: impl Into<String>,
        direct: Duration,
        bridge: Duration,
        show: fn(Duration) -> String,
    ) -> Row {
        Row {
            metric: metric.into(),
            direct: show(direct),
            bridge: show(bridge),
            ratio: Some(bridge.as_secs_f64() / direct.as_secs_f64()),
            added: added(direct, bridge, show),
            ..Row::default()
        }
    }

    pub fn target(mut self, target: &'static str, met: bool) -> Row {
        self.target = target;
        self.met = Some(met);
        self
    }
}

/// The table as aligned Markdown.
pub fn table(rows: &[Row]) -> String {
    table_with(rows, ["direct", "bridge", "bridge/direct"])
}

/// The table with other names for the two subjects and their ratio (`Row::direct`,
/// `Row::bridge`, `Row::ratio`), e.g. unshared and shared.
pub fn table_with(rows: &[Row], subjects: [&str; 3]) -> String {
    let [direct, bridge, ratio] = subjects;
    let header = ["metric", direct, bridge, ratio, "added", "target", "met"];
    let cells: Vec<[String; 7]> = rows
        .iter()
        .map(|row| {
            [
                row.metric.clone(),
                row.direct.clone(),
                row.bridge.clone(),
                row.ratio.map_or_else(String::new, |ratio| format!("{ratio:.2}×")),
                row.added.clone(),
                row.target.to_owned(),
                row.met.map_or_else(String::new, |met| if met { "yes" } else { "NO" }.to_owned()),
            ]
        })
        .collect();
    let mut widths = header.map(|title| title.chars().count());
    for row in &cells {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut line = String::from("|");
        for (cell, width) in cells.iter().zip(widths) {
            let pad = width - cell.chars().count();
            let _ = write!(line, " {cell}{} |", " ".repeat(pad));
        }
        line
    };
    let mut out = line(&header.map(str::to_owned));
    out.push('\n');
    out.push_str(&line(&widths.map(|width| "-".repeat(width))));
    out.push('\n');
    for row in &cells {
        out.push_str(&line(row));
        out.push('\n');
    }
    out
}

/// Where and when this run happened, one `key: value` line each.
pub fn machine(bridge: &std::path::Path) -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name").and_then(|rest| rest.split_once(':')))
        .map_or("unknown", |(_, model)| model.trim());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|kib| kib.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or_else(|| "unknown".to_owned(), |kib| format!("{:.1} GiB", kib as f64 / 1024.0 / 1024.0));
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let run = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()
            .filter(|output| output.status.success())
            .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
    };
    let commit = run("git", &["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".to_owned());
    let dirty = run("git", &["status", "--porcelain", "--untracked-files=no"])
        .is_some_and(|status| !status.is_empty());
    let date = run("date", &["-u", "+%Y-%m-%d %H:%M UTC"]).unwrap_or_else(|| "unknown".to_owned());
    let kernel = run("uname", &["-r"]).unwrap_or_else(|| "unknown".to_owned());
    let size = std::fs::metadata(bridge).map_or(0, |meta| meta.len());
    format!(
        "date: {date}\ncommit: {commit}{}\nmachine: {cores} CPUs, {cpu}, {memory} RAM, Linux {kernel}\nbridge: {} ({:.1} MiB)\n",
        if dirty { " (with uncommitted changes)" } else { "" },
        bridge.display(),
        size as f64 / 1024.0 / 1024.0,
    )
}
