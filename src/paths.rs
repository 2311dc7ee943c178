//! Where the bridge keeps its state: one root (`~/.foxxy-bridge` or `$FOXXY_BRIDGE_HOME`)
//! holding `auth/` (token cache), `logs/`, `cache/` (what may be deleted at any time,
//! such as the upstreams' remembered instructions) and `run/` (the hubs' sockets and lock
//! files, private to the user: mode 0700).
//!
//! Resolved once at start-up from the environment; the rest of the program receives a
//! [`StatePaths`] value and never looks at the environment itself.

use std::path::{Path, PathBuf};

/// The state directory layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatePaths {
    root: PathBuf,
}

impl StatePaths {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// `$FOXXY_BRIDGE_HOME`, else `~/.foxxy-bridge` (home found with `directories`),
    /// else `./.foxxy-bridge` when there is no home directory at all.
    pub fn from_env() -> Self {
        if let Some(root) = std::env::var_os("FOXXY_BRIDGE_HOME").filter(|root| !root.is_empty()) {
            return Self::new(root);
        }
        let home = directories::BaseDirs::new()
            .map(|dirs| dirs.home_dir().to_path_buf())
            .unwrap_or_else(|| PathBuf::from("."));
        Self::new(home.join(".foxxy-bridge"))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn auth_dir(&self) -> PathBuf {
        self.root.join("auth")
    }

    pub fn logs_dir(&self) -> PathBuf {
        self.root.join("logs")
    }

    /// The hubs' sockets and lock files.
    pub fn run_dir(&self) -> PathBuf {
        self.root.join("run")
    }

    /// The upstreams' instructions remembered across sessions.
    pub fn instructions_dir(&self) -> PathBuf {
        self.root.join("cache").join("instructions")
    }
}
