//! The measurements. Each runs the DIRECT subject and the BRIDGE subject in turns
//! (direct, bridge, bridge, direct, …: the order flips every round, so a drift in
//! machine load hits both alike) and returns the raw samples; `harness.rs` turns them
//! into table rows.

use std::{
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context, bail, ensure};
use futures::StreamExt;
use rmcp::{
    RoleClient,
    model::{CallToolRequestParams, CallToolResult},
    service::Peer,
};
use serde_json::json;

use crate::subject::{Binaries, BridgeEnv, CpuUsage, Memory, Session, cpu_usage, echo_call, memory};

/// How much of everything to do: the full run, or the seconds-long CI smoke.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Cold starts per subject.
    pub cold_runs: usize,
    /// First-list runs per subject (each waits for the slow upstream's 500 ms).
    pub list_runs: usize,
    /// Unmeasured calls per session before sequential latency is measured.
    pub warmup: usize,
    /// Measured sequential calls per subject.
    pub calls: usize,
    /// Sequential calls per turn before the other subject's turn.
    pub block: usize,
    /// Calls per throughput round, and the rounds per subject.
    pub burst_calls: usize,
    pub burst_rounds: usize,
    /// Bridges started for the memory figures.
    pub memory_rounds: usize,
    /// No new latency round starts after this much time on one pair, nor a throughput
    /// round after a third of it: a subject with a pathological per-call time (e.g. a
    /// 40 ms stall) gets fewer samples instead of stretching the run. The table gives
    /// the counts.
    pub budget: Duration,
}

impl Plan {
    pub const FULL: Plan = Plan {
        cold_runs: 20,
        list_runs: 10,
        warmup: 500,
        calls: 5000,
        block: 25,
        burst_calls: 10_000,
        burst_rounds: 11,
        memory_rounds: 3,
        budget: Duration::from_secs(100),
    };
    pub const QUICK: Plan = Plan {
        cold_runs: 3,
        list_runs: 2,
        warmup: 20,
        calls: 200,
        block: 50,
        burst_calls: 500,
        burst_rounds: 1,
        memory_rounds: 1,
        budget: Duration::from_secs(5),
    };
}

/// Calls in flight in the throughput rounds.
pub const IN_FLIGHT: usize = 32;
/// The start delay of the slow upstream in the first-list scenario.
pub const SLOW_START_MS: u64 = 500;
/// Tools the fixture lists by default (`tests/fixture/tools.rs`, `BUILTIN`).
const FIXTURE_TOOLS: usize = 13;

/// The subject order of round `round`: direct first in even rounds.
pub fn order(round: usize) -> [bool; 2] {
    if round.is_multiple_of(2) { [false, true] } else { [true, false] }
}

/// Samples of one metric for both subjects.
#[derive(Debug, Default)]
pub struct Samples {
    pub direct: Vec<Duration>,
    pub bridge: Vec<Duration>,
}

impl Samples {
    pub fn push(&mut self, bridge: bool, sample: Duration) {
        if bridge { self.bridge.push(sample) } else { self.direct.push(sample) }
    }
}

/// Spawn → `initialize` answered, for the fixture itself and the bridge in front of it;
/// and, as the floor any process start pays here, spawn → exit of `true`.
pub struct ColdStart {
    pub initialize: Samples,
    pub floor: Vec<Duration>,
}

pub async fn cold_start(binaries: &Binaries, plan: &Plan) -> anyhow::Result<ColdStart> {
    let env = BridgeEnv::new(binaries, json!({ "fx": binaries.fixture_entry("fx", &[]) }))?;
    let mut result = ColdStart { initialize: Samples::default(), floor: Vec::new() };
    // Round 0 is not recorded: it warms the page cache and creates the state directory.
    for round in 0..=plan.cold_runs {
        for bridge in order(round) {
            let session = if bridge {
                env.start(&[]).await?
            } else {
                Session::spawn(binaries.fixture_command("fx", &[]), Stdio::null()).await?
            };
            if round > 0 {
                result.initialize.push(bridge, session.ready);
            }
            session.close().await;
        }
        let started = Instant::now();
        tokio::process::Command::new("true").status().await.context("run `true`")?;
        if round > 0 {
            result.floor.push(started.elapsed());
        }
    }
    Ok(result)
}

/// The first complete `tools/list` of a bridge with three stdio upstreams, one of them
/// slow to start; direct = that slow upstream's own spawn → initialized.
pub struct FirstList {
    /// direct: the slow fixture's ready time; bridge: spawn → complete tools/list.
    pub list: Samples,
    /// The bridge's spawn → `initialize` answered, in the same runs.
    pub bridge_initialize: Vec<Duration>,
}

pub async fn first_list(binaries: &Binaries, plan: &Plan) -> anyhow::Result<FirstList> {
    let delay = SLOW_START_MS.to_string();
    let slow_args = ["--start-delay-ms", delay.as_str()];
    let env = BridgeEnv::new(
        binaries,
        json!({
            "a": binaries.fixture_entry("a", &[]),
            "b": binaries.fixture_entry("b", &[]),
            "slow": binaries.fixture_entry("slow", &slow_args),
        }),
    )?;
    let mut result = FirstList { list: Samples::default(), bridge_initialize: Vec::new() };
    for round in 0..=plan.list_runs {
        for bridge in order(round) {
            let (session, sample) = if bridge {
                let session = env.start(&[]).await?;
                let tools = session.peer().list_all_tools().await.context("bridge tools/list")?;
                let listed = session.started.elapsed();
                let complete = ["a", "b", "slow"]
                    .iter()
                    .all(|upstream| tools.iter().any(|tool| tool.name == format!("{upstream}__echo")));
                ensure!(
                    complete && tools.len() == 3 * FIXTURE_TOOLS,
                    "the bridge's first tools/list is incomplete: {} tools",
                    tools.len()
                );
                if round > 0 {
                    result.bridge_initialize.push(session.ready);
                }
                (session, listed)
            } else {
                let session =
                    Session::spawn(binaries.fixture_command("slow", &slow_args), Stdio::null()).await?;
                let ready = session.ready;
                (session, ready)
            };
            if round > 0 {
                result.list.push(bridge, sample);
            }
            session.close().await;
        }
    }
    Ok(result)
}

/// A direct session and a bridge session to the same upstream, and the echo call each
/// makes (the bridge's carries the exposed name).
pub struct Pair {
    pub direct: Session,
    pub direct_call: CallToolRequestParams,
    pub bridge: Session,
    pub bridge_call: CallToolRequestParams,
}

impl Pair {
    fn session(&self, bridge: bool) -> &Session {
        if bridge { &self.bridge } else { &self.direct }
    }

    fn subject(&self, bridge: bool) -> (&Peer<RoleClient>, &CallToolRequestParams) {
        if bridge { (self.bridge.peer(), &self.bridge_call) } else { (self.direct.peer(), &self.direct_call) }
    }

    pub async fn close(self) {
        self.direct.close().await;
        self.bridge.close().await;
    }
}

fn text(result: &CallToolResult) -> String {
    result.content.iter().filter_map(|content| content.as_text()).map(|text| text.text.as_str()).collect()
}

pub async fn call(peer: &Peer<RoleClient>, call: &CallToolRequestParams) -> anyhow::Result<CallToolResult> {
    let result = peer.call_tool(call.clone()).await.with_context(|| format!("tools/call {}", call.name))?;
    if result.is_error == Some(true) {
        bail!("tools/call {} answered isError: {}", call.name, text(&result));
    }
    Ok(result)
}

/// Sequential latency, and what the calls cost the server process each subject talks
/// to (the fixture itself, or the bridge alone), per call.
pub struct Latency {
    pub samples: Samples,
    pub direct_cpu: Option<CpuUsage>,
    pub bridge_cpu: Option<CpuUsage>,
}

/// Sequential `tools/call` latency, in blocks that alternate between the subjects.
pub async fn latency(pair: &Pair, plan: &Plan) -> anyhow::Result<Latency> {
    // Both subjects must be proxying the same tool: their answers are identical.
    let direct = text(&call(pair.direct.peer(), &pair.direct_call).await?);
    let bridged = text(&call(pair.bridge.peer(), &pair.bridge_call).await?);
    ensure!(direct == bridged, "direct answered {direct:?} but the bridge answered {bridged:?}");
    for bridge in [false, true] {
        let (peer, request) = pair.subject(bridge);
        for _ in 0..plan.warmup {
            call(peer, request).await?;
        }
    }
    let mut samples = Samples::default();
    samples.direct.reserve(plan.calls);
    samples.bridge.reserve(plan.calls);
    let usage = |session: &Session| session.pid().and_then(cpu_usage);
    let before = (usage(&pair.direct), usage(&pair.bridge));
    let started = Instant::now();
    for round in 0..plan.calls.div_ceil(plan.block) {
        if started.elapsed() > plan.budget {
            break;
        }
        for bridge in order(round) {
            let (peer, request) = pair.subject(bridge);
            for _ in 0..plan.block.min(plan.calls - round * plan.block) {
                let started = Instant::now();
                call(peer, request).await?;
                samples.push(bridge, started.elapsed());
            }
        }
    }
    let per_call =
        |before: Option<CpuUsage>, after: Option<CpuUsage>, calls: usize| Some(after?.per(&before?, calls));
    Ok(Latency {
        direct_cpu: per_call(before.0, usage(&pair.direct), samples.direct.len()),
        bridge_cpu: per_call(before.1, usage(&pair.bridge), samples.bridge.len()),
        samples,
    })
}

/// `calls` sequential calls on one session (no other subject), e.g. for a diagnostic.
pub async fn sequential(
    peer: &Peer<RoleClient>,
    request: &CallToolRequestParams,
    warmup: usize,
    calls: usize,
) -> anyhow::Result<Vec<Duration>> {
    for _ in 0..warmup {
        call(peer, request).await?;
    }
    let mut samples = Vec::with_capacity(calls);
    for _ in 0..calls {
        let started = Instant::now();
        call(peer, request).await?;
        samples.push(started.elapsed());
    }
    Ok(samples)
}

/// `calls` calls with `IN_FLIGHT` outstanding at any time; returns the wall time.
pub async fn burst(
    peer: &Peer<RoleClient>,
    requests: &[CallToolRequestParams],
    calls: usize,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut results = futures::stream::iter(0..calls)
        .map(|i| call(peer, &requests[i % requests.len()]))
        .buffer_unordered(IN_FLIGHT);
    while let Some(result) = results.next().await {
        result?;
    }
    Ok(started.elapsed())
}

/// Calls per second with `IN_FLIGHT` in flight, one figure per round and subject.
#[derive(Debug, Default)]
pub struct Throughput {
    pub direct: Vec<f64>,
    pub bridge: Vec<f64>,
    /// CPU time per call during the bursts: of the server process each subject talks
    /// to (the fixture itself, or the bridge alone), and of this client process.
    pub direct_cpu: Option<CpuUsage>,
    pub bridge_cpu: Option<CpuUsage>,
    pub direct_client_cpu: Option<CpuUsage>,
    pub bridge_client_cpu: Option<CpuUsage>,
    /// The upstream behind the bridge (the bridge's child processes), per call.
    pub bridge_upstream_cpu: Option<CpuUsage>,
}

/// CPU time so far of the direct children of `pid` (an upstream behind the bridge).
fn children_cpu(pid: u32) -> CpuUsage {
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    children
        .split_whitespace()
        .filter_map(|child| child.parse().ok())
        .filter_map(cpu_usage)
        .fold(CpuUsage::default(), |sum, usage| sum.plus(&usage))
}

pub async fn throughput(pair: &Pair, plan: &Plan) -> anyhow::Result<Throughput> {
    let mut result = Throughput::default();
    // Summed over the bursts, per subject: (server, client) CPU.
    let mut spent = [(CpuUsage::default(), CpuUsage::default()); 2];
    let mut upstream_spent = CpuUsage::default();
    // Adds what was used between two readings, when both could be taken.
    let add = |total: &mut CpuUsage, before: Option<CpuUsage>, after: Option<CpuUsage>| {
        if let (Some(before), Some(after)) = (before, after) {
            *total = total.plus(&after.per(&before, 1));
        }
    };
    let started = Instant::now();
    for round in 0..plan.burst_rounds {
        if round > 0 && started.elapsed() > plan.budget / 3 {
            break;
        }
        for bridge in order(round) {
            let (peer, request) = pair.subject(bridge);
            let server = pair.session(bridge).pid();
            let upstream = |pid: Option<u32>| pid.filter(|_| bridge).map(children_cpu);
            let before = (server.and_then(cpu_usage), cpu_usage(std::process::id()));
            let upstream_before = upstream(server);
            let elapsed = burst(peer, std::slice::from_ref(request), plan.burst_calls).await?;
            let after = (server.and_then(cpu_usage), cpu_usage(std::process::id()));
            add(&mut upstream_spent, upstream_before, upstream(server));
            let total = &mut spent[usize::from(bridge)];
            add(&mut total.0, before.0, after.0);
            add(&mut total.1, before.1, after.1);
            let rate = plan.burst_calls as f64 / elapsed.as_secs_f64();
            if bridge { result.bridge.push(rate) } else { result.direct.push(rate) }
        }
    }
    let per_call = |usage: CpuUsage, calls: usize| {
        (usage.on_cpu > Duration::ZERO).then(|| usage.per(&CpuUsage::default(), calls))
    };
    let calls = |rates: &Vec<f64>| rates.len() * plan.burst_calls;
    result.direct_cpu = per_call(spent[0].0, calls(&result.direct));
    result.direct_client_cpu = per_call(spent[0].1, calls(&result.direct));
    result.bridge_cpu = per_call(spent[1].0, calls(&result.bridge));
    result.bridge_client_cpu = per_call(spent[1].1, calls(&result.bridge));
    result.bridge_upstream_cpu = per_call(upstream_spent, calls(&result.bridge));
    Ok(result)
}

/// The bridge's own memory with three stdio upstreams.
#[derive(Debug, Default)]
pub struct MemoryFigures {
    /// VmRSS once the first tools/list is answered and the bridge has idled 1 s.
    pub idle: Vec<Memory>,
    /// VmRSS and VmHWM (peak) after the load, idled 1 s.
    pub loaded: Vec<Memory>,
    /// One fixture upstream measured the same way, after the same load (for scale).
    pub fixture: Option<Memory>,
}

const SETTLE: Duration = Duration::from_secs(1);

/// Load for the memory figures: sequential calls, then a burst at `IN_FLIGHT`.
async fn memory_load(
    peer: &Peer<RoleClient>,
    requests: &[CallToolRequestParams],
    plan: &Plan,
) -> anyhow::Result<()> {
    for i in 0..plan.calls.min(2000) {
        call(peer, &requests[i % requests.len()]).await?;
    }
    burst(peer, requests, plan.burst_calls).await?;
    Ok(())
}

pub async fn memory_figures(binaries: &Binaries, plan: &Plan) -> anyhow::Result<MemoryFigures> {
    let names = ["a", "b", "c"];
    let servers: serde_json::Map<String, serde_json::Value> =
        names.iter().map(|name| ((*name).to_owned(), binaries.fixture_entry(name, &[]))).collect();
    let env = BridgeEnv::new(binaries, servers.into())?;
    let requests: Vec<_> = names.iter().map(|name| echo_call(&format!("{name}__echo"))).collect();
    let mut figures = MemoryFigures::default();
    for _ in 0..plan.memory_rounds {
        let session = env.start(&[]).await?;
        let pid = session.pid().context("bridge pid")?;
        let tools = session.peer().list_all_tools().await.context("bridge tools/list")?;
        ensure!(
            tools.len() == 3 * FIXTURE_TOOLS,
            "expected every upstream listed, got {} tools",
            tools.len()
        );
        tokio::time::sleep(SETTLE).await;
        figures.idle.push(memory(pid).context("read /proc/PID/status of the bridge")?);
        memory_load(session.peer(), &requests, plan).await?;
        tokio::time::sleep(SETTLE).await;
        figures.loaded.push(memory(pid).context("read /proc/PID/status of the bridge")?);
        session.close().await;
    }
    let fixture = Session::spawn(binaries.fixture_command("a", &[]), Stdio::null()).await?;
    memory_load(fixture.peer(), &[echo_call("echo")], plan).await?;
    tokio::time::sleep(SETTLE).await;
    figures.fixture = fixture.pid().and_then(memory);
    fixture.close().await;
    Ok(figures)
}
