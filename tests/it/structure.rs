//! The module structure of `src/`: no import cycles between modules and no import from a
//! lower layer to a higher one. The source is read as text (`structure/scan.rs`), so the
//! check needs no build of the crate and no parser crate.
//!
//! Granularity. A module is a file: `foo.rs`, or a folder's `mod.rs`, which stands for the
//! folder. Every import is an arrow from the file that writes the path to the file that
//! defines what it names (`pub use` re-exports are followed to their source). Arrows are
//! compared at the level where the two files part: inside `src/upstream/`, `set.rs` →
//! `supervisor.rs` is an arrow between siblings; `src/oauth/http.rs` → `src/upstream/http/mod.rs`
//! is the arrow `oauth` → `upstream` between top-level modules; a file inside
//! `src/oauth/store/` importing `src/oauth/client.rs` is the arrow `oauth::store` →
//! `oauth::client`. An arrow between a module and its own ancestor (a file using its
//! folder's `mod.rs`, or `mod.rs` using its children) is containment, not an edge: the
//! folder's `mod.rs` is its interface. `#[cfg(test)]` modules are checked like the rest.
//!
//! Rules: at every level the arrows form no cycle, and between top-level modules no arrow
//! points from a lower layer (`LAYERS`) to a higher one. Known exceptions are listed in
//! `KNOWN_DEBT`, which must shrink: an entry whose arrow is gone, or is no longer part of a
//! cycle or an upward arrow, fails the test too.
//!
//! Limits of a text scan: a sibling reached through `use super::*` and then a bare
//! `sibling::item` path, or through a macro, is not seen.

mod scan;

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    path::Path,
};

use scan::{Import, ModPath};

/// Top-level modules from the bottom layer up. A module may import modules of its own
/// layer or of lower ones. `http_client` holds what every HTTP client shares, below
/// `oauth` and `upstream`. `hub_socket` (reaching and starting a hub) is below `upstream`,
/// which uses it; `hub` (the serving hub) is above `proxy`, which it uses.
const LAYERS: &[&[&str]] = &[
    &[
        "config",
        "paths",
        "logging",
        "output",
        "memory",
        "locks",
        "wire",
        "http_client",
        "hub_socket",
        "socket_halves",
        "descriptor_limit",
    ],
    &["oauth"],
    &["upstream"],
    &["proxy"],
    &["hub"],
    &["commands", "doctor", "clients", "cli"],
    &["main"],
];

/// Known debt, to be removed by the restructuring of `src/upstream/`. Each entry is an arrow
/// `from -> to` between two modules of the same level; the check ignores it. Remove an
/// entry when its arrow goes: the test fails while a listed arrow no longer exists or no
/// longer closes a cycle or points up.
const KNOWN_DEBT: &[&str] = &[];

/// An arrow between two modules of one level, with every import that makes it.
type Arrows = BTreeMap<(String, String), Vec<Import>>;

#[test]
fn module_imports_form_no_cycle_and_point_only_down() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let scanned = scan::scan(&src);
    assert!(scanned.files.len() > 20, "too few modules found: {:?}", scanned.files.keys());
    assert!(scanned.imports.len() > 100, "too few imports found: {}", scanned.imports.len());
    let problems = check(&scanned.imports, KNOWN_DEBT);
    assert!(problems.is_empty(), "module structure:\n{}", problems.join("\n"));
}

#[test]
fn scanner_reads_grouped_use_trees_and_paths_in_code() {
    let text = r##"
        //! `use crate::in_a_doc_comment;`
        use crate::{config, upstream::{self, set::UpstreamSet, lane::Ticket as LaneTicket}};
        use super::{sibling::{A, B}, super::up::C};
        use std::collections::BTreeMap;
        /* use crate::commented_out; */
        fn f<'a>(x: &'a str) -> char {
            let _ = "crate::in_a_string";
            let _ = r#"crate::in_a_raw_string"#; let _ = br#"{ "crate::in_raw_bytes" "#;
            crate::proxy::Bridge::start(super::other::g());
            '"'
        }
    "##;
    assert_eq!(
        scan::paths_in(&["oauth", "flow"], text),
        [
            "config@3",
            "upstream@3",
            "upstream::set::UpstreamSet@3",
            "upstream::lane::Ticket@3",
            "oauth::sibling::A@4",
            "oauth::sibling::B@4",
            "up::C@4",
            "proxy::Bridge::start@10",
            "oauth::other::g@10",
        ]
    );
}

/// One import, written in `from` at line 1, of something defined in `to`.
fn import(from: &str, to: &str) -> Import {
    let path = |text: &str| text.split("::").map(str::to_owned).collect::<ModPath>();
    Import {
        from: path(from),
        to: path(to),
        file: Path::new("src").join(format!("{}.rs", from.replace("::", "/"))),
        line: 1,
        text: format!("crate::{to}"),
    }
}

#[test]
fn check_names_cycles_upward_imports_and_paid_debt() {
    let clean = [import("proxy::handler", "upstream::set"), import("upstream::set", "config::load")];
    assert!(check(&clean, &[]).is_empty(), "{:?}", check(&clean, &[]));

    let upward = [import("config::load", "proxy")];
    let problems = check(&upward, &[]);
    assert!(
        problems[0].starts_with("upward import: `config` (layer 0) imports `proxy` (layer 3)"),
        "{problems:?}"
    );
    assert!(problems[0].contains("src/config/load.rs:1: `crate::proxy`"), "{problems:?}");
    assert!(check(&upward, &["config -> proxy"]).is_empty());

    let cycle = [import("upstream::sse", "upstream::remote"), import("upstream::remote", "upstream::sse")];
    let problems = check(&cycle, &[]);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("import cycle: upstream::remote -> upstream::sse -> upstream::remote"),
        "{problems:?}"
    );
    assert!(check(&cycle, &["upstream::sse -> upstream::remote"]).is_empty());
    // A file importing its folder's mod.rs, and mod.rs importing it back, is no cycle.
    assert!(
        check(&[import("upstream::set", "upstream"), import("upstream", "upstream::set")], &[]).is_empty()
    );

    // Debt that is gone, or no longer closes a cycle, must leave the list.
    let problems = check(&clean, &["upstream::sse -> upstream::remote"]);
    assert!(problems[0].contains("`upstream::sse -> upstream::remote` no longer exists"), "{problems:?}");
    let problems = check(&cycle[..1], &["upstream::sse -> upstream::remote"]);
    assert!(problems[0].contains("no longer closes a cycle"), "{problems:?}");

    let problems = check(&[import("proxy", "brand_new")], &[]);
    assert!(problems[0].contains("`brand_new` has no layer"), "{problems:?}");
}

/// Every rule broken by these imports, as readable paragraphs.
fn check(imports: &[Import], known_debt: &[&str]) -> Vec<String> {
    let all = arrows(imports);
    let debt: BTreeSet<(String, String)> = known_debt
        .iter()
        .map(|entry| {
            let (from, to) = entry.split_once(" -> ").expect("`from -> to`");
            (from.to_owned(), to.to_owned())
        })
        .collect();
    let mut problems = Vec::new();
    let checked: Arrows =
        all.iter().filter(|(arrow, _)| !debt.contains(arrow)).map(|(a, i)| (a.clone(), i.clone())).collect();

    for ((from, to), imports) in &checked {
        if from.contains("::") {
            continue;
        }
        match (layer(from), layer(to)) {
            (Some(low), Some(high)) if low < high => problems.push(format!(
                "upward import: `{from}` (layer {low}) imports `{to}` (layer {high})\n{}",
                evidence(imports)
            )),
            (None, _) | (_, None) => {
                let unknown = if layer(from).is_none() { from } else { to };
                problems.push(format!(
                    "top-level module `{unknown}` has no layer: add it to `LAYERS` in tests/it/structure.rs"
                ));
            }
            _ => {}
        }
    }
    for (cycle, group) in cycles(&checked) {
        let mut text = format!("import cycle: {}\n", cycle.join(" -> "));
        let others: Vec<&str> =
            group.iter().filter(|node| !cycle.contains(node)).map(String::as_str).collect();
        if !others.is_empty() {
            let _ = writeln!(text, "  (other modules in cycles with these: {})", others.join(", "));
        }
        for pair in cycle.windows(2) {
            let imports = &checked[&(pair[0].clone(), pair[1].clone())];
            let _ = writeln!(text, "  {} -> {}:\n{}", pair[0], pair[1], evidence(imports));
        }
        problems.push(text);
    }
    for (from, to) in &debt {
        let arrow = (from.clone(), to.clone());
        let upward =
            !from.contains("::") && matches!((layer(from), layer(to)), (Some(low), Some(high)) if low < high);
        if !all.contains_key(&arrow) {
            problems.push(format!(
                "known debt paid: `{from} -> {to}` no longer exists; remove it from `KNOWN_DEBT`"
            ));
        } else if !upward && !in_cycle(&all, from, to) {
            problems.push(format!(
                "known debt paid: `{from} -> {to}` no longer closes a cycle; remove it from `KNOWN_DEBT`"
            ));
        }
    }
    problems
}

/// Each import as an arrow between the two modules where the importing and the imported
/// file part; imports between a module and its ancestor are left out.
fn arrows(imports: &[Import]) -> Arrows {
    let mut arrows = Arrows::new();
    for import in imports {
        let common = import.from.iter().zip(&import.to).take_while(|(a, b)| a == b).count();
        if common == import.from.len() || common == import.to.len() {
            continue;
        }
        let name = |path: &ModPath| path[..=common].join("::");
        arrows.entry((name(&import.from), name(&import.to))).or_default().push(import.clone());
    }
    arrows
}

fn layer(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

/// Whether `to` reaches `from` again, so that `from -> to` is part of a cycle.
fn in_cycle(arrows: &Arrows, from: &str, to: &str) -> bool {
    path(arrows, to, from).is_some()
}

/// The shortest chain of arrows from `start` to `goal`, both included.
fn path(arrows: &Arrows, start: &str, goal: &str) -> Option<Vec<String>> {
    let mut previous: BTreeMap<String, String> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start.to_owned()]);
    while let Some(node) = queue.pop_front() {
        if node == goal {
            let mut chain = vec![node];
            while let Some(before) = previous.get(chain.last().expect("non-empty")) {
                chain.push(before.clone());
            }
            chain.reverse();
            return Some(chain);
        }
        for (from, to) in arrows.keys() {
            if *from == node && to != start && !previous.contains_key(to) {
                previous.insert(to.clone(), node.clone());
                queue.push_back(to.clone());
            }
        }
    }
    None
}

/// The shortest cycle of each group of modules that import each other (a strongly
/// connected component), written `a -> b -> a`, with the group's members.
fn cycles(arrows: &Arrows) -> Vec<(Vec<String>, BTreeSet<String>)> {
    let nodes: BTreeSet<&String> = arrows.keys().flat_map(|(from, to)| [from, to]).collect();
    let mut grouped: BTreeSet<String> = BTreeSet::new();
    let mut found = Vec::new();
    for node in &nodes {
        if grouped.contains(*node) {
            continue;
        }
        let group: BTreeSet<String> = nodes
            .iter()
            .filter(|other| path(arrows, node, other).is_some() && path(arrows, other, node).is_some())
            .map(|other| (*other).clone())
            .collect();
        let shortest = arrows
            .keys()
            .filter(|(from, to)| group.contains(from) && group.contains(to))
            .filter_map(|(from, to)| {
                let mut chain = path(arrows, to, from)?;
                chain.insert(0, from.clone());
                Some(chain)
            })
            .min_by_key(Vec::len);
        grouped.extend(group.iter().cloned());
        if let Some(chain) = shortest {
            found.push((chain, group));
        }
    }
    found
}

/// The imports behind an arrow, one line each with file and line.
fn evidence(imports: &[Import]) -> String {
    let mut text = String::new();
    for import in imports.iter().take(5) {
        let file = import.file.strip_prefix(env!("CARGO_MANIFEST_DIR")).unwrap_or(&import.file);
        let _ = writeln!(
            text,
            "    {}:{}: `{}` ({} -> {})",
            file.display().to_string().trim_start_matches('/'),
            import.line,
            import.text,
            display(&import.from),
            display(&import.to),
        );
    }
    if imports.len() > 5 {
        let _ = writeln!(text, "    … and {} more", imports.len() - 5);
    }
    text.trim_end().to_owned()
}

fn display(path: &ModPath) -> String {
    if path.is_empty() { "crate".to_owned() } else { path.join("::") }
}
