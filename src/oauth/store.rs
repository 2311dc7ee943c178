//! The shared token cache: one JSON file per (upstream, authorization server) that every
//! `foxxy-bridge` process of the user reads, and the per-upstream file lock that serialises
//! sign-in and refresh across those processes.
//!
//! This module owns the on-disk format, the file names, the lock and the write discipline.
//! It does not own the OAuth flows: discovery, the browser, token and refresh requests live
//! elsewhere in `oauth/` and use this module as "take the lock, re-read, maybe fetch, write".
//!
//! `entry.rs` is the file format ([`TokenEntry`]), `keys.rs` the URL canonicalization and
//! file names, `files.rs` the atomic writes and temp-file clean-up; this file is the API.
//!
//! # On-disk layout
//!
//! ```text
//! <state root>/auth/                       0700 (created so; reset to 0700 when it is not)
//! ├── 5d0a6c1e9b7f3a21.json               0600  an entry: hex16(sha256("<canonical url>\n<issuer>"))
//! ├── 9c4f0b2e7d1a8e53.lock               0600  the lock of a URL: hex16(sha256("<canonical url>"))
//! └── .tmp-9c4f0b2e7d1a8e53-4242-7        0600  a write in progress: .tmp-<url hash>-<pid>-<n>
//! ```
//!
//! `hex16` is the first 8 bytes of SHA-256 in lowercase hex: a hash that is the same on every
//! platform and Rust version, which file names that must survive upgrades need (std's
//! `DefaultHasher` promises neither). URLs go through [`canonical_url`] first, so spellings
//! of one upstream share one entry. Entries are pretty-printed [`TokenEntry`] JSON.
//!
//! # Concurrency rules
//!
//! - Sign-in and refresh of an upstream happen while holding its [`EntryLock`], an exclusive
//!   `flock` on the URL's `.lock` file. It is keyed by URL only: the issuer is not known
//!   before discovery, and the first sign-in must already be serialised. After taking it,
//!   re-read the entry: another process may have signed in or refreshed meanwhile.
//! - The kernel releases a `flock` when its file description closes, so a process that is
//!   killed never blocks the others. Lock files are never deleted: a waiter blocked on a
//!   deleted file would lock an inode that a newcomer, creating the file anew, never sees.
//! - [`TokenStore::write`] and [`TokenStore::remove`] take the lock as an argument, so an
//!   unlocked write does not compile. Writes are atomic (temp file, fsync, rename, fsync of
//!   the directory); a reader sees the old entry or the new one, never a partial file.
//! - Reads ([`TokenStore::read`], [`TokenStore::list`], [`TokenStore::stamp`]) take no lock.
//!
//! # Temp files
//!
//! A writer that is killed between creating its temp file and renaming it leaves the file
//! behind; the dead process cannot remove it, so later calls do:
//! 1. [`TokenStore::write`] for a URL first removes that URL's temp files created by other
//!    processes (the pid in the name). It holds the URL's lock, and every writer of that URL
//!    holds the lock while its temp file exists, so those files are dead writers' leftovers.
//! 2. [`TokenStore::write`] and [`TokenStore::list`] remove every temp file, of any URL, whose
//!    mtime is older than the store's stale age ([`STALE_TEMP_AGE`], 60 s by default; see
//!    [`TokenStore::with_stale_temp_age`]). This catches URLs that are never written again.
//!
//! # Notes and scans
//!
//! Next to a URL's entries, `<url hash>.signin` holds a `SignInNote` (the last sign-in
//! failed, or the user signed out). It is written under the lock and removed by any entry
//! write. A scan skips (and logs once) a file it cannot read or that is not a regular file,
//! so one bad file affects only itself. The `*_async` forms run the file work on the
//! blocking pool; the bridge uses only those.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use fs2::FileExt;

use crate::locks::Unpoisoned;

mod entry;
mod files;
mod keys;
#[cfg(test)]
mod tests;

pub use entry::{
    ClientRegistration, ClientSource, EntryStatus, FORMAT_VERSION, NoteKind, Secret, SignInNote, TokenEntry,
    now,
};
use files::io_error;
use keys::hash16;
pub use keys::{canonical_url, redacted_url};

/// How old a temp file must be before any store operation removes it (rule 2 above).
pub const STALE_TEMP_AGE: Duration = Duration::from_secs(60);

/// How often [`TokenStore::lock`] retries a contended lock.
const LOCK_POLL: Duration = Duration::from_millis(50);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("file system error at `{}`", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file exists but is not a token entry this version understands. Callers treat
    /// the upstream as signed out.
    #[error(
        "token file `{}` is unreadable ({reason}); it counts as signed out\nhint: sign in again with `foxxy-bridge oauth login <server>`",
        path.display()
    )]
    Corrupt { path: PathBuf, reason: String },
    #[error(
        "gave up after {seconds:.1} s waiting for the token lock of `{url}`: another foxxy-bridge is signing in or refreshing\nhint: finish the sign-in in the browser tab it opened, then try again"
    )]
    LockTimeout { url: String, seconds: f64 },
    #[error("`{url}` is not a usable upstream URL: {reason}")]
    InvalidUrl { url: String, reason: String },
    /// A write or remove was given the lock of a different URL (or store): a bug in the caller.
    #[error("the token lock passed in belongs to a different upstream URL")]
    WrongLock,
}

/// One file found by [`TokenStore::list`]: its path, and its entry or why it is unusable.
pub type ListedEntry = (PathBuf, Result<TokenEntry, StoreError>);

/// Proof that this process holds the exclusive lock of one upstream URL. Released when
/// dropped: dropping closes the file, which releases the `flock` (and so does the process
/// dying). Holders keep it for the whole sign-in or refresh, including the final write.
#[must_use = "the lock is released as soon as it is dropped"]
#[derive(Debug)]
pub struct EntryLock {
    /// The open lock file; its `flock` is the lock, held until this value is dropped.
    /// The file is never deleted (see the module docs).
    #[expect(dead_code, reason = "held only for its flock, which closing the file releases")]
    file: std::fs::File,
    /// The canonical URL the lock is for.
    url: String,
    path: PathBuf,
}

impl EntryLock {
    /// The canonical URL this lock is for.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The token cache in one directory (`<state root>/auth/`). Cheap to clone; holds no open
/// files, so any number of clones and processes may use the same directory.
#[derive(Debug, Clone)]
pub struct TokenStore {
    dir: PathBuf,
    /// Temp files older than this are removed by `write` and `list` (rule 2).
    stale_temp_age: Duration,
}

impl TokenStore {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into(), stale_temp_age: STALE_TEMP_AGE }
    }

    /// Changes the age after which temp files count as stale (rule 2). Tests use 0; in
    /// production a value below a few seconds could remove a slow writer's file mid-write.
    pub fn with_stale_temp_age(mut self, age: Duration) -> Self {
        self.stale_temp_age = age;
        self
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the entry for (`url`, `issuer`) lives; the file need not exist.
    pub fn entry_path(&self, url: &str, issuer: &str) -> Result<PathBuf, StoreError> {
        Ok(self.entry_path_canonical(&canonical_url(url)?, issuer))
    }

    fn entry_path_canonical(&self, canonical: &str, issuer: &str) -> PathBuf {
        self.dir.join(format!("{}.json", hash16(&format!("{canonical}\n{issuer}"))))
    }

    fn note_path_canonical(&self, canonical: &str) -> PathBuf {
        self.dir.join(format!("{}.signin", hash16(canonical)))
    }

    /// The sign-in note of `url`, if there is a readable one. Takes no lock.
    pub fn note(&self, url: &str) -> Option<SignInNote> {
        let path = self.note_path_canonical(&canonical_url(url).ok()?);
        let (bytes, _) = files::read_if_exists(&path).ok()??;
        serde_json::from_slice(&bytes).ok()
    }

    /// Replaces the sign-in note of `lock`'s URL.
    pub fn write_note(&self, lock: &EntryLock, note: &SignInNote) -> Result<(), StoreError> {
        let url = lock.url.clone();
        self.check_lock(lock, &url)?;
        files::ensure_private_dir(&self.dir)?;
        let target = self.note_path_canonical(&url);
        let json = serde_json::to_vec(note).map_err(|error| io_error(&target)(error.into()))?;
        files::write_atomically(&self.dir, &hash16(&url), &target, &json)
    }

    /// [`TokenStore::note`] on the blocking pool.
    pub async fn note_async(&self, url: &str) -> Option<SignInNote> {
        let (store, url) = (self.clone(), url.to_owned());
        self.blocking(move || store.note(&url)).await.ok().flatten()
    }

    /// [`TokenStore::write_note`] on the blocking pool, releasing `lock` when done.
    pub async fn write_note_async(&self, lock: EntryLock, note: SignInNote) -> Result<(), StoreError> {
        let store = self.clone();
        self.blocking(move || store.write_note(&lock, &note)).await?
    }

    fn lock_path_canonical(&self, canonical: &str) -> PathBuf {
        self.dir.join(format!("{}.lock", hash16(canonical)))
    }

    /// Takes the exclusive lock of `url`, waiting up to `timeout` while another process or
    /// thread holds it. Blocks the thread: from async code use [`TokenStore::lock_async`].
    pub fn lock(&self, url: &str, timeout: Duration) -> Result<EntryLock, StoreError> {
        self.lock_until(url, timeout, &AtomicBool::new(false))
    }

    /// [`TokenStore::lock`] on a blocking thread. Dropping the returned future (for example
    /// on shutdown) makes the blocking wait give up at its next poll, so it neither occupies
    /// a thread for the rest of the timeout nor delays runtime shutdown.
    pub async fn lock_async(&self, url: &str, timeout: Duration) -> Result<EntryLock, StoreError> {
        /// Set when the future is dropped, whether it completed or not.
        struct AbandonOnDrop(Arc<AtomicBool>);
        impl Drop for AbandonOnDrop {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let abandoned = AbandonOnDrop(Arc::new(AtomicBool::new(false)));
        let (store, url, flag) = (self.clone(), url.to_owned(), Arc::clone(&abandoned.0));
        match tokio::task::spawn_blocking(move || store.lock_until(&url, timeout, &flag)).await {
            Ok(result) => result,
            Err(join_error) if join_error.is_panic() => std::panic::resume_unwind(join_error.into_panic()),
            Err(join_error) => Err(StoreError::Io {
                path: self.dir.clone(),
                source: std::io::Error::new(std::io::ErrorKind::Interrupted, join_error.to_string()),
            }),
        }
    }

    /// The lock loop: `flock` has no timeout, so poll the non-blocking form until the
    /// deadline, or until `abandoned` is set by a dropped [`TokenStore::lock_async`].
    fn lock_until(
        &self,
        url: &str,
        timeout: Duration,
        abandoned: &AtomicBool,
    ) -> Result<EntryLock, StoreError> {
        let url = canonical_url(url)?;
        files::ensure_private_dir(&self.dir)?;
        let path = self.lock_path_canonical(&url);
        let file = files::open_lock_file(&path)?;
        let deadline = Instant::now() + timeout;
        loop {
            match file.try_lock_exclusive() {
                Ok(()) => return Ok(EntryLock { file, url, path }),
                Err(error) if is_contended(&error) => {}
                Err(error) => return Err(io_error(&path)(error)),
            }
            let now = Instant::now();
            if now >= deadline || abandoned.load(Ordering::Relaxed) {
                let url = redacted_url(&url);
                return Err(StoreError::LockTimeout { url, seconds: timeout.as_secs_f64() });
            }
            std::thread::sleep(LOCK_POLL.min(deadline - now));
        }
    }

    /// Atomically replaces the entry for (`entry.server_url`, `entry.issuer`), storing the
    /// URL in canonical form. `lock` must be this store's lock of that URL.
    pub fn write(&self, lock: &EntryLock, entry: &TokenEntry) -> Result<(), StoreError> {
        let url = canonical_url(&entry.server_url)?;
        self.check_lock(lock, &url)?;
        files::ensure_private_dir(&self.dir)?;
        let url_hash = hash16(&url);
        files::remove_orphaned_temps(&self.dir, &url_hash);
        files::remove_stale_temps(&self.dir, self.stale_temp_age);

        // Tokens supersede a note about a failed sign-in or a sign-out.
        match std::fs::remove_file(self.note_path_canonical(&url)) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                return Err(io_error(&self.note_path_canonical(&url))(error));
            }
            _ => {}
        }
        let target = self.entry_path_canonical(&url, &entry.issuer);
        let mut stored = entry.clone();
        stored.server_url = url;
        let mut json = serde_json::to_vec_pretty(&stored).map_err(|error| io_error(&target)(error.into()))?;
        json.push(b'\n');
        files::write_atomically(&self.dir, &url_hash, &target, &json)
    }

    /// [`TokenStore::write`] on the blocking pool (it fsyncs twice), releasing `lock`
    /// when done.
    pub async fn write_async(&self, lock: EntryLock, entry: TokenEntry) -> Result<(), StoreError> {
        let store = self.clone();
        self.blocking(move || store.write(&lock, &entry)).await?
    }

    /// [`TokenStore::remove`] on the blocking pool, releasing `lock` when done.
    pub async fn remove_async(&self, lock: EntryLock, url: &str) -> Result<usize, StoreError> {
        let (store, url) = (self.clone(), url.to_owned());
        self.blocking(move || store.remove(&lock, &url)).await?
    }

    /// [`TokenStore::read`] (of the newest entry of `url`) on the blocking pool: it reads
    /// every entry file.
    pub async fn read_async(&self, url: &str) -> Result<Option<TokenEntry>, StoreError> {
        let (store, url) = (self.clone(), url.to_owned());
        self.blocking(move || store.read(&url, None)).await?
    }

    /// [`TokenStore::stamp`] on the blocking pool.
    pub async fn stamp_async(&self, url: &str) -> Option<SystemTime> {
        let (store, url) = (self.clone(), url.to_owned());
        self.blocking(move || store.stamp(&url)).await.ok().flatten()
    }

    /// Runs file work on the blocking pool, so a slow disk never stalls the runtime.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, StoreError> {
        match tokio::task::spawn_blocking(work).await {
            Ok(result) => Ok(result),
            Err(join_error) if join_error.is_panic() => std::panic::resume_unwind(join_error.into_panic()),
            Err(join_error) => Err(StoreError::Io {
                path: self.dir.clone(),
                source: std::io::Error::new(std::io::ErrorKind::Interrupted, join_error.to_string()),
            }),
        }
    }

    /// A lock proves the right to write only if it is for this URL in this directory. An
    /// error rather than a `debug_assert!`, so the misuse is reported in release builds too
    /// and can be tested.
    fn check_lock(&self, lock: &EntryLock, canonical: &str) -> Result<(), StoreError> {
        if lock.url != canonical || lock.path != self.lock_path_canonical(canonical) {
            return Err(StoreError::WrongLock);
        }
        Ok(())
    }

    /// The entry for `url` and `issuer`; with no issuer, the entry of `url` written last (by
    /// file mtime, then `created_at`). `Ok(None)` when there is none. Takes no lock.
    ///
    /// Without an issuer, files are attributed to a URL by their `server_url` field, so a
    /// file that is not JSON at all cannot be attributed and is skipped here; [`Self::list`]
    /// still reports it.
    pub fn read(&self, url: &str, issuer: Option<&str>) -> Result<Option<TokenEntry>, StoreError> {
        let url = canonical_url(url)?;
        let Some(issuer) = issuer else {
            let latest = self.files_of(&url)?.into_iter().max_by_key(|file| {
                (file.modified, file.value.get("created_at").and_then(serde_json::Value::as_u64))
            });
            return latest.map(|file| entry_from_value(&file.path, file.value)).transpose();
        };
        let path = self.entry_path_canonical(&url, issuer);
        let Some((bytes, _)) = files::read_if_exists(&path)? else { return Ok(None) };
        let entry = parse_entry(&path, &bytes)?;
        if canonical_url(&entry.server_url).ok().as_deref() != Some(url.as_str()) || entry.issuer != issuer {
            let reason = "its `server_url` and `issuer` do not match its file name".to_owned();
            return Err(StoreError::Corrupt { path, reason });
        }
        Ok(Some(entry))
    }

    /// Deletes every entry of `url` (all issuers) and returns how many there were.
    pub fn remove(&self, lock: &EntryLock, url: &str) -> Result<usize, StoreError> {
        let url = canonical_url(url)?;
        self.check_lock(lock, &url)?;
        let mut removed = 0;
        for file in self.files_of(&url)? {
            match std::fs::remove_file(&file.path) {
                Ok(()) => removed += 1,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => return Err(io_error(&file.path)(error)),
            }
        }
        Ok(removed)
    }

    /// Every entry file with its parsed content or the reason it cannot be used, sorted by
    /// path. Also removes stale temp files (rule 2). Takes no lock.
    pub fn list(&self) -> Result<Vec<ListedEntry>, StoreError> {
        files::remove_stale_temps(&self.dir, self.stale_temp_age);
        let mut listed = Vec::new();
        for path in files::entry_files(&self.dir)? {
            let entry = match files::read_if_exists(&path) {
                Ok(Some((bytes, _))) => parse_entry(&path, &bytes),
                Ok(None) => continue,
                Err(error) => Err(error),
            };
            listed.push((path, entry));
        }
        Ok(listed)
    }

    /// The newest mtime among the entry files of `url`, or `None` if it has none. A running
    /// bridge polls this to notice tokens that another process wrote.
    pub fn stamp(&self, url: &str) -> Option<SystemTime> {
        let url = canonical_url(url).ok()?;
        self.files_of(&url).ok()?.into_iter().map(|file| file.modified).max()
    }

    /// The entry files whose `server_url` canonicalizes to `canonical`, parsed only as far
    /// as JSON. Files that are not JSON, vanish while scanned, or cannot be read (no
    /// permission, a directory with an entry's name) are skipped, so one bad file affects
    /// only itself; unreadable ones are logged with the OS error, once per process.
    fn files_of(&self, canonical: &str) -> Result<Vec<EntryFile>, StoreError> {
        let mut found = Vec::new();
        for path in files::entry_files(&self.dir)? {
            let (bytes, modified) = match files::read_if_exists(&path) {
                Ok(Some(found)) => found,
                Ok(None) => continue,
                Err(error) => {
                    report_unreadable(&error);
                    continue;
                }
            };
            let Ok(value) = serde_json::from_slice::<serde_json::Value>(&bytes) else { continue };
            let server_url = value.get("server_url").and_then(serde_json::Value::as_str);
            if server_url.and_then(|server_url| canonical_url(server_url).ok()).as_deref() == Some(canonical)
            {
                found.push(EntryFile { path, modified, value });
            }
        }
        Ok(found)
    }
}

/// Logs a file that a scan skipped because it cannot be read, once per file and error
/// kind: `stamp` scans twice a second while a bridge waits for tokens.
fn report_unreadable(error: &StoreError) {
    static REPORTED: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    let StoreError::Io { path, source } = error else { return };
    let key = format!("{}\n{:?}", path.display(), source.kind());
    let mut reported = REPORTED.lock_unpoisoned();
    if reported.get_or_insert_with(HashSet::new).insert(key) {
        tracing::warn!(
            "skipping the token file `{}`, which cannot be read: {source}; other entries are unaffected",
            path.display()
        );
    }
}

/// An entry file found by a scan, parsed as far as JSON.
struct EntryFile {
    path: PathBuf,
    modified: SystemTime,
    value: serde_json::Value,
}

fn is_contended(error: &std::io::Error) -> bool {
    error.kind() == std::io::ErrorKind::WouldBlock
        || error.kind() == std::io::ErrorKind::Interrupted
        || error.raw_os_error() == fs2::lock_contended_error().raw_os_error()
}

fn parse_entry(path: &Path, bytes: &[u8]) -> Result<TokenEntry, StoreError> {
    let entry = serde_json::from_slice(bytes).map_err(|error| corrupt(path, &error))?;
    check_version(path, entry)
}

fn entry_from_value(path: &Path, value: serde_json::Value) -> Result<TokenEntry, StoreError> {
    let entry = serde_json::from_value(value).map_err(|error| corrupt(path, &error))?;
    check_version(path, entry)
}

fn check_version(path: &Path, entry: TokenEntry) -> Result<TokenEntry, StoreError> {
    if entry.version != FORMAT_VERSION {
        let reason =
            format!("format version `{}`; this foxxy-bridge reads `{FORMAT_VERSION}`", entry.version);
        return Err(StoreError::Corrupt { path: path.to_owned(), reason });
    }
    Ok(entry)
}

/// A corrupt-file error whose reason cannot leak a token. serde_json repeats offending
/// input in two places: string values in type errors (`invalid type: string "…", expected
/// u64`) and enum values (`unknown variant `…``); either could be a token in the wrong
/// field, so both are blanked out. Field names (`missing field `issuer``) are kept.
fn corrupt(path: &Path, error: &serde_json::Error) -> StoreError {
    let mut reason = String::new();
    for (index, part) in error.to_string().split('"').enumerate() {
        reason.push_str(if index % 2 == 1 { "…" } else { part });
        reason.push('"');
    }
    reason.pop();
    if let Some(rest) = reason.strip_prefix("unknown variant `") {
        let after = rest.find('`').map_or("", |end| &rest[end..]);
        reason = format!("unknown variant `…{after}");
    }
    StoreError::Corrupt { path: path.to_owned(), reason }
}
