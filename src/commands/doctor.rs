//! `foxxy-bridge doctor`: runs the checks of `crate::doctor` in order (config, state
//! directories, commands, sign-ins, connections and catalog) and prints one line per
//! check, or JSON; exit 1 when any check is an error.

use std::collections::BTreeSet;

use serde_json::json;

use super::{Context, Outcome};
use crate::{
    config,
    doctor::{Check, CheckCode, CheckStatus, connect, local, signin},
    oauth::{Browser, SignInContext, TokenStore},
    output,
};

pub async fn run(context: &Context, json: bool) -> anyhow::Result<Outcome> {
    let checks = checks(context).await;
    if json {
        output::line(serde_json::to_string_pretty(&json!({ "checks": checks }))?);
    } else {
        print(&checks);
    }
    Ok(if checks.iter().any(|check| check.status == CheckStatus::Error) {
        Outcome::Failure
    } else {
        Outcome::Success
    })
}

async fn checks(context: &Context) -> Vec<Check> {
    let mut checks = Vec::new();
    let path = context.config_path();
    let path = match path {
        Ok(path) => path,
        Err(error) => {
            let error = error.downcast::<config::ConfigError>();
            match &error {
                Ok(error) => checks.push(local::config_file(Err(error))),
                Err(other) => checks.push(Check::error(
                    CheckCode::ConfigFile,
                    "config",
                    format!("{other:#}"),
                    "pass `--config PATH`",
                )),
            }
            checks.extend(local::directories(&context.paths));
            return checks;
        }
    };
    let loaded = config::load(&path);
    if !matches!(loaded, Err(config::ConfigError::Read { .. })) {
        checks.push(local::config_file(Ok(&path)));
    }
    checks.push(local::config_valid(&loaded, &path));
    let Ok(settings) = loaded else {
        checks.extend(local::directories(&context.paths));
        return checks;
    };
    let log = context.start_logging(Some(&settings), true);
    checks.extend(local::servers(&settings));
    checks.extend(local::directories(&context.paths));
    let commands = local::commands(&settings, context.shell_path.as_deref(), &context.clients.cwd);
    let missing_commands: BTreeSet<String> = commands
        .iter()
        .filter(|check| check.code == CheckCode::CommandMissing)
        .map(|check| check.subject.clone())
        .collect();
    checks.extend(commands);
    let store = TokenStore::new(context.paths.auth_dir());
    let sign_ins = signin::check(&settings, &store);
    checks.extend(sign_ins.checks.iter().cloned());
    // Never a browser from doctor: a sign-in it cannot avoid (a rejected token) is
    // reported, not run.
    let oauth = SignInContext::new(store, Browser::None, &settings.bridge);
    // A local upstream that fails at start has its last stderr lines in its cause.
    let connections =
        connect::check(&settings, &sign_ins, &missing_commands, oauth, settings.bridge.startup_timeout).await;
    drop(log);
    checks.extend(connections);
    checks
}

fn print(checks: &[Check]) {
    for check in checks {
        let mut line = format!(
            "{:<5} {} {}: {}",
            check.status.label(),
            check.code.as_str(),
            check.subject,
            check.message
        );
        if let Some(hint) = &check.hint {
            line.push_str("; hint: ");
            line.push_str(hint);
        }
        output::line(line);
    }
    let count = |status| checks.iter().filter(|check| check.status == status).count();
    let plural =
        |count: usize, word: &str| if count == 1 { format!("1 {word}") } else { format!("{count} {word}s") };
    output::line(format_args!(
        "{}: {} ok, {}, {}",
        plural(checks.len(), "check"),
        count(CheckStatus::Ok),
        plural(count(CheckStatus::Warn), "warning"),
        plural(count(CheckStatus::Error), "error")
    ));
}
