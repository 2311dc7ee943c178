//! Where each MCP client keeps its server list: the file, and the object inside it.
//!
//! Every path is derived from a [`ClientEnv`] read once at start (home, config
//! directory, current directory), never from the environment here.
//!
//! The clients are Claude Desktop, Claude Code, Cursor, VS Code and Windsurf. Inside a
//! file, the server map is `mcpServers`, VS Code's `servers`, or for Claude Code's
//! per-project servers `projects[<dir>].mcpServers` (`ClientFile::map_path`).

use std::path::{Path, PathBuf};

/// The clients whose configs `import` reads and `install` edits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    ClaudeDesktop,
    ClaudeCode,
    Cursor,
    Vscode,
    Windsurf,
}

impl Client {
    pub const ALL: [Client; 5] =
        [Client::ClaudeDesktop, Client::ClaudeCode, Client::Cursor, Client::Vscode, Client::Windsurf];

    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Client::ClaudeDesktop => "claude-desktop",
            Client::ClaudeCode => "claude-code",
            Client::Cursor => "cursor",
            Client::Vscode => "vscode",
            Client::Windsurf => "windsurf",
        }
    }

    pub fn from_name(name: &str) -> Option<Client> {
        Client::ALL.into_iter().find(|client| client.name() == name)
    }

    /// The key of the server map: VS Code says `servers`, everyone else `mcpServers`.
    pub fn servers_key(self) -> &'static str {
        match self {
            Client::Vscode => "servers",
            _ => "mcpServers",
        }
    }

    /// Every file (and place in it) where this client keeps servers, user scope first.
    pub fn files(self, env: &ClientEnv) -> Vec<ClientFile> {
        let home = &env.home;
        let cwd = &env.cwd;
        let one = |path: PathBuf, scope: Scope| ClientFile::new(Some(self), path, scope);
        match self {
            Client::ClaudeDesktop => {
                let dir = if cfg!(target_os = "macos") {
                    home.join("Library/Application Support/Claude")
                } else {
                    env.config_dir.join("Claude")
                };
                vec![one(dir.join("claude_desktop_config.json"), Scope::User)]
            }
            Client::ClaudeCode => vec![
                one(home.join(".claude.json"), Scope::User),
                one(home.join(".claude.json"), Scope::Local(cwd.to_string_lossy().into_owned())),
                one(cwd.join(".mcp.json"), Scope::Project),
            ],
            Client::Cursor => vec![
                one(home.join(".cursor/mcp.json"), Scope::User),
                one(cwd.join(".cursor/mcp.json"), Scope::Project),
            ],
            Client::Vscode => {
                let user = if cfg!(target_os = "macos") {
                    home.join("Library/Application Support/Code/User")
                } else {
                    env.config_dir.join("Code/User")
                };
                vec![
                    one(user.join("mcp.json"), Scope::User),
                    one(cwd.join(".vscode/mcp.json"), Scope::Project),
                ]
            }
            Client::Windsurf => vec![one(home.join(".codeium/windsurf/mcp_config.json"), Scope::User)],
        }
    }

    /// The user-scope file `install` edits.
    pub fn install_file(self, env: &ClientEnv) -> ClientFile {
        self.files(env).into_iter().next().expect("every client has a user-scope file")
    }
}

/// Which part of a client's configuration a file (or a place in it) is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// The user's own file, for every project.
    User,
    /// Claude Code's per-directory servers: `projects[<directory>].mcpServers` in
    /// `~/.claude.json`.
    Local(String),
    /// A file in the current directory (`.mcp.json`, `.cursor/mcp.json`, `.vscode/mcp.json`).
    Project,
    /// A file named on the command line.
    Given,
}

/// One server map in one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFile {
    /// `None` for a file named on the command line.
    pub client: Option<Client>,
    pub path: PathBuf,
    pub scope: Scope,
    /// The keys from the top of the file to the server map.
    pub map_path: Vec<String>,
}

impl ClientFile {
    fn new(client: Option<Client>, path: PathBuf, scope: Scope) -> ClientFile {
        let key = client.map_or("mcpServers", Client::servers_key).to_owned();
        let map_path = match &scope {
            Scope::Local(directory) => vec!["projects".to_owned(), directory.clone(), key],
            _ => vec![key],
        };
        ClientFile { client, path, scope, map_path }
    }

    /// A file named on the command line; its map is `servers` when `vscode_style`.
    pub fn given(path: PathBuf, vscode_style: bool) -> ClientFile {
        let mut file = ClientFile::new(None, path, Scope::Given);
        if vscode_style {
            file.map_path = vec!["servers".to_owned()];
        }
        file
    }

    /// How the file is named in output: `claude-code (local scope)`, a path for a given file.
    pub fn label(&self) -> String {
        let Some(client) = self.client else { return self.path.display().to_string() };
        match self.scope {
            Scope::User => client.name().to_owned(),
            Scope::Local(_) => format!("{} (local scope)", client.name()),
            Scope::Project => format!("{} (project)", client.name()),
            Scope::Given => self.path.display().to_string(),
        }
    }
}

/// The environment the client paths depend on, read once at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientEnv {
    pub home: PathBuf,
    /// `$XDG_CONFIG_HOME`, else `~/.config`.
    pub config_dir: PathBuf,
    pub cwd: PathBuf,
}

impl ClientEnv {
    /// From `HOME` (else the `directories` crate's home), `XDG_CONFIG_HOME` and the
    /// current directory.
    pub fn from_env() -> ClientEnv {
        let home = std::env::var_os("HOME")
            .filter(|home| !home.is_empty())
            .map(PathBuf::from)
            .or_else(|| directories::BaseDirs::new().map(|dirs| dirs.home_dir().to_path_buf()))
            .unwrap_or_else(|| PathBuf::from("."));
        let config_dir = std::env::var_os("XDG_CONFIG_HOME")
            .filter(|dir| !dir.is_empty() && Path::new(dir).is_absolute())
            .map(PathBuf::from)
            .unwrap_or_else(|| home.join(".config"));
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
        ClientEnv { home, config_dir, cwd }
    }
}
