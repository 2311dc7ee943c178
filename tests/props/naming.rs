//! Fuzz target: exposed names and namespaced URIs (`proxy::naming`).
//!
//! `exposed_name` must turn any namespace and name into a name every MCP client accepts
//! (`^[a-zA-Z0-9_-]{1,64}$`), deterministically, keeping long names apart by their hash;
//! namespaced URIs must split back into what they were made of.

use foxxy_bridge::proxy::naming::{
    MAX_NAME, SEPARATOR, URI_SCHEME, exposed_name, is_valid_name, namespaced_uri, split_namespaced_uri,
    uri_namespace, with_hash_suffix,
};
use std::sync::LazyLock;

use proptest::prelude::*;

use crate::harness::{corpus, fuzz};

/// `^[a-zA-Z0-9_-]{1,64}$`, written out.
fn matches_client_pattern(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Names as upstreams send them: ordinary, odd characters, any Unicode, empty, huge.
pub fn tool_name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-z_]{1,12}",
        2 => "[a-zA-Z0-9_.:/ -]{0,70}",
        2 => any::<String>(),
        1 => "\\PC{0,80}",
        1 => prop::sample::select(&["", "_", "__", "-", "a__b", "ünï", "🦊", "a\0b", " "][..]).prop_map(str::to_owned),
        1 => ("[a-z]{1,3}", 50usize..300).prop_map(|(unit, times)| unit.repeat(times)),
        2 => prop::sample::select(corpus_names()),
    ]
}

fn namespace() -> impl Strategy<Value = Option<String>> {
    prop::option::of(tool_name())
}

/// The documented mapping, before shortening: every other character becomes `_`.
fn sanitized(namespace: Option<&str>, name: &str) -> String {
    let joined = match namespace {
        Some(namespace) => format!("{namespace}{SEPARATOR}{name}"),
        None => name.to_owned(),
    };
    joined.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' }).collect()
}

/// Every property of one exposed name.
fn check_exposed(namespace: Option<&str>, name: &str) -> Result<(), TestCaseError> {
    let exposed = exposed_name(namespace, name);
    prop_assert!(matches_client_pattern(&exposed), "{exposed:?} for {namespace:?} / {name:?}");
    prop_assert!(is_valid_name(&exposed), "is_valid_name disagrees on {exposed:?}");
    prop_assert_eq!(&exposed, &exposed_name(namespace, name), "not deterministic");
    let plain = sanitized(namespace, name);
    if plain.is_empty() {
        prop_assert_eq!(exposed, "_");
    } else if plain.len() <= MAX_NAME {
        prop_assert_eq!(exposed, plain, "a short name is only sanitized");
    } else {
        prop_assert_eq!(exposed.len(), MAX_NAME);
        prop_assert_eq!(&exposed[..55], &plain[..55], "a long name keeps its first 55 characters");
        prop_assert_eq!(&exposed[55..56], "_");
        let hash = &exposed[56..];
        prop_assert!(hash.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)), "{hash:?}");
    }
    Ok(())
}

/// The names of `tests/fuzz/corpus/names/`, one per line.
fn corpus_names() -> &'static [String] {
    static NAMES: LazyLock<Vec<String>> = LazyLock::new(|| {
        let mut names: Vec<String> = corpus("names")
            .iter()
            .flat_map(|(_, bytes)| {
                String::from_utf8_lossy(bytes).lines().map(str::to_owned).collect::<Vec<_>>()
            })
            .collect();
        names.sort();
        names.dedup();
        names
    });
    &NAMES
}

#[test]
fn naming_corpus() {
    let names = corpus_names();
    for namespace in names.iter().map(|name| Some(name.as_str())).chain([None]) {
        for name in names {
            if let Err(error) = check_exposed(namespace, name) {
                panic!("{namespace:?} / {name:?}: {error}");
            }
        }
    }
}

#[test]
fn naming_exposed_name() {
    fuzz("naming-exposed", (namespace(), tool_name()), |(namespace, name)| {
        check_exposed(namespace.as_deref(), &name)
    });
}

/// Two names too long to keep (over 64 characters) that differ only after the kept
/// prefix still get different names.
#[test]
fn naming_long_names_stay_apart() {
    let strategy = (namespace(), "[a-zA-Z0-9_]{64,80}", "\\PC{1,20}", "\\PC{1,20}");
    fuzz("naming-long", strategy, |(namespace, prefix, tail_a, tail_b)| {
        prop_assume!(tail_a != tail_b);
        let a = exposed_name(namespace.as_deref(), &format!("{prefix}{tail_a}"));
        let b = exposed_name(namespace.as_deref(), &format!("{prefix}{tail_b}"));
        prop_assert_ne!(a, b);
        Ok(())
    });
}

/// `with_hash_suffix` on an exposed name (its only use) gives a valid name.
#[test]
fn naming_hash_suffix() {
    fuzz("naming-hash-suffix", (namespace(), tool_name(), any::<String>()), |(namespace, name, key)| {
        let exposed = exposed_name(namespace.as_deref(), &name);
        let suffixed = with_hash_suffix(&exposed, &key);
        prop_assert!(matches_client_pattern(&suffixed), "{suffixed:?}");
        prop_assert_eq!(&suffixed, &with_hash_suffix(&exposed, &key));
        prop_assert!(suffixed.starts_with(&exposed[..exposed.len().min(55)]));
        Ok(())
    });
}

#[test]
fn naming_uris() {
    let uri = prop_oneof![
        any::<String>(),
        "(file|https?|foxxy|ui)://[a-z/]{0,12}",
        "foxxy://[a-z-]{0,6}/.{0,12}",
        Just(String::new()),
        Just("/".to_owned()),
    ];
    fuzz("naming-uris", (tool_name(), uri), |(server, uri)| {
        let host = uri_namespace(&server);
        prop_assert!(!host.is_empty(), "empty URI namespace for {server:?}");
        prop_assert!(
            host.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
            "{host:?} is not [a-z0-9-]+"
        );
        prop_assert_eq!(&host, &uri_namespace(&server), "not deterministic");
        let namespaced = namespaced_uri(&host, &uri);
        let scheme = format!("{URI_SCHEME}://");
        prop_assert!(namespaced.starts_with(&scheme), "{namespaced:?} does not start with {scheme:?}");
        prop_assert_eq!(split_namespaced_uri(&namespaced), Some((host.as_str(), uri.as_str())));
        Ok(())
    });
}
