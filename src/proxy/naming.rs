//! Exposed names: how an upstream's tool or prompt name becomes a name every MCP
//! client accepts, and how a resource URI is made unique.
//!
//! Tool and prompt names are `<namespace>__<name>` (or just `<name>` without a
//! namespace), then made to match `^[a-zA-Z0-9_-]{1,64}$`: every other character
//! becomes `_`, and a name longer than 64 characters keeps its first 55 characters
//! followed by `_` and 8 hex digits of a hash of the whole unshortened name. The
//! result is deterministic, so the same config always exposes the same names, and the
//! catalog keeps the exposed → original mapping, so it is reversible.
//!
//! Resource URIs that need a namespace (several upstreams list the same URI, or the
//! server sets `resourceNamespace`) are exposed as `foxxy://<namespace>/<original URI>`.
//!
//! The hash is a 32-bit FNV-1a, pinned by a test: exposed names must not change between
//! releases.

/// The separator between namespace and name.
pub const SEPARATOR: &str = "__";
/// Longest name clients accept.
pub const MAX_NAME: usize = 64;
/// Hex digits of the disambiguating hash.
const HASH_DIGITS: usize = 8;
/// The scheme of namespaced resource URIs.
pub const URI_SCHEME: &str = "foxxy";

/// The exposed form of `name` under `namespace`.
pub fn exposed_name(namespace: Option<&str>, name: &str) -> String {
    let joined = match namespace {
        Some(namespace) => format!("{namespace}{SEPARATOR}{name}"),
        None => name.to_owned(),
    };
    let mut exposed: String = joined
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' })
        .collect();
    if exposed.is_empty() {
        exposed.push('_');
    }
    if exposed.len() > MAX_NAME {
        exposed = with_hash_suffix(&exposed, &joined);
    }
    exposed
}

/// `name` shortened to leave room for `_<hash of key>`, then suffixed with it. Used both
/// for names that are too long and to tell apart names that would otherwise clash.
pub fn with_hash_suffix(name: &str, key: &str) -> String {
    let keep = MAX_NAME - HASH_DIGITS - 1;
    // Tool names are ASCII (see `exposed_name`); prompt names need not be, so cut on a
    // character boundary.
    let mut end = name.len().min(keep);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    let prefix = &name[..end];
    format!("{prefix}_{:0width$x}", fnv1a(key), width = HASH_DIGITS)
}

/// 32-bit FNV-1a: tiny, stable across releases and platforms, good enough to tell
/// names apart (not a security boundary).
fn fnv1a(text: &str) -> u32 {
    text.bytes().fold(0x811c_9dc5, |hash, byte| (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193))
}

/// The host part of namespaced URIs for `namespace`: lowercase, `[a-z0-9-]`.
pub fn uri_namespace(namespace: &str) -> String {
    let host: String = namespace
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' })
        .collect();
    if host.is_empty() { "-".to_owned() } else { host }
}

/// `foxxy://<namespace>/<uri>`.
pub fn namespaced_uri(namespace: &str, uri: &str) -> String {
    format!("{URI_SCHEME}://{namespace}/{uri}")
}

/// Split a namespaced URI into its namespace and the upstream's own URI.
pub fn split_namespaced_uri(uri: &str) -> Option<(&str, &str)> {
    let rest = uri.strip_prefix(URI_SCHEME)?.strip_prefix("://")?;
    rest.split_once('/')
}

/// Whether `name` is acceptable to clients as is.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(namespace: Option<&str>, name: &str, expected: &str) {
        let exposed = exposed_name(namespace, name);
        assert_eq!(exposed, expected, "namespace {namespace:?}, name {name:?}");
        assert!(is_valid_name(&exposed), "{exposed:?} is not a valid name");
    }

    #[test]
    fn names() {
        check(Some("fs"), "read_file", "fs__read_file");
        check(None, "read_file", "read_file");
        check(Some("my server"), "do.it", "my_server__do_it");
        check(Some("gh"), "repos/list", "gh__repos_list");
        check(Some("ns"), "naïve", "ns__na_ve");
        check(None, "", "_");
        check(Some("a-b"), "c-d", "a-b__c-d");
        check(Some("x"), "weird:name with spaces", "x__weird_name_with_spaces");
    }

    #[test]
    fn long_names_are_shortened_deterministically() {
        let long = "t".repeat(100);
        let first = exposed_name(Some("ns"), &long);
        assert_eq!(first.len(), MAX_NAME);
        assert!(is_valid_name(&first));
        assert_eq!(first, exposed_name(Some("ns"), &long), "same input, same name");
        let other = exposed_name(Some("ns"), &format!("{long}x"));
        assert_ne!(first, other, "different long names stay apart");
        assert_eq!(&first[..55], &other[..55]);
    }

    #[test]
    fn hash_suffix_cuts_on_a_character_boundary() {
        // Prompt names are not sanitized: a multi-byte character may straddle the cut.
        let name = format!("{}é{}", "p".repeat(MAX_NAME - HASH_DIGITS - 2), "q".repeat(20));
        let suffixed = with_hash_suffix(&name, "key");
        assert!(suffixed.starts_with(&"p".repeat(MAX_NAME - HASH_DIGITS - 2)));
        assert!(!suffixed.contains('é'), "{suffixed}");
    }

    #[test]
    fn exactly_64_is_kept() {
        let name = "n".repeat(60);
        check(Some("ab"), &name, &format!("ab__{name}"));
    }

    #[test]
    fn uris() {
        assert_eq!(uri_namespace("My_Server"), "my-server");
        assert_eq!(namespaced_uri("fs", "file:///tmp/a"), "foxxy://fs/file:///tmp/a");
        assert_eq!(split_namespaced_uri("foxxy://fs/file:///tmp/a"), Some(("fs", "file:///tmp/a")));
        assert_eq!(split_namespaced_uri("file:///tmp/a"), None);
    }

    #[test]
    fn hash_is_stable() {
        // Exposed names must not change between releases: pin the hash.
        assert_eq!(fnv1a(""), 0x811c_9dc5);
        assert_eq!(fnv1a("a"), 0xe40c_292c);
    }
}
