//! The file-system mechanics under the token store: the private directory, atomic writes
//! through temp files, and the clean-up of temp files that killed writers left behind.
//!
//! Nothing here knows about tokens; `store.rs` decides what to write where and under which
//! lock. The temp-file rule is documented in the module docs of `store.rs`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use super::StoreError;

/// Every temp file name starts with this; entries end in `.json` and never start with a dot.
pub(super) const TEMP_PREFIX: &str = ".tmp-";

/// Makes temp names unique within this process; the pid makes them unique across processes.
static NEXT_TEMP: AtomicU64 = AtomicU64::new(0);

pub(super) fn io_error(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io { path: path.to_owned(), source }
}

/// Creates `dir` (and missing parents) as 0700, and resets an existing `dir` to 0700 when
/// its mode is anything else: tokens must not sit in a directory others can list or enter.
pub(super) fn ensure_private_dir(dir: &Path) -> Result<(), StoreError> {
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io_error(dir))?;
    let mode = fs::metadata(dir).map_err(io_error(dir))?.permissions().mode() & 0o777;
    if mode != 0o700 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io_error(dir))?;
    }
    Ok(())
}

/// [`crate::locks::open_lock_file`], its error a store error naming the path.
pub(super) fn open_lock_file(path: &Path) -> Result<File, StoreError> {
    crate::locks::open_lock_file(path).map_err(io_error(path))
}

/// Replaces `target` with `contents` so that a reader sees either the old file or the new
/// one, never a mix: write a fresh temp file, fsync it, rename it over `target`, fsync the
/// directory. On error the temp file is removed; only a killed process leaves one behind.
///
/// The caller holds the lock for `url_hash`, whose temp files these are.
pub(super) fn write_atomically(
    dir: &Path,
    url_hash: &str,
    target: &Path,
    contents: &[u8],
) -> Result<(), StoreError> {
    let (temp_path, mut file) = create_temp(dir, url_hash)?;
    let written = file.write_all(contents).and_then(|()| file.sync_all());
    drop(file);
    let renamed = written
        .map_err(io_error(&temp_path))
        .and_then(|()| fs::rename(&temp_path, target).map_err(io_error(target)));
    if let Err(error) = renamed {
        // Best effort: if even this fails, the stale-temp rule removes the file later.
        let _ = fs::remove_file(&temp_path);
        return Err(error);
    }
    // Make the rename itself durable; without this a crash could bring back the old file.
    File::open(dir).and_then(|dir_file| dir_file.sync_all()).map_err(io_error(dir))
}

/// Creates `.tmp-<url hash>-<pid>-<n>` with O_EXCL and mode 0600 from the start, so the
/// secret never sits in a file with wider permissions, not even briefly.
fn create_temp(dir: &Path, url_hash: &str) -> Result<(PathBuf, File), StoreError> {
    let pid = std::process::id();
    // A name can only be taken by a dead process that had our pid; a few tries skip those.
    let mut attempts = 0;
    loop {
        let sequence = NEXT_TEMP.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("{TEMP_PREFIX}{url_hash}-{pid}-{sequence}"));
        match OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path) {
            Ok(file) => return Ok((path, file)),
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists && attempts < 100 => attempts += 1,
            Err(error) => return Err(io_error(&path)(error)),
        }
    }
}

/// Rule 1 of the temp-file rule: removes the temp files of `url_hash` that another process
/// created. Only the holder of that URL's lock may call this: every writer of that URL
/// holds the lock while its temp file exists, so another process's file is a dead writer's.
/// This process's own files are spared (another thread of ours may be mid-write).
pub(super) fn remove_orphaned_temps(dir: &Path, url_hash: &str) {
    let own_pid = std::process::id().to_string();
    let prefix = format!("{TEMP_PREFIX}{url_hash}-");
    for (path, name) in dir_names(dir) {
        let Some(rest) = name.strip_prefix(&prefix) else { continue };
        let pid = rest.split('-').next().unwrap_or_default();
        if !pid.is_empty() && pid != own_pid {
            // Best effort; a concurrent clean-up may have removed it already.
            let _ = fs::remove_file(path);
        }
    }
}

/// Rule 2 of the temp-file rule: removes any temp file (of any URL) not modified for
/// `older_than`. An atomic write takes milliseconds, so such a file belongs to a writer that
/// died or is stuck; a stuck writer's rename then fails and it reports the error.
pub(super) fn remove_stale_temps(dir: &Path, older_than: Duration) {
    let now = SystemTime::now();
    for (path, name) in dir_names(dir) {
        if !name.starts_with(TEMP_PREFIX) {
            continue;
        }
        let modified = fs::symlink_metadata(&path).and_then(|metadata| metadata.modified());
        let age = modified.map(|modified| now.duration_since(modified).unwrap_or_default());
        if age.is_ok_and(|age| age >= older_than) {
            let _ = fs::remove_file(path);
        }
    }
}

/// The entry files (`*.json`, not hidden) in `dir`, sorted; none when `dir` does not exist.
pub(super) fn entry_files(dir: &Path) -> Result<Vec<PathBuf>, StoreError> {
    let read_dir = match fs::read_dir(dir) {
        Ok(read_dir) => read_dir,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(io_error(dir)(error)),
    };
    let mut paths = Vec::new();
    for dir_entry in read_dir {
        let path = dir_entry.map_err(io_error(dir))?.path();
        let name = path.file_name().and_then(|name| name.to_str()).unwrap_or_default();
        if name.ends_with(".json") && !name.starts_with('.') {
            paths.push(path);
        }
    }
    paths.sort();
    Ok(paths)
}

/// `(path, file name)` of every UTF-8-named file in `dir`; nothing if it cannot be read
/// (the clean-ups that use this are best effort).
fn dir_names(dir: &Path) -> Vec<(PathBuf, String)> {
    let Ok(read_dir) = fs::read_dir(dir) else { return Vec::new() };
    read_dir
        .filter_map(|dir_entry| {
            let path = dir_entry.ok()?.path();
            let name = path.file_name()?.to_str()?.to_owned();
            Some((path, name))
        })
        .collect()
}

/// The file's bytes, or `None` if it does not exist (for example removed since listed).
pub(super) fn read_if_exists(path: &Path) -> Result<Option<(Vec<u8>, SystemTime)>, StoreError> {
    let not_found = |error: &io::Error| error.kind() == io::ErrorKind::NotFound;
    // Opening a FIFO waits for a writer, possibly forever: only files and directories
    // (whose read fails at once) are opened.
    match fs::metadata(path) {
        Ok(metadata) if !metadata.is_file() && !metadata.is_dir() => {
            let error = io::Error::other("not a regular file (a FIFO, socket or device)");
            return Err(io_error(path)(error));
        }
        Err(error) if not_found(&error) => return Ok(None),
        _ => {}
    }
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(error) if not_found(&error) => return Ok(None),
        Err(error) => return Err(io_error(path)(error)),
    };
    // The mtime of the open file, so bytes and time describe the same inode even if the
    // entry is replaced by a rename meanwhile.
    let modified = file.metadata().and_then(|metadata| metadata.modified()).map_err(io_error(path))?;
    let mut bytes = Vec::new();
    io::Read::read_to_end(&mut file, &mut bytes).map_err(io_error(path))?;
    Ok(Some((bytes, modified)))
}
