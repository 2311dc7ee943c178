//! Opening the sign-in URL: the system browser (`open` crate), or the command in
//! `FOXXY_BRIDGE_BROWSER` (split like a shell would, no shell run, the URL appended as
//! its last argument, started detached), or nothing at all with `none`. The URL is
//! always logged too, so a user on a headless machine can copy it.
//!
//! The command runs on the blocking pool and is not waited for: a browser outlives the
//! sign-in, and a thread only reaps it. The logged URL shows its `resource` through
//! `redacted_url`.

use std::process::Stdio;

/// How to show the user a sign-in URL.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Browser {
    /// The desktop's default browser.
    #[default]
    System,
    /// Log the URL only.
    None,
    /// A command line; the URL is appended.
    Command(Vec<String>),
}

impl Browser {
    /// From the value of `FOXXY_BRIDGE_BROWSER` (unset or empty = system browser).
    pub fn from_setting(value: Option<&str>) -> Result<Self, String> {
        match value.map(str::trim) {
            None | Some("") => Ok(Browser::System),
            Some("none") => Ok(Browser::None),
            Some(command) => {
                let words = shell_words::split(command)
                    .map_err(|error| format!("cannot parse FOXXY_BRIDGE_BROWSER `{command}`: {error}"))?;
                if words.is_empty() {
                    return Ok(Browser::System);
                }
                Ok(Browser::Command(words))
            }
        }
    }

    /// Whether opening a URL here reaches the user: a `FOXXY_BRIDGE_BROWSER` command
    /// always does, the system browser only with a display ([`has_display`]).
    pub fn shows_itself(&self) -> bool {
        match self {
            Browser::Command(_) => true,
            Browser::System => has_display(),
            Browser::None => false,
        }
    }

    /// Log the sign-in URL without opening anything (the user was shown it another way).
    pub fn log_only(&self, upstream: &str, url: &str) {
        tracing::info!(upstream, "sign-in URL (not opened in a browser): {}", redacted_resource(url));
    }

    /// Show `url` to the user. Never waits for the browser.
    pub fn open(&self, upstream: &str, url: &str) {
        tracing::info!(
            upstream,
            "sign-in required; open this URL in a browser to continue: {}",
            redacted_resource(url)
        );
        // Launching may block (a slow launcher, a slow disk): it runs on the blocking
        // pool, and nobody waits for it.
        let (browser, upstream, url) = (self.clone(), upstream.to_owned(), url.to_owned());
        if tokio::runtime::Handle::try_current().is_ok() {
            tokio::task::spawn_blocking(move || browser.launch(&upstream, &url));
        } else {
            browser.launch(&upstream, &url);
        }
    }

    fn launch(&self, upstream: &str, url: &str) {
        match self {
            Browser::None => {}
            Browser::System => {
                if let Err(error) = open::that_detached(url) {
                    tracing::warn!(
                        upstream,
                        "could not open a browser ({error}); open the URL above by hand"
                    );
                }
            }
            Browser::Command(words) => {
                let mut command = std::process::Command::new(&words[0]);
                command
                    .args(&words[1..])
                    .arg(url)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null());
                match command.spawn() {
                    // Reap it whenever it ends, without waiting for it here.
                    Ok(mut child) => {
                        std::thread::spawn(move || {
                            let _ = child.wait();
                        });
                    }
                    Err(error) => {
                        tracing::warn!(upstream, "could not run FOXXY_BRIDGE_BROWSER `{}`: {error}", words[0])
                    }
                }
            }
        }
    }
}

/// Whether a browser opened here can be seen: always on macOS; elsewhere with `DISPLAY`
/// or `WAYLAND_DISPLAY` set, and not in an SSH session.
pub fn has_display() -> bool {
    if cfg!(target_os = "macos") {
        return true;
    }
    let set = |name: &str| std::env::var_os(name).is_some_and(|value| !value.is_empty());
    (set("DISPLAY") || set("WAYLAND_DISPLAY")) && !set("SSH_CONNECTION")
}

/// The sign-in URL for the log: its `resource` parameter (the upstream's URL, which may
/// carry credentials) shown through [`super::store::redacted_url`].
fn redacted_resource(url: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else { return super::store::redacted_url(url) };
    let pairs: Vec<(String, String)> = parsed
        .query_pairs()
        .map(|(key, value)| {
            let value =
                if key == "resource" { super::store::redacted_url(&value) } else { value.into_owned() };
            (key.into_owned(), value)
        })
        .collect();
    parsed.query_pairs_mut().clear().extend_pairs(pairs);
    parsed.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings() {
        assert_eq!(Browser::from_setting(None), Ok(Browser::System));
        assert_eq!(Browser::from_setting(Some("  ")), Ok(Browser::System));
        assert_eq!(Browser::from_setting(Some("none")), Ok(Browser::None));
        assert_eq!(
            Browser::from_setting(Some("firefox --new-tab")),
            Ok(Browser::Command(vec!["firefox".into(), "--new-tab".into()]))
        );
        assert_eq!(
            Browser::from_setting(Some("'/opt/my browser/run' -x")),
            Ok(Browser::Command(vec!["/opt/my browser/run".into(), "-x".into()]))
        );
        assert!(Browser::from_setting(Some("'unclosed")).is_err());
    }
}
