//! Fuzz target: what the bridge does with a client's stdin, through the real binary.
//!
//! One `foxxy-bridge stdio` (no upstreams, a temporary `FOXXY_BRIDGE_HOME`) is started and
//! initialized per test; each case writes a batch of generated lines — garbage bytes,
//! truncated JSON, JSON of the wrong shape, JSON-RPC requests, notifications and
//! responses with every kind of id — then a `ping`, and reads until the ping is answered
//! and every request that must be answered was. Properties, from JSON-RPC 2.0:
//!
//! - the process stays alive, never prints a panic, and answers the ping;
//! - every stdout line is a JSON object with `"jsonrpc": "2.0"`, a response with exactly
//!   one of `result`/`error` (an error with an integer code and a message) or a
//!   notification;
//! - every request with a usable id (string or integer) gets exactly one response with
//!   that id; a message whose id cannot be used (null, fractional, object, ...) or that
//!   is not a message at all gets exactly one error with `"id": null`; a notification or
//!   a response from the client gets nothing; nothing else is answered;
//! - a line that is not JSON gets `-32700` with `"id": null`, one per line.
//!
//! When a case kills the bridge, the next case starts a new one, so shrinking still works.
//!
//! A second target sends the batch to a fresh bridge before `initialize` (then
//! `initialize` closes the batch instead of the ping), with the same properties.

use std::{
    collections::BTreeMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use proptest::{prelude::*, test_runner::Config};
use serde_json::{Value, json};

use self::{
    bridge::{Bridge, INITIALIZED, initialize_key, initialize_request},
    generate::batch,
    oracle::{Key, Owed, check_line, owed},
};
use crate::harness::{corpus, fuzz_with};

mod bridge;
mod generate;
mod oracle;

/// How long one case may wait for the answers it is owed.
const ANSWER_LIMIT: Duration = Duration::from_secs(10);
/// `bridge.maxMessageBytes` of the fuzzed bridge: small, so over-long lines are cheap.
const FUZZ_MAX_BYTES: usize = 65536;
/// The default `bridge.maxMessageBytes` (32 MiB), for the corpus run.
const DEFAULT_MAX_BYTES: usize = 32 * 1024 * 1024;

#[derive(Debug, Default, Clone, Copy)]
struct Stats {
    lines: u64,
    results: u64,
    errors: u64,
    parse_errors: u64,
}

thread_local! {
    // proptest runs every case of a test on the test's own thread.
    static STATS: std::cell::Cell<Stats> = std::cell::Cell::new(Stats::default());
}

fn report_stats(target: &str) {
    let stats = STATS.with(std::cell::Cell::get);
    #[allow(clippy::print_stderr)]
    {
        eprintln!(
            "fuzz {target}: {} lines sent; answered with {} results, {} errors ({} parse errors)",
            stats.lines, stats.results, stats.errors, stats.parse_errors
        );
    }
}

/// Sends `batch` and a ping, reads what comes back, and checks it against [`owed`].
fn exchange(bridge: &mut Bridge, batch: &[u8]) -> Result<(), String> {
    exchange_then(bridge, batch, Barrier::Ping)
}

/// What closes a batch: a ping, or (before the session started) `initialize`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Barrier {
    Ping,
    Initialize,
}

fn exchange_then(bridge: &mut Bridge, batch: &[u8], barrier: Barrier) -> Result<(), String> {
    let mut exchange = Exchange::new(owed(batch, bridge.max_bytes));
    STATS.with(|stats| {
        let mut counted = stats.get();
        counted.lines += batch.iter().filter(|&&byte| byte == b'\n').count() as u64;
        stats.set(counted);
    });
    let mut input = batch.to_vec();
    let key = match barrier {
        Barrier::Ping => {
            input.extend_from_slice(&bridge.ping());
            bridge.ping_key()
        }
        Barrier::Initialize => {
            // A session the batch started itself refuses the closing `initialize`.
            exchange.refusable = batch.split(|&byte| byte == b'\n').any(is_initialize_request);
            input.extend_from_slice(&initialize_request());
            initialize_key()
        }
    };
    if let Err(error) = bridge.write(&input) {
        return Err(format!("cannot write to the bridge ({error}); {}", bridge.state()));
    }
    exchange.read_until(bridge, &key, true)?;
    if barrier == Barrier::Initialize {
        bridge.write(INITIALIZED).map_err(|error| format!("cannot write to the bridge ({error})"))?;
    }
    // Answers that may or may not come (a cancelled request, an ambiguous message) are
    // given one more round trip, and what is still out after that may arrive later.
    if exchange.owed.responses.iter().any(|(key, (_, max))| exchange.count(key) < *max)
        || barrier == Barrier::Initialize
    {
        let ping = bridge.ping();
        bridge.write(&ping).map_err(|error| format!("cannot write to the bridge ({error})"))?;
        let key = bridge.ping_key();
        exchange.read_until(bridge, &key, false)?;
    }
    for (key, (_, max)) in &exchange.owed.responses {
        let left = max.saturating_sub(exchange.count(key));
        if left > 0 {
            *bridge.late.entry(key.clone()).or_default() += left;
        }
    }
    if exchange.parse_errors != exchange.owed.parse_errors {
        return Err(format!(
            "{} parse errors (-32700) for {} lines that are not JSON",
            exchange.parse_errors, exchange.owed.parse_errors
        ));
    }
    let stderr = bridge.stderr();
    if stderr.contains("panicked") {
        return Err(format!("the bridge panicked: {stderr}"));
    }
    if !bridge.alive() {
        return Err(format!("the bridge died; {}", bridge.state()));
    }
    Ok(())
}

/// The bookkeeping of one [`exchange`].
struct Exchange {
    owed: Owed,
    received: BTreeMap<Key, usize>,
    parse_errors: usize,
    /// Whether the barrier may be refused with `-32600`: a closing `initialize` after the
    /// batch already started the session.
    refusable: bool,
}

impl Exchange {
    fn new(owed: Owed) -> Exchange {
        Exchange { owed, received: BTreeMap::new(), parse_errors: 0, refusable: false }
    }

    fn count(&self, key: &Key) -> usize {
        self.received.get(key).copied().unwrap_or(0)
    }

    fn missing(&self) -> Vec<(&Key, usize)> {
        (self.owed.responses.iter())
            .filter(|(key, (min, _))| self.count(key) < *min)
            .map(|(key, (min, _))| (key, min - self.count(key)))
            .collect()
    }

    /// Reads until the request with `barrier` is answered with a result (and, with
    /// `owed_first`, until every response owed is in), checking each line.
    fn read_until(&mut self, bridge: &mut Bridge, barrier: &Key, owed_first: bool) -> Result<(), String> {
        let deadline = Instant::now() + ANSWER_LIMIT;
        let mut pinged = false;
        while !(pinged && (!owed_first || self.missing().is_empty())) {
            let Some(line) = bridge.next_line(deadline) else {
                return Err(format!(
                    "no answer within {ANSWER_LIMIT:?} ({barrier:?} answered: {pinged}; still owed: {:?}); {}",
                    self.missing(),
                    bridge.state()
                ));
            };
            let Some((key, code)) = check_line(&line)? else { continue };
            if key == *barrier {
                if code.is_some() && !(self.refusable && code == Some(-32600)) {
                    return Err(format!("{barrier:?} failed: {}", String::from_utf8_lossy(&line)));
                }
                pinged = true;
                continue;
            }
            let (_, max) = self.owed.responses.get(&key).copied().unwrap_or((0, 0));
            if self.count(&key) >= max {
                // Perhaps the late answer to an earlier batch.
                if let Some(late) = bridge.late.get_mut(&key).filter(|late| **late > 0) {
                    *late -= 1;
                    continue;
                }
                return Err(format!(
                    "response {} for {key:?}, which is owed at most {max}: {}",
                    self.count(&key) + 1,
                    String::from_utf8_lossy(&line)
                ));
            }
            *self.received.entry(key).or_default() += 1;
            self.parse_errors += usize::from(code == Some(-32700));
            STATS.with(|stats| {
                let mut counted = stats.get();
                match code {
                    None => counted.results += 1,
                    Some(code) => {
                        counted.errors += 1;
                        counted.parse_errors += u64::from(code == -32700);
                    }
                }
                stats.set(counted);
            });
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Targets.

/// The committed seeds (`tests/fuzz/corpus/messages/*.jsonl`, each file one batch) and
/// the ones too big to commit, against a bridge with the default config.
#[test]
fn messages_corpus() {
    let mut bridge = Bridge::start_initialized(&json!({ "mcpServers": {} }), DEFAULT_MAX_BYTES);
    let mut seeds = corpus("messages");
    let huge = "\u{1F98A}".repeat(256 * 1024);
    seeds.push((
        "generated: 1 MB argument".to_owned(),
        format!("{}\n", json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "x", "arguments": {"a": huge}}}))
            .into_bytes(),
    ));
    seeds.push((
        "generated: 1 MB method name".to_owned(),
        format!("{}\n", json!({"jsonrpc": "2.0", "id": 2, "method": huge})).into_bytes(),
    ));
    let deep = format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"ping\",\"params\":{}1{}}}\n",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    seeds.push(("generated: arrays nested 100000 deep".to_owned(), deep.into_bytes()));
    seeds.push((
        "generated: 100000 open brackets".to_owned(),
        format!("{}\n", "[".repeat(100_000)).into_bytes(),
    ));
    for (name, mut batch) in seeds {
        if !batch.ends_with(b"\n") {
            batch.push(b'\n');
        }
        if let Err(problem) = exchange(&mut bridge, &batch) {
            panic!("seed `{name}`: {problem}");
        }
    }
    report_stats("messages-corpus");
}

#[test]
fn messages_fuzz() {
    let config = json!({ "mcpServers": {}, "bridge": { "maxMessageBytes": FUZZ_MAX_BYTES } });
    let bridge: Mutex<Option<Bridge>> = Mutex::new(None);
    let base = Config { cases: 16, ..Config::default() };
    fuzz_with("messages", base, batch(), |lines| {
        let mut slot = bridge.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // A bridge that a previous case killed is replaced, so shrinking can go on.
        if !slot.as_mut().is_some_and(Bridge::alive) {
            *slot = Some(Bridge::start_initialized(&config, FUZZ_MAX_BYTES));
        }
        let bridge = slot.as_mut().expect("just started");
        let result = exchange(bridge, &lines.join());
        if result.is_err() {
            // Whatever state it is in, the next case gets a fresh one.
            *slot = None;
        }
        result.map_err(TestCaseError::fail)
    });
    report_stats("messages");
}

/// Whether `line` is an `initialize` request (which may start a session).
fn is_initialize_request(line: &[u8]) -> bool {
    let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(line.trim_ascii()) else {
        return false;
    };
    object.get("method") == Some(&json!("initialize")) && object.contains_key("id")
}

/// Input before `initialize`: whatever comes, `initialize` still starts the session, and
/// the lines before it are answered as in a session (notifications and responses
/// before it are dropped). The committed seeds
/// (`tests/fuzz/corpus/messages-before-initialize/*.jsonl`) run first, each on a new bridge.
#[test]
fn messages_before_initialize() {
    let config = json!({ "mcpServers": {}, "bridge": { "maxMessageBytes": FUZZ_MAX_BYTES } });
    for (name, mut batch) in corpus("messages-before-initialize") {
        if !batch.ends_with(b"\n") {
            batch.push(b'\n');
        }
        let mut bridge = Bridge::start(&config, FUZZ_MAX_BYTES);
        if let Err(problem) = exchange_then(&mut bridge, &batch, Barrier::Initialize) {
            panic!("seed `{name}`: {problem}");
        }
    }
    let base = Config { cases: 8, ..Config::default() };
    fuzz_with("messages-before-initialize", base, batch(), |lines| {
        let mut bridge = Bridge::start(&config, FUZZ_MAX_BYTES);
        exchange_then(&mut bridge, &lines.join(), Barrier::Initialize).map_err(TestCaseError::fail)
    });
    report_stats("messages-before-initialize");
}
