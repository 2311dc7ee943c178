//! The time-bounded proptest loop every target runs in, and the committed seed corpus.
//!
//! proptest runs a fixed number of cases; fuzzing wants "as many as fit in N seconds".
//! [`fuzz`] gets that by running rounds of cases with fresh random seeds until the budget
//! (`FOXXY_FUZZ_SECONDS` per target, small by default so `cargo test` stays quick) is
//! spent. Each round is an ordinary `TestRunner::run`, so a failure is shrunk to a minimal
//! input as usual, and its seed is appended to `tests/fuzz/regressions/<target>.txt`;
//! every later run replays those seeds first, so a found failure stays a test.

use std::{
    fmt::Debug,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use proptest::{
    strategy::Strategy,
    test_runner::{Config, FileFailurePersistence, TestCaseResult, TestRunner},
};

/// Seconds per target when `FOXXY_FUZZ_SECONDS` is not set: enough for a few thousand
/// cases of the pure targets, short enough for a plain `cargo test`.
const DEFAULT_SECONDS: f64 = 3.0;

/// The time budget of one target.
pub fn budget() -> Duration {
    let seconds = std::env::var("FOXXY_FUZZ_SECONDS")
        .ok()
        .and_then(|value| value.trim().parse::<f64>().ok())
        .filter(|seconds| seconds.is_finite() && *seconds > 0.0)
        .unwrap_or(DEFAULT_SECONDS);
    Duration::from_secs_f64(seconds)
}

/// The repository root (where `Cargo.toml` is).
pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every file of `tests/fuzz/corpus/<kind>/`, sorted by name, as (name, bytes).
pub fn corpus(kind: &str) -> Vec<(String, Vec<u8>)> {
    let dir = root().join("tests/fuzz/corpus").join(kind);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("cannot read the corpus `{}`: {error}", dir.display()))
        .map(|entry| entry.expect("read a corpus entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "the corpus `{}` is empty", dir.display());
    files
        .into_iter()
        .map(|path| {
            let name = path.file_name().expect("a file has a name").to_string_lossy().into_owned();
            let bytes = std::fs::read(&path).expect("read a corpus file");
            (name, bytes)
        })
        .collect()
}

/// Cases run by a target, counted by the test closure (shrinking steps included).
pub struct Counter(AtomicU64);

impl Counter {
    pub const fn new() -> Self {
        Counter(AtomicU64::new(0))
    }

    pub fn tick(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Run `test` on values of `strategy` until the time budget is spent (at least one round).
/// A failing case panics with proptest's report (the minimal failing input) after its
/// seed was saved to `tests/fuzz/regressions/<target>.txt`.
pub fn fuzz<S>(target: &str, strategy: S, test: impl Fn(S::Value) -> TestCaseResult)
where
    S: Strategy,
    S::Value: Debug,
{
    fuzz_with(target, Config::default(), strategy, test);
}

/// [`fuzz`] with a base proptest config (its `cases` is the size of the first round).
pub fn fuzz_with<S>(target: &str, base: Config, strategy: S, test: impl Fn(S::Value) -> TestCaseResult)
where
    S: Strategy,
    S::Value: Debug,
{
    let budget = budget();
    let started = Instant::now();
    let counter = Counter::new();
    let counted = |value: S::Value| {
        counter.tick();
        test(value)
    };
    // The path outlives every runner: proptest wants a `&'static str`.
    let regressions: &'static str = Box::leak(
        root().join("tests/fuzz/regressions").join(format!("{target}.txt")).to_string_lossy().into(),
    );
    let mut round_cases = base.cases.clamp(1, 64);
    let mut rounds = 0u32;
    loop {
        let config = Config {
            cases: round_cases,
            failure_persistence: Some(Box::new(FileFailurePersistence::Direct(regressions))),
            // A shrink that takes longer than this reports what it has.
            max_shrink_time: 60_000,
            max_shrink_iters: 10_000,
            ..base.clone()
        };
        let round_started = Instant::now();
        let mut runner = TestRunner::new(config);
        if let Err(error) = runner.run(&strategy, counted) {
            panic!("fuzz target `{target}` failed after {:.1?}:\n{error}\n{runner}", started.elapsed());
        }
        rounds += 1;
        let left = budget.saturating_sub(started.elapsed());
        if left.is_zero() {
            break;
        }
        // Aim for rounds of about half a second (or what is left), so the budget is
        // kept to within one round without paying for a runner per case.
        let per_case = round_started.elapsed().as_secs_f64() / f64::from(round_cases);
        let wanted = left.as_secs_f64().min(0.5) / per_case.max(1e-6);
        round_cases = (wanted as u32).clamp(1, 100_000);
    }
    report(target, counter.get(), rounds, started.elapsed());
}

/// One summary line per target; `scripts/fuzz` shows them (`--nocapture`).
pub fn report(target: &str, cases: u64, rounds: u32, elapsed: Duration) {
    #[allow(clippy::print_stderr)]
    {
        eprintln!("fuzz {target}: {cases} cases in {:.1}s ({rounds} rounds)", elapsed.as_secs_f64());
    }
}
