//! Tests of the token store: file names and modes, reads and writes, temp-file clean-up,
//! and the guarantees across processes (lock exclusion, a killed holder, atomic writes
//! under `kill -9`, no lost update), which re-run this test binary as the other process.

use std::fs;
use std::io::{BufRead, BufReader, Lines};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Instant;

use super::entry::sample;
use super::*;

const URL: &str = "https://mcp.example.com/mcp";
const ISSUER: &str = "https://auth.example.com";
const OTHER_ISSUER: &str = "https://login.example.org/tenant";
const OTHER_URL: &str = "https://other.example.com/sse";

fn store() -> (tempfile::TempDir, TokenStore) {
    let root = tempfile::tempdir().unwrap();
    let store = TokenStore::new(root.path().join("auth"));
    (root, store)
}

fn write(store: &TokenStore, entry: &TokenEntry) {
    let lock = store.lock(&entry.server_url, Duration::from_secs(10)).unwrap();
    store.write(&lock, entry).unwrap();
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn temp_files(dir: &Path) -> Vec<String> {
    let names = fs::read_dir(dir).unwrap().map(|entry| entry.unwrap().file_name().into_string().unwrap());
    names.filter(|name| name.starts_with(files::TEMP_PREFIX)).collect()
}

fn set_age(path: &Path, age: Duration) {
    let file = fs::File::options().append(true).open(path).unwrap();
    file.set_modified(SystemTime::now() - age).unwrap();
}

#[test]
fn file_names_are_stable_and_shared_by_spellings_of_one_url() {
    let (_root, store) = store();
    // Pinned: a changed name would sign every user out after an upgrade.
    let path = store.entry_path(URL, ISSUER).unwrap();
    assert_eq!(path, store.dir().join("9a3070f0675f13d0.json"));
    assert_eq!(store.entry_path("HTTPS://mcp.example.com/mcp/#top", ISSUER).unwrap(), path);
    assert_ne!(store.entry_path(URL, OTHER_ISSUER).unwrap(), path);
    let lock = store.lock("https://MCP.example.com:443/mcp/", Duration::from_secs(1)).unwrap();
    assert_eq!(lock.path(), store.dir().join("7a930d27a3f5c464.lock"));
    assert_eq!(lock.url(), URL);
}

#[test]
fn directory_and_files_are_private() {
    let (_root, store) = store();
    write(&store, &sample(URL, ISSUER));
    assert_eq!(mode(store.dir()), 0o700);
    assert_eq!(mode(&store.entry_path(URL, ISSUER).unwrap()), 0o600);
    assert_eq!(mode(&store.dir().join("7a930d27a3f5c464.lock")), 0o600);
}

#[test]
fn an_existing_wider_directory_is_tightened() {
    let (_root, store) = store();
    fs::create_dir_all(store.dir()).unwrap();
    fs::set_permissions(store.dir(), fs::Permissions::from_mode(0o755)).unwrap();
    let _lock = store.lock(URL, Duration::from_secs(1)).unwrap();
    assert_eq!(mode(store.dir()), 0o700);
}

#[test]
fn an_entry_round_trips_with_its_url_canonicalized() {
    let (_root, store) = store();
    let mut entry = sample(URL, ISSUER);
    entry.server_url = "HTTPS://MCP.example.com/mcp/".to_owned();
    write(&store, &entry);
    assert_eq!(store.read(URL, Some(ISSUER)).unwrap(), Some(sample(URL, ISSUER)));
    let text = fs::read_to_string(store.entry_path(URL, ISSUER).unwrap()).unwrap();
    assert!(text.starts_with("{\n  \"version\": 1,\n") && text.ends_with("}\n"), "{text}");
}

#[test]
fn unknown_fields_are_ignored() {
    let (_root, store) = store();
    let mut json = serde_json::to_value(sample(URL, ISSUER)).unwrap();
    json["added_by_a_newer_bridge"] = serde_json::json!({ "anything": [1, 2] });
    fs::create_dir_all(store.dir()).unwrap();
    fs::write(store.entry_path(URL, ISSUER).unwrap(), json.to_string()).unwrap();
    assert_eq!(store.read(URL, Some(ISSUER)).unwrap(), Some(sample(URL, ISSUER)));
}

#[test]
fn read_by_issuer_and_latest() {
    let (_root, store) = store();
    write(&store, &sample(URL, ISSUER));
    write(&store, &sample(URL, OTHER_ISSUER));
    write(&store, &sample(OTHER_URL, ISSUER));
    let latest = |url: &str| store.read(url, None).unwrap().map(|entry| entry.issuer);

    set_age(&store.entry_path(URL, OTHER_ISSUER).unwrap(), Duration::from_secs(3600));
    assert_eq!(latest(URL).as_deref(), Some(ISSUER));
    set_age(&store.entry_path(URL, ISSUER).unwrap(), Duration::from_secs(7200));
    assert_eq!(latest(URL).as_deref(), Some(OTHER_ISSUER));
    assert_eq!(latest("https://mcp.example.com/mcp/").as_deref(), Some(OTHER_ISSUER));

    assert_eq!(store.read(URL, Some(ISSUER)).unwrap().unwrap().issuer, ISSUER);
    assert_eq!(store.read(OTHER_URL, None).unwrap().unwrap().server_url, OTHER_URL);
    assert_eq!(store.read(URL, Some("https://unknown.example.com")).unwrap(), None);
    assert_eq!(store.read("https://unknown.example.com/mcp", None).unwrap(), None);
}

#[test]
fn a_missing_directory_reads_as_empty_and_is_not_created() {
    let (_root, store) = store();
    assert_eq!(store.read(URL, Some(ISSUER)).unwrap(), None);
    assert_eq!(store.read(URL, None).unwrap(), None);
    assert!(store.list().unwrap().is_empty());
    assert_eq!(store.stamp(URL), None);
    assert!(!store.dir().exists());
}

#[test]
fn corrupt_files_are_errors_that_leak_no_token() {
    let (_root, store) = store();
    fs::create_dir_all(store.dir()).unwrap();
    let path = store.entry_path(URL, ISSUER).unwrap();
    #[track_caller]
    fn check(store: &TokenStore, path: &Path, contents: &str, issuer: Option<&str>, reason: &str) {
        fs::write(path, contents).unwrap();
        let error = store.read(URL, issuer).unwrap_err();
        let StoreError::Corrupt { path: error_path, .. } = &error else { panic!("{error:?}") };
        assert_eq!(error_path, path);
        let message = error.to_string();
        assert!(message.contains(reason) && !message.contains("SECRET"), "{message}");
    }
    let valid = serde_json::to_value(sample(URL, ISSUER)).unwrap();
    let with = |pointer: &str, value: serde_json::Value| {
        let mut json = valid.clone();
        *json.pointer_mut(pointer).unwrap() = value;
        json.to_string()
    };

    check(&store, &path, "{\"access_token\": \"at-SECRET", Some(ISSUER), "EOF while parsing");
    check(&store, &path, &with("/access_token", 5.into()), None, "invalid type: integer `5`");
    check(&store, &path, &with("/expires_in", "at-SECRET-x".into()), None, "invalid type: string \"…\"");
    check(
        &store,
        &path,
        &with("/client/source", "rt-SECRET-x".into()),
        None,
        "unknown variant `…`, expected",
    );
    check(&store, &path, &with("/version", 2.into()), Some(ISSUER), "format version `2`");
    let copied = with("/server_url", OTHER_URL.into());
    check(&store, &path, &copied, Some(ISSUER), "do not match its file name");

    // Not JSON at all: cannot be attributed to a URL, so "latest" skips it; `list` shows it.
    fs::write(&path, "garbage").unwrap();
    assert_eq!(store.read(URL, None).unwrap(), None);
    let listed = store.list().unwrap();
    assert!(
        matches!(listed.as_slice(), [(listed_path, Err(StoreError::Corrupt { .. }))] if *listed_path == path)
    );
}

#[test]
fn remove_deletes_every_issuer_of_one_url() {
    let (_root, store) = store();
    write(&store, &sample(URL, ISSUER));
    write(&store, &sample(URL, OTHER_ISSUER));
    write(&store, &sample(OTHER_URL, ISSUER));
    let lock = store.lock(URL, Duration::from_secs(1)).unwrap();
    assert_eq!(store.remove(&lock, "https://mcp.example.com/mcp/").unwrap(), 2);
    assert_eq!(store.remove(&lock, URL).unwrap(), 0);
    assert_eq!(store.read(URL, None).unwrap(), None);
    assert!(store.read(OTHER_URL, Some(ISSUER)).unwrap().is_some());
    assert!(store.dir().join("7a930d27a3f5c464.lock").exists(), "lock files are never deleted");
}

#[test]
fn write_and_remove_refuse_the_lock_of_another_url_or_store() {
    let (_root, store) = store();
    let other_lock = store.lock(OTHER_URL, Duration::from_secs(1)).unwrap();
    assert!(matches!(store.write(&other_lock, &sample(URL, ISSUER)), Err(StoreError::WrongLock)));
    assert!(matches!(store.remove(&other_lock, URL), Err(StoreError::WrongLock)));

    let (_other_root, other_store) = self::store();
    let foreign_lock = other_store.lock(URL, Duration::from_secs(1)).unwrap();
    assert!(matches!(store.write(&foreign_lock, &sample(URL, ISSUER)), Err(StoreError::WrongLock)));
    assert_eq!(store.read(URL, None).unwrap(), None);
}

#[test]
fn list_reports_every_entry_sorted_by_path() {
    let (_root, store) = store();
    write(&store, &sample(URL, ISSUER));
    write(&store, &sample(OTHER_URL, OTHER_ISSUER));
    let listed = store.list().unwrap();
    let mut expected = vec![
        (store.entry_path(URL, ISSUER).unwrap(), sample(URL, ISSUER)),
        (store.entry_path(OTHER_URL, OTHER_ISSUER).unwrap(), sample(OTHER_URL, OTHER_ISSUER)),
    ];
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    let listed: Vec<_> = listed.into_iter().map(|(path, entry)| (path, entry.unwrap())).collect();
    assert_eq!(listed, expected);
}

#[test]
fn stamp_changes_after_a_write() {
    let (_root, store) = store();
    write(&store, &sample(URL, ISSUER));
    write(&store, &sample(OTHER_URL, ISSUER));
    set_age(&store.entry_path(URL, ISSUER).unwrap(), Duration::from_secs(60));
    let before = store.stamp(URL).unwrap();
    assert!(before < store.stamp(OTHER_URL).unwrap(), "stamps are per URL");
    write(&store, &sample(URL, OTHER_ISSUER));
    let after = store.stamp("https://mcp.example.com/mcp/").unwrap();
    assert!(after > before, "{after:?} > {before:?}");
}

#[test]
fn temp_files_of_dead_writers_are_removed_by_the_rule() {
    let (_root, store) = store();
    write(&store, &sample(OTHER_URL, ISSUER));
    let (url_hash, own_pid) = (hash16(URL), std::process::id());
    let dead = format!(".tmp-{url_hash}-{}-0", own_pid + 1);
    let ours = format!(".tmp-{url_hash}-{own_pid}-999999");
    let other_url = format!(".tmp-{}-1-0", hash16(OTHER_URL));
    let old_other_url = format!(".tmp-{}-1-1", hash16(OTHER_URL));
    for name in [&dead, &ours, &other_url, &old_other_url] {
        fs::write(store.dir().join(name), "partial").unwrap();
    }
    set_age(&store.dir().join(&old_other_url), STALE_TEMP_AGE + Duration::from_secs(1));

    // Rule 1 (another process's temp file of the locked URL) and rule 2 (old, any URL).
    write(&store, &sample(URL, ISSUER));
    let mut left = temp_files(store.dir());
    left.sort();
    assert_eq!(left, [other_url.clone(), ours.clone()]);
    // `list` applies rule 2 only; with a stale age of 0 every temp file is stale.
    store.list().unwrap();
    assert_eq!(temp_files(store.dir()).len(), 2);
    store.clone().with_stale_temp_age(Duration::ZERO).list().unwrap();
    assert_eq!(temp_files(store.dir()), Vec::<String>::new());
}

#[test]
fn a_failed_write_leaves_no_temp_file() {
    let (_root, store) = store();
    let lock = store.lock(URL, Duration::from_secs(1)).unwrap();
    // A directory where the entry should be makes the rename fail.
    fs::create_dir(store.entry_path(URL, ISSUER).unwrap()).unwrap();
    let error = store.write(&lock, &sample(URL, ISSUER)).unwrap_err();
    assert!(matches!(error, StoreError::Io { .. }), "{error:?}");
    assert_eq!(temp_files(store.dir()), Vec::<String>::new());
}

#[test]
fn the_lock_is_exclusive_within_a_process_and_shared_by_spellings_of_one_url() {
    let (_root, store) = store();
    let held = store.lock(URL, Duration::from_secs(1)).unwrap();
    let started = Instant::now();
    let error = store.lock("https://MCP.example.com/mcp/", Duration::from_millis(100)).unwrap_err();
    assert!(started.elapsed() >= Duration::from_millis(100));
    assert!(matches!(&error, StoreError::LockTimeout { url, .. } if url == URL), "{error:?}");
    assert!(error.to_string().contains("after 0.1 s"), "{error}");
    let _other = store.lock(OTHER_URL, Duration::ZERO).unwrap();
    drop(held);
    let _again = store.lock(URL, Duration::ZERO).unwrap();
}

#[test]
fn an_abandoned_wait_gives_up_at_its_next_poll() {
    let (_root, store) = store();
    let _held = store.lock(URL, Duration::from_secs(1)).unwrap();
    let started = Instant::now();
    let result = store.lock_until(URL, Duration::from_secs(30), &AtomicBool::new(true));
    assert!(matches!(result, Err(StoreError::LockTimeout { .. })));
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn lock_async_waits_for_the_holder_and_can_be_cancelled() {
    let (_root, store) = store();
    let held = store.lock(URL, Duration::from_secs(1)).unwrap();
    let cancelled =
        tokio::time::timeout(Duration::from_millis(100), store.lock_async(URL, Duration::from_secs(30)));
    assert!(cancelled.await.is_err(), "still waiting after 100 ms");

    let waiter = tokio::spawn({
        let store = store.clone();
        async move { store.lock_async(URL, Duration::from_secs(10)).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!waiter.is_finished());
    drop(held);
    let lock = waiter.await.unwrap().unwrap();
    assert_eq!(lock.url(), URL);
}

// ---- Across processes. Each `*_child` test plays the other process when its environment
// variable names a store directory, and otherwise checks the same thing within this process.

const LOCK_CHILD: &str = "FOXXY_STORE_TEST_LOCK_CHILD";
const WRITER_CHILD: &str = "FOXXY_STORE_TEST_WRITER_CHILD";
const COUNTER_CHILD: &str = "FOXXY_STORE_TEST_COUNTER_CHILD";
const SMALL: usize = 1_000_000;
const LARGE: usize = 1_500_000;

/// This test binary re-run as one test; killed when dropped so no child outlives a failure.
struct TestChild {
    child: Child,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl TestChild {
    fn spawn(test: &str, env: &str, dir: &Path) -> Self {
        let module = module_path!().split_once("::").map_or(module_path!(), |(_crate, path)| path);
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", &format!("{module}::{test}"), "--nocapture", "--test-threads=1"])
            .env(env, dir)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        Self { child, stdout }
    }

    /// Reads the child's stdout up to a line containing `marker` (libtest may prefix it).
    fn wait_for(&mut self, marker: &str) {
        for line in self.stdout.by_ref() {
            if line.unwrap().contains(marker) {
                return;
            }
        }
        panic!("the child exited without printing `{marker}`");
    }

    /// SIGKILL (what `Child::kill` sends on Unix), then reap, checking it really was killed.
    fn kill_9(&mut self) {
        self.child.kill().unwrap();
        assert_eq!(self.child.wait().unwrap().signal(), Some(libc::SIGKILL));
    }
}

impl Drop for TestChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The parent test reads the child's progress from its stdout.
fn tell_parent(marker: &str) {
    crate::output::line(marker);
}

#[test]
fn lock_holder_child() {
    if let Some(dir) = std::env::var_os(LOCK_CHILD) {
        let _lock = TokenStore::new(dir).lock(URL, Duration::from_secs(10)).unwrap();
        tell_parent("CHILD-LOCKED");
        std::thread::sleep(Duration::from_secs(60));
        return;
    }
    // In-process: a released lock can be taken again at once.
    let (_root, store) = store();
    for _ in 0..3 {
        let lock = store.lock(URL, Duration::ZERO).unwrap();
        assert_eq!(lock.url(), URL);
    }
}

#[test]
fn a_lock_held_by_another_process_excludes_until_that_process_is_killed() {
    let (_root, store) = store();
    let mut child = TestChild::spawn("lock_holder_child", LOCK_CHILD, store.dir());
    child.wait_for("CHILD-LOCKED");

    let started = Instant::now();
    let result = store.lock(URL, Duration::from_millis(200));
    assert!(matches!(result, Err(StoreError::LockTimeout { .. })), "{result:?}");
    assert!(started.elapsed() >= Duration::from_millis(200));

    child.child.kill().unwrap();
    let started = Instant::now();
    let _lock = store.lock(URL, Duration::from_secs(1)).expect("the kernel released the dead holder's lock");
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(child.child.wait().unwrap().signal(), Some(libc::SIGKILL));
}

fn entry_of_size(size: usize) -> TokenEntry {
    let mut entry = sample(URL, ISSUER);
    entry.scope = Some("s".repeat(size));
    entry
}

#[test]
fn writer_child() {
    if let Some(dir) = std::env::var_os(WRITER_CHILD) {
        let store = TokenStore::new(dir);
        let versions = [entry_of_size(SMALL), entry_of_size(LARGE)];
        write(&store, &versions[0]);
        tell_parent("CHILD-WRITING");
        for entry in versions.iter().cycle() {
            write(&store, entry);
        }
        return;
    }
    // In-process: both versions replace each other whole.
    let (_root, store) = store();
    for size in [LARGE, SMALL, LARGE] {
        write(&store, &entry_of_size(size));
        assert_eq!(store.read(URL, Some(ISSUER)).unwrap(), Some(entry_of_size(size)));
    }
}

#[test]
fn a_writer_killed_at_any_moment_leaves_a_whole_entry_and_no_temp_file_for_long() {
    let (_root, store) = store();
    let mut killed_mid_write = 0;
    for round in 0..6 {
        let mut child = TestChild::spawn("writer_child", WRITER_CHILD, store.dir());
        child.wait_for("CHILD-WRITING");
        if round % 2 == 0 {
            // At a random-ish moment.
            let jitter =
                SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().subsec_nanos() % 200;
            std::thread::sleep(Duration::from_millis(100 + u64::from(jitter)));
        } else {
            // Inside the write: as soon as a temp file of the child exists.
            let deadline = Instant::now() + Duration::from_secs(5);
            let pid = format!("-{}-", child.child.id());
            while Instant::now() < deadline && !temp_files(store.dir()).iter().any(|name| name.contains(&pid))
            {
            }
        }
        child.kill_9();
        if !temp_files(store.dir()).is_empty() {
            killed_mid_write += 1;
        }

        let entry =
            store.read(URL, Some(ISSUER)).unwrap().unwrap_or_else(|| panic!("no entry after round {round}"));
        let size = entry.scope.as_ref().map_or(0, String::len);
        assert!(size == SMALL || size == LARGE, "round {round}: a scope of {size} bytes");
    }
    assert!(killed_mid_write > 0, "no round killed the writer between its temp file and the rename");
    // The next write under the lock removes what the killed writers left (rule 1).
    write(&store, &entry_of_size(SMALL));
    assert_eq!(temp_files(store.dir()), Vec::<String>::new());
}

fn increment(store: &TokenStore, times: usize) {
    for _ in 0..times {
        let lock = store.lock(URL, Duration::from_secs(30)).unwrap();
        let mut entry = store.read(URL, Some(ISSUER)).unwrap().unwrap();
        entry.created_at += 1;
        store.write(&lock, &entry).unwrap();
    }
}

fn counter_at_zero() -> (tempfile::TempDir, TokenStore) {
    let (root, store) = store();
    let mut entry = sample(URL, ISSUER);
    entry.created_at = 0;
    write(&store, &entry);
    (root, store)
}

#[test]
fn counter_child() {
    if let Some(dir) = std::env::var_os(COUNTER_CHILD) {
        increment(&TokenStore::new(dir), 50);
        return;
    }
    // In-process: two threads racing read-modify-write lose no update.
    let (_root, store) = counter_at_zero();
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| increment(&store, 50));
        }
    });
    assert_eq!(store.read(URL, Some(ISSUER)).unwrap().unwrap().created_at, 100);
}

#[test]
fn two_processes_racing_read_modify_write_lose_no_update() {
    let (_root, store) = counter_at_zero();
    let mut children: Vec<_> =
        (0..2).map(|_| TestChild::spawn("counter_child", COUNTER_CHILD, store.dir())).collect();
    for child in &mut children {
        assert!(child.child.wait().unwrap().success());
    }
    assert_eq!(store.read(URL, Some(ISSUER)).unwrap().unwrap().created_at, 100);
}
