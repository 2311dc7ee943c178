//! The regression guard, and the profiling run it is built on.
//!
//! Wall-clock figures on a shared 2-core CI machine swing by tens of percent; the
//! number of instructions the bridge executes per proxied call does not. The guard
//! runs the bridge under `valgrind --tool=callgrind` twice, once with `SHORT` and once
//! with `LONG` sequential echo calls after the same start and warm-up, and divides the
//! difference of the two totals by the difference of the call counts: start-up and
//! shutdown cancel out, what remains is the cost of one call (both directions, every
//! thread of the bridge; the upstream and the client run natively, uncounted). It
//! repeats that `PAIRS` times and takes the median, and fails when the figure exceeds
//! `max_ratio` × the committed baseline (`benches/baseline.json`).

use std::{path::Path, process::ExitCode, time::Duration};

use anyhow::{Context, bail, ensure};
use serde_json::{Value, json};

use crate::{
    scenarios::{burst, call},
    subject::{Binaries, BridgeEnv, HttpFixture, Session, echo_call},
};

const BASELINE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/baseline.json");
/// Calls made before anything is counted (connections, caches, allocator pools warm).
const WARMUP: usize = 50;
const SHORT: usize = 100;
const LONG: usize = 600;
const PAIRS: usize = 3;
/// The threshold written into a new baseline file.
const DEFAULT_MAX_RATIO: f64 = 2.0;

/// What `--profile` runs under the wrapper.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The bridge, with the fixture upstream over stdio.
    Bridge,
    /// The bridge, with the fixture upstream over streamable HTTP.
    BridgeHttp,
    /// The bridge, with server-everything (Node) as its stdio upstream.
    BridgeEverything,
    /// The fixture itself, no bridge: the cost of one plain rmcp server, for scale.
    Fixture,
    /// The bridge, with the fixture as its shared upstream (the hub runs natively).
    BridgeShared,
    /// The hub, with the fixture as its shared upstream; the bridge runs natively.
    Hub,
}

/// Start `target` under `wrapper` (e.g. a profiler; the bridge always has one fixture
/// upstream), make `WARMUP` and then `calls` echo calls (sequential, or `IN_FLIGHT` at a
/// time if `in_flight`), and close it.
/// Returns the wall time of the `calls`.
pub async fn profile(
    binaries: &Binaries,
    wrapper: &[String],
    calls: usize,
    target: Target,
    in_flight: bool,
) -> anyhow::Result<Duration> {
    let web = match target {
        Target::BridgeHttp => Some(HttpFixture::start(binaries, "fx").await?),
        _ => None,
    };
    let upstream = match (&web, target) {
        (Some(web), _) => json!({ "url": web.url, "transport": "streamablehttp" }),
        (None, Target::BridgeEverything) => {
            binaries.everything_entry().context("server-everything is not installed (tests/peers)")?
        }
        (None, Target::BridgeShared | Target::Hub) => {
            json!({ "command": binaries.fixture, "args": ["--name", "fx"], "shared": true })
        }
        (None, _) => binaries.fixture_entry("fx", &[]),
    };
    let env = BridgeEnv::new(binaries, json!({ "fx": upstream }))?;
    let hub = match target {
        Target::Hub => Some(start_hub(&env, wrapper).await?),
        _ => None,
    };
    let (session, request) = if target == Target::Fixture {
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut command = tokio::process::Command::new(program);
                command.args(args).arg(&binaries.fixture);
                command
            }
            None => tokio::process::Command::new(&binaries.fixture),
        };
        command.args(["--name", "fx"]);
        (Session::spawn(command, std::process::Stdio::null()).await?, echo_call("echo"))
    } else {
        let session = env.start(if hub.is_some() { &[] } else { wrapper }).await?;
        // The first list waits until the upstream is connected, so every call is routed.
        session.peer().list_all_tools().await.context("tools/list")?;
        (session, echo_call("fx__echo"))
    };
    for _ in 0..WARMUP {
        call(session.peer(), &request).await?;
    }
    let started = std::time::Instant::now();
    if in_flight {
        burst(session.peer(), std::slice::from_ref(&request), calls).await?;
    } else {
        for _ in 0..calls {
            call(session.peer(), &request).await?;
        }
    }
    let elapsed = started.elapsed();
    ensure!(session.close().await, "the profiled process did not exit after stdin closed");
    if matches!(target, Target::BridgeShared | Target::Hub) {
        crate::processes::stop_hubs(&env)?;
    }
    if let Some(mut hub) = hub {
        let exited = tokio::time::timeout(Duration::from_secs(60), hub.wait()).await;
        ensure!(exited.is_ok(), "the profiled hub did not exit after `hub stop`");
    }
    Ok(elapsed)
}

/// `foxxy-bridge hub serve` of `env` under `wrapper`, accepting bridges (the bridges of
/// `env` use it instead of starting one).
async fn start_hub(env: &BridgeEnv, wrapper: &[String]) -> anyhow::Result<tokio::process::Child> {
    let serve = env.command_line(&["hub", "serve"]);
    let mut command = match wrapper.split_first() {
        Some((program, args)) => {
            let mut command = tokio::process::Command::new(program);
            command.args(args).arg(serve.get_program());
            command
        }
        None => tokio::process::Command::new(serve.get_program()),
    };
    command.args(serve.get_args()).stdin(std::process::Stdio::null()).kill_on_drop(true);
    for (key, value) in serve.get_envs() {
        match value {
            Some(value) => command.env(key, value),
            None => command.env_remove(key),
        };
    }
    let hub = command.spawn().context("start the hub under the wrapper")?;
    let started = std::time::Instant::now();
    while crate::processes::hubs(env).await?.is_empty() {
        ensure!(started.elapsed() < Duration::from_secs(60), "the profiled hub did not accept within 60 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(hub)
}

/// Total instructions (`Ir`) of a bridge run with `calls` calls under callgrind.
async fn instructions(binaries: &Binaries, out: &Path, calls: usize) -> anyhow::Result<u64> {
    let wrapper = [
        "valgrind".to_owned(),
        "--tool=callgrind".to_owned(),
        format!("--callgrind-out-file={}", out.display()),
    ];
    profile(binaries, &wrapper, calls, Target::Bridge, false).await?;
    let text = std::fs::read_to_string(out).with_context(|| format!("read {}", out.display()))?;
    text.lines()
        .find_map(|line| line.strip_prefix("totals:").or_else(|| line.strip_prefix("summary:")))
        .and_then(|total| total.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("no `totals:` line in {}", out.display()))
}

/// Instructions per proxied call: the median over `PAIRS` short/long pairs.
pub async fn instructions_per_call(binaries: &Binaries) -> anyhow::Result<f64> {
    let dir = tempfile::Builder::new().prefix("foxxy-guard-").tempdir()?;
    let mut figures = Vec::new();
    for pair in 0..PAIRS {
        let short = instructions(binaries, &dir.path().join(format!("short.{pair}.out")), SHORT).await?;
        let long = instructions(binaries, &dir.path().join(format!("long.{pair}.out")), LONG).await?;
        let figure = (long as f64 - short as f64) / (LONG - SHORT) as f64;
        eprintln!("bench: guard pair {}/{PAIRS}: {figure:.0} instructions per call", pair + 1);
        figures.push(figure);
    }
    Ok(crate::report::median_f64(&figures))
}

/// `scripts/bench --guard`: measure, compare with the baseline (or replace it), and
/// say so in one line.
pub async fn run(binaries: &Binaries, update: bool) -> anyhow::Result<ExitCode> {
    let valgrind = std::process::Command::new("valgrind").arg("--version").output();
    let version = match valgrind {
        Ok(output) if output.status.success() => String::from_utf8_lossy(&output.stdout).trim().to_owned(),
        _ => bail!("valgrind is needed for the guard; hint: apt-get install valgrind"),
    };
    let figure = instructions_per_call(binaries).await?;
    let existing: Option<Value> =
        std::fs::read_to_string(BASELINE).ok().and_then(|text| serde_json::from_str(&text).ok());
    let max_ratio =
        existing.as_ref().and_then(|baseline| baseline["max_ratio"].as_f64()).unwrap_or(DEFAULT_MAX_RATIO);
    if update {
        let baseline = json!({
            "instructions_per_call": figure.round() as u64,
            "max_ratio": max_ratio,
            "recorded_with": format!("{version}; {}", crate::report::machine(&binaries.bridge).replace('\n', "; ").trim_end_matches("; ")),
            "how": "scripts/bench --guard measures; scripts/bench --guard --update-baseline rewrites this file",
        });
        std::fs::write(BASELINE, format!("{}\n", serde_json::to_string_pretty(&baseline)?))
            .with_context(|| format!("write {BASELINE}"))?;
        println!("guard: {figure:.0} instructions per proxied call, written to benches/baseline.json");
        return Ok(ExitCode::SUCCESS);
    }
    let Some(baseline) = existing.as_ref().and_then(|baseline| baseline["instructions_per_call"].as_f64())
    else {
        bail!("no baseline in `{BASELINE}`; hint: run `scripts/bench --guard --update-baseline`");
    };
    let limit = baseline * max_ratio;
    let verdict = if figure > limit { "FAIL" } else { "ok" };
    println!(
        "guard: {verdict}: {figure:.0} instructions per proxied call (baseline {baseline:.0}, limit {max_ratio}× = {limit:.0}, {:.2}× baseline)",
        figure / baseline
    );
    if figure < baseline / max_ratio {
        println!("guard: the bridge got much cheaper; consider `scripts/bench --guard --update-baseline`");
    }
    Ok(if figure > limit { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}
