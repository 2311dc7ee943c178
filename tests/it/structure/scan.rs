//! Reads the crate's source files as text and finds its modules and the imports between
//! them: a small lexer (comments, strings and character literals blanked, line numbers
//! kept), the module tree from `mod` declarations, and every path that names a module of
//! the crate (`use crate::…`, `use super::…`, grouped use trees, `crate::x::y` and
//! `super::x` in code), resolved through `pub use` re-exports to the file that defines
//! the item.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
};

/// A module path inside the crate, `[]` for the crate root, `["upstream", "set"]` for
/// `src/upstream/set.rs`.
pub type ModPath = Vec<String>;

/// One import found in the source.
#[derive(Debug, Clone)]
pub struct Import {
    /// The file module that imports.
    pub from: ModPath,
    /// The file module that defines what is imported.
    pub to: ModPath,
    /// The source file and the 1-based line of the path.
    pub file: PathBuf,
    pub line: usize,
    /// The path as written, segments joined by `::`.
    pub text: String,
}

/// What the scan found in the whole crate.
pub struct Crate {
    /// Every file module (the ones declared with `mod name;`), with its file.
    pub files: BTreeMap<ModPath, PathBuf>,
    pub imports: Vec<Import>,
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    PathSep,
    Punct(char),
}

/// Scans the library rooted at `src/lib.rs` and the binary at `src/main.rs` (as the
/// module `main`, where `foxxy_bridge::` means `crate::`).
pub fn scan(src: &Path) -> Crate {
    let mut parsed: BTreeMap<ModPath, Parsed> = BTreeMap::new();
    let mut files = BTreeMap::new();
    let mut queue = vec![(Vec::new(), src.join("lib.rs"), src.to_path_buf())];
    queue.push((vec!["main".to_owned()], src.join("main.rs"), src.to_path_buf()));
    while let Some((path, file, dir)) = queue.pop() {
        let text =
            fs::read_to_string(&file).unwrap_or_else(|error| panic!("read {}: {error}", file.display()));
        let tokens = lex(&text);
        let unit = parse(&path, &tokens, path.first().is_some_and(|first| first == "main"));
        for child in &unit.children {
            let candidates = [dir.join(format!("{child}.rs")), dir.join(child).join("mod.rs")];
            let child_file = candidates
                .iter()
                .find(|candidate| candidate.is_file())
                .unwrap_or_else(|| panic!("no file for `mod {child};` in {}", file.display()))
                .clone();
            let mut child_path = path.clone();
            child_path.push(child.clone());
            queue.push((child_path, child_file, dir.join(child)));
        }
        files.insert(path.clone(), file.clone());
        parsed.insert(path, Parsed { file, unit });
    }
    // Every module, file or inline, so that paths resolve to the longest known module.
    let mut modules: BTreeSet<ModPath> = files.keys().cloned().collect();
    let mut exports: BTreeMap<ModPath, BTreeMap<String, ModPath>> = BTreeMap::new();
    for parsed in parsed.values() {
        for inline in &parsed.unit.inline_modules {
            modules.insert(inline.clone());
        }
        for export in &parsed.unit.exports {
            exports
                .entry(export.module.clone())
                .or_default()
                .insert(export.name.clone(), export.target.clone());
        }
    }
    let resolver = Resolver { modules, exports, files: files.keys().cloned().collect() };
    let mut imports = Vec::new();
    for (from, parsed) in &parsed {
        for found in &parsed.unit.paths {
            if let Some(to) = resolver.file_module(&found.absolute) {
                imports.push(Import {
                    from: from.clone(),
                    to,
                    file: parsed.file.clone(),
                    line: found.line,
                    text: found.text.clone(),
                });
            }
        }
    }
    Crate { files, imports }
}

/// The crate paths `text` uses, made absolute, as written in module `module` of a library
/// (for checking the scanner itself).
pub fn paths_in(module: &[&str], text: &str) -> Vec<String> {
    let module: ModPath = module.iter().map(|segment| (*segment).to_owned()).collect();
    parse(&module, &lex(text), false)
        .paths
        .into_iter()
        .map(|found| format!("{}@{}", found.absolute.join("::"), found.line))
        .collect()
}

struct Parsed {
    file: PathBuf,
    unit: Unit,
}

struct Resolver {
    modules: BTreeSet<ModPath>,
    exports: BTreeMap<ModPath, BTreeMap<String, ModPath>>,
    files: BTreeSet<ModPath>,
}

impl Resolver {
    /// The file module that defines what the absolute path names, following re-exports;
    /// `None` when it is not in the crate.
    fn file_module(&self, absolute: &[String]) -> Option<ModPath> {
        let mut path = absolute.to_vec();
        for _ in 0..16 {
            let module_len = (0..=path.len()).rev().find(|len| self.modules.contains(&path[..*len]))?;
            let module = path[..module_len].to_vec();
            let reexported = path.get(module_len).and_then(|name| self.exports.get(&module)?.get(name));
            match reexported {
                Some(target) if target.as_slice() != &path[..=module_len] => {
                    let mut next = target.clone();
                    next.extend_from_slice(&path[module_len + 1..]);
                    path = next;
                }
                _ => {
                    let file_len = (0..=module_len).rev().find(|len| self.files.contains(&path[..*len]))?;
                    return Some(path[..file_len].to_vec());
                }
            }
        }
        None
    }
}

/// A path to something in the crate, made absolute.
struct FoundPath {
    absolute: ModPath,
    line: usize,
    text: String,
}

/// A `pub use` in `module`: `name` stands for the absolute path `target`.
struct Export {
    module: ModPath,
    name: String,
    target: ModPath,
}

#[derive(Default)]
struct Unit {
    /// `mod name;` declarations: child modules in their own files.
    children: Vec<String>,
    /// `mod name { … }` blocks, as absolute module paths.
    inline_modules: Vec<ModPath>,
    paths: Vec<FoundPath>,
    exports: Vec<Export>,
}

/// Blanks comments, string and character literals, keeping newlines; returns the tokens
/// with their 1-based lines.
fn lex(text: &str) -> Vec<(Token, usize)> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut line = 1;
    let mut i = 0;
    let at = |i: usize| chars.get(i).copied().unwrap_or('\0');
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c == '/' && at(i + 1) == '/' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    line += usize::from(chars[i] == '\n');
                    i += 1;
                }
            }
        } else if c == 'r' && (at(i + 1) == '#' || at(i + 1) == '"') && raw_string_start(&chars, i) {
            // r"…" or r#"…"#: no escapes; ends at `"` followed by as many `#`.
            let mut hashes = 0;
            i += 1;
            while at(i) == '#' {
                hashes += 1;
                i += 1;
            }
            i += 1;
            while i < chars.len() {
                if chars[i] == '"' && (1..=hashes).all(|k| at(i + k) == '#') {
                    i += 1 + hashes;
                    break;
                }
                line += usize::from(chars[i] == '\n');
                i += 1;
            }
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    i += 1;
                }
                line += usize::from(at(i) == '\n');
                i += 1;
            }
            i += 1;
        } else if c == '\'' {
            // A character literal ('x', '\n', '\u{..}') or a lifetime ('a).
            if at(i + 1) == '\\' {
                i += 2;
                while i < chars.len() && chars[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if at(i + 2) == '\'' {
                i += 3;
            } else {
                i += 1;
            }
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            // Byte strings and raw identifiers: b"…" is a string, r#ident an identifier.
            if word == "b" && (at(i) == '"' || at(i) == '\'') {
                continue;
            }
            if word == "br" && raw_string_start(&chars, start + 1) {
                // A raw byte string: read from its `r` as a raw string.
                i = start + 1;
                continue;
            }
            tokens.push((Token::Ident(word), line));
        } else if c == ':' && at(i + 1) == ':' {
            tokens.push((Token::PathSep, line));
            i += 2;
        } else {
            if !c.is_whitespace() {
                tokens.push((Token::Punct(c), line));
            }
            i += 1;
        }
    }
    tokens
}

/// Whether `r` at `i` starts a raw string (`r"` or `r#…#"`), not an identifier.
fn raw_string_start(chars: &[char], i: usize) -> bool {
    let in_word = |j: usize| chars[j].is_alphanumeric() || chars[j] == '_';
    // `br"…"` is a raw byte string when its `b` starts a word.
    let byte_prefix = i > 0 && chars[i - 1] == 'b' && (i < 2 || !in_word(i - 2));
    if i > 0 && in_word(i - 1) && !byte_prefix {
        return false;
    }
    let mut j = i + 1;
    while chars.get(j) == Some(&'#') {
        j += 1;
    }
    chars.get(j) == Some(&'"')
}

fn ident(tokens: &[(Token, usize)], i: usize) -> Option<&str> {
    match tokens.get(i) {
        Some((Token::Ident(word), _)) => Some(word),
        _ => None,
    }
}

fn punct(tokens: &[(Token, usize)], i: usize, c: char) -> bool {
    matches!(tokens.get(i), Some((Token::Punct(p), _)) if *p == c)
}

fn path_sep(tokens: &[(Token, usize)], i: usize) -> bool {
    matches!(tokens.get(i), Some((Token::PathSep, _)))
}

/// Walks the tokens of the file module `module`: `mod` declarations and blocks, use items
/// (with `pub use` re-exports), and paths in code that start with `crate` or `super`.
fn parse(module: &ModPath, tokens: &[(Token, usize)], binary: bool) -> Unit {
    let mut unit = Unit::default();
    // Inline `mod name {` blocks open at this brace depth.
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0;
    let mut i = 0;
    let current = |inline: &[(String, usize)]| {
        let mut path = module.clone();
        path.extend(inline.iter().map(|(name, _)| name.clone()));
        path
    };
    // Child modules of the current (file or inline) module, for relative use paths.
    let mut children: BTreeMap<ModPath, BTreeSet<String>> = BTreeMap::new();
    while i < tokens.len() {
        match &tokens[i].0 {
            Token::Punct('{') => {
                depth += 1;
                i += 1;
            }
            Token::Punct('}') => {
                depth -= 1;
                if inline.last().is_some_and(|(_, open)| *open == depth) {
                    inline.pop();
                }
                i += 1;
            }
            Token::Ident(word) if word == "mod" && ident(tokens, i + 1).is_some() => {
                let name = ident(tokens, i + 1).unwrap_or_default().to_owned();
                let here = current(&inline);
                children.entry(here.clone()).or_default().insert(name.clone());
                if punct(tokens, i + 2, ';') && inline.is_empty() {
                    unit.children.push(name);
                    i += 3;
                } else if punct(tokens, i + 2, '{') {
                    let mut path = here;
                    path.push(name.clone());
                    unit.inline_modules.push(path);
                    inline.push((name, depth));
                    depth += 1;
                    i += 3;
                } else {
                    i += 2;
                }
            }
            Token::Ident(word) if word == "use" => {
                let public = i > 0 && (ident(tokens, i - 1) == Some("pub") || punct(tokens, i - 1, ')'));
                let end = (i..tokens.len()).find(|j| punct(tokens, *j, ';')).unwrap_or(tokens.len());
                let here = current(&inline);
                let mut leaves = Vec::new();
                use_tree(&tokens[i + 1..end], &mut Vec::new(), &mut leaves);
                let relative = children.get(&here).cloned().unwrap_or_default();
                for (segments, alias, line) in leaves {
                    let Some(absolute) = absolute(&here, &segments, &relative, binary) else {
                        continue;
                    };
                    if public
                        && let Some(name) = alias.or_else(|| segments.last().cloned())
                        && name != "*"
                        && name != "self"
                    {
                        unit.exports.push(Export { module: here.clone(), name, target: absolute.clone() });
                    }
                    let absolute: ModPath = absolute.into_iter().filter(|segment| segment != "*").collect();
                    unit.paths.push(FoundPath { absolute, line, text: segments.join("::") });
                }
                i = end + 1;
            }
            Token::Ident(word)
                if (word == "crate" || word == "super" || (binary && word == "foxxy_bridge"))
                    && path_sep(tokens, i + 1)
                    && !(i > 0 && path_sep(tokens, i - 1)) =>
            {
                let line = tokens[i].1;
                let mut segments = vec![word.clone()];
                let mut j = i + 1;
                while path_sep(tokens, j)
                    && let Some(next) = ident(tokens, j + 1)
                {
                    segments.push(next.to_owned());
                    j += 2;
                }
                let here = current(&inline);
                if let Some(absolute) = absolute(&here, &segments, &BTreeSet::new(), binary) {
                    unit.paths.push(FoundPath { absolute, line, text: segments.join("::") });
                }
                i = j;
            }
            _ => i += 1,
        }
    }
    unit
}

/// The leaves of a use tree: each full path, its `as` name, and the line of its last
/// segment. `a::{b, c::{d as e, *}}` gives `a::b`, `a::c::d` (as `e`), `a::c::*`.
fn use_tree(
    tokens: &[(Token, usize)],
    prefix: &mut Vec<String>,
    leaves: &mut Vec<(Vec<String>, Option<String>, usize)>,
) {
    // Split at top-level commas.
    let mut start = 0;
    let mut level = 0;
    let mut parts = Vec::new();
    for (k, (token, _)) in tokens.iter().enumerate() {
        match token {
            Token::Punct('{') => level += 1,
            Token::Punct('}') => level -= 1,
            Token::Punct(',') if level == 0 => {
                parts.push(&tokens[start..k]);
                start = k + 1;
            }
            _ => {}
        }
    }
    parts.push(&tokens[start..]);
    for part in parts {
        let mut segments = prefix.clone();
        let mut k = 0;
        let mut line = part.first().map_or(0, |(_, line)| *line);
        let mut alias = None;
        while k < part.len() {
            match &part[k].0 {
                Token::Ident(word) if word == "as" => {
                    alias = ident(part, k + 1).map(str::to_owned);
                    k += 2;
                }
                Token::Ident(word) => {
                    segments.push(word.clone());
                    line = part[k].1;
                    k += 1;
                }
                Token::Punct('*') => {
                    segments.push("*".to_owned());
                    k += 1;
                }
                Token::Punct('{') => {
                    let close = part.len() - 1;
                    use_tree(&part[k + 1..close], &mut segments.clone(), leaves);
                    segments.clear();
                    break;
                }
                _ => k += 1,
            }
        }
        if segments.len() > prefix.len() {
            // `a::{self, b}`: `self` is `a` itself.
            if segments.last().is_some_and(|last| last == "self") {
                segments.pop();
            }
            leaves.push((segments, alias, line));
        }
    }
    let _ = prefix;
}

/// A path made absolute from module `here`: `crate::`, `super::` (repeatable), `self::`,
/// or a child module of `here`; `None` for other crates.
fn absolute(
    here: &ModPath,
    segments: &[String],
    children: &BTreeSet<String>,
    binary: bool,
) -> Option<ModPath> {
    let first = segments.first()?;
    let (mut base, rest) = match first.as_str() {
        "crate" => (Vec::new(), &segments[1..]),
        "foxxy_bridge" if binary => (Vec::new(), &segments[1..]),
        "self" => (here.clone(), &segments[1..]),
        "super" => {
            let mut base = here.clone();
            let mut k = 0;
            while segments.get(k).is_some_and(|segment| segment == "super") {
                base.pop();
                k += 1;
            }
            (base, &segments[k..])
        }
        name if children.contains(name) => (here.clone(), segments),
        _ => return None,
    };
    // The binary is its own crate: its `crate::` is not the library.
    if binary && first == "crate" {
        return None;
    }
    base.extend(rest.iter().cloned());
    Some(base)
}
