//! `foxxy-bridge install CLIENT`: adds foxxy-bridge to an MCP client's config (the
//! absolute path of this binary, so the client's short `PATH` does not matter), editing
//! the client's file in place with a backup. Optionally removes the client's entries that
//! the bridge now serves.
//!
//! The entry runs this binary with `stdio`, plus `--config` unless the bridge's config is
//! at one of the places the bridge looks by itself. With `--remove-imported`, the client's
//! entries that the bridge's config holds with the same content are removed too.

use std::path::PathBuf;

use anyhow::Context as _;

use super::{Context, Outcome};
use crate::{
    cli::ClientName,
    clients::{self, Client, Document, edit::Json},
    output,
};

fn client_of(name: ClientName) -> Client {
    match name {
        ClientName::ClaudeDesktop => Client::ClaudeDesktop,
        ClientName::ClaudeCode => Client::ClaudeCode,
        ClientName::Cursor => Client::Cursor,
        ClientName::Vscode => Client::Vscode,
        ClientName::Windsurf => Client::Windsurf,
    }
}

pub fn run(
    context: &Context,
    client: ClientName,
    name: &str,
    dry_run: bool,
    remove_imported: bool,
) -> anyhow::Result<Outcome> {
    let client = client_of(client);
    let file = client.install_file(&context.clients);
    let config = bridge_config(context)?;
    let entry = bridge_entry(context, client, &config)?;

    let original = match std::fs::read_to_string(&file.path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(error) => return Err(error).with_context(|| format!("cannot read `{}`", file.path.display())),
    };
    let document = Document::parse(&original, &file.path)?;
    let shown = file.path.display();
    match document.get(&file.map_path, name) {
        Some(existing) if existing.same_as(&entry) => {
            output::line(format_args!("unchanged `{name}` in `{shown}`: it already runs this foxxy-bridge"));
        }
        Some(existing) if !clients::runs_foxxy_bridge(&existing, None) => {
            anyhow::bail!(
                "`{name}` in `{shown}` is another server, not foxxy-bridge; hint: choose another name with `--name`"
            );
        }
        Some(_) => {
            document.set(&file.map_path, name, &entry);
            output::line(format_args!("updated   `{name}` in `{shown}`"));
        }
        None => {
            document.set(&file.map_path, name, &entry);
            output::line(format_args!("added     `{name}` to `{shown}`"));
        }
    }
    for other in clients::read_entries(&document, &file) {
        if other.name != name && clients::runs_foxxy_bridge(&other.value, context.own_binary.as_deref()) {
            output::error_line(format_args!(
                "warning: `{}` in `{shown}` also runs foxxy-bridge; remove it, or install with `--name {}` to replace it",
                other.name, other.name
            ));
        }
    }
    if remove_imported {
        remove_served(context, &file, &document, name, &config)?;
    }

    let text = document.text();
    if text == original {
        return Ok(Outcome::Success);
    }
    if dry_run {
        output::line(format_args!("dry run: `{shown}` not changed"));
        return Ok(Outcome::Success);
    }
    if let Some(backup) = clients::write_with_backup(&file.path, &text)? {
        output::line(format_args!("wrote `{shown}` (previous version in `{}`)", backup.display()));
    } else {
        output::line(format_args!("created `{shown}`"));
    }
    output::line(format_args!("restart {} to load the change", client.name()));
    Ok(Outcome::Success)
}

/// The bridge's config, absolute; it must exist, or the client would start a bridge that
/// fails.
fn bridge_config(context: &Context) -> anyhow::Result<PathBuf> {
    let path = context
        .config_path()
        .context("foxxy-bridge has no config yet; hint: run `foxxy-bridge import` first")?;
    let path = std::path::absolute(&path).with_context(|| format!("cannot resolve `{}`", path.display()))?;
    if !path.is_file() {
        anyhow::bail!(
            "the config `{}` does not exist; hint: run `foxxy-bridge import` first",
            path.display()
        );
    }
    Ok(path)
}

/// `{"command": "<this binary>", "args": ["stdio"]}`, with `--config` when the config is
/// not where a bridge started without options finds it, and `"type": "stdio"` for VS Code.
fn bridge_entry(context: &Context, client: Client, config: &std::path::Path) -> anyhow::Result<Json> {
    let binary = context.own_binary.clone().context("cannot find the path of this foxxy-bridge binary")?;
    let mut args = vec![Json::String("stdio".to_owned())];
    let default = context.default_config_paths().iter().find(|path| path.is_file()).cloned();
    if default.as_deref() != Some(config) {
        args.push(Json::String("--config".to_owned()));
        args.push(Json::String(config.display().to_string()));
    }
    let mut members = Vec::new();
    if client == Client::Vscode {
        members.push(("type".to_owned(), Json::String("stdio".to_owned())));
    }
    members.push(("command".to_owned(), Json::String(binary.display().to_string())));
    members.push(("args".to_owned(), Json::Array(args)));
    Ok(Json::Object(members))
}

/// Removes from the client's map every entry that the bridge's config holds under the
/// same name with the same content.
fn remove_served(
    context: &Context,
    file: &clients::ClientFile,
    document: &Document,
    own_name: &str,
    config: &std::path::Path,
) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(config).with_context(|| format!("cannot read `{}`", config.display()))?;
    let bridge = Document::parse(&text, config)?;
    let served = bridge.members(&["mcpServers".to_owned()]);
    for entry in clients::read_entries(document, file) {
        if entry.name == own_name || clients::runs_foxxy_bridge(&entry.value, context.own_binary.as_deref()) {
            continue;
        }
        let converted = clients::convert(file, &entry.value).ok();
        let same = served.iter().find(|(name, _)| *name == entry.name).is_some_and(|(_, value)| {
            converted.as_ref().is_some_and(|converted| converted.value.same_as(value))
        });
        if same {
            document.remove(&file.map_path, &entry.name);
            output::line(format_args!("removed   `{}`: foxxy-bridge serves it", entry.name));
        } else {
            output::line(format_args!(
                "kept      `{}`: foxxy-bridge's config has no identical entry",
                entry.name
            ));
        }
    }
    Ok(())
}
