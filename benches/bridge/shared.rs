//! The shared-upstream rows (`bench --shared`; a small form in `--quick`): the same
//! upstreams run by every bridge itself (UNSHARED) or once, by the hub (SHARED,
//! `"shared": true`), side by side in one run, in two temporary state roots.
//!
//! - Calls: one bridge of each setup with the fixture (and server-everything) as
//!   upstreams; sequential latency and throughput at 32 in flight, the subjects taking
//!   turns as in every other row (`scenarios.rs`).
//! - Floors: the same sequential calls through a bridge whose "hub" is a byte relay
//!   (`relay.rs`) in front of the same upstream: what one more process on the path
//!   costs on this machine, with no hub logic at all.
//! - A fleet of idle bridges (each initialized and its `tools/list` answered): the
//!   upstream processes and the resident memory of bridges, hub and upstreams.
//! - Attach: spawn → first complete `tools/list` of one more bridge, with the fleet (and,
//!   shared, the hub and its upstreams) running.
//!
//! Every hub started here is stopped at the end (`hub stop`, and an idle timeout as a
//! backstop), and every process the setups started is checked to be gone.

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use anyhow::{Context, ensure};
use serde_json::{Map, Value, json};

use crate::{
    processes::{self, Census, ThreadsCpu, cpu_of},
    report::{Row, median, median_f64, mib, ms, quantile, us},
    scenarios::{self, IN_FLIGHT, Pair, Plan, Samples, order},
    subject::{Binaries, BridgeEnv, CpuUsage, Session, echo_call},
};

/// The table's names for the two subjects and their ratio.
pub const SUBJECTS: [&str; 3] = ["unshared", "shared", "shared/unshared"];
/// `bridge.hub.idleTimeout` of the shared setups: the hub ends itself this long after
/// its last bridge should the benchmark die before `hub stop`.
const HUB_IDLE_SECONDS: u64 = 10;

/// How much to do: the full run or the CI smoke.
struct SharedPlan {
    plan: Plan,
    /// Idle bridges of each setup for the process and memory rows.
    fleet: usize,
    /// The fleet's upstreams are the npm servers (else fixtures).
    npm: bool,
    /// Attach runs per setup.
    attach_runs: usize,
    /// Idle time before the memory is read.
    settle: Duration,
}

/// One upstream of a setup: its name under `mcpServers` and its entry (unshared).
type Upstream = (String, Value);

/// The same config twice, in two state roots: as written, and with every upstream shared.
struct Setups {
    unshared: BridgeEnv,
    shared: BridgeEnv,
    names: Vec<String>,
}

impl Setups {
    fn new(binaries: &Binaries, upstreams: &[Upstream]) -> anyhow::Result<Setups> {
        let config = |shared: bool| {
            let servers: Map<String, Value> = upstreams
                .iter()
                .map(|(name, entry)| {
                    let mut entry = entry.clone();
                    entry["shared"] = json!(shared);
                    (name.clone(), entry)
                })
                .collect();
            json!({ "bridge": { "hub": { "idleTimeout": HUB_IDLE_SECONDS } }, "mcpServers": servers })
        };
        Ok(Setups {
            unshared: BridgeEnv::with_config(binaries, config(false))?,
            shared: BridgeEnv::with_config(binaries, config(true))?,
            names: upstreams.iter().map(|(name, _)| name.clone()).collect(),
        })
    }

    fn env(&self, shared: bool) -> &BridgeEnv {
        if shared { &self.shared } else { &self.unshared }
    }

    /// A bridge, initialized, whose first `tools/list` lists a tool of every upstream.
    /// Returns it with spawn → that answer, and the number of tools.
    async fn bridge(&self, shared: bool) -> anyhow::Result<(Session, Duration, usize)> {
        let session = self.env(shared).start(&[]).await?;
        let tools = session.peer().list_all_tools().await.context("a bridge's first tools/list")?;
        let listed = session.started.elapsed();
        for name in &self.names {
            let prefix = format!("{name}__");
            ensure!(
                tools.iter().any(|tool| tool.name.starts_with(&prefix)),
                "the first tools/list of a {} bridge has no tool of `{name}` ({} tools)",
                if shared { "shared" } else { "unshared" },
                tools.len()
            );
        }
        Ok((session, listed, tools.len()))
    }
}

impl Drop for Setups {
    /// A backstop for an early return: the normal path has stopped the hub already.
    fn drop(&mut self) {
        let _ = processes::stop_hubs(&self.shared);
    }
}

/// The rows, the last saying how many processes of each setup outlived the end.
pub async fn rows(binaries: &Binaries, plan: &Plan, quick: bool) -> anyhow::Result<Vec<Row>> {
    let plan = SharedPlan {
        plan: *plan,
        fleet: if quick { 2 } else { 8 },
        npm: !quick,
        attach_runs: plan.cold_runs,
        settle: if quick { Duration::from_millis(500) } else { Duration::from_secs(2) },
    };
    let mut rows = Vec::new();
    let mut left = [0; 2];
    eprintln!("bench: tools/call, unshared vs shared");
    for (count, gone) in left.iter_mut().zip(call_rows(&mut rows, binaries, &plan).await?) {
        *count += gone;
    }
    eprintln!("bench: a fleet of idle bridges, unshared vs shared");
    for (count, gone) in left.iter_mut().zip(fleet_rows(&mut rows, binaries, &plan).await?) {
        *count += gone;
    }
    let mut row = Row::new("processes left 10 s after every bridge closed and `hub stop`");
    row.direct = left[0].to_string();
    row.bridge = left[1].to_string();
    rows.push(row.target("0", left == [0, 0]));
    Ok(rows)
}

/// CPU time so far of the processes behind each subject: (unshared: the bridge's
/// descendants; shared: the hub, the hub's descendants).
struct Behind {
    unshared_upstreams: BTreeSet<u32>,
    hub: BTreeSet<u32>,
    shared_upstreams: BTreeSet<u32>,
}

impl Behind {
    fn read(&self) -> [ThreadsCpu; 3] {
        [cpu_of(&self.unshared_upstreams), cpu_of(&self.hub), cpu_of(&self.shared_upstreams)]
    }
}

/// A row of CPU time per call: "bridge / hub / upstream" of each subject, from the
/// bridges' own figures and the `Behind` readings around the same calls.
fn cpu_row(
    metric: &str,
    bridges: (Option<CpuUsage>, Option<CpuUsage>),
    behind: ([ThreadsCpu; 3], [ThreadsCpu; 3]),
    calls: (usize, usize),
) -> Row {
    let (Some(unshared), Some(shared)) = bridges else { return Row::new(metric) };
    let (before, after) = behind;
    let upstream = after[0].since(&before[0], calls.0);
    let hub = after[1].since(&before[1], calls.1);
    let shared_upstream = after[2].since(&before[2], calls.1);
    let unshared_total = unshared.on_cpu + upstream.on_cpu;
    let shared_total = shared.on_cpu + hub.on_cpu + shared_upstream.on_cpu;
    let mut row = Row::new(metric);
    row.direct = format!("{} / – / {} = {}", us(unshared.on_cpu), us(upstream.on_cpu), us(unshared_total));
    row.bridge = format!(
        "{} / {} / {} = {}",
        us(shared.on_cpu),
        us(hub.on_cpu),
        us(shared_upstream.on_cpu),
        us(shared_total)
    );
    row.ratio = Some(shared_total.as_secs_f64() / unshared_total.as_secs_f64());
    row
}

/// Latency and throughput through one bridge of each setup. Returns the processes left
/// at the end, per setup.
async fn call_rows(
    rows: &mut Vec<Row>,
    binaries: &Binaries,
    plan: &SharedPlan,
) -> anyhow::Result<[usize; 2]> {
    let mut upstreams: Vec<Upstream> = vec![("fx".to_owned(), binaries.fixture_entry("fx", &[]))];
    if let (true, Some(entry)) = (plan.npm, binaries.everything_entry()) {
        upstreams.push(("ev".to_owned(), entry));
    }
    let setups = Setups::new(binaries, &upstreams)?;
    let (mut unshared, _, _) = setups.bridge(false).await?;
    let (mut shared, _, _) = setups.bridge(true).await?;
    let hub = processes::the_hub(&setups.shared).await?;
    let bridge_pids = |session: &Session| session.pid().into_iter().collect::<Vec<_>>();
    let before =
        (Census::take(&bridge_pids(&unshared), None), Census::take(&bridge_pids(&shared), Some(hub.pid)));
    let behind = Behind {
        unshared_upstreams: before.0.upstream_processes.clone(),
        hub: before.1.hub.clone(),
        shared_upstreams: before.1.upstream_processes.clone(),
    };
    for (name, label) in [("fx", "rmcp fixture"), ("ev", "server-everything")] {
        if !setups.names.iter().any(|upstream| upstream == name) {
            continue;
        }
        let tool = format!("{name}__echo");
        let pair = Pair {
            direct: unshared,
            direct_call: echo_call(&tool),
            bridge: shared,
            bridge_call: echo_call(&tool),
        };
        let start = behind.read();
        let latency = scenarios::latency(&pair, &plan.plan).await?;
        let end = behind.read();
        let samples = &latency.samples;
        let calls = (samples.direct.len(), samples.bridge.len());
        let (p50u, p50s) = (quantile(&samples.direct, 0.5), quantile(&samples.bridge, 0.5));
        rows.push(
            Row::durations(
                format!("tools/call echo p50, {label}, one bridge ({} sequential)", calls.0.min(calls.1)),
                p50u,
                p50s,
                us,
            )
            .target("≤ +50 µs", p50s <= p50u + Duration::from_micros(50)),
        );
        let (p99u, p99s) = (quantile(&samples.direct, 0.99), quantile(&samples.bridge, 0.99));
        rows.push(Row::durations(format!("tools/call echo p99, {label}"), p99u, p99s, us));
        rows.push(cpu_row(
            "  CPU time per call: bridge / hub / upstream = total",
            (latency.direct_cpu, latency.bridge_cpu),
            (start, end),
            calls,
        ));
        if name == "fx" {
            let start = behind.read();
            let throughput = scenarios::throughput(&pair, &plan.plan).await?;
            let end = behind.read();
            let (u, s) = (median_f64(&throughput.direct), median_f64(&throughput.bridge));
            let mut row = Row::new(format!(
                "throughput, {IN_FLIGHT} in flight, {label} (median of {} × {} calls)",
                throughput.direct.len().min(throughput.bridge.len()),
                plan.plan.burst_calls
            ));
            row.direct = format!("{u:.0} calls/s");
            row.bridge = format!("{s:.0} calls/s");
            row.ratio = Some(s / u);
            rows.push(row.target("≥ 0.8× unshared", s >= 0.8 * u));
            let calls = |rates: &Vec<f64>| rates.len() * plan.plan.burst_calls;
            rows.push(cpu_row(
                "  CPU time per call at that load: bridge / hub / upstream = total",
                (throughput.direct_cpu, throughput.bridge_cpu),
                (start, end),
                (calls(&throughput.direct), calls(&throughput.bridge)),
            ));
        }
        let Pair { direct, bridge, .. } = pair;
        (unshared, shared) = (direct, bridge);
        // The fixture's floors, and server-everything's floor for the relay the hub is
        // closest to and the one that passes only answers.
        let floors: &[Floor] = match name {
            "fx" => &[Floor::Threads, Floor::Async, Floor::AnswersOnly],
            _ => &[Floor::Async, Floor::AnswersOnly],
        };
        let entry = upstreams.iter().find(|(upstream, _)| upstream == name).map(|(_, entry)| entry.clone());
        let upstream = FloorUpstream { name, label, entry: entry.context("the upstream's entry")? };
        for floor in floors {
            unshared = relay_floor_row(rows, binaries, plan, unshared, &upstream, *floor).await?;
        }
    }
    unshared.close().await;
    shared.close().await;
    finish(&setups, &[before.0], &[before.1]).await
}

/// Which byte relay stands in for the hub in a floor row.
#[derive(Clone, Copy)]
enum Floor {
    /// `bench --hub-relay`: one thread per direction.
    Threads,
    /// `bench --hub-relay-async`: a single-threaded async runtime, as the hub's.
    Async,
    /// `bench --hub-relay-answers`: the fixture's stdin is the bridge's connection, and
    /// only the answers pass the relay.
    AnswersOnly,
}

/// The upstream of a floor row: its name in the config, its label in the table, and its
/// config entry (the relay runs the entry's command).
struct FloorUpstream<'a> {
    name: &'a str,
    label: &'a str,
    entry: Value,
}

/// The floor of the shared rows: the upstream's p50 through `unshared`, and through a
/// bridge whose hub is a process that only copies bytes between the hub's socket and
/// the upstream (`bench --hub-relay`): what one more local process hop costs here.
/// Returns `unshared`.
async fn relay_floor_row(
    rows: &mut Vec<Row>,
    binaries: &Binaries,
    plan: &SharedPlan,
    unshared: Session,
    upstream: &FloorUpstream<'_>,
    floor: Floor,
) -> anyhow::Result<Session> {
    eprintln!("bench: tools/call with a byte relay in place of the hub (the floor)");
    let FloorUpstream { name, label, entry } = upstream;
    let mut entry = entry.clone();
    entry["shared"] = json!(true);
    let command = entry["command"].as_str().context("the upstream's command")?.to_owned();
    let args: Vec<String> = serde_json::from_value(entry["args"].clone()).context("the upstream's args")?;
    let env = BridgeEnv::with_config(binaries, json!({ "mcpServers": { *name: entry } }))?;
    let socket = env.hub_socket();
    let mut relay = tokio::process::Command::new(std::env::current_exe().context("the harness's path")?)
        .arg(match floor {
            Floor::Threads => "--hub-relay",
            Floor::Async => "--hub-relay-async",
            Floor::AnswersOnly => "--hub-relay-answers",
        })
        .arg(&socket)
        .arg(command)
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("start `bench --hub-relay`")?;
    let started = Instant::now();
    while !socket.exists() {
        ensure!(
            started.elapsed() < Duration::from_secs(10),
            "`bench --hub-relay` did not listen within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let relayed = env.start(&[]).await?;
    let tool = format!("{name}__echo");
    let tools = relayed.peer().list_all_tools().await.context("tools/list through the relay")?;
    ensure!(tools.iter().any(|listed| listed.name == tool), "no `{tool}` through the relay");
    let call = echo_call(&tool);
    let pair = Pair { direct: unshared, direct_call: call.clone(), bridge: relayed, bridge_call: call };
    let latency = scenarios::latency(&pair, &plan.plan).await?;
    let samples = &latency.samples;
    let how = match floor {
        Floor::Threads => "a byte-copying relay process in place of the hub",
        Floor::Async => "the relay on a single-threaded async runtime, as the hub",
        Floor::AnswersOnly => "only the answers relayed (the upstream reads the bridge's socket)",
    };
    let metric = format!("  floor: same p50 ({label}) with {how}");
    rows.push(Row::durations(metric, quantile(&samples.direct, 0.5), quantile(&samples.bridge, 0.5), us));
    let Pair { direct, bridge, .. } = pair;
    bridge.close().await;
    if tokio::time::timeout(Duration::from_secs(10), relay.wait()).await.is_err() {
        let _ = relay.kill().await;
    }
    Ok(direct)
}

/// Stop the shared setup's hub and wait for every process of both setups to be gone.
/// Returns how many were left (and were killed), per setup.
async fn finish(setups: &Setups, unshared: &[Census], shared: &[Census]) -> anyhow::Result<[usize; 2]> {
    processes::stop_hubs(&setups.shared)?;
    let all = |censuses: &[Census]| censuses.iter().flat_map(Census::all).collect::<BTreeSet<u32>>();
    Ok([processes::reap(&all(unshared)).await, processes::reap(&all(shared)).await])
}

/// The fleet's upstreams: three npm servers run by `node` from `tests/peers` (as `npx`
/// would, without the network), or fixtures when they are not installed or in the smoke
/// run. Also what they are, for the row labels.
fn fleet_upstreams(
    binaries: &Binaries,
    plan: &SharedPlan,
    scratch: &tempfile::TempDir,
) -> (Vec<Upstream>, String) {
    let scripts = ["server-everything", "server-memory", "server-sequential-thinking"]
        .map(|package| binaries.peer_script(package));
    match scripts {
        [Some(everything), Some(memory), Some(thinking)] if plan.npm => {
            let memory_file = scratch.path().join("memory.jsonl");
            let upstreams = vec![
                ("everything".to_owned(), json!({ "command": "node", "args": [everything, "stdio"] })),
                (
                    "memory".to_owned(),
                    json!({ "command": "node", "args": [memory], "env": { "MEMORY_FILE_PATH": memory_file } }),
                ),
                ("thinking".to_owned(), json!({ "command": "node", "args": [thinking] })),
            ];
            (upstreams, "3 npm servers (everything, memory, sequential-thinking)".to_owned())
        }
        _ => {
            let names = if plan.npm { &["a", "b", "c"][..] } else { &["a"][..] };
            let upstreams =
                names.iter().map(|name| ((*name).to_owned(), binaries.fixture_entry(name, &[]))).collect();
            let what = if plan.npm { "3 fixtures (npm test peers not installed)" } else { "1 rmcp fixture" };
            (upstreams, what.to_owned())
        }
    }
}

/// A fleet of idle bridges per setup: processes and memory; then attach times with the
/// fleet running. Returns the processes left at the end, per setup.
async fn fleet_rows(
    rows: &mut Vec<Row>,
    binaries: &Binaries,
    plan: &SharedPlan,
) -> anyhow::Result<[usize; 2]> {
    let scratch = tempfile::Builder::new().prefix("foxxy-bench-").tempdir().context("create a temp dir")?;
    let (upstreams, what) = fleet_upstreams(binaries, plan, &scratch);
    let setups = Setups::new(binaries, &upstreams)?;
    let mut fleets: [Vec<Session>; 2] = Default::default();
    let mut tools = BTreeSet::new();
    for shared in [false, true] {
        for _ in 0..plan.fleet {
            let (session, _, count) = setups.bridge(shared).await?;
            tools.insert(count);
            fleets[usize::from(shared)].push(session);
        }
    }
    ensure!(tools.len() == 1, "the bridges' first tools/list differ in length: {tools:?}");
    tokio::time::sleep(plan.settle).await;
    let hub = processes::the_hub(&setups.shared).await?;
    let pids = |fleet: &[Session]| fleet.iter().filter_map(Session::pid).collect::<Vec<_>>();
    let censuses = [Census::take(&pids(&fleets[0]), None), Census::take(&pids(&fleets[1]), Some(hub.pid))];
    let (fleet, servers) = (plan.fleet, upstreams.len());
    let mut row =
        Row::new(format!("upstream processes, {fleet} idle bridges × {what} (processes in their trees)"));
    row.direct = format!("{} ({})", censuses[0].upstreams, censuses[0].upstream_processes.len());
    // The hub's own account: its upstreams ready, with the pids found below it.
    let ready = hub
        .upstreams
        .iter()
        .filter(|(_, status, pid)| {
            status == "ready" && pid.is_some_and(|pid| censuses[1].upstream_processes.contains(&pid))
        })
        .count();
    row.bridge = format!(
        "{} ({}) + 1 hub serving {} bridges, {ready} ready",
        censuses[1].upstreams,
        censuses[1].upstream_processes.len(),
        hub.bridges
    );
    let exact =
        censuses[0].upstreams == fleet * servers && censuses[1].upstreams == servers && ready == servers;
    rows.push(
        row.target(if fleet == 8 && servers == 3 { "24 vs 3 + 1 hub" } else { "N×M vs M + 1 hub" }, exact),
    );
    memory_rows(rows, &censuses);

    let mut attach = Samples::default();
    for round in 0..=plan.attach_runs {
        for shared in order(round) {
            let (session, listed, count) = setups.bridge(shared).await?;
            ensure!(tools.contains(&count), "an attaching bridge listed {count} tools, the fleet {tools:?}");
            if round > 0 {
                attach.push(shared, listed);
            }
            session.close().await;
        }
    }
    let (u, s) = (median(&attach.direct), median(&attach.bridge));
    rows.push(
        Row::durations(
            format!(
                "attach: spawn → first complete tools/list of one more bridge, fleet running (median of {})",
                plan.attach_runs
            ),
            u,
            s,
            ms,
        )
        .target("shared ≤ 20 ms", s <= Duration::from_millis(20)),
    );

    let mut closing = [Duration::ZERO; 2];
    for (fleet, took) in fleets.into_iter().zip(&mut closing) {
        let started = Instant::now();
        for session in fleet {
            session.close().await;
        }
        *took = started.elapsed();
    }
    let metric = format!("  closing the fleet: stdin closed → exited, {fleet} bridges one after another");
    rows.push(Row::durations(metric, closing[0], closing[1], ms));
    finish(&setups, &censuses[..1], &censuses[1..]).await
}

/// Resident memory of each setup's fleet: the total against the target, then where it is.
fn memory_rows(rows: &mut Vec<Row>, censuses: &[Census; 2]) {
    let [unshared, shared] = [censuses[0].memory(), censuses[1].memory()];
    let total = |parts: &[(u64, u64); 4], pick: fn(&(u64, u64)) -> u64| parts.iter().map(pick).sum::<u64>();
    let (rss_u, rss_s) = (total(&unshared, |part| part.0), total(&shared, |part| part.0));
    let mut row =
        Row::new("total VmRSS: bridges + hub (and their `__watchdog` helpers) + every upstream process");
    row.direct = mib(rss_u);
    row.bridge = mib(rss_s);
    row.ratio = Some(rss_s as f64 / rss_u as f64);
    rows.push(row.target("shared ≤ 0.25× unshared", rss_s * 4 <= rss_u));
    let mut row = Row::new("  of which bridges / their helpers / hub and its helper / upstream processes");
    row.direct = format!("{} / {} / – / {}", mib(unshared[0].0), mib(unshared[1].0), mib(unshared[3].0));
    row.bridge =
        format!("{} / {} / {} / {}", mib(shared[0].0), mib(shared[1].0), mib(shared[2].0), mib(shared[3].0));
    rows.push(row);
    let (pss_u, pss_s) = (total(&unshared, |part| part.1), total(&shared, |part| part.1));
    let mut row = Row::new("  total PSS (each page shared between processes divided among them)");
    row.direct = mib(pss_u);
    row.bridge = mib(pss_s);
    row.ratio = Some(pss_s as f64 / pss_u as f64);
    rows.push(row);
}
