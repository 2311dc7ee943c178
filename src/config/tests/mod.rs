//! Tests of the whole config pipeline, mostly driven by the files in `tests/config_cases/`:
//! `guide/` (the predecessor guide's examples, which must load unchanged), `valid/` and
//! `broken/` (each `NAME.json5` next to a `NAME.expected` whose lines must all appear in
//! the error output). `files.rs` covers finding and reading files and the committed
//! schema; `resolution.rs` what valid files resolve to.

mod cases;
mod files;
mod resolution;

use std::{
    fs,
    path::{Path, PathBuf},
};

use super::*;

const CASES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/config_cases");

/// The environment every case file sees; nothing comes from the real one.
fn test_env(name: &str) -> Option<String> {
    let value = match name {
        "HOME" => "/home/fox",
        "API_TOKEN" => "tok-123",
        "HEADER_KEY" => "hdr-456",
        _ => return None,
    };
    Some(value.to_owned())
}

fn load_case(path: &Path) -> Result<Settings, ConfigError> {
    let text = fs::read_to_string(path).unwrap();
    let name = path.file_name().unwrap();
    load_str(&text, Path::new(name), &test_env)
}

fn case_files(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(Path::new(CASES).join(dir))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "json5"))
        .collect();
    files.sort();
    files
}
