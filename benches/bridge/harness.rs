//! `bench`: foxxy-bridge side by side with a direct connection to the same upstream.
//! Not a test: a program that prints a table. Run it with `scripts/bench`,
//! which builds the release binaries it measures; `docs/performance.md` explains each
//! row and records a run.
//!
//! It is a cargo example (built with `--release`), not a `[[bench]]`: building a bench
//! target rebuilds `target/release/foxxy-bridge` with the dev-dependencies' features
//! unified in, and the figures must be those of the binary users get.
//!
//! Files: `subject.rs` (processes and sessions), `scenarios.rs` (the measurements),
//! `report.rs` (statistics, the table), `relay.rs` (the byte-relay floor rows),
//! `guard.rs` (the callgrind regression guard), `shared.rs` and `processes.rs`
//! (unshared vs shared upstreams: the hub).

mod guard;
mod processes;
mod relay;
mod report;
mod scenarios;
mod shared;
mod subject;

use std::{
    path::PathBuf,
    process::{ExitCode, Stdio},
    time::{Duration, Instant},
};

use clap::Parser;
use serde_json::json;

use crate::{
    report::{Row, median, median_f64, mib, ms, quantile, us},
    scenarios::{IN_FLIGHT, Pair, Plan, SLOW_START_MS},
    subject::{Binaries, BridgeEnv, HttpFixture, Memory, Session, echo_call},
};

/// Benchmark foxxy-bridge against a direct connection to the same MCP upstream.
#[derive(Debug, Parser)]
#[command(name = "bench")]
struct Args {
    /// CI smoke mode: a few runs and calls of each scenario (seconds, not minutes); the
    /// figures are indicative only.
    #[arg(long, env = "FOXXY_BENCH_QUICK", value_parser = clap::builder::FalseyValueParser::new())]
    quick: bool,

    /// Regression guard: callgrind instructions per proxied call, compared with
    /// `benches/baseline.json`; exits 1 above the threshold.
    #[arg(long, conflicts_with_all = ["quick", "profile"])]
    guard: bool,

    /// With --guard: write the measured figure into `benches/baseline.json`.
    #[arg(long, requires = "guard")]
    update_baseline: bool,

    /// Only run one bridge with one fixture upstream, make N sequential echo calls after
    /// a warm-up, and exit: a workload for profilers (see --wrap).
    #[arg(long, value_name = "N", conflicts_with = "quick")]
    profile: Option<usize>,

    /// With --profile: run the bridge under this command line, e.g.
    /// "valgrind --tool=callgrind" or "perf record -g -o perf.data --".
    #[arg(long, value_name = "COMMAND", requires = "profile")]
    wrap: Option<String>,

    /// With --profile: reach the fixture over streamable HTTP instead of stdio.
    #[arg(long, requires = "profile")]
    http: bool,

    /// With --profile: run the fixture itself under --wrap, no bridge (for scale).
    #[arg(long, requires = "profile", conflicts_with = "http")]
    direct: bool,

    /// With --profile: the bridge's upstream is server-everything (stdio) instead of
    /// the fixture.
    #[arg(long, requires = "profile", conflicts_with_all = ["http", "direct"])]
    everything: bool,

    /// With --profile: keep 32 calls in flight instead of calling one at a time.
    #[arg(long, requires = "profile")]
    in_flight: bool,

    /// Only the shared-upstream rows: the same upstreams unshared and shared (run by
    /// the hub), side by side. `--quick` runs them too, in a small form, unless `--only`
    /// is given. With --profile: the bridge's fixture upstream is shared (the hub runs
    /// natively).
    #[arg(long, conflicts_with_all = ["guard", "only", "http", "direct", "everything"])]
    shared: bool,

    /// With --profile: run the hub under --wrap instead of the bridge (the fixture is
    /// the bridge's shared upstream; the bridge runs natively).
    #[arg(long, requires = "profile", conflicts_with_all = ["http", "direct", "everything", "shared"])]
    hub: bool,

    /// Run only these groups of rows (comma separated) [default: all].
    #[arg(long, value_enum, value_delimiter = ',', value_name = "SCENARIOS")]
    only: Vec<Scenario>,

    /// Internal: be a byte-copying relay in front of COMMAND (the "floor" rows).
    #[arg(long, hide = true, num_args = 1.., allow_hyphen_values = true, value_name = "COMMAND")]
    relay: Option<Vec<String>>,

    /// Internal: be a byte-copying relay between a hub socket and COMMAND (the shared
    /// rows' floor).
    #[arg(long, hide = true, num_args = 2.., allow_hyphen_values = true, value_name = "SOCKET COMMAND")]
    hub_relay: Option<Vec<String>>,

    /// Internal: `--hub-relay` on a single-threaded async runtime.
    #[arg(long, hide = true, num_args = 2.., allow_hyphen_values = true, value_name = "SOCKET COMMAND")]
    hub_relay_async: Option<Vec<String>>,

    /// Internal: `--hub-relay` for the answers only: COMMAND reads the bridge's
    /// requests from the socket itself.
    #[arg(long, hide = true, num_args = 2.., allow_hyphen_values = true, value_name = "SOCKET COMMAND")]
    hub_relay_answers: Option<Vec<String>>,

    /// The bridge binary to measure [default: `foxxy-bridge` next to this harness, i.e.
    /// target/bench/ from scripts/bench, else target/release/].
    #[arg(long, env = "FOXXY_BENCH_BRIDGE", value_name = "PATH")]
    bridge: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(command) = &args.relay {
        return relay::relay(command);
    }
    if let Some(arguments) = &args.hub_relay {
        return relay::hub_relay(arguments);
    }
    if let Some(arguments) = &args.hub_relay_async {
        return relay::hub_relay_async(arguments);
    }
    if let Some(arguments) = &args.hub_relay_answers {
        return relay::hub_relay_answers(arguments);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("bench: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("bench: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn progress(what: &str) {
    eprintln!("bench: {what}");
}

async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let binaries = Binaries::locate(args.bridge)?;
    if args.guard {
        return guard::run(&binaries, args.update_baseline).await;
    }
    if let Some(calls) = args.profile {
        let wrapper = shell_words::split(args.wrap.as_deref().unwrap_or_default())?;
        let target = match (args.direct, args.http, args.everything, args.shared, args.hub) {
            (true, ..) => guard::Target::Fixture,
            (_, true, ..) => guard::Target::BridgeHttp,
            (_, _, true, ..) => guard::Target::BridgeEverything,
            (.., true, _) => guard::Target::BridgeShared,
            (.., true) => guard::Target::Hub,
            _ => guard::Target::Bridge,
        };
        let elapsed = guard::profile(&binaries, &wrapper, calls, target, args.in_flight).await?;
        println!("{calls} calls in {} ({} per call)", ms(elapsed), us(elapsed / calls.max(1) as u32));
        return Ok(ExitCode::SUCCESS);
    }
    let plan = if args.quick { Plan::QUICK } else { Plan::FULL };
    let started = Instant::now();
    let rows = if args.shared { Vec::new() } else { measure(&binaries, &plan, &args.only).await? };
    let shared = args.shared || (args.quick && args.only.is_empty());
    let shared_rows = if shared { shared::rows(&binaries, &plan, args.quick).await? } else { Vec::new() };
    println!("{}", report::machine(&binaries.bridge));
    if !rows.is_empty() {
        println!("{}", report::table(&rows));
    }
    if !shared_rows.is_empty() {
        println!("{}", report::table_with(&shared_rows, shared::SUBJECTS));
    }
    if args.quick {
        println!("(quick mode: few samples, the figures are indicative only)");
    }
    println!("run took {:.0} s", started.elapsed().as_secs_f64());
    Ok(ExitCode::SUCCESS)
}

/// The groups of rows, in table order; `--only` picks some.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Scenario {
    /// Cold start: spawn → initialize answered.
    Cold,
    /// First complete tools/list with three upstreams, one slow.
    List,
    /// tools/call latency and throughput, fixture over stdio.
    Stdio,
    /// tools/call latency and throughput, server-everything over stdio.
    Everything,
    /// tools/call latency and throughput, fixture over streamable HTTP.
    Http,
    /// The bridge's resident memory with three upstreams.
    Memory,
}

async fn measure(binaries: &Binaries, plan: &Plan, only: &[Scenario]) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    for scenario in <Scenario as clap::ValueEnum>::value_variants() {
        if !only.is_empty() && !only.contains(scenario) {
            continue;
        }
        match scenario {
            Scenario::Cold => cold_rows(&mut rows, binaries, plan).await?,
            Scenario::List => list_rows(&mut rows, binaries, plan).await?,
            Scenario::Stdio => {
                progress("tools/call through the fixture (stdio)");
                let env = BridgeEnv::new(binaries, json!({ "fx": binaries.fixture_entry("fx", &[]) }))?;
                let pair = Pair {
                    direct: Session::spawn(binaries.fixture_command("fx", &[]), Stdio::null()).await?,
                    direct_call: echo_call("echo"),
                    bridge: bridge_session(&env).await?,
                    bridge_call: echo_call("fx__echo"),
                };
                call_rows(&mut rows, "rmcp fixture, stdio", pair, plan, true).await?;
                let fixture = binaries.fixture.to_string_lossy().into_owned();
                relay::relay_rows(&mut rows, &[fixture, "--name".into(), "fx".into()], plan).await?;
            }
            Scenario::Everything => match (binaries.everything_command(), binaries.everything_entry()) {
                (Some(command), Some(entry)) => {
                    progress("tools/call through server-everything (stdio)");
                    let env = BridgeEnv::new(binaries, json!({ "everything": entry }))?;
                    let pair = Pair {
                        direct: Session::spawn(command, Stdio::null()).await?,
                        direct_call: echo_call("echo"),
                        bridge: bridge_session(&env).await?,
                        bridge_call: echo_call("everything__echo"),
                    };
                    call_rows(&mut rows, "server-everything, stdio", pair, plan, false).await?;
                    if let Some(script) = &binaries.everything {
                        let script = script.to_string_lossy().into_owned();
                        relay::relay_rows(&mut rows, &["node".into(), script, "stdio".into()], plan).await?;
                    }
                }
                _ => {
                    let mut row = Row::new("server-everything rows");
                    row.bridge =
                        "not run: tests/peers not installed (scripts/bench installs them)".to_owned();
                    rows.push(row);
                }
            },
            Scenario::Http => {
                progress("tools/call through the fixture (streamable HTTP)");
                let web = HttpFixture::start(binaries, "web").await?;
                let env = BridgeEnv::new(
                    binaries,
                    json!({ "web": { "url": web.url, "transport": "streamablehttp" } }),
                )?;
                let pair = Pair {
                    direct: Session::http(&web.url, false).await?,
                    direct_call: echo_call("echo"),
                    bridge: bridge_session(&env).await?,
                    bridge_call: echo_call("web__echo"),
                };
                call_rows(&mut rows, "rmcp fixture, streamable HTTP", pair, plan, true).await?;
                // Diagnostic: the bridge keeps its HTTP connections alive, rmcp's default
                // client does not. The same direct call over a kept-alive connection
                // tells the cost of the bridge from the cost of connection reuse.
                let pooled = Session::http(&web.url, true).await?;
                let calls = plan.calls / 20;
                let samples =
                    scenarios::sequential(pooled.peer(), &echo_call("echo"), plan.warmup / 20, calls).await?;
                pooled.close().await;
                let mut row = Row::new(format!(
                    "  diagnostic: direct p50 over a kept-alive connection, like the bridge's ({calls} sequential)"
                ));
                row.direct = us(quantile(&samples, 0.5));
                rows.push(row);
            }
            Scenario::Memory => {
                progress("memory");
                memory_rows(&mut rows, &scenarios::memory_figures(binaries, plan).await?);
            }
        }
    }
    Ok(rows)
}

async fn cold_rows(rows: &mut Vec<Row>, binaries: &Binaries, plan: &Plan) -> anyhow::Result<()> {
    progress("cold start");
    let cold = scenarios::cold_start(binaries, plan).await?;
    let (direct, bridge) = (median(&cold.initialize.direct), median(&cold.initialize.bridge));
    rows.push(
        Row::durations(
            format!("cold start: spawn → initialize answered (median of {})", plan.cold_runs),
            direct,
            bridge,
            ms,
        )
        .target("bridge ≤ 5 ms", bridge <= Duration::from_millis(5)),
    );
    let mut row = Row::new("  floor: spawn → exit of `true`");
    row.direct = ms(median(&cold.floor));
    rows.push(row);
    Ok(())
}

async fn list_rows(rows: &mut Vec<Row>, binaries: &Binaries, plan: &Plan) -> anyhow::Result<()> {
    progress("first tools/list with a slow upstream");
    let list = scenarios::first_list(binaries, plan).await?;
    let initialize = median(&list.bridge_initialize);
    let mut row = Row::new("cold start, bridge with 3 upstreams, one slow to start");
    row.bridge = ms(initialize);
    rows.push(row.target("bridge ≤ 5 ms", initialize <= Duration::from_millis(5)));
    let (direct, bridge) = (median(&list.list.direct), median(&list.list.bridge));
    rows.push(
        Row::durations(
            format!(
                "first complete tools/list, 3 stdio upstreams, one starting in {SLOW_START_MS} ms \
                 (direct: that one's spawn → initialized; median of {})",
                plan.list_runs
            ),
            direct,
            bridge,
            ms,
        )
        .target("≤ direct + 10 ms", bridge <= direct + Duration::from_millis(10)),
    );
    Ok(())
}

/// A bridge session whose upstreams are all connected (the first list waits for them).
async fn bridge_session(env: &BridgeEnv) -> anyhow::Result<Session> {
    let session = env.start(&[]).await?;
    session.peer().list_all_tools().await?;
    Ok(session)
}

/// The call rows of one pair. The added-p50 target is the for a fast upstream
/// (the fixture); with server-everything the row is shown for comparison, untargeted.
async fn call_rows(
    rows: &mut Vec<Row>,
    label: &str,
    pair: Pair,
    plan: &Plan,
    p50_targeted: bool,
) -> anyhow::Result<()> {
    let latency = scenarios::latency(&pair, plan).await?;
    let throughput = scenarios::throughput(&pair, plan).await?;
    pair.close().await;

    let samples = &latency.samples;
    let (direct, bridge) = (quantile(&samples.direct, 0.5), quantile(&samples.bridge, 0.5));
    let p50 = Row::durations(
        format!(
            "tools/call echo p50, {label} ({} sequential)",
            samples.direct.len().min(samples.bridge.len())
        ),
        direct,
        bridge,
        us,
    );
    rows.push(match p50_targeted {
        true => p50.target("≤ +50 µs", bridge <= direct + Duration::from_micros(50)),
        false => p50,
    });
    let (direct, bridge) = (quantile(&samples.direct, 0.99), quantile(&samples.bridge, 0.99));
    rows.push(
        Row::durations(format!("tools/call echo p99, {label}"), direct, bridge, us)
            .target("≤ 2× direct", bridge <= direct * 2),
    );
    if let Some(bridge) = latency.bridge_cpu {
        let mut row = Row::new(
            "  CPU time per call of the server process (direct: the upstream; bridge: the bridge alone)",
        );
        row.bridge = us(bridge.on_cpu);
        if let Some(direct) = latency.direct_cpu {
            row.direct = us(direct.on_cpu);
            row.ratio = Some(bridge.on_cpu.as_secs_f64() / direct.on_cpu.as_secs_f64());
        }
        rows.push(row);
        let mut row = Row::new("  context switches per call of that process");
        row.bridge = format!("{:.1}", bridge.switches);
        if let Some(direct) = latency.direct_cpu {
            row.direct = format!("{:.1}", direct.switches);
        }
        rows.push(row);
    }
    let metric = format!(
        "throughput, {IN_FLIGHT} in flight, {label} (median of {} × {} calls)",
        throughput.direct.len().min(throughput.bridge.len()),
        plan.burst_calls
    );
    let (row, direct, bridge) = throughput_row(metric, &throughput);
    rows.push(row.target("≥ 0.8× direct", bridge >= 0.8 * direct));
    throughput_cpu_rows(rows, &throughput);
    Ok(())
}

/// The calls/s of both subjects (medians over rounds) and their ratio, with the medians.
fn throughput_row(metric: impl Into<String>, throughput: &scenarios::Throughput) -> (Row, f64, f64) {
    let (direct, bridge) = (median_f64(&throughput.direct), median_f64(&throughput.bridge));
    let mut row = Row::new(metric);
    row.direct = format!("{direct:.0} calls/s");
    row.bridge = format!("{bridge:.0} calls/s");
    row.ratio = Some(bridge / direct);
    (row, direct, bridge)
}

/// Where the CPU goes at full load: with two cores and the client, the server and the
/// bridge all busy, these decide the throughput ratio.
fn throughput_cpu_rows(rows: &mut Vec<Row>, throughput: &scenarios::Throughput) {
    let (Some(direct), Some(bridge)) = (throughput.direct_cpu, throughput.bridge_cpu) else { return };
    let mut row = Row::new("  CPU time per call at that load: the server process (bridge: the bridge alone)");
    row.direct = us(direct.on_cpu);
    row.bridge = us(bridge.on_cpu);
    rows.push(row);
    if let Some(upstream) = throughput.bridge_upstream_cpu {
        let mut row = Row::new("  CPU time per call at that load: the upstream (bridge: the bridge's child)");
        row.direct = us(direct.on_cpu);
        row.bridge = us(upstream.on_cpu);
        row.ratio = Some(upstream.on_cpu.as_secs_f64() / direct.on_cpu.as_secs_f64());
        rows.push(row);
    }
    let (Some(direct_client), Some(bridge_client)) =
        (throughput.direct_client_cpu, throughput.bridge_client_cpu)
    else {
        return;
    };
    let mut row = Row::new("  CPU time per call at that load: the benchmark's client");
    row.direct = us(direct_client.on_cpu);
    row.bridge = us(bridge_client.on_cpu);
    rows.push(row);
    // Everything each subject's run kept busy, per call: with the machine's cores all
    // busy the throughput is bound by CPU; with cores to spare, by the time a call
    // waits between processes.
    let direct_total = direct.plus(&direct_client);
    let bridge_total = bridge.plus(&bridge_client).plus(&throughput.bridge_upstream_cpu.unwrap_or_default());
    let (direct_rate, bridge_rate) = (median_f64(&throughput.direct), median_f64(&throughput.bridge));
    let mut row = Row::new("  cores kept busy at that load (all processes' CPU per call × calls/s)");
    row.direct = format!("{:.2}", direct_total.on_cpu.as_secs_f64() * direct_rate);
    row.bridge = format!("{:.2}", bridge_total.on_cpu.as_secs_f64() * bridge_rate);
    rows.push(row);
    let mut row = Row::new("  context switches per call at that load: server / upstream / client");
    row.direct = format!("{:.2} / {:.2} / {:.2}", direct.switches, direct.switches, direct_client.switches);
    let upstream = throughput.bridge_upstream_cpu.map_or(f64::NAN, |upstream| upstream.switches);
    row.bridge = format!("{:.2} / {:.2} / {:.2}", bridge.switches, upstream, bridge_client.switches);
    rows.push(row);
}

/// 10 MB, the memory target, in KiB (`/proc` reports KiB).
const TEN_MB_KIB: u64 = 10_000_000 / 1024;

fn memory_rows(rows: &mut Vec<Row>, figures: &scenarios::MemoryFigures) {
    let median_of = |pick: fn(&Memory) -> u64| {
        let mut values: Vec<u64> = figures.loaded.iter().map(pick).collect();
        values.sort_unstable();
        values.get(values.len().saturating_sub(1) / 2).copied().unwrap_or(0)
    };
    let mut idle: Vec<u64> = figures.idle.iter().map(|memory| memory.rss_kib).collect();
    idle.sort_unstable();
    let idle = idle.get(idle.len().saturating_sub(1) / 2).copied().unwrap_or(0);
    let loaded = median_of(|memory| memory.rss_kib);
    for (metric, kib) in [
        ("bridge VmRSS, 3 stdio upstreams, idle after first tools/list", idle),
        ("bridge VmRSS, 3 stdio upstreams, idle after load (steady)", loaded),
    ] {
        let mut row = Row::new(metric);
        row.bridge = mib(kib);
        rows.push(row.target("≤ 10 MB (9.5 MiB)", kib <= TEN_MB_KIB));
    }
    let mut row = Row::new("  of which RssAnon (heap, stacks) / RssFile (mapped code, shared); PSS; threads");
    row.bridge = format!(
        "{} / {}; {}; {} threads",
        mib(median_of(|memory| memory.anon_kib)),
        mib(median_of(|memory| memory.file_kib)),
        mib(median_of(|memory| memory.pss_kib)),
        median_of(|memory| memory.threads)
    );
    rows.push(row);
    let mut row = Row::new("bridge VmHWM (peak), 3 stdio upstreams, after load");
    row.bridge = mib(median_of(|memory| memory.hwm_kib));
    rows.push(row);
    if let Some(fixture) = figures.fixture {
        let mut row = Row::new("for scale: VmRSS of one fixture upstream after the same load");
        row.direct = mib(fixture.rss_kib);
        rows.push(row);
    }
}
