//! The keys of the cache: the canonical form of an upstream URL, and the stable hash that
//! turns a URL (lock files) or a URL and an issuer (entry files) into a file name.
//!
//! `redacted_url` is how a server URL is shown in logs and messages: `user:***@`, query
//! values `***`.

use sha2::{Digest, Sha256};

use super::StoreError;

/// The canonical form of an upstream URL, which keys the cache: scheme and host lowercased
/// and the default port dropped (the `url` crate does this), fragment dropped, trailing `/`s
/// dropped unless the path is just `/`; the query is kept. Only `http` and `https` qualify.
pub fn canonical_url(url: &str) -> Result<String, StoreError> {
    let invalid = |reason: String| StoreError::InvalidUrl { url: redacted_url(url), reason };
    let mut parsed = url::Url::parse(url).map_err(|error| invalid(error.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(invalid(format!("the scheme must be `http` or `https`, not `{}`", parsed.scheme())));
    }
    parsed.set_fragment(None);
    // Trim every trailing slash, not just one, so that canonicalizing is idempotent.
    let path = parsed.path().trim_end_matches('/').to_owned();
    parsed.set_path(if path.is_empty() { "/" } else { &path });
    Ok(parsed.into())
}

/// `url` as it may be shown (status output, logs, errors): the password of its userinfo
/// and the values of its query become `***`, so `https://user:pw@host/mcp?key=k` shows as
/// `https://user:***@host/mcp?key=***`. Text that is not a URL is shown as `***`
/// whenever it could hold credentials (an `@` or a `?`).
pub fn redacted_url(url: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(url.trim()) else {
        return if url.contains(['@', '?']) { "***".to_owned() } else { url.to_owned() };
    };
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some("***"));
    }
    if parsed.query().is_some() {
        let keys: Vec<String> = parsed.query_pairs().map(|(key, _)| key.into_owned()).collect();
        let query = keys.iter().map(|key| format!("{key}=***")).collect::<Vec<_>>().join("&");
        parsed.set_query(Some(&query));
    }
    parsed.set_fragment(None);
    // `***` in the password is percent-encoded by `url`; show it as written above.
    parsed.to_string().replacen(":%2A%2A%2A@", ":***@", 1)
}

/// The first 8 bytes of SHA-256 as 16 lowercase hex digits; why SHA-256 is in the module
/// docs of `store.rs`.
pub(super) fn hash16(input: &str) -> String {
    Sha256::digest(input.as_bytes())[..8].iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_url_cases() {
        #[track_caller]
        fn check(input: &str, expected: &str) {
            assert_eq!(canonical_url(input).unwrap(), expected, "input `{input}`");
            assert_eq!(canonical_url(expected).unwrap(), expected, "idempotent for `{expected}`");
        }
        check("https://mcp.example.com/mcp", "https://mcp.example.com/mcp");
        check("HTTPS://MCP.Example.COM/mcp", "https://mcp.example.com/mcp");
        check("https://mcp.example.com/MCP", "https://mcp.example.com/MCP");
        check("https://mcp.example.com/mcp/", "https://mcp.example.com/mcp");
        check("https://mcp.example.com/mcp//", "https://mcp.example.com/mcp");
        check("https://mcp.example.com", "https://mcp.example.com/");
        check("https://mcp.example.com/", "https://mcp.example.com/");
        check("https://mcp.example.com///", "https://mcp.example.com/");
        check("https://mcp.example.com/mcp#section", "https://mcp.example.com/mcp");
        check("https://mcp.example.com/mcp/?b=2&a=1#x", "https://mcp.example.com/mcp?b=2&a=1");
        check("https://mcp.example.com/?team=A", "https://mcp.example.com/?team=A");
        check("https://mcp.example.com:443/mcp", "https://mcp.example.com/mcp");
        check("https://mcp.example.com:8443/mcp", "https://mcp.example.com:8443/mcp");
        check("http://LOCALHOST:80/sse", "http://localhost/sse");
        check("http://127.0.0.1:8080/mcp/", "http://127.0.0.1:8080/mcp");
        check("https://mcp.example.com/a/../mcp", "https://mcp.example.com/mcp");
        check("  https://mcp.example.com/mcp ", "https://mcp.example.com/mcp");
    }

    #[test]
    fn canonical_url_rejects_what_is_not_an_http_url() {
        #[track_caller]
        fn check(input: &str, reason: &str) {
            let error = canonical_url(input).unwrap_err();
            assert!(matches!(error, StoreError::InvalidUrl { .. }), "{error:?}");
            let message = error.to_string();
            assert!(message.contains(&format!("`{input}`")) && message.contains(reason), "{message}");
        }
        check("mcp.example.com/mcp", "relative URL without a base");
        check("", "relative URL without a base");
        check("ftp://mcp.example.com/", "the scheme must be `http` or `https`, not `ftp`");
        check("file:///tmp/mcp", "not `file`");
        check("mailto:someone@example.com", "not `mailto`");
    }

    #[test]
    fn credentials_in_urls_are_redacted() {
        #[track_caller]
        fn check(input: &str, expected: &str) {
            assert_eq!(redacted_url(input), expected, "input `{input}`");
        }
        check(
            "https://user:pw@mcp.example.com/mcp?key=k&team=a",
            "https://user:***@mcp.example.com/mcp?key=***&team=***",
        );
        check("https://mcp.example.com/mcp", "https://mcp.example.com/mcp");
        check("https://user@mcp.example.com/mcp", "https://user@mcp.example.com/mcp");
        check("http://127.0.0.1:9/mcp?token", "http://127.0.0.1:9/mcp?token=***");
        check("https://mcp.example.com/mcp#frag", "https://mcp.example.com/mcp");
        check("not a url?secret=1", "***");
        check("not a url", "not a url");
    }

    #[test]
    fn hash16_is_pinned() {
        // A changed hash would rename every file and sign every user out after an upgrade.
        assert_eq!(hash16("https://mcp.example.com/mcp"), "7a930d27a3f5c464");
        assert_eq!(hash16("https://mcp.example.com/mcp\nhttps://auth.example.com"), "9a3070f0675f13d0");
    }
}
