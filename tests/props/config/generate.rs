//! Text generators for the config targets: environments, string values with `${...}`,
//! number literals, a token soup of JSON5 pieces, deep nesting, and mutations of the
//! seed corpus.

use proptest::prelude::*;

use super::{Env, schema::enum_values};

/// Names the generated `${VAR}`s use; some are set in the generated environment.
pub(super) const VARIABLES: &[&str] = &["HOME", "TOKEN", "EMPTY", "A", "_B9", "PORT", "URL"];

pub(super) fn env_strategy() -> impl Strategy<Value = Env> {
    let value = prop_oneof![
        Just(String::new()),
        Just("/home/fox".to_owned()),
        Just("${HOME}".to_owned()),
        Just("8080".to_owned()),
        Just("http://127.0.0.1:1/mcp".to_owned()),
        "\\PC{0,12}",
        any::<String>(),
    ];
    prop::collection::btree_map(prop::sample::select(VARIABLES).prop_map(str::to_owned), value, 0..5)
}

/// Strings as config values are written: plain words, URLs, globs, and `${...}` pieces.
pub(super) fn string_value() -> impl Strategy<Value = String> {
    let word = prop_oneof![
        Just("npx".to_owned()),
        Just(String::new()),
        Just(" ".to_owned()),
        Just("http://127.0.0.1:8080/mcp".to_owned()),
        Just("https://example.com/sse".to_owned()),
        Just("ftp://example.com".to_owned()),
        Just("not a url".to_owned()),
        Just("*".to_owned()),
        Just("[".to_owned()),
        Just("a{b,c}".to_owned()),
        Just("localhost".to_owned()),
        Just("::1".to_owned()),
        Just("[::1]".to_owned()),
        Just("0.0.0.0".to_owned()),
        prop::sample::select(enum_values()).prop_map(str::to_owned),
        "[a-z_]{1,8}",
        "\\PC{0,10}",
    ];
    let piece = prop_oneof![
        4 => word,
        1 => prop::sample::select(VARIABLES).prop_map(|name| format!("${{{name}}}")),
        1 => (prop::sample::select(VARIABLES), "[a-z:/-]{0,6}").prop_map(|(name, default)| format!("${{{name}:{default}}}")),
        1 => prop::sample::select(&["$${", "${", "$", "}", "${1X}", "${}", "${A:${B}}", "$${A}", "${A:-x}"][..]).prop_map(str::to_owned),
    ];
    prop::collection::vec(piece, 1..4).prop_map(|pieces| pieces.concat())
}

/// Number literals, valid and not, as JSON5 writes them.
pub(super) fn number_literal() -> impl Strategy<Value = String> {
    const LITERALS: &[&str] = &[
        "0",
        "1",
        "-1",
        "2",
        "100",
        "1023",
        "1024",
        "65535",
        "65536",
        "4294967295",
        "4294967296",
        "9223372036854775807",
        "9223372036854775808",
        "-9223372036854775808",
        "-9223372036854775809",
        "18446744073709551616",
        "1e400",
        "-1e400",
        "1.5",
        ".5",
        "5.",
        "1e3",
        "1E-3",
        "0x10",
        "0XfF",
        "0xFFFFFFFF",
        "0x100000000",
        "-0x10",
        "+1",
        "Infinity",
        "-Infinity",
        "NaN",
        "-NaN",
        "0.0",
        "-0",
        "00",
        "1e",
        "0x",
        "1.2.3",
        "99999999999999999999999999999999",
    ];
    prop_oneof![
        3 => prop::sample::select(LITERALS).prop_map(str::to_owned),
        1 => any::<i64>().prop_map(|number| number.to_string()),
        1 => any::<f64>().prop_map(|number| format!("{number:?}")),
    ]
}

/// Text made of JSON5 tokens in random order: closer to the grammar than random text.
pub(super) fn token_soup() -> impl Strategy<Value = String> {
    const TOKENS: &[&str] = &[
        "{",
        "}",
        "[",
        "]",
        ":",
        ",",
        " ",
        "\n",
        "\r\n",
        "\t",
        "\"mcpServers\"",
        "mcpServers",
        "\"bridge\"",
        "\"command\"",
        "\"url\"",
        "'npx'",
        "\"${HOME}\"",
        "\"$${\"",
        "\"${\"",
        "//",
        "/*",
        "*/",
        "\"",
        "'",
        "\\",
        "\\u",
        "\\x4",
        "\\uD800",
        "true",
        "false",
        "null",
        "Infinity",
        "NaN",
        "0x",
        "1",
        "-",
        "+",
        ".",
        "e",
        "1e999",
        "\u{feff}",
        "\u{2028}",
        "é",
        "🦊",
        "\0",
        "a",
    ];
    prop::collection::vec(prop::sample::select(TOKENS), 0..40).prop_map(|tokens| tokens.concat())
}

/// Wraps a value in `depth` arrays or objects, closed or not.
pub(super) fn deep_nesting() -> impl Strategy<Value = String> {
    // Around the loader's limit of 100 levels, and far past it.
    (prop_oneof![0usize..120, 120usize..5000], any::<bool>(), any::<bool>()).prop_map(
        |(depth, objects, closed)| {
            let (open, close) = if objects { ("{\"a\":", "}") } else { ("[", "]") };
            let tail = if closed { close.repeat(depth) } else { String::new() };
            format!("{{\"mcpServers\": {}1{}}}", open.repeat(depth), tail)
        },
    )
}

#[derive(Debug, Clone)]
pub(super) enum Mutation {
    Delete { at: prop::sample::Index, len: usize },
    Insert { at: prop::sample::Index, text: String },
    Replace { at: prop::sample::Index, with: char },
    Duplicate { at: prop::sample::Index, len: usize },
}

pub(super) fn mutation() -> impl Strategy<Value = Mutation> {
    let index = any::<prop::sample::Index>;
    prop_oneof![
        (index(), 1usize..8).prop_map(|(at, len)| Mutation::Delete { at, len }),
        (index(), prop_oneof![token_soup(), "\\PC{1,3}"])
            .prop_map(|(at, text)| Mutation::Insert { at, text }),
        (index(), any::<char>()).prop_map(|(at, with)| Mutation::Replace { at, with }),
        (index(), 1usize..20).prop_map(|(at, len)| Mutation::Duplicate { at, len }),
    ]
}

pub(super) fn mutate(seed: &str, mutations: &[Mutation]) -> String {
    let mut chars: Vec<char> = seed.chars().collect();
    for mutation in mutations {
        let position = |at: &prop::sample::Index, chars: &Vec<char>| at.index(chars.len() + 1);
        match mutation {
            Mutation::Delete { at, len } => {
                let start = position(at, &chars);
                let end = (start + len).min(chars.len());
                chars.drain(start..end);
            }
            Mutation::Insert { at, text } => {
                let start = position(at, &chars);
                chars.splice(start..start, text.chars());
            }
            Mutation::Replace { at, with } => {
                if !chars.is_empty() {
                    let index = at.index(chars.len());
                    chars[index] = *with;
                }
            }
            Mutation::Duplicate { at, len } => {
                let start = position(at, &chars);
                let end = (start + len).min(chars.len());
                let copy: Vec<char> = chars[start..end].to_vec();
                chars.splice(end..end, copy);
            }
        }
    }
    chars.into_iter().collect()
}
