//! MCP clients' own config files: where each client keeps its server list
//! (`locations.rs`), what an entry there means to foxxy-bridge (`entries.rs`), and editing
//! a JSON, JSONC or JSON5 file in place so that every byte outside the edited entries
//! stays as it was (`edit.rs`).
//!
//! `import` reads client files and edits the bridge's config; `install` edits a client's
//! file. Neither knows the file formats: both go through this module. It does not own the
//! bridge's own config format (`config/` does) or printing (`output.rs`).

pub mod edit;
pub mod entries;
pub mod locations;

pub use self::{
    edit::{Document, EditError, write_with_backup},
    entries::{ClientEntry, Converted, convert, read_entries, runs_foxxy_bridge},
    locations::{Client, ClientEnv, ClientFile, Scope},
};
