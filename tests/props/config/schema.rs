//! Documents generated from the config's JSON Schema (`config::schema_json()`): every
//! property name, type, enum value and bound comes from the schema, with typos, wrong
//! types, unknown and duplicated keys and junk mixed in, written in one of JSON5's
//! spellings.

use std::sync::LazyLock;

use foxxy_bridge::config;
use proptest::prelude::*;
use serde_json::Value;

use super::generate::{number_literal, string_value};

/// Every property name and enum value of the schema.
pub(super) fn schema_words() -> &'static (Vec<&'static str>, Vec<&'static str>) {
    static WORDS: LazyLock<(Vec<&'static str>, Vec<&'static str>)> = LazyLock::new(|| {
        fn walk(schema: &Value, keys: &mut Vec<String>, values: &mut Vec<String>) {
            match schema {
                Value::Object(object) => {
                    if let Some(Value::Object(properties)) = object.get("properties") {
                        keys.extend(properties.keys().cloned());
                    }
                    if let Some(Value::Array(allowed)) = object.get("enum") {
                        values.extend(allowed.iter().filter_map(Value::as_str).map(str::to_owned));
                    }
                    object.values().for_each(|value| walk(value, keys, values));
                }
                Value::Array(items) => items.iter().for_each(|item| walk(item, keys, values)),
                _ => {}
            }
        }
        let (mut keys, mut values) = (Vec::new(), Vec::new());
        walk(&SCHEMA, &mut keys, &mut values);
        for list in [&mut keys, &mut values] {
            list.sort();
            list.dedup();
        }
        let leak = |list: Vec<String>| list.into_iter().map(|word| &*word.leak()).collect();
        (leak(keys), leak(values))
    });
    &WORDS
}

pub(super) fn schema_keys() -> &'static [&'static str] {
    &schema_words().0
}

pub(super) fn enum_values() -> &'static [&'static str] {
    &schema_words().1
}

pub(super) static SCHEMA: LazyLock<Value> =
    LazyLock::new(|| serde_json::from_str(config::schema_json()).expect("the schema is JSON"));

/// A JSON5 document before it is written out.
#[derive(Debug, Clone)]
pub(super) enum Doc {
    Null,
    Bool(bool),
    /// A number literal, written as is.
    Number(String),
    String(String),
    Array(Vec<Doc>),
    Object(Vec<(String, Doc)>),
    /// Text spliced in as is (junk).
    Raw(String),
}

/// How a [`Doc`] is written: JSON5 allows several spellings of the same thing.
#[derive(Debug, Clone)]
pub(super) struct Style {
    single_quotes: bool,
    bare_keys: bool,
    trailing_commas: bool,
    comments: bool,
    pretty: bool,
}

pub(super) fn style_strategy() -> impl Strategy<Value = Style> {
    (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>()).prop_map(
        |(single_quotes, bare_keys, trailing_commas, comments, pretty)| Style {
            single_quotes,
            bare_keys,
            trailing_commas,
            comments,
            pretty,
        },
    )
}

pub(super) fn quote(text: &str, single: bool) -> String {
    if !single {
        return serde_json::to_string(text).expect("a string serializes");
    }
    let mut quoted = String::from("'");
    for c in text.chars() {
        match c {
            '\\' => quoted.push_str("\\\\"),
            '\'' => quoted.push_str("\\'"),
            '\n' => quoted.push_str("\\n"),
            '\r' => quoted.push_str("\\r"),
            '\u{2028}' => quoted.push_str("\\u2028"),
            '\u{2029}' => quoted.push_str("\\u2029"),
            c if c.is_control() => quoted.push_str(&format!("\\u{:04x}", c as u32)),
            c => quoted.push(c),
        }
    }
    quoted.push('\'');
    quoted
}

pub(super) fn is_bare_key(key: &str) -> bool {
    let mut chars = key.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '$')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
}

impl Doc {
    fn write(&self, style: &Style, depth: usize, out: &mut String) {
        let newline = |out: &mut String, depth: usize| {
            if style.pretty {
                out.push('\n');
                out.push_str(&"  ".repeat(depth));
            }
        };
        match self {
            Doc::Null => out.push_str("null"),
            Doc::Bool(value) => out.push_str(if *value { "true" } else { "false" }),
            Doc::Number(literal) | Doc::Raw(literal) => out.push_str(literal),
            Doc::String(text) => out.push_str(&quote(text, style.single_quotes)),
            Doc::Array(items) => {
                out.push('[');
                for (index, item) in items.iter().enumerate() {
                    newline(out, depth + 1);
                    item.write(style, depth + 1, out);
                    if index + 1 < items.len() || style.trailing_commas {
                        out.push(',');
                    }
                }
                newline(out, depth);
                out.push(']');
            }
            Doc::Object(members) => {
                out.push('{');
                for (index, (key, value)) in members.iter().enumerate() {
                    newline(out, depth + 1);
                    if style.comments && index == 0 {
                        out.push_str("/* c */ ");
                    }
                    if style.bare_keys && is_bare_key(key) {
                        out.push_str(key);
                    } else {
                        out.push_str(&quote(key, style.single_quotes));
                    }
                    out.push_str(": ");
                    value.write(style, depth + 1, out);
                    if index + 1 < members.len() || style.trailing_commas {
                        out.push(',');
                    }
                    if style.comments && style.pretty {
                        out.push_str(" // c");
                    }
                }
                newline(out, depth);
                out.push('}');
            }
        }
    }

    pub(super) fn render(&self, style: &Style) -> String {
        let mut out = String::new();
        if style.comments {
            out.push_str("// generated\n");
        }
        self.write(style, 0, &mut out);
        out
    }
}

/// Any small JSON5 value: the "wrong type" and "nested junk" of the schema generator.
pub(super) fn junk() -> BoxedStrategy<Doc> {
    let leaf = prop_oneof![
        2 => Just(Doc::Null),
        2 => any::<bool>().prop_map(Doc::Bool),
        3 => number_literal().prop_map(Doc::Number),
        3 => string_value().prop_map(Doc::String),
        1 => prop::sample::select(&["undefined", "npx", "'", "\"", "{", "]", ",", "/*", "1 2", "tru", "nul"][..])
            .prop_map(|raw| Doc::Raw(raw.to_owned())),
    ];
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Doc::Array),
            prop::collection::vec((key_strategy(&[]), inner), 0..4).prop_map(Doc::Object),
        ]
    })
    .boxed()
}

/// An object key: a schema key, a typo of one, or something else.
pub(super) fn key_strategy(known: &[String]) -> BoxedStrategy<String> {
    let keys: Vec<String> = if known.is_empty() {
        schema_keys().iter().map(|key| (*key).to_owned()).collect()
    } else {
        known.to_vec()
    };
    let exact = prop::sample::select(keys.clone());
    let typo =
        (prop::sample::select(keys), any::<prop::sample::Index>(), 0..5u8).prop_map(|(key, index, kind)| {
            let mut chars: Vec<char> = key.chars().collect();
            let at = index.index(chars.len().max(1)).min(chars.len().saturating_sub(1));
            match kind {
                0 if !chars.is_empty() => {
                    chars.remove(at);
                }
                1 if !chars.is_empty() => chars.insert(at, chars[at]),
                2 if at + 1 < chars.len() => chars.swap(at, at + 1),
                3 => return key.to_uppercase(),
                _ => return key.replace(|c: char| c.is_ascii_uppercase(), "_"),
            }
            chars.into_iter().collect()
        });
    prop_oneof![
        6 => exact,
        2 => typo,
        1 => "\\PC{0,8}",
        1 => prop::sample::select(&["", " ", "a.b", "a\nb", "servers", "${KEY}", "ünï", "__proto__"][..])
            .prop_map(str::to_owned),
    ]
    .boxed()
}

/// Server names: plain, odd and clashing.
pub(super) fn server_name() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(&["fs", "github", "a", "b", "my server", "a.b", "", " ", "ünï", "x__y"][..])
            .prop_map(str::to_owned),
        "[a-z][a-z0-9_-]{0,10}",
        "\\PC{0,6}",
    ]
}

/// A value for `schema`, mostly fitting it, sometimes not.
pub(super) fn from_schema(schema: &Value, depth: usize) -> BoxedStrategy<Doc> {
    let fitting = fitting(schema, depth);
    prop_oneof![12 => fitting, 1 => junk()].boxed()
}

pub(super) fn resolve_ref(schema: &Value) -> &Value {
    match schema.get("$ref").and_then(Value::as_str).and_then(|pointer| SCHEMA.pointer(&pointer[1..])) {
        Some(target) => resolve_ref(target),
        None => schema,
    }
}

pub(super) fn fitting(schema: &Value, depth: usize) -> BoxedStrategy<Doc> {
    let schema = resolve_ref(schema);
    if let Some(Value::Array(branches)) = schema.get("anyOf") {
        let branches: Vec<BoxedStrategy<Doc>> =
            branches.iter().map(|branch| fitting(branch, depth)).collect();
        return prop::strategy::Union::new(branches).boxed();
    }
    if let Some(Value::Array(allowed)) = schema.get("enum") {
        let allowed: Vec<String> = allowed.iter().filter_map(Value::as_str).map(str::to_owned).collect();
        return prop_oneof![
            6 => prop::sample::select(allowed).prop_map(Doc::String),
            1 => string_value().prop_map(Doc::String),
        ]
        .boxed();
    }
    let types: Vec<&str> = match schema.get("type") {
        Some(Value::String(name)) => vec![name.as_str()],
        Some(Value::Array(names)) => names.iter().filter_map(Value::as_str).collect(),
        _ => vec!["any"],
    };
    let branches: Vec<BoxedStrategy<Doc>> = types.iter().map(|kind| typed(kind, schema, depth)).collect();
    prop::strategy::Union::new(branches).boxed()
}

pub(super) fn typed(kind: &str, schema: &Value, depth: usize) -> BoxedStrategy<Doc> {
    match kind {
        "null" => Just(Doc::Null).boxed(),
        "boolean" => any::<bool>().prop_map(Doc::Bool).boxed(),
        "string" => string_value().prop_map(Doc::String).boxed(),
        "integer" | "number" => {
            let bound = |name: &str| schema.get(name).and_then(Value::as_i64);
            let mut near: Vec<String> = Vec::new();
            for limit in [bound("minimum"), bound("maximum")].into_iter().flatten() {
                near.extend([limit - 1, limit, limit + 1].map(|n| n.to_string()));
            }
            near.extend(["0", "1", "30", "1000", "60000"].map(str::to_owned));
            prop_oneof![
                3 => prop::sample::select(near).prop_map(Doc::Number),
                1 => number_literal().prop_map(Doc::Number),
            ]
            .boxed()
        }
        "array" if depth < 6 => {
            let items = schema.get("items").cloned().unwrap_or(Value::Bool(true));
            prop::collection::vec(from_schema(&items, depth + 1), 0..4).prop_map(Doc::Array).boxed()
        }
        "object" if depth < 6 => object(schema, depth),
        _ => junk(),
    }
}

/// An object for `schema`: some of its properties (keys sometimes misspelt), entries for
/// `additionalProperties`, and now and then an unknown or duplicated key.
pub(super) fn object(schema: &Value, depth: usize) -> BoxedStrategy<Doc> {
    let properties: Vec<(String, Value)> = schema
        .get("properties")
        .and_then(Value::as_object)
        .map(|properties| properties.iter().map(|(key, value)| (key.clone(), value.clone())).collect())
        .unwrap_or_default();
    let mut members: Vec<BoxedStrategy<Option<(String, Doc)>>> = Vec::new();
    for (key, property) in properties {
        let value = from_schema(&property, depth + 1);
        let key = prop_oneof![10 => Just(key.clone()), 1 => key_strategy(&[key])];
        members.push(prop::option::weighted(0.35, (key, value)).boxed());
    }
    let additional: BoxedStrategy<Vec<(String, Doc)>> = match schema.get("additionalProperties") {
        Some(Value::Bool(false)) | None => Just(Vec::new()).boxed(),
        Some(extra) => {
            let is_servers = extra.get("$ref").and_then(Value::as_str) == Some("#/$defs/Server");
            let key = if is_servers { server_name().boxed() } else { key_strategy(&[]).boxed() };
            let count = if is_servers { 0..4 } else { 0..3 };
            prop::collection::vec((key, from_schema(extra, depth + 1)), count).boxed()
        }
    };
    let stray = prop::option::weighted(0.15, (key_strategy(&[]), junk()));
    (members, additional, stray, any::<bool>())
        .prop_map(|(members, additional, stray, duplicate)| {
            let mut object: Vec<(String, Doc)> = members.into_iter().flatten().collect();
            object.extend(additional);
            object.extend(stray);
            if duplicate && let Some(first) = object.first().cloned() {
                object.push(first);
            }
            Doc::Object(object)
        })
        .boxed()
}

/// A whole document generated from the schema, written in some style.
pub(super) fn schema_document() -> impl Strategy<Value = String> {
    (from_schema(&SCHEMA, 0), style_strategy()).prop_map(|(document, style)| document.render(&style))
}
