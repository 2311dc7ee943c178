//! The upstreams' `instructions` remembered across sessions: the bridge answers
//! `initialize` before any upstream is connected, so the text it gives then is the one
//! each upstream sent in an earlier session.
//!
//! Layout, under the state root:
//!
//! ```text
//! <root>/cache/                       0700
//! └── instructions/                   0700
//!     ├── 3f1c9a0d5e7b2c48.json       0600  {"instructions": "..."} of one server entry
//!     └── .tmp-3f1c9a0d5e7b2c48-…     0600  a write in progress (or a killed writer's)
//! ```
//!
//! A file's name is a hash of what identifies the server ([`server_key`]): for a local
//! one its command, arguments, environment and working directory; for a remote one its
//! URL, transport and headers. Editing any of these gives a new name, so a changed entry
//! never shows the old entry's text, and a removed entry is never looked up; renaming a
//! server keeps its file. Environment and header values may be secrets: they go into the
//! hash only, never into a file.
//!
//! Every write goes to a fresh temp file that is synced and renamed over the entry, so a
//! reader (another bridge included) sees the old file or the new one, never a torn one;
//! when bridges write the same entry at once, the last rename wins. A file that cannot be
//! read or parsed is logged and treated as absent. Deleting the directory forgets
//! everything; the next session that connects an upstream remembers it again.

use std::{
    collections::{BTreeMap, HashMap},
    fs::{self, File, OpenOptions},
    io::{self, Read, Write},
    os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime},
};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::{
    config::{RemoteKind, ServerSettings, Settings, TransportSettings},
    upstream::View,
};

/// A remembered file larger than this is not read: no server's instructions are that
/// long, so it is not one of ours.
const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// Temp files not renamed within this long belong to a writer that died.
const STALE_TEMP_AGE: Duration = Duration::from_secs(60);

/// Every temp file name starts with this; entries never start with a dot.
const TEMP_PREFIX: &str = ".tmp-";

/// Makes temp names unique within this process; the pid makes them unique across processes.
static NEXT_TEMP: AtomicU64 = AtomicU64::new(0);

/// The directory of remembered instructions. Its methods do blocking file I/O: call
/// them off the async runtime.
#[derive(Debug, Clone)]
pub struct InstructionsStore {
    dir: PathBuf,
}

/// What one file holds.
#[derive(Debug, Serialize, Deserialize)]
struct StoredInstructions {
    instructions: String,
}

impl InstructionsStore {
    pub fn new(dir: impl Into<PathBuf>) -> InstructionsStore {
        InstructionsStore { dir: dir.into() }
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.json"))
    }

    /// The instructions remembered under `key`, if any. An unreadable or malformed file
    /// is logged at warn and counts as none.
    pub fn read(&self, key: &str) -> Option<String> {
        let path = self.path(key);
        match read_entry(&path) {
            Ok(text) => text,
            Err(error) => {
                tracing::warn!(file = %path.display(), "ignoring the remembered instructions: {error}");
                None
            }
        }
    }

    /// Remember `instructions` under `key`; `None` forgets the entry.
    pub fn write(&self, key: &str, instructions: Option<&str>) -> io::Result<()> {
        let target = self.path(key);
        let Some(instructions) = instructions else {
            return match fs::remove_file(&target) {
                Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
                _ => Ok(()),
            };
        };
        ensure_private_dir(&self.dir)?;
        remove_stale_temps(&self.dir);
        let stored = StoredInstructions { instructions: instructions.to_owned() };
        let bytes = serde_json::to_vec(&stored).map_err(io::Error::other)?;
        write_atomically(&self.dir, key, &target, &bytes)
    }
}

/// The file's instructions; `Ok(None)` when there is no file.
fn read_entry(path: &Path) -> io::Result<Option<String>> {
    let metadata = match fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error),
    };
    // Opening a FIFO would wait for a writer, possibly forever.
    if !metadata.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    if metadata.len() > MAX_FILE_BYTES {
        return Err(io::Error::other(format!("larger than {MAX_FILE_BYTES} bytes")));
    }
    let mut text = String::new();
    File::open(path)?.take(MAX_FILE_BYTES).read_to_string(&mut text)?;
    let stored: StoredInstructions = serde_json::from_str(&text).map_err(io::Error::other)?;
    Ok(Some(stored.instructions))
}

/// Creates `dir` and its missing parents as 0700, and narrows an existing `dir` to 0700.
fn ensure_private_dir(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    if fs::metadata(dir)?.permissions().mode() & 0o777 != 0o700 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Replaces `target` with `bytes`: a fresh 0600 temp file, synced, renamed over
/// `target`, then the directory synced so the rename survives a crash. On error the
/// temp file is removed.
fn write_atomically(dir: &Path, key: &str, target: &Path, bytes: &[u8]) -> io::Result<()> {
    let sequence = NEXT_TEMP.fetch_add(1, Ordering::Relaxed);
    let temp = dir.join(format!("{TEMP_PREFIX}{key}-{}-{sequence}", std::process::id()));
    let written = (|| {
        let mut file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temp, target)
    })();
    if let Err(error) = written {
        let _ = fs::remove_file(&temp);
        return Err(error);
    }
    File::open(dir)?.sync_all()
}

/// Removes temp files older than [`STALE_TEMP_AGE`] (best effort): a write takes
/// milliseconds, so they are what killed writers left behind.
fn remove_stale_temps(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    let now = SystemTime::now();
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
            continue;
        }
        let modified = entry.metadata().and_then(|metadata| metadata.modified());
        if modified.is_ok_and(|modified| now.duration_since(modified).unwrap_or_default() >= STALE_TEMP_AGE) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// The name under which `server`'s instructions are remembered: the first 8 bytes of
/// SHA-256, in hex, over what identifies the server (see the module docs).
pub fn server_key(server: &ServerSettings) -> String {
    let identity = match &server.transport {
        TransportSettings::Stdio { command, args, env, cwd } => {
            let env: Vec<[&str; 2]> =
                env.iter().map(|(name, value)| [name.as_str(), value.expose()]).collect();
            let cwd = cwd.as_ref().map(|cwd| cwd.to_string_lossy());
            serde_json::json!(["stdio", command, args, env, cwd])
        }
        TransportSettings::Remote(remote) => {
            let kind = match remote.kind {
                RemoteKind::StreamableHttp => "streamable-http",
                RemoteKind::Sse => "sse",
                RemoteKind::Auto => "auto",
            };
            let headers: Vec<[&str; 2]> =
                remote.headers.iter().map(|(name, value)| [name.as_str(), value.expose()]).collect();
            serde_json::json!(["remote", remote.url, kind, headers])
        }
    };
    let digest = Sha256::digest(identity.to_string().as_bytes());
    digest[..8].iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The instructions the store held at start for the enabled servers, by [`server_key`].
#[derive(Debug, Default)]
pub struct Remembered {
    by_key: BTreeMap<String, String>,
}

impl Remembered {
    pub const EMPTY: Remembered = Remembered { by_key: BTreeMap::new() };

    /// What `server` said in an earlier session, if the store remembers it.
    pub fn get(&self, server: &ServerSettings) -> Option<&str> {
        self.by_key.get(&server_key(server)).map(String::as_str)
    }

    /// How many upstreams' instructions are remembered.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    #[cfg(test)]
    pub fn insert(&mut self, server: &ServerSettings, text: &str) {
        self.by_key.insert(server_key(server), text.to_owned());
    }
}

impl InstructionsStore {
    /// What the store remembers for the enabled servers of `settings`: the texts to
    /// serve, and what each key's file holds (`None`: nothing) for [`keep_instructions`].
    ///
    /// This reads files on the calling thread, like loading the config does: it runs
    /// once, at start, before the client is served, so that `initialize` never waits
    /// for it.
    pub fn load(&self, settings: &Settings) -> (Remembered, OnDisk) {
        let mut remembered = Remembered::default();
        let mut on_disk = OnDisk::default();
        for key in settings.enabled_servers().map(server_key) {
            let text = self.read(&key);
            if let Some(text) = &text {
                remembered.by_key.insert(key.clone(), text.clone());
            }
            on_disk.by_key.insert(key, text);
        }
        (remembered, on_disk)
    }
}

/// What the store's files hold, as far as this process knows, by key: `None` = no file.
#[derive(Debug, Default)]
pub struct OnDisk {
    by_key: HashMap<String, Option<String>>,
}

/// Until `cancel`, remember each upstream's instructions whenever it is ready and says
/// something other than what `on_disk` records. Store errors are logged; they never stop
/// the bridge.
pub async fn keep_instructions(
    store: InstructionsStore,
    mut on_disk: OnDisk,
    settings: watch::Receiver<Arc<Settings>>,
    mut view: watch::Receiver<Arc<View>>,
    cancel: CancellationToken,
) {
    loop {
        let changes = {
            let view = view.borrow_and_update().clone();
            let settings = settings.borrow().clone();
            fresh_instructions(&view, &settings)
                .filter(|(key, text)| on_disk.by_key.get(key) != Some(text))
                .collect::<Vec<_>>()
        };
        for (key, text) in changes {
            let writer = store.clone();
            let (key_written, text_written) = (key.clone(), text.clone());
            let written =
                tokio::task::spawn_blocking(move || writer.write(&key_written, text_written.as_deref()))
                    .await;
            match written {
                Ok(Ok(())) => tracing::debug!(key = %key, "remembered an upstream's instructions"),
                Ok(Err(error)) => {
                    tracing::warn!(key = %key, "cannot remember an upstream's instructions: {error}")
                }
                Err(error) => tracing::warn!("cannot remember an upstream's instructions: {error}"),
            }
            // Not retried on error: the next change tries again.
            on_disk.by_key.insert(key, text);
        }
        tokio::select! {
            changed = view.changed() => if changed.is_err() { return },
            () = cancel.cancelled() => return,
        }
    }
}

/// `(key, instructions)` of every ready upstream of `view` that `settings` configures;
/// blank instructions count as none.
fn fresh_instructions<'a>(
    view: &'a View,
    settings: &'a Settings,
) -> impl Iterator<Item = (String, Option<String>)> + 'a {
    view.upstreams.iter().filter(|state| state.is_ready()).filter_map(|state| {
        let server = settings.server(&state.name)?;
        let catalog = state.catalog.as_ref()?;
        let text = catalog.instructions.as_deref().map(str::trim).filter(|text| !text.is_empty());
        Some((server_key(server), text.map(str::to_owned)))
    })
}

#[cfg(test)]
mod tests;
