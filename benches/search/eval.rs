//! `search-eval`: how well, how fast and how small search mode is, over a realistic
//! catalog. Not a test: a program that prints figures. Run it with `scripts/search-eval`,
//! which builds the binaries; `docs/performance.md` records a run.
//!
//! - Quality, in process: the labelled queries of `tests/search/queries.json` against
//!   the catalog of `tests/search/catalog/` (one `tools/list` result per upstream),
//!   ranked by plain BM25 and by the bridge's ranking: recall@5 and MRR.
//! - Cost, in process: index build time, and the latency of a whole
//!   `foxxy__search_tools` answer (ranking and the result JSON) per query.
//! - Through the binary: the bridge serves the catalog from fixture upstreams (one
//!   fixture server per catalog file, `--catalog`); the bytes of the `tools/list`
//!   response in all and in search mode, the bridge's resident memory in each mode, the
//!   round trip of `foxxy__search_tools`, and a check that the binary ranks as the
//!   in-process index does.

use std::{
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
    time::{Duration, Instant},
};

use clap::Parser;
use foxxy_bridge::proxy::{
    Catalog,
    catalog::search::{Ranking, SearchMode},
};
use rmcp::model::{ListToolsResult, Tool};
use serde::Deserialize;
use serde_json::{Value, json, value::RawValue};

#[derive(Debug, Parser)]
#[command(name = "search-eval")]
struct Args {
    /// The foxxy-bridge binary to measure.
    #[arg(long)]
    bridge: PathBuf,
    /// The fixture server that serves the catalog files.
    #[arg(long)]
    fixture: PathBuf,
    /// Directory of catalog files (`<upstream>.json`, each a `tools/list` result).
    #[arg(long, default_value = "tests/search/catalog")]
    catalog: PathBuf,
    /// The labelled queries the ranking was tuned on.
    #[arg(long, default_value = "tests/search/queries.json")]
    queries: PathBuf,
    /// Labelled queries held out from tuning.
    #[arg(long, default_value = "tests/search/holdout.json")]
    holdout: PathBuf,
    /// Print each query's rank under both rankings.
    #[arg(long)]
    verbose: bool,
}

/// One catalog file: the upstream's name, the file, its tools.
type Upstream = (String, PathBuf, Vec<Tool>);

#[derive(Deserialize)]
struct Labelled {
    query: String,
    expected: Vec<String>,
}

#[derive(Deserialize)]
struct Queries {
    queries: Vec<Labelled>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let upstreams = load_catalog(&args.catalog)?;
    let catalog = catalog_of(&upstreams);
    let queries: Queries = serde_json::from_str(&std::fs::read_to_string(&args.queries)?)?;
    let holdout: Queries = serde_json::from_str(&std::fs::read_to_string(&args.holdout)?)?;
    println!(
        "catalog: {} tools over {} upstreams; {} tuning queries, {} held-out queries",
        catalog.tools.len(),
        upstreams.len(),
        queries.queries.len(),
        holdout.queries.len()
    );

    for (set, labelled) in [("tuning", &queries.queries), ("held-out", &holdout.queries)] {
        for ranking in [Ranking::Plain, Ranking::Tuned] {
            let search = SearchMode::build(&catalog, &[], ranking);
            let (recall, mrr) = quality(&catalog, &search, labelled, args.verbose);
            println!("quality, {set} queries, {ranking:?}: recall@5 {recall:.3}, MRR {mrr:.3}");
        }
    }

    let builds: Vec<Duration> = (0..30)
        .map(|_| {
            let start = Instant::now();
            let search = SearchMode::build(&catalog, &[], Ranking::Tuned);
            let elapsed = start.elapsed();
            std::hint::black_box(search);
            elapsed
        })
        .collect();
    println!("index build: median {}", micros(quantile(builds, 0.5)));

    let search = SearchMode::build(&catalog, &[], Ranking::Tuned);
    let mut wall = Vec::new();
    let mut cpu = Vec::new();
    let mut ranking_only = Vec::new();
    for _ in 0..100 {
        for labelled in queries.queries.iter().chain(&holdout.queries) {
            let arguments = RawValue::from_string(json!({ "query": labelled.query }).to_string())?;
            let (start, start_cpu) = (Instant::now(), thread_cpu_time());
            let result = search.search(&catalog, Some(&arguments));
            cpu.push(thread_cpu_time().saturating_sub(start_cpu));
            wall.push(start.elapsed());
            std::hint::black_box(result);
            let start_cpu = thread_cpu_time();
            std::hint::black_box(search.rank(&labelled.query, 8, |_| true));
            ranking_only.push(thread_cpu_time().saturating_sub(start_cpu));
        }
    }
    // Wall time on a shared machine includes preemption; the thread's CPU time does not.
    for (what, samples) in [
        ("search answer (ranking + result JSON), wall time", wall),
        ("search answer (ranking + result JSON), thread CPU time", cpu),
        ("ranking alone, thread CPU time", ranking_only),
    ] {
        println!(
            "{what} ({} queries): p50 {}, p99 {}, max {}",
            samples.len(),
            micros(quantile(samples.clone(), 0.5)),
            micros(quantile(samples.clone(), 0.99)),
            micros(quantile(samples, 1.0)),
        );
    }

    through_the_binary(&args, &upstreams, &catalog, &search, &queries.queries)?;
    Ok(())
}

/// Each catalog file as (upstream name, its tools), in file-name order.
fn load_catalog(dir: &Path) -> Result<Vec<Upstream>, Box<dyn std::error::Error>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "json"))
        .collect();
    files.sort();
    let mut upstreams = Vec::new();
    for path in files {
        let name = path.file_stem().and_then(|stem| stem.to_str()).unwrap_or_default().to_owned();
        let listed: ListToolsResult = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
        upstreams.push((name, std::fs::canonicalize(&path)?, listed.tools));
    }
    Ok(upstreams)
}

/// The catalog the bridge builds from these upstreams (namespaced by upstream name).
fn catalog_of(upstreams: &[Upstream]) -> Catalog {
    let mut catalog = Catalog::default();
    for (name, _, tools) in upstreams {
        for tool in tools {
            let mut tool = tool.clone();
            tool.name = format!("{name}__{}", tool.name).into();
            catalog.tools.push(tool);
            catalog.tool_upstreams.push(name.as_str().into());
        }
    }
    catalog
}

/// recall@5 and MRR (over the first 50) of `search` for `queries`.
fn quality(catalog: &Catalog, search: &SearchMode, queries: &[Labelled], verbose: bool) -> (f64, f64) {
    let mut hits = 0;
    let mut reciprocal = 0.0;
    for labelled in queries {
        let ranked = search.rank(&labelled.query, 50, |_| true);
        let rank = ranked.iter().position(|&document| {
            labelled.expected.iter().any(|name| *catalog.tools[document].name == **name)
        });
        if rank.is_some_and(|rank| rank < 5) {
            hits += 1;
        }
        if let Some(rank) = rank {
            reciprocal += 1.0 / (rank + 1) as f64;
        }
        if verbose {
            let top: Vec<&str> =
                ranked.iter().take(3).map(|&document| &*catalog.tools[document].name).collect();
            let shown = rank.map_or("-".to_owned(), |rank| (rank + 1).to_string());
            println!("  {shown:>3}  {:<55} top: {}", labelled.query, top.join(", "));
        }
    }
    (f64::from(hits) / queries.len() as f64, reciprocal / queries.len() as f64)
}

/// A bridge process driven line by line.
struct Bridge {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    next_id: u64,
    _home: tempfile::TempDir,
}

impl Bridge {
    fn start(args: &Args, upstreams: &[Upstream], mode: &str) -> std::io::Result<Bridge> {
        let home = tempfile::tempdir()?;
        let servers: Vec<String> = upstreams
            .iter()
            .map(|(name, path, _)| {
                let entry = json!({
                    "command": args.fixture,
                    "args": ["--name", name, "--tools", "", "--catalog", path],
                });
                format!("{name:?}: {entry}")
            })
            .collect();
        let config = home.path().join("config.json5");
        let text =
            format!("{{\"mcpServers\": {{{}}}, \"bridge\": {{\"toolMode\": {mode:?}}}}}", servers.join(", "));
        std::fs::write(&config, text)?;
        let mut child = Command::new(&args.bridge)
            .arg("stdio")
            .env("FOXXY_BRIDGE_HOME", home.path())
            .env("FOXXY_BRIDGE_CONFIG", &config)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut bridge = Bridge { child, stdin, stdout, next_id: 1, _home: home };
        bridge.request(
            "initialize",
            json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "search-eval", "version": "1"}}),
        )?;
        writeln!(bridge.stdin, "{}", json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))?;
        Ok(bridge)
    }

    /// Send a request; the response line as written.
    fn request(&mut self, method: &str, params: Value) -> std::io::Result<String> {
        let id = self.next_id;
        self.next_id += 1;
        writeln!(self.stdin, "{}", json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))?;
        self.stdin.flush()?;
        loop {
            let mut line = String::new();
            if self.stdout.read_line(&mut line)? == 0 {
                return Err(std::io::Error::other("the bridge closed stdout"));
            }
            let message: Value = serde_json::from_str(&line).map_err(std::io::Error::other)?;
            if message.get("id") == Some(&json!(id)) && message.get("method").is_none() {
                return Ok(line.trim_end().to_owned());
            }
        }
    }

    fn resident_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn through_the_binary(
    args: &Args,
    upstreams: &[Upstream],
    catalog: &Catalog,
    search: &SearchMode,
    queries: &[Labelled],
) -> Result<(), Box<dyn std::error::Error>> {
    let mut sizes = Vec::new();
    for mode in ["all", "search"] {
        let mut bridge = Bridge::start(args, upstreams, mode)?;
        let listed = bridge.request("tools/list", json!({}))?;
        let count = serde_json::from_str::<Value>(&listed)?["result"]["tools"].as_array().map_or(0, Vec::len);
        sizes.push(listed.len());
        let mut round_trips = Vec::new();
        let mut agree = 0;
        if mode == "search" {
            for _ in 0..5 {
                for labelled in queries {
                    let params = json!({"name": "foxxy__search_tools", "arguments": {"query": labelled.query, "limit": 5}});
                    let start = Instant::now();
                    let answer = bridge.request("tools/call", params)?;
                    round_trips.push(start.elapsed());
                    let answer: Value = serde_json::from_str(&answer)?;
                    let names: Vec<&str> = answer["result"]["structuredContent"]["tools"]
                        .as_array()
                        .map(|tools| tools.iter().filter_map(|tool| tool["name"].as_str()).collect())
                        .unwrap_or_default();
                    let expected: Vec<&str> = search
                        .rank(&labelled.query, 5, |_| true)
                        .into_iter()
                        .map(|document| &*catalog.tools[document].name)
                        .collect();
                    agree += usize::from(names == expected);
                }
            }
        }
        println!(
            "{mode} mode: tools/list {count} tools, {} bytes; bridge RSS {} KiB",
            listed.len(),
            bridge.resident_kib()
        );
        if !round_trips.is_empty() {
            println!(
                "  foxxy__search_tools round trip through the bridge ({} calls): p50 {}, p99 {}; {agree}/{} answers equal the in-process ranking",
                round_trips.len(),
                micros(quantile(round_trips.clone(), 0.5)),
                micros(quantile(round_trips.clone(), 0.99)),
                round_trips.len(),
            );
        }
    }
    println!(
        "tools/list bytes, search mode / all mode: {} / {} = {:.2} %",
        sizes[1],
        sizes[0],
        100.0 * sizes[1] as f64 / sizes[0] as f64
    );
    Ok(())
}

fn quantile(mut values: Vec<Duration>, q: f64) -> Duration {
    values.sort();
    let index = ((values.len() as f64 - 1.0) * q).round() as usize;
    values.get(index).copied().unwrap_or_default()
}

/// CPU time this thread has used (time it spent preempted does not count).
fn thread_cpu_time() -> Duration {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `now` is a valid timespec for the call to fill in.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

fn micros(duration: Duration) -> String {
    format!("{:.1} µs", duration.as_secs_f64() * 1e6)
}
