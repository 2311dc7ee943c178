//! Unit tests of the remembered instructions: the files, their modes, and the keys.

use std::{os::unix::fs::PermissionsExt, path::Path};

use super::*;

fn mode(path: &Path) -> u32 {
    fs::metadata(path).expect("metadata").permissions().mode() & 0o777
}

#[test]
fn a_write_is_read_back_from_a_private_file_and_leaves_no_temp_file() {
    let root = tempfile::tempdir().expect("temp dir");
    let dir = root.path().join("cache").join("instructions");
    let store = InstructionsStore::new(&dir);
    assert_eq!(store.read("k"), None, "nothing remembered yet");
    store.write("k", Some("use the tools")).expect("write");
    assert_eq!(store.read("k").as_deref(), Some("use the tools"));
    store.write("k", Some("use them well")).expect("replace");
    assert_eq!(store.read("k").as_deref(), Some("use them well"));
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&root.path().join("cache")), 0o700);
    assert_eq!(mode(&dir.join("k.json")), 0o600);
    let names: Vec<_> = fs::read_dir(&dir).expect("list").flatten().map(|entry| entry.file_name()).collect();
    assert_eq!(names, ["k.json"]);
    store.write("k", None).expect("forget");
    assert_eq!(store.read("k"), None);
    store.write("k", None).expect("forgetting nothing is fine");
}

#[test]
fn an_existing_directory_is_made_private() {
    let root = tempfile::tempdir().expect("temp dir");
    fs::set_permissions(root.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    InstructionsStore::new(root.path()).write("k", Some("x")).expect("write");
    assert_eq!(mode(root.path()), 0o700);
}

#[test]
fn unreadable_files_count_as_none() {
    let root = tempfile::tempdir().expect("temp dir");
    let store = InstructionsStore::new(root.path());
    for (key, contents) in [
        ("garbage", b"not json".to_vec()),
        ("wrong", br#"{"text": "x"}"#.to_vec()),
        ("binary", vec![0xff, 0xfe, 0x00]),
        ("huge", vec![b' '; MAX_FILE_BYTES as usize + 1]),
    ] {
        fs::write(root.path().join(format!("{key}.json")), contents).expect("write");
        assert_eq!(store.read(key), None, "{key}");
    }
    fs::create_dir(root.path().join("dir.json")).expect("mkdir");
    assert_eq!(store.read("dir"), None);
}

#[test]
fn stale_temp_files_are_removed_on_the_next_write() {
    let root = tempfile::tempdir().expect("temp dir");
    let stale = root.path().join(".tmp-k-1-0");
    fs::write(&stale, "half").expect("write");
    let old = SystemTime::now() - STALE_TEMP_AGE * 2;
    File::options().write(true).open(&stale).and_then(|file| file.set_modified(old)).expect("age it");
    let fresh = root.path().join(".tmp-k-2-0");
    fs::write(&fresh, "being written").expect("write");
    InstructionsStore::new(root.path()).write("k", Some("x")).expect("write");
    assert!(!stale.exists() && fresh.exists());
}

fn key_of(entry: &str) -> String {
    let text = format!(r#"{{ "mcpServers": {{ "s": {entry} }} }}"#);
    let settings = crate::config::load_str(&text, Path::new("c.json5"), &|_| None).expect("config");
    server_key(&settings.servers[0])
}

#[test]
fn the_key_follows_what_identifies_the_server() {
    let base = key_of(r#"{ "command": "npx", "args": ["a"], "env": { "TOKEN": "one" } }"#);
    assert_eq!(base.len(), 16);
    assert!(base.chars().all(|c| c.is_ascii_hexdigit()));
    let same = [
        r#"{ "command": "npx", "args": ["a"], "env": { "TOKEN": "one" } }"#,
        r#"{ "command": "npx", "args": ["a"], "env": { "TOKEN": "one" }, "toolNamespace": "x", "timeout": 5 }"#,
        r#"{ "command": "npx", "args": ["a"], "env": { "TOKEN": "one" }, "tags": ["t"], "priority": 1 }"#,
    ];
    for entry in same {
        assert_eq!(key_of(entry), base, "{entry}");
    }
    let different = [
        r#"{ "command": "npx", "args": ["a"], "env": { "TOKEN": "two" } }"#,
        r#"{ "command": "npx", "args": ["a"], "env": { "OTHER": "one" } }"#,
        r#"{ "command": "npx", "args": ["a"] }"#,
        r#"{ "command": "npx", "args": ["b"], "env": { "TOKEN": "one" } }"#,
        r#"{ "command": "uvx", "args": ["a"], "env": { "TOKEN": "one" } }"#,
        r#"{ "command": "npx", "args": ["a"], "env": { "TOKEN": "one" }, "cwd": "/tmp" }"#,
    ];
    for entry in different {
        assert_ne!(key_of(entry), base, "{entry}");
    }
    let remote = key_of(r#"{ "url": "https://a.example/mcp" }"#);
    assert_ne!(key_of(r#"{ "url": "https://b.example/mcp" }"#), remote);
    assert_ne!(key_of(r#"{ "url": "https://a.example/mcp", "headers": { "X-Key": "k" } }"#), remote);
    assert_ne!(key_of(r#"{ "url": "https://a.example/mcp", "transport": "sse" }"#), remote);
    assert_eq!(key_of(r#"{ "url": "https://a.example/mcp", "timeout": 9 }"#), remote);
}

#[test]
fn concurrent_writers_never_leave_a_torn_file() {
    let root = tempfile::tempdir().expect("temp dir");
    let store = InstructionsStore::new(root.path());
    let texts: Vec<String> = (0..4).map(|writer| format!("{writer}").repeat(200_000)).collect();
    store.write("k", Some(&texts[0])).expect("first write");
    std::thread::scope(|scope| {
        for text in &texts {
            let store = store.clone();
            scope.spawn(move || {
                for _ in 0..20 {
                    store.write("k", Some(text)).expect("write");
                }
            });
        }
        for _ in 0..200 {
            let read = store.read("k").expect("always a whole file");
            assert!(texts.contains(&read), "a torn file of {} bytes", read.len());
        }
    });
    let names: Vec<_> =
        fs::read_dir(root.path()).expect("list").flatten().map(|entry| entry.file_name()).collect();
    assert_eq!(names, ["k.json"], "no temp file is left");
}
