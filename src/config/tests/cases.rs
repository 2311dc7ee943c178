//! The case files: the predecessor's documented examples (`guide/`) and `valid/` load,
//! `broken/` fails as expected.

use std::fs;
use std::path::Path;

use super::{CASES, case_files, load_case};
use crate::config::*;

#[test]
fn guide_examples_load_unchanged() {
    let files = case_files("guide");
    assert_eq!(files.len(), 12, "one file per JSON block of the reference guide");
    for file in files {
        if let Err(error) = load_case(&file) {
            panic!("{} must load:\n{error}", file.display());
        }
    }
}

/// The in-repo copies are what the test above loads; when the shared reference directory
/// is next to the checkout, make sure they have not drifted from it.
#[test]
fn guide_copies_match_the_reference() {
    let reference = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/reference/guide-examples");
    let Ok(entries) = fs::read_dir(&reference) else {
        return;
    };
    for entry in entries {
        let original = entry.unwrap().path();
        let copy = Path::new(CASES).join("guide").join(original.file_name().unwrap());
        assert_eq!(
            fs::read(&original).unwrap(),
            fs::read(&copy).unwrap_or_default(),
            "{} differs from {}",
            copy.display(),
            original.display()
        );
    }
}

#[test]
fn guide_examples_resolve_as_documented() {
    let settings = load_case(&Path::new(CASES).join("guide/guide-02-full.json5")).unwrap();
    let remote = |name: &str| match &settings.server(name).unwrap().transport {
        TransportSettings::Remote(remote) => remote.clone(),
        TransportSettings::Stdio { .. } => panic!("{name} is remote"),
    };
    // `verify_ssl` inside `oauth` is the predecessor's spelling; `false` there turns verification off.
    assert!(remote("remote-server").verify_ssl);
    assert!(!remote("dev-server").verify_ssl);
    assert_eq!(remote("dev-server").kind, RemoteKind::Sse);
    let oauth = remote("dev-server").oauth.unwrap();
    assert!(oauth.enabled && oauth.send_resource);
    assert_eq!(oauth.issuer.as_deref(), Some("https://dev-auth.example.com"));
}

#[test]
fn valid_cases_load() {
    let files = case_files("valid");
    assert!(files.len() >= 4);
    for file in files {
        if let Err(error) = load_case(&file) {
            panic!("{} must load:\n{error}", file.display());
        }
    }
}

#[test]
fn broken_cases_report_what_they_expect() {
    let files = case_files("broken");
    assert!(files.len() >= 20);
    for file in files {
        let expected = fs::read_to_string(file.with_extension("expected"))
            .unwrap_or_else(|_| panic!("{} needs a `.expected` file", file.display()));
        let output = match load_case(&file) {
            Ok(_) => panic!("{} must not load", file.display()),
            Err(error) => error.to_string(),
        };
        for line in expected.lines().filter(|line| !line.trim().is_empty()) {
            assert!(
                output.contains(line),
                "{}: expected the output to contain\n  {line}\nbut it was\n{output}",
                file.display()
            );
        }
    }
}

#[test]
fn every_expected_file_has_a_case() {
    for entry in fs::read_dir(Path::new(CASES).join("broken")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|extension| extension == "expected") {
            assert!(path.with_extension("json5").is_file(), "{} has no case file", path.display());
        }
    }
}

#[test]
fn all_problems_are_reported_at_once() {
    let Err(ConfigError::Invalid { problems, .. }) =
        load_case(&Path::new(CASES).join("broken/multiple-problems.json5"))
    else {
        panic!("must be invalid");
    };
    let expected = fs::read_to_string(Path::new(CASES).join("broken/multiple-problems.expected")).unwrap();
    // Exactly the listed problems, in file order: one mistake is reported once, not again
    // by a later stage.
    let path = Path::new("multiple-problems.json5");
    let rendered: Vec<String> = problems.iter().map(|problem| problem.in_file(path).to_string()).collect();
    assert_eq!(rendered.len(), expected.lines().count(), "{rendered:#?}");
    for (line, expected) in rendered.iter().zip(expected.lines()) {
        assert!(
            line.contains(expected),
            "expected {expected}
found {line}"
        );
    }
}
