//! Where the hub of one config file lives: its socket and lock files in the state root's
//! `run/`, named after a short hash of the config file's path and this binary's version,
//! so that another config file or another version gets a hub of its own.

use std::{
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
};

use sha2::{Digest, Sha256};

use crate::paths::StatePaths;

/// The files of the hub that serves one config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubAddress {
    /// 12 lowercase hex digits naming the hub: a hash of the config file's canonical path
    /// and the binary's version.
    pub id: String,
    /// `run/hub-<id>.sock`: where the hub accepts bridges (0600).
    pub socket: PathBuf,
    /// `run/hub-<id>.lock`: held exclusively by the serving hub for its whole life.
    pub lock: PathBuf,
    /// `run/hub-<id>.start`: held by a bridge while it looks for a hub, starts one and
    /// waits for it to accept, so that bridges starting at once start one hub.
    pub start_lock: PathBuf,
    /// The config file the hub serves, canonical when it could be resolved.
    pub config: PathBuf,
    /// The state root's log directory, where the hub writes its lines.
    pub log_dir: PathBuf,
}

impl HubAddress {
    /// The hub of `config` for this binary's version. The path is made canonical when it
    /// can be (so that two spellings of one file share a hub), else used as given.
    pub fn for_config(paths: &StatePaths, config: &Path) -> Self {
        Self::for_version(paths, config, env!("CARGO_PKG_VERSION"))
    }

    fn for_version(paths: &StatePaths, config: &Path, version: &str) -> Self {
        let config = std::fs::canonicalize(config).unwrap_or_else(|_| config.to_path_buf());
        let id = hub_id(&config, version);
        let run_dir = paths.run_dir();
        Self {
            socket: run_dir.join(format!("hub-{id}.sock")),
            lock: run_dir.join(format!("hub-{id}.lock")),
            start_lock: run_dir.join(format!("hub-{id}.start")),
            config,
            log_dir: paths.logs_dir(),
            id,
        }
    }
}

/// The first 6 bytes of SHA-256 over the path's bytes, a NUL and the version, in hex.
fn hub_id(config: &Path, version: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(config.as_os_str().as_bytes());
    hasher.update([0]);
    hasher.update(version.as_bytes());
    hasher.finalize()[..6].iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::HubAddress;
    use crate::paths::StatePaths;

    fn address(config: &str, version: &str) -> HubAddress {
        HubAddress::for_version(&StatePaths::new("/state"), Path::new(config), version)
    }

    #[test]
    fn one_config_and_version_make_one_stable_id() {
        let first = address("/no/such/dir/config.json5", "1.0.0");
        assert_eq!(first, address("/no/such/dir/config.json5", "1.0.0"));
        assert_eq!(first.id.len(), 12);
        assert!(first.id.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)), "{}", first.id);
        assert_eq!(first.socket, Path::new(&format!("/state/run/hub-{}.sock", first.id)));
        assert_eq!(first.lock, Path::new(&format!("/state/run/hub-{}.lock", first.id)));
        assert_eq!(first.start_lock, Path::new(&format!("/state/run/hub-{}.start", first.id)));
        assert_eq!(first.config, Path::new("/no/such/dir/config.json5"));
    }

    #[test]
    fn another_config_or_version_gets_another_id() {
        let base = address("/no/such/dir/config.json5", "1.0.0").id;
        assert_ne!(base, address("/no/such/dir/other.json5", "1.0.0").id);
        assert_ne!(base, address("/no/such/dir/config.json5", "1.0.1").id);
    }

    #[test]
    fn two_spellings_of_one_file_share_a_hub() {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("config.json5");
        std::fs::write(&config, "{}").expect("write config");
        let dotted = dir.path().join(".").join("config.json5");
        let paths = StatePaths::new(dir.path());
        assert_eq!(HubAddress::for_config(&paths, &config), HubAddress::for_config(&paths, &dotted));
    }
}
