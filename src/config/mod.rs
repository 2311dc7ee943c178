//! The config file: where it is, what it may contain, and what it means.
//!
//! Owns the file format (JSON5; the serde + schemars types in `raw.rs`), its JSON Schema
//! (generated from those types, committed as `schema/foxxy-bridge.schema.json`), `${VAR}`
//! expansion (`expand.rs`), diagnostics that name `file:line:column` (`syntax.rs`) or a
//! JSON path (`validate.rs`, `error.rs`), and the resolved [`Settings`] the rest of the
//! bridge runs on (`settings.rs`, `resolve.rs`). `load.rs` ties the stages together:
//!
//! ```text
//! text ─json5─▶ Node (node.rs) ─expand ${VAR}─▶ Node ─check against the schema─▶ JSON value
//!      ─deserialize per server─▶ Raw* ─semantic checks, defaults, units─▶ Settings
//! ```
//!
//! Every stage after parsing adds to one list of problems, so all of them are reported
//! together. `watch.rs` watches the file for hot reload and delivers it reloaded. Not
//! owned here: where the state root is (`paths.rs`), the command line (`cli.rs`), and
//! acting on the settings.

mod error;
mod expand;
mod load;
mod node;
mod raw;
mod resolve;
pub mod settings;
mod syntax;
mod validate;

pub use validate::did_you_mean;
pub mod watch;

#[cfg(test)]
mod tests;

pub use error::{ConfigError, Location, Problem};
pub use load::{load, load_str, locate};
pub use raw::DEFAULT_LOG_LEVEL;
pub use settings::*;

/// The JSON Schema of the config file, pretty-printed, ending in a newline: the committed
/// `schema/foxxy-bridge.schema.json`, which a test keeps identical to [`generated_schema_json`].
pub fn schema_json() -> &'static str {
    validate::SCHEMA_TEXT
}

/// The JSON Schema generated from the config types (`raw.rs`), in the form of
/// [`schema_json`]. Only tests need it; the binary prints and checks the committed file.
pub fn generated_schema_json() -> String {
    let mut text =
        serde_json::to_string_pretty(&raw::schema_value()).expect("a JSON value always serializes");
    text.push('\n');
    text
}
