//! `foxxy-bridge import`: copies server entries from MCP clients' configs into
//! foxxy-bridge's config, editing it in place (`clients::Document`), with a backup.
//!
//! It finds the client files (each client's known files, or the paths given), reads each
//! one's server entries, skips those that run foxxy-bridge itself, converts the rest
//! (`clients::convert`), checks that each converted entry loads as the bridge's config
//! would, and sets them in the bridge's config (a new one when there is none) through
//! `clients::Document`. The file is written once, at the end, with
//! `clients::write_with_backup`.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use super::{Context, Outcome, UsageError};
use crate::{
    clients::{self, Client, ClientFile, Document, Scope, edit::Json},
    config, output,
};

/// The bridge's server map.
fn servers_path() -> Vec<String> {
    vec!["mcpServers".to_owned()]
}

pub fn run(context: &Context, sources: &[String], dry_run: bool, overwrite: bool) -> anyhow::Result<Outcome> {
    let files = source_files(context, sources)?;
    let (target, exists) = context.config_path_or_new();
    let original = if exists {
        std::fs::read_to_string(&target).with_context(|| format!("cannot read `{}`", target.display()))?
    } else {
        String::new()
    };
    let document = Document::parse(&original, &target).context("cannot import into the config")?;
    let mut outcome = Outcome::Success;
    let mut changed = false;
    if files.is_empty() {
        output::line("no MCP client config found; name a client or a file: foxxy-bridge import PATH");
    }
    for file in &files {
        match import_file(context, file, &document, &target, overwrite) {
            Ok(file_changed) => changed |= file_changed,
            Err(error) => {
                output::error_line(format_args!("error: {error:#}"));
                outcome = Outcome::Failure;
            }
        }
    }
    let text = document.text();
    if !changed || text == original {
        if !files.is_empty() {
            output::line(format_args!("`{}` is up to date", target.display()));
        }
        return Ok(outcome);
    }
    if dry_run {
        output::line(format_args!("dry run: `{}` not changed", target.display()));
        return Ok(outcome);
    }
    let backup = clients::write_with_backup(&target, &text)?;
    match backup {
        Some(backup) => output::line(format_args!(
            "wrote `{}` (previous version in `{}`)",
            target.display(),
            backup.display()
        )),
        None => output::line(format_args!("created `{}`", target.display())),
    }
    Ok(outcome)
}

/// The client files to read: the named clients' (those that exist) and the named
/// files, or, with no argument, every client's that exists.
fn source_files(context: &Context, sources: &[String]) -> anyhow::Result<Vec<ClientFile>> {
    let existing = |client: Client| -> Vec<ClientFile> {
        client.files(&context.clients).into_iter().filter(|file| file.path.is_file()).collect()
    };
    if sources.is_empty() {
        return Ok(Client::ALL.into_iter().flat_map(existing).collect());
    }
    let mut files = Vec::new();
    for source in sources {
        if let Some(client) = Client::from_name(source) {
            let found = existing(client);
            if found.is_empty() {
                let tried: Vec<String> = client
                    .files(&context.clients)
                    .iter()
                    .map(|file| file.path.display().to_string())
                    .collect();
                output::line(format_args!(
                    "no {} config found (looked at {})",
                    client.name(),
                    tried.join(", ")
                ));
            }
            files.extend(found);
        } else if Path::new(source).is_file() {
            files.push(given_file(PathBuf::from(source)));
        } else {
            let names: Vec<&str> = Client::ALL.iter().map(|client| client.name()).collect();
            return Err(UsageError(format!(
                "`{source}` is neither a client ({}) nor a file",
                names.join(", ")
            ))
            .into());
        }
    }
    Ok(files)
}

/// A file named on the command line: VS Code style when it has `servers` and no `mcpServers`.
fn given_file(path: PathBuf) -> ClientFile {
    let vscode_style =
        std::fs::read_to_string(&path).ok().and_then(|text| Document::parse(&text, &path).ok()).is_some_and(
            |document| document.has_object(&["servers".to_owned()]) && !document.has_object(&servers_path()),
        );
    ClientFile::given(path, vscode_style)
}

/// Imports the entries of one client file into `document`; true when it changed.
fn import_file(
    context: &Context,
    file: &ClientFile,
    document: &Document,
    target: &Path,
    overwrite: bool,
) -> anyhow::Result<bool> {
    let text = std::fs::read_to_string(&file.path)
        .with_context(|| format!("cannot read `{}`", file.path.display()))?;
    let source = Document::parse(&text, &file.path)?;
    if matches!(file.scope, Scope::Local(_)) && !source.has_object(&file.map_path) {
        return Ok(false);
    }
    let label = file.label();
    let mut changed = false;
    for entry in clients::read_entries(&source, file) {
        let line = |status: &str, detail: &str| {
            output::line(format_args!("{status:<9} {} (from {label}){detail}", entry.name));
        };
        if clients::runs_foxxy_bridge(&entry.value, context.own_binary.as_deref()) {
            line("skipped", ": runs foxxy-bridge itself");
            continue;
        }
        let converted = match clients::convert(file, &entry.value)
            .and_then(|converted| loads(&entry.name, &converted.value, target).map(|()| converted))
        {
            Ok(converted) => converted,
            Err(reason) => {
                line("skipped", &format!(": {reason}"));
                continue;
            }
        };
        match document.get(&servers_path(), &entry.name) {
            Some(existing) if existing.same_as(&converted.value) => {
                line("unchanged", ": the config has the same entry");
                continue;
            }
            Some(_) if !overwrite => {
                line(
                    "conflict",
                    ": the config has a server of that name with other content; kept it (--overwrite replaces it)",
                );
                continue;
            }
            Some(_) => line("imported", " (replaced the entry of the same name)"),
            None => line("imported", ""),
        }
        document.set(&servers_path(), &entry.name, &converted.value);
        changed = true;
        for key in &converted.dropped {
            output::error_line(format_args!(
                "warning: `{}`: left out `{key}`, which foxxy-bridge does not read",
                entry.name
            ));
        }
        for (variable, at) in &converted.unexpanded {
            output::error_line(format_args!(
                "warning: `{}`: `{variable}` in `{at}` is {label}'s variable, which foxxy-bridge cannot expand; replace it in `{}` with the value or an environment variable `${{NAME}}`",
                entry.name,
                target.display()
            ));
        }
    }
    Ok(changed)
}

/// Whether `{ "mcpServers": { name: value } }` loads. Environment variables are not
/// looked up and their absence does not count: the bridge's environment is not this
/// shell's.
fn loads(name: &str, value: &Json, target: &Path) -> Result<(), String> {
    let single = Document::parse("{}", target).map_err(|error| error.to_string())?;
    single.set(&servers_path(), name, value);
    let lookup = |_: &str| None;
    match config::load_str(&single.text(), target, &lookup) {
        Ok(_) => Ok(()),
        Err(config::ConfigError::Invalid { problems, .. }) => {
            let relevant: Vec<String> = problems
                .iter()
                .filter(|problem| !problem.message.contains("is not set"))
                .map(|problem| problem.message.clone())
                .collect();
            if relevant.is_empty() {
                return Ok(());
            }
            Err(format!("foxxy-bridge cannot load it: {}", relevant.join("; ")))
        }
        Err(error) => Err(error.to_string()),
    }
}
