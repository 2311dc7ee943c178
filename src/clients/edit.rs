//! Editing a JSON, JSONC or JSON5 file in place: entries are inserted, replaced or removed
//! as text in the file's concrete syntax tree (jsonc-parser's CST), so comments, key order,
//! quoting and indentation outside the edited entries stay byte for byte as they were.
//! The whole file is never re-serialised.
//!
//! Also the one way such a file is written back: a `<file>.bak` copy of the previous
//! bytes first, then the new text through a temporary file in the same directory that
//! is synced and renamed over the target (symlinks resolved first, so the link stays a
//! link and the file it points to is replaced).
//!
//! [`Json`] is a value whose objects keep their keys in file order, so what is read and
//! written back keeps the order the user chose.

use std::{
    cell::RefCell,
    fs,
    io::Write,
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

use jsonc_parser::{
    ParseOptions,
    cst::{CstInputValue, CstNode, CstObject, CstObjectProp, CstRootNode, ObjectPropName},
};

/// Why a file could not be read as JSON or written back.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    #[error("`{path}` is not valid JSON or JSON5: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("`{path}` does not hold a JSON object at the top")]
    NotObject { path: PathBuf },
    #[error("cannot write `{path}`")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A JSON value with its keys in file order (serde_json's map here sorts them, and key
/// order is part of what a user sees in their file).
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    /// The number as written.
    Number(String),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(text) => Some(text),
            _ => None,
        }
    }

    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Object(members) => {
                members.iter().rev().find(|(name, _)| name == key).map(|(_, value)| value)
            }
            _ => None,
        }
    }

    /// The value as serde_json sees it, for comparisons that ignore key order and number
    /// spelling (`1.0` against `1`, `0x10` against `16` stay different: rare enough).
    pub fn to_value(&self) -> serde_json::Value {
        use serde_json::Value;
        match self {
            Json::Null => Value::Null,
            Json::Bool(value) => Value::Bool(*value),
            Json::Number(text) => serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.clone())),
            Json::String(text) => Value::String(text.clone()),
            Json::Array(items) => Value::Array(items.iter().map(Json::to_value).collect()),
            Json::Object(members) => {
                Value::Object(members.iter().map(|(key, value)| (key.clone(), value.to_value())).collect())
            }
        }
    }

    /// Same content, whatever the key order.
    pub fn same_as(&self, other: &Json) -> bool {
        self.to_value() == other.to_value()
    }

    fn to_input(&self) -> CstInputValue {
        match self {
            Json::Null => CstInputValue::Null,
            Json::Bool(value) => CstInputValue::Bool(*value),
            Json::Number(text) => CstInputValue::Number(text.clone()),
            Json::String(text) => CstInputValue::String(text.clone()),
            Json::Array(items) => CstInputValue::Array(items.iter().map(Json::to_input).collect()),
            Json::Object(members) => CstInputValue::Object(
                members.iter().map(|(key, value)| (key.clone(), value.to_input())).collect(),
            ),
        }
    }

    fn from_node(node: &CstNode) -> Option<Json> {
        if let Some(object) = node.as_object() {
            return Some(Json::Object(object_members(&object)));
        }
        if let Some(array) = node.as_array() {
            return Some(Json::Array(array.elements().iter().filter_map(Json::from_node).collect()));
        }
        if let Some(text) = node.as_string_lit() {
            return Some(Json::String(text.decoded_value().unwrap_or_else(|_| text.raw_value())));
        }
        if let Some(number) = node.as_number_lit() {
            return Some(Json::Number(number.to_string()));
        }
        if let Some(boolean) = node.as_boolean_lit() {
            return Some(Json::Bool(boolean.value()));
        }
        if node.as_null_keyword().is_some() {
            return Some(Json::Null);
        }
        // JSON5 words such as `Infinity` or `NaN`: kept as written.
        node.as_word_lit().map(|word| Json::Number(word.to_string()))
    }
}

fn object_members(object: &CstObject) -> Vec<(String, Json)> {
    object
        .properties()
        .iter()
        .filter_map(|property| {
            let name = property.name()?.decoded_value().ok()?;
            let value = Json::from_node(&property.value()?)?;
            Some((name, value))
        })
        .collect()
}

/// A parsed file, edited in place. Not `Send` (the tree is reference counted): edit it
/// synchronously, then take its [`Document::text`].
///
/// Keys follow the file's style: when most of its keys that could be written without
/// quotes are (JSON5), the keys of inserted entries are written without quotes too.
/// jsonc-parser inserts quoted keys and has no way to insert an unquoted one, so the
/// inserted properties are remembered and their names shown bare only while
/// [`Document::text`] renders (a bare name in the tree would no longer decode).
pub struct Document {
    root: CstRootNode,
    bare_keys: bool,
    /// Properties inserted or given a new value, and whether their own name was
    /// written by us (inserted) or by the user (value replaced).
    edited: RefCell<Vec<(CstObjectProp, bool)>>,
}

impl Document {
    /// Parses `text` (comments, trailing commas, single quotes and unquoted keys are
    /// accepted); the top must be an object. A blank text is an empty object.
    pub fn parse(text: &str, path: &Path) -> Result<Document, EditError> {
        let text = if text.trim().is_empty() { "{}\n" } else { text };
        let root = CstRootNode::parse(text, &ParseOptions::default())
            .map_err(|error| EditError::Parse { path: path.to_path_buf(), message: error.to_string() })?;
        let Some(top) = root.object_value() else {
            return Err(EditError::NotObject { path: path.to_path_buf() });
        };
        let (mut bare, mut quoted) = (0, 0);
        count_key_styles(&top, &mut bare, &mut quoted);
        Ok(Document { root, bare_keys: bare > quoted, edited: RefCell::new(Vec::new()) })
    }

    /// The object at `path` (a list of keys from the top), if every step is an object.
    fn object_at(&self, path: &[String]) -> Option<CstObject> {
        let mut object = self.root.object_value()?;
        for key in path {
            object = object.object_value(key)?;
        }
        Some(object)
    }

    /// The object at `path`, created (with every missing step) when absent.
    fn object_at_or_create(&self, path: &[String]) -> CstObject {
        let mut object = self.root.object_value_or_set();
        for key in path {
            let created = object.get(key).is_none();
            let next = object.object_value_or_set(key);
            if created && self.bare_keys {
                self.edited.borrow_mut().extend(object.get(key).map(|property| (property, true)));
            }
            object = next;
        }
        object
    }

    /// Whether the object at `path` exists.
    pub fn has_object(&self, path: &[String]) -> bool {
        self.object_at(path).is_some()
    }

    /// The members of the object at `path`, in file order (empty when absent).
    pub fn members(&self, path: &[String]) -> Vec<(String, Json)> {
        self.object_at(path).map(|object| object_members(&object)).unwrap_or_default()
    }

    /// The member `name` of the object at `path`.
    pub fn get(&self, path: &[String], name: &str) -> Option<Json> {
        let property = self.object_at(path)?.get(name)?;
        Json::from_node(&property.value()?)
    }

    /// Sets member `name` of the object at `path` (created when absent): the value of an
    /// existing member is replaced where it stands; a new member is appended.
    pub fn set(&self, path: &[String], name: &str, value: &Json) {
        let object = self.object_at_or_create(path);
        let edited = match object.get(name) {
            Some(property) => {
                property.set_value(value.to_input());
                (property, false)
            }
            None => (object.append(name, value.to_input()), true),
        };
        if self.bare_keys {
            self.edited.borrow_mut().push(edited);
        }
    }

    /// Removes member `name` of the object at `path`; false when it was not there.
    pub fn remove(&self, path: &[String], name: &str) -> bool {
        match self.object_at(path).and_then(|object| object.get(name)) {
            Some(property) => {
                property.remove();
                true
            }
            None => false,
        }
    }

    pub fn text(&self) -> String {
        let mut names = Vec::new();
        for (property, own_name) in self.edited.borrow().iter() {
            if *own_name {
                names.extend(property.name());
            }
            if let Some(value) = property.value() {
                collect_names(&value, &mut names);
            }
        }
        // Shown bare for this rendering only; the tree keeps quoted names that decode. A
        // name may be listed twice (an entry inside an edited entry), so every name is
        // decoded before any is changed.
        let bare: Vec<_> = names
            .into_iter()
            .filter_map(|name| {
                let literal = name.as_string_lit()?;
                let decoded = literal.decoded_value().ok().filter(|name| is_identifier(name))?;
                Some((literal.raw_value(), decoded, literal))
            })
            .collect();
        for (_, decoded, literal) in &bare {
            literal.set_raw_value(decoded.clone());
        }
        let text = self.root.to_string();
        for (raw, _, literal) in bare.into_iter().rev() {
            literal.set_raw_value(raw);
        }
        text
    }
}

/// Counts the keys written bare and those quoted although they could be bare.
fn count_key_styles(object: &CstObject, bare: &mut usize, quoted: &mut usize) {
    for property in object.properties() {
        match property.name() {
            Some(ObjectPropName::Word(_)) => *bare += 1,
            Some(ObjectPropName::String(literal))
                if literal.decoded_value().is_ok_and(|name| is_identifier(&name)) =>
            {
                *quoted += 1;
            }
            _ => {}
        }
        if let Some(value) = property.value() {
            for_each_object(&value, &mut |object| count_key_styles(object, bare, quoted));
        }
    }
}

/// The property names of every object in `node` (itself included), at any depth.
fn collect_names(node: &CstNode, names: &mut Vec<ObjectPropName>) {
    for_each_object(node, &mut |object| {
        for property in object.properties() {
            names.extend(property.name());
            if let Some(value) = property.value() {
                collect_names(&value, names);
            }
        }
    });
}

/// Calls `visit` with `node` when it is an object, or with each object directly in it
/// when it is an array (nested arrays included).
fn for_each_object(node: &CstNode, visit: &mut dyn FnMut(&CstObject)) {
    if let Some(object) = node.as_object() {
        visit(&object);
    } else if let Some(array) = node.as_array() {
        for element in array.elements() {
            for_each_object(&element, visit);
        }
    }
}

/// A key JSON5 accepts without quotes (ASCII identifiers only).
fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|first| first.is_ascii_alphabetic() || first == '_' || first == '$')
        && chars.all(|rest| rest.is_ascii_alphanumeric() || rest == '_' || rest == '$')
}

/// Writes `text` to `path`: when the file exists, its current bytes go to `<file>.bak`
/// first. Both writes are atomic. A symlink is followed, so the file it points to is
/// replaced and the link kept. A new file is created with mode 0600 (server entries hold
/// tokens); an existing one keeps its mode. Returns the backup's path, if one was made.
pub fn write_with_backup(path: &Path, text: &str) -> Result<Option<PathBuf>, EditError> {
    let write_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| EditError::Write { path, source }
    };
    let target = match fs::canonicalize(path) {
        Ok(target) => target,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => path.to_path_buf(),
        Err(error) => return Err(write_error(path)(error)),
    };
    let mut backup = None;
    let mode = match fs::read(&target) {
        Ok(previous) => {
            let mode = fs::metadata(&target).map_err(write_error(&target))?.permissions().mode() & 0o7777;
            let mut name = target.file_name().unwrap_or_default().to_os_string();
            name.push(".bak");
            let backup_path = target.with_file_name(name);
            write_atomically(&backup_path, &previous, mode).map_err(write_error(&backup_path))?;
            backup = Some(backup_path);
            mode
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            if let Some(parent) = target.parent().filter(|parent| !parent.as_os_str().is_empty()) {
                fs::create_dir_all(parent).map_err(write_error(parent))?;
            }
            0o600
        }
        Err(error) => return Err(write_error(&target)(error)),
    };
    write_atomically(&target, text.as_bytes(), mode).map_err(write_error(&target))?;
    Ok(backup)
}

/// Temporary file next to `target` (created exclusively, with `mode` from the start),
/// synced, renamed over `target`; the directory is synced so the rename survives a crash.
fn write_atomically(target: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let directory = target.parent().filter(|parent| !parent.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut name = std::ffi::OsString::from(".");
    name.push(target.file_name().unwrap_or_default());
    name.push(format!(".tmp-{}", std::process::id()));
    let temporary = directory.join(name);
    let result = (|| {
        let mut file = fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(&temporary)?;
        // The umask may have narrowed the mode; an existing file's mode is kept exactly.
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temporary, target)?;
        fs::File::open(directory)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(keys: &[&str]) -> Vec<String> {
        keys.iter().map(|key| (*key).to_owned()).collect()
    }

    fn check_set(before: &str, at: &[&str], name: &str, value: Json, after: &str) {
        let document = Document::parse(before, Path::new("test.json")).expect("parses");
        document.set(&path(at), name, &value);
        assert_eq!(document.text(), after);
    }

    #[test]
    fn inserting_keeps_comments_and_order() {
        check_set(
            "{\n  // servers\n  \"mcpServers\": {\n    \"a\": { \"command\": \"x\" }, // first\n  },\n}\n",
            &["mcpServers"],
            "b",
            Json::Object(vec![("command".into(), Json::String("y".into()))]),
            "{\n  // servers\n  \"mcpServers\": {\n    \"a\": { \"command\": \"x\" }, // first\n    \"b\": {\n      \"command\": \"y\",\n    },\n  },\n}\n",
        );
        check_set(
            "{}",
            &["projects", "/p", "mcpServers"],
            "b",
            Json::Bool(true),
            "{\n  \"projects\": {\n    \"/p\": {\n      \"mcpServers\": {\n        \"b\": true\n      }\n    }\n  }\n}",
        );
    }

    #[test]
    fn inserted_keys_follow_the_files_unquoted_style() {
        let entry = Json::Object(vec![
            ("command".into(), Json::String("y".into())),
            ("env".into(), Json::Object(vec![("API-KEY".into(), Json::String("k".into()))])),
        ]);
        let document =
            Document::parse("{ mcpServers: { a: { command: 'x' } } }", Path::new("t.json5")).expect("parses");
        document.set(&path(&["mcpServers"]), "b", &entry);
        document.set(&path(&["mcpServers"]), "my-server", &Json::Object(vec![]));
        let text = document.text();
        assert!(text.contains("b: {"), "{text}");
        assert!(text.contains("command: \"y\""), "{text}");
        assert!(text.contains("env: {"), "{text}");
        assert!(text.contains("\"API-KEY\": \"k\""), "{text}");
        assert!(text.contains("\"my-server\": {}"), "{text}");
        // The tree still finds what was inserted, and renders the same again.
        assert_eq!(document.get(&path(&["mcpServers", "b"]), "command"), Some(Json::String("y".into())));
        assert_eq!(document.text(), text);

        // Objects created on the way are named in the same style.
        let document = Document::parse("{ bridge: {} }", Path::new("t.json5")).expect("parses");
        document.set(&path(&["mcpServers"]), "b", &Json::Bool(true));
        let text = document.text();
        assert!(text.contains("mcpServers: {"), "{text}");
        assert!(text.contains("b: true"), "{text}");
        // Set twice: the second set replaces the value where it stands.
        document.set(&path(&["mcpServers"]), "b", &entry);
        let text = document.text();
        assert!(text.contains("b: {"), "{text}");
        assert!(text.contains("command: \"y\""), "{text}");
        assert_eq!(document.text(), text);

        // A replaced value keeps the name as the user wrote it.
        let document = Document::parse("{ a: 1, b: 2, \"c\": 3 }", Path::new("t.json5")).expect("parses");
        document.set(&[], "c", &entry);
        let text = document.text();
        assert!(text.contains("\"c\": {"), "{text}");
        assert!(text.contains("command: \"y\""), "{text}");

        // A quoted file stays quoted.
        check_set("{ \"a\": 1 }", &[], "b", Json::Bool(true), "{\n  \"a\": 1,\n  \"b\": true\n}");
    }

    #[test]
    fn members_keep_file_order() {
        let document = Document::parse("{ s: { z: 1, 'a': [true, null, \"x\"] } }", Path::new("t.json5"))
            .expect("parses");
        let members = document.members(&path(&["s"]));
        assert_eq!(
            members,
            vec![
                ("z".to_owned(), Json::Number("1".into())),
                ("a".to_owned(), Json::Array(vec![Json::Bool(true), Json::Null, Json::String("x".into())])),
            ]
        );
    }
}
