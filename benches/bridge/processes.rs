//! The processes behind a set of bridges, read from `/proc` (Linux only): each bridge's
//! whole tree of descendants (an upstream started by `npx` or a shell may be several
//! processes), the hub a shared setup runs, their resident memory and CPU time, and the
//! hub's own report (`hub status --json`) and end (`hub stop`). Also what is left once
//! everything was told to end.
//!
//! Does not own what is measured with them (`shared.rs`).

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    time::{Duration, Instant},
};

use anyhow::Context;
use serde_json::Value;

use crate::subject::{BridgeEnv, CpuUsage, memory, thread_cpu_usage};

/// How long the processes of a setup may take to exit once told to.
const EXIT_WAIT: Duration = Duration::from_secs(10);
const EXIT_POLL: Duration = Duration::from_millis(50);

/// The parent of every process, from `/proc/PID/stat`.
fn parents() -> HashMap<u32, u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return HashMap::new() };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // `pid (comm) state ppid …`; comm may hold spaces and parentheses.
            let after = &stat[stat.rfind(')')? + 1..];
            let ppid = after.split_whitespace().nth(1)?.parse().ok()?;
            Some((pid, ppid))
        })
        .collect()
}

/// Every descendant of the processes in `roots` (not the roots themselves).
fn descendants(roots: &BTreeSet<u32>, parents: &HashMap<u32, u32>) -> BTreeSet<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for (&pid, &ppid) in parents {
        children.entry(ppid).or_default().push(pid);
    }
    let mut found = BTreeSet::new();
    let mut pending: Vec<u32> = roots.iter().copied().collect();
    while let Some(pid) = pending.pop() {
        for &child in children.get(&pid).into_iter().flatten() {
            if found.insert(child) {
                pending.push(child);
            }
        }
    }
    found
}

/// Whether `pid` runs (a zombie does not).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        let state = stat.rfind(')').and_then(|end| stat[end + 1..].split_whitespace().next());
        state.is_some_and(|state| state != "Z" && state != "X")
    })
}

/// Whether `pid` is a bridge's (or the hub's) own helper process, `foxxy-bridge
/// __watchdog`, which ends the upstreams' process groups should its parent die.
fn is_helper(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|cmdline| cmdline.split(|&byte| byte == 0).any(|arg| arg == b"__watchdog"))
}

/// The processes of one setup: its bridges, its hub (shared setups), their helper
/// processes, and every other process below them (the upstreams, whether a bridge or
/// the hub started them).
#[derive(Debug, Clone)]
pub struct Census {
    pub bridges: BTreeSet<u32>,
    /// The bridges' helpers.
    pub helpers: BTreeSet<u32>,
    /// The hub and its helper.
    pub hub: BTreeSet<u32>,
    /// Every process below a bridge or the hub, other than the hub and the helpers.
    pub upstream_processes: BTreeSet<u32>,
    /// Of those, the ones a bridge or the hub started itself: the upstreams.
    pub upstreams: usize,
}

impl Census {
    pub fn take(bridges: &[u32], hub: Option<u32>) -> Census {
        let parents = parents();
        let mut roots: BTreeSet<u32> = bridges.iter().copied().collect();
        roots.extend(hub);
        let helpers_of = |roots: &BTreeSet<u32>| -> BTreeSet<u32> {
            parents
                .iter()
                .filter(|(pid, parent)| roots.contains(parent) && is_helper(**pid))
                .map(|(pid, _)| *pid)
                .collect()
        };
        let mut hub: BTreeSet<u32> = hub.into_iter().collect();
        hub.extend(helpers_of(&hub));
        let bridges: BTreeSet<u32> = bridges.iter().copied().collect();
        let helpers = helpers_of(&bridges);
        // The hub is a child of the bridge that started it (until that bridge exits):
        // it and its tree are counted once, as the hub's.
        let mut upstream_processes = descendants(&roots, &parents);
        upstream_processes
            .retain(|pid| !hub.contains(pid) && !bridges.contains(pid) && !helpers.contains(pid));
        let upstreams = upstream_processes
            .iter()
            .filter(|pid| parents.get(pid).is_some_and(|parent| roots.contains(parent)))
            .count();
        Census { bridges, helpers, hub, upstream_processes, upstreams }
    }

    /// Every process of the setup.
    pub fn all(&self) -> BTreeSet<u32> {
        let mut all = self.bridges.clone();
        all.extend(&self.helpers);
        all.extend(&self.hub);
        all.extend(&self.upstream_processes);
        all
    }

    /// Resident memory, summed: (bridges, their helpers, hub with its helper, upstream
    /// processes), each (VmRSS, PSS).
    pub fn memory(&self) -> [(u64, u64); 4] {
        let sum = |pids: &BTreeSet<u32>| {
            pids.iter()
                .filter_map(|&pid| memory(pid))
                .fold((0, 0), |(rss, pss), memory| (rss + memory.rss_kib, pss + memory.pss_kib))
        };
        [sum(&self.bridges), sum(&self.helpers), sum(&self.hub), sum(&self.upstream_processes)]
    }
}

/// CPU time so far of every live thread of `pids`, by (process, thread) id.
#[derive(Debug, Clone, Default)]
pub struct ThreadsCpu(BTreeMap<(u32, u32), CpuUsage>);

/// A [`ThreadsCpu`] reading of `pids` now.
pub fn cpu_of(pids: &BTreeSet<u32>) -> ThreadsCpu {
    let threads = pids.iter().filter_map(|&pid| Some((pid, thread_cpu_usage(pid)?)));
    ThreadsCpu(
        threads
            .flat_map(|(pid, threads)| threads.into_iter().map(move |(tid, usage)| ((pid, tid), usage)))
            .collect(),
    )
}

impl ThreadsCpu {
    /// The usage from reading `earlier` to this one, per one of `count` operations. Each
    /// thread is compared with itself: a thread that exited meanwhile (Node's workers
    /// come and go) is in neither sum, so its time cannot make the processes seem to
    /// have used less than before (its last moments are not counted).
    pub fn since(&self, earlier: &ThreadsCpu, count: usize) -> CpuUsage {
        let spent = self.0.iter().fold(CpuUsage::default(), |sum, (thread, now)| {
            let before = earlier.0.get(thread).copied().unwrap_or_default();
            sum.plus(&now.per(&before, 1))
        });
        spent.per(&CpuUsage::default(), count)
    }
}

/// One running hub, from `hub status --json`.
#[derive(Debug, Clone)]
pub struct Hub {
    pub pid: u32,
    pub bridges: u64,
    /// `(name, status, pid)` of each shared upstream.
    pub upstreams: Vec<(String, String, Option<u32>)>,
}

/// The hubs running for `env`'s state root (`foxxy-bridge hub status --json`).
pub async fn hubs(env: &BridgeEnv) -> anyhow::Result<Vec<Hub>> {
    let output = tokio::process::Command::from(env.command_line(&["hub", "status", "--json"]))
        .output()
        .await
        .context("run `foxxy-bridge hub status --json`")?;
    anyhow::ensure!(
        output.status.success(),
        "`hub status --json` failed: {}",
        String::from_utf8_lossy(&output.stderr).trim()
    );
    let hubs: Vec<Value> = serde_json::from_slice(&output.stdout).context("parse `hub status --json`")?;
    hubs.iter()
        .map(|hub| {
            let pid = |value: &Value| value.as_u64().and_then(|pid| u32::try_from(pid).ok());
            let upstreams = hub["upstreams"].as_array().map(Vec::as_slice).unwrap_or_default();
            Ok(Hub {
                pid: pid(&hub["pid"]).context("a hub without a pid in `hub status --json`")?,
                bridges: hub["bridges"].as_u64().unwrap_or(0),
                upstreams: upstreams
                    .iter()
                    .map(|upstream| {
                        let text = |key: &str| upstream[key].as_str().unwrap_or_default().to_owned();
                        (text("name"), text("status"), pid(&upstream["pid"]))
                    })
                    .collect(),
            })
        })
        .collect()
}

/// The one hub of `env`, which must run.
pub async fn the_hub(env: &BridgeEnv) -> anyhow::Result<Hub> {
    let mut hubs = hubs(env).await?;
    anyhow::ensure!(
        hubs.len() == 1,
        "expected one hub for the shared setup, `hub status` lists {}",
        hubs.len()
    );
    Ok(hubs.remove(0))
}

/// `foxxy-bridge hub stop` in `env`'s state root (blocking: it also runs from `Drop`).
pub fn stop_hubs(env: &BridgeEnv) -> anyhow::Result<()> {
    let output = env.command_line(&["hub", "stop"]).output().context("run `foxxy-bridge hub stop`")?;
    anyhow::ensure!(
        output.status.success(),
        "`hub stop` failed: {}",
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(())
}

/// Wait up to a few seconds for `pids` to exit; kill what is left (they are the
/// benchmark's own processes) and return how many were left.
pub async fn reap(pids: &BTreeSet<u32>) -> usize {
    let deadline = Instant::now() + EXIT_WAIT;
    loop {
        let left: Vec<u32> = pids.iter().copied().filter(|&pid| alive(pid)).collect();
        if left.is_empty() {
            return 0;
        }
        if Instant::now() >= deadline {
            for &pid in &left {
                let Ok(pid_t) = libc::pid_t::try_from(pid) else { continue };
                // SAFETY: kill(2) with a pid this benchmark started; no memory is involved.
                unsafe { libc::kill(pid_t, libc::SIGKILL) };
            }
            return left.len();
        }
        tokio::time::sleep(EXIT_POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(micros: u64) -> CpuUsage {
        CpuUsage { on_cpu: Duration::from_micros(micros), switches: 1.0 }
    }

    #[test]
    fn a_thread_that_exits_between_readings_does_not_make_the_usage_shrink() {
        // Process 7: its main thread (7) runs on; a worker (8) with much time exits, and a
        // new worker (9) starts.
        let before = ThreadsCpu(BTreeMap::from([((7, 7), usage(1_000)), ((7, 8), usage(50_000))]));
        let after = ThreadsCpu(BTreeMap::from([((7, 7), usage(3_000)), ((7, 9), usage(500))]));
        let spent = after.since(&before, 10);
        assert_eq!(spent.on_cpu, Duration::from_micros((2_000 + 500) / 10));
    }
}
