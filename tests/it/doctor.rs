//! `doctor` on a healthy setup and on each broken one: the codes and statuses it reports,
//! its exit code, and that the same setup gives the same codes on every run.

use std::{os::unix::fs::PermissionsExt, time::Duration};

use serde_json::{Value, json};

use crate::{
    remote::HttpFixture,
    support::{CommandOutput, TestEnv, fixture, fixture_bin},
};

/// `(code, status, subject)` of each check, in order.
type Findings = Vec<(String, String, String)>;

async fn doctor(env: &TestEnv, extra_env: &[(&str, String)]) -> (CommandOutput, Findings, Value) {
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        env.command()
            .args(["doctor", "--json"])
            .envs(extra_env.iter().map(|(key, value)| (*key, value)))
            .output(),
    )
    .await
    .expect("doctor finishes in bounded time")
    .expect("run doctor");
    let output = CommandOutput {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    let report: Value =
        serde_json::from_str(&output.stdout).unwrap_or_else(|error| panic!("{error}: {output:?}"));
    let findings = report["checks"]
        .as_array()
        .expect("checks array")
        .iter()
        .map(|check| {
            for key in ["code", "status", "subject", "message", "hint"] {
                assert!(check.get(key).is_some(), "`{key}` missing in {check}");
            }
            let text = |key: &str| check[key].as_str().unwrap_or_default().to_owned();
            (text("code"), text("status"), text("subject"))
        })
        .collect();
    (output, findings, report)
}

/// The check with this code and subject.
fn find<'a>(report: &'a Value, code: &str, subject: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|check| check["code"] == code && check["subject"] == subject)
        .unwrap_or_else(|| panic!("no {code} for `{subject}` in {report:#}"))
}

/// The tool count in the FB020 message of `subject` ("...; N tools").
fn tool_count(report: &Value, subject: &str) -> usize {
    let message = find(report, "FB020", subject)["message"].as_str().expect("message").to_owned();
    let count = message.rsplit("; ").next().and_then(|last| last.strip_suffix(" tools"));
    count.and_then(|count| count.parse().ok()).unwrap_or_else(|| panic!("no tool count in `{message}`"))
}

/// A port on 127.0.0.1 that nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
}

#[tokio::test]
async fn doctor_passes_a_healthy_setup() {
    let env = TestEnv::new();
    env.write_config(&json!({ "mcpServers": { "good": fixture("good", &[]) } }));
    let (output, findings, report) = doctor(&env, &[]).await;
    assert_eq!(output.code, Some(0), "{output:?}");
    assert!(findings.iter().all(|(_, status, _)| status == "ok"), "{report:#}");
    let connected = find(&report, "FB020", "good");
    let message = connected["message"].as_str().expect("message");
    assert!(
        message.contains("connected over stdio in ") && message.contains("protocol 2025-11-25"),
        "{message}"
    );
    assert!(tool_count(&report, "good") > 0, "{message}");
    assert_eq!(connected["hint"], Value::Null);
    for code in ["FB001", "FB002", "FB010", "FB040", "FB050"] {
        assert!(findings.iter().any(|(found, _, _)| found == code), "{code} missing: {report:#}");
    }

    // The text form: one line per check, then a summary.
    let text = env.run(&["doctor"]).await;
    assert_eq!(text.code, Some(0), "{text:?}");
    assert!(
        text.stdout.lines().any(|line| line.starts_with("ok    FB020 good: connected over stdio")),
        "{}",
        text.stdout
    );
    assert!(text.stdout.contains(" 0 warnings, 0 errors"), "{}", text.stdout);
}

/// With only a server whose command is missing there is nothing to connect to: the
/// connection check is still listed, as a warning that points at FB012, so the missing
/// command counts as one error.
#[tokio::test]
async fn doctor_skips_the_connection_of_a_missing_command() {
    let env = TestEnv::new();
    env.write_config(&json!({ "mcpServers": { "missing": { "command": "foxxy-no-such-command" } } }));
    let text = env.run(&["doctor"]).await;
    assert_eq!(text.code, Some(1), "{text:?}");
    let lines: Vec<&str> = text.stdout.lines().filter(|line| line.contains(" missing: ")).collect();
    assert_eq!(lines.len(), 2, "{}", text.stdout);
    assert!(
        lines[0].starts_with("error FB012 missing: command `foxxy-no-such-command` not found"),
        "{lines:?}"
    );
    assert!(lines[1].starts_with("warn  FB020 missing: not connected"), "{lines:?}");
    assert!(lines[1].ends_with("; hint: fix FB012 first"), "{lines:?}");
    assert!(text.stdout.trim_end().ends_with(", 1 warning, 1 error"), "{}", text.stdout);
}

#[tokio::test]
async fn doctor_reports_each_broken_upstream_with_a_stable_code() {
    let env = TestEnv::new();
    // A command found only through the shell's PATH.
    let shell_only = env.path("shell-bin");
    std::fs::create_dir_all(&shell_only).expect("dir");
    std::os::unix::fs::symlink(fixture_bin(), shell_only.join("fixture-on-shell-path")).expect("symlink");
    let path = format!("{}:{}", shell_only.display(), std::env::var("PATH").unwrap_or_default());
    env.write_config(&json!({ "mcpServers": {
        "missing": { "command": "foxxy-no-such-command" },
        "shell-only": { "command": "fixture-on-shell-path", "args": ["--name", "shell"] },
        "crashing": fixture("crashing", &["--exit-immediately"]),
        "unreachable": { "url": format!("http://127.0.0.1:{}/mcp", closed_port()) },
        "signed-out": { "url": format!("http://127.0.0.1:{}/mcp", closed_port()), "oauth": {} },
    }}));
    // A token cache that other users can read.
    let auth = env.home().join("auth");
    std::fs::create_dir_all(&auth).expect("auth dir");
    std::fs::set_permissions(&auth, std::fs::Permissions::from_mode(0o755)).expect("chmod");

    let (output, findings, report) = doctor(&env, &[("PATH", path.clone())]).await;
    assert_eq!(output.code, Some(1), "{output:?}");
    let status = |code: &str, subject: &str| {
        find(&report, code, subject)["status"].as_str().expect("status").to_owned()
    };
    assert_eq!(status("FB012", "missing"), "error");
    // A missing command is one error: the connection check is skipped and says why.
    let skipped = find(&report, "FB020", "missing");
    assert_eq!(skipped["status"], "warn", "{skipped}");
    assert!(skipped["message"].as_str().expect("message").contains("FB012"), "{skipped}");
    assert_eq!(
        findings.iter().filter(|(_, status, subject)| subject == "missing" && status == "error").count(),
        1,
        "{report:#}"
    );
    assert_eq!(status("FB011", "shell-only"), "warn");
    assert!(
        find(&report, "FB011", "shell-only")["hint"]
            .as_str()
            .expect("hint")
            .contains("fixture-on-shell-path")
    );
    assert_eq!(status("FB020", "shell-only"), "ok");
    let crashed = find(&report, "FB020", "crashing");
    assert_eq!(crashed["status"], "error");
    let message = crashed["message"].as_str().expect("message");
    assert!(message.contains("exited"), "{crashed}");
    assert!(message.ends_with("its stderr ends: fixture crashing on purpose"), "{crashed}");
    assert!(crashed["hint"].as_str().expect("hint").contains("--exit-immediately"), "{crashed}");
    let refused = find(&report, "FB020", "unreachable");
    assert_eq!(refused["status"], "error");
    assert!(refused["message"].as_str().expect("message").contains("connection refused"), "{refused}");
    let signed_out = find(&report, "FB031", "signed-out");
    assert_eq!(signed_out["status"], "error");
    assert!(signed_out["hint"].as_str().expect("hint").contains("foxxy-bridge oauth login signed-out"));
    // No connection is tried (it would start a sign-in).
    assert!(
        !findings.iter().any(|(code, _, subject)| code == "FB020" && subject == "signed-out"),
        "{report:#}"
    );
    let mode = find(&report, "FB051", &format!("token cache `{}`", auth.display()));
    assert_eq!(mode["status"], "error");
    assert!(mode["hint"].as_str().expect("hint").contains("chmod 700"), "{mode}");
    // doctor does not repair anything itself.
    assert_eq!(std::fs::metadata(&auth).expect("auth").permissions().mode() & 0o777, 0o755);

    let (_, again, _) = doctor(&env, &[("PATH", path)]).await;
    assert_eq!(again, findings, "the same setup gives the same codes");
}

#[tokio::test]
async fn doctor_warns_about_a_large_catalog_and_reports_clashes() {
    let env = TestEnv::new();
    env.write_config(&json!({
        "mcpServers": {
            "one": fixture("one", &["--many-tools", "130"]),
            "two": fixture("two", &[]),
        },
        "bridge": { "conflictResolution": "error", "defaultNamespace": false },
    }));
    let (output, findings, report) = doctor(&env, &[]).await;
    assert_eq!(output.code, Some(1), "{output:?}");
    let count = find(&report, "FB040", "catalog");
    assert_eq!(count["status"], "warn", "{report:#}");
    assert!(count["message"].as_str().expect("message").contains("more than 128"), "{count}");
    let clashes: Vec<_> = findings.iter().filter(|(code, _, _)| code == "FB041").collect();
    assert!(!clashes.is_empty(), "{report:#}");
    assert!(clashes.iter().all(|(_, status, _)| status == "error"));
    assert!(!findings.iter().any(|(code, _, _)| code == "FB042"), "{report:#}");

    // Under "first" the clashes resolve, silently hiding the second server's tools.
    env.write_config(&json!({
        "mcpServers": { "one": fixture("one", &[]), "two": fixture("two", &[]) },
        "bridge": { "conflictResolution": "first", "defaultNamespace": false },
    }));
    let (output, _, report) = doctor(&env, &[]).await;
    assert_eq!(output.code, Some(0), "{output:?}");
    let hidden = find(&report, "FB042", "catalog");
    assert_eq!(hidden["status"], "warn");
    let expected = format!("{} tools are hidden", tool_count(&report, "two"));
    assert!(hidden["message"].as_str().expect("message").starts_with(&expected), "{hidden}");
}

#[tokio::test]
async fn doctor_stops_at_an_invalid_config() {
    let env = TestEnv::new();
    std::fs::write(env.config_path(), "{ mcpServers: { bad: { command: 1 } } }").expect("write");
    let (output, findings, report) = doctor(&env, &[]).await;
    assert_eq!(output.code, Some(1), "{output:?}");
    let invalid = find(&report, "FB002", "config");
    assert_eq!(invalid["status"], "error");
    assert!(invalid["message"].as_str().expect("message").contains("mcpServers.bad.command"), "{invalid}");
    assert!(!findings.iter().any(|(code, _, _)| code == "FB020"), "{report:#}");

    std::fs::remove_file(env.config_path()).expect("remove");
    let (output, _, report) = doctor(&env, &[]).await;
    assert_eq!(output.code, Some(1), "{output:?}");
    assert_eq!(find(&report, "FB001", "config")["status"], "error");
}

/// The fixture OAuth server's request counters.
async fn oauth_stats(authority: &str) -> Value {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(authority).await.expect("connect");
    let request = format!("GET /stats HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    let body = response.split_once("\r\n\r\n").map(|(_, body)| body).unwrap_or_default();
    serde_json::from_str(body).expect("stats JSON")
}

#[tokio::test]
async fn doctor_reads_sign_ins_without_starting_one() {
    let server = HttpFixture::start(0, &["--name", "sec", "--oauth"]).await;
    let env = TestEnv::new();
    env.write_config(&json!({
        "mcpServers": {
            "sec": { "url": server.url(), "oauth": {} },
            // The same protected server, without an `oauth` block: a 401 is reported.
            "plain": { "url": server.url() },
        },
        "bridge": { "oauth_port": 0 },
    }));
    let browser_log = env.path("browser.log");
    let browser = format!("'{}' --browse-log '{}' --browse", fixture_bin().display(), browser_log.display());
    let with_browser = [("FOXXY_BRIDGE_BROWSER", browser)];

    let (output, findings, report) = doctor(&env, &with_browser).await;
    assert_eq!(output.code, Some(1), "{output:?}");
    assert_eq!(find(&report, "FB031", "sec")["status"], "error");
    assert!(!findings.iter().any(|(code, _, subject)| code == "FB020" && subject == "sec"), "{report:#}");
    let plain = find(&report, "FB020", "plain");
    assert_eq!(plain["status"], "error", "{plain}");
    assert!(plain["hint"].as_str().expect("hint").contains("oauth login plain"), "{plain}");
    let stats = oauth_stats(&server.addr).await;
    assert_eq!((stats["register"].as_u64(), stats["authorize"].as_u64()), (Some(0), Some(0)), "{stats}");
    assert!(!browser_log.exists(), "doctor opened a browser");

    let login = env
        .command()
        .envs(with_browser.iter().map(|(key, value)| (*key, value)))
        .args(["oauth", "login", "sec"])
        .output()
        .await
        .expect("login");
    assert!(login.status.success(), "{login:?}");
    let (output, _, report) = doctor(&env, &[]).await;
    let signed_in = find(&report, "FB030", "sec");
    assert_eq!(signed_in["status"], "ok", "{report:#}");
    assert!(
        signed_in["message"].as_str().expect("message").starts_with("signed in; token valid until "),
        "{signed_in}"
    );
    let connected = find(&report, "FB020", "sec");
    assert_eq!(connected["status"], "ok", "{report:#}");
    assert!(connected["message"].as_str().expect("message").contains("over streamable-http"), "{connected}");
    // `plain` shares the URL, so the stored tokens serve it too.
    assert_eq!(find(&report, "FB020", "plain")["status"], "ok", "{report:#}");
    assert_eq!(output.code, Some(0), "{output:?}");
}
