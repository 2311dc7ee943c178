//! The ranked text index behind `foxxy__search_tools`: BM25F over the fields of each
//! tool, built once per catalog and read by every query.
//!
//! A tool is indexed through [`ToolText`], the words the index reads from it: its
//! exposed name, title, description, parameter names and descriptions, and upstream
//! name, each a field with its own weight. Words are split on anything that is not a
//! letter or digit and at camelCase humps (`getPullRequest` → get, pull, request), and
//! lowercased. [`Ranking::Tuned`] (what the bridge serves) also folds plurals and verb
//! endings (`issues` → issue, `merged` → merge), drops stop words from queries, and
//! expands query words with the synonyms agents use for common tool verbs and objects
//! (`remove` → delete, `ticket` → issue), at a lower weight than the word itself.
//! [`Ranking::Plain`] is textbook BM25 over all fields as one text, for comparison.
//!
//! Scores are `f64` sums in a fixed order, and ties keep catalog order, so the same
//! query over the same catalog always gives the same ranking.

use std::sync::OnceLock;

use foldhash::{HashMap, HashMapExt, HashSet};

/// The words the index reads from one tool.
#[derive(Debug, Clone, Default)]
pub struct ToolText {
    pub name: String,
    pub title: String,
    pub description: String,
    /// Parameter names and descriptions, joined.
    pub parameters: String,
    pub upstream: String,
}

/// How queries are scored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ranking {
    /// BM25 (k1 1.2, b 0.75) over all fields as one text; words as written.
    Plain,
    /// BM25F with field weights, word folding, stop words and synonyms.
    Tuned,
}

const FIELDS: usize = 5;
/// Weight of a match in each field: name, title, description, parameters, upstream.
const FIELD_WEIGHTS: [f64; FIELDS] = [3.0, 2.0, 1.0, 0.6, 1.5];
/// Length normalisation per field: long descriptions are normalised fully, short
/// fields only in part.
const FIELD_B: [f64; FIELDS] = [0.5, 0.5, 0.75, 0.75, 0.3];
const K1: f64 = 1.2;
/// How much the share of query words a tool matches scales its score.
const COVERAGE_EXPONENT: f64 = 0.5;
/// Weight of a synonym relative to the word the query used.
const SYNONYM_WEIGHT: f64 = 0.6;

/// One term's occurrences in one tool, per field.
#[derive(Debug, Clone)]
struct Posting {
    document: u32,
    counts: [u16; FIELDS],
    /// BM25F's saturated term frequency, computed once when the index is built.
    saturated: f64,
}

/// The index of one catalog's tools (documents are numbered in catalog order).
#[derive(Debug)]
pub struct ToolIndex {
    ranking: Ranking,
    postings: HashMap<String, Vec<Posting>>,
    lengths: Vec<[u32; FIELDS]>,
}

impl ToolIndex {
    pub fn build<'a>(tools: impl IntoIterator<Item = &'a ToolText>, ranking: Ranking) -> ToolIndex {
        let mut postings: HashMap<String, Vec<Posting>> = HashMap::new();
        let mut lengths = Vec::new();
        for (document, tool) in tools.into_iter().enumerate() {
            let document = u32::try_from(document).unwrap_or(u32::MAX);
            let fields = [&tool.name, &tool.title, &tool.description, &tool.parameters, &tool.upstream];
            let mut counts: HashMap<String, [u16; FIELDS]> = HashMap::new();
            let mut length = [0u32; FIELDS];
            for (field, text) in fields.into_iter().enumerate() {
                // Plain BM25 sees one field: everything counts as description.
                let slot = if ranking == Ranking::Plain { 2 } else { field };
                for word in words(text, ranking) {
                    length[slot] += 1;
                    let entry = counts.entry(word).or_insert([0; FIELDS]);
                    entry[slot] = entry[slot].saturating_add(1);
                }
            }
            lengths.push(length);
            for (word, counts) in counts {
                postings.entry(word).or_default().push(Posting { document, counts, saturated: 0.0 });
            }
        }
        for list in postings.values_mut() {
            list.sort_by_key(|posting| posting.document);
        }
        let mut average_lengths = [1.0; FIELDS];
        if !lengths.is_empty() {
            for (field, average) in average_lengths.iter_mut().enumerate() {
                let total: u64 = lengths.iter().map(|length| u64::from(length[field])).sum();
                *average = (total as f64 / lengths.len() as f64).max(1.0);
            }
        }
        for posting in postings.values_mut().flatten() {
            let length = &lengths[posting.document as usize];
            posting.saturated = saturated_frequency(ranking, &posting.counts, length, &average_lengths);
        }
        ToolIndex { ranking, postings, lengths }
    }

    pub fn len(&self) -> usize {
        self.lengths.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lengths.is_empty()
    }

    /// The documents that match `query`, best first (ties in catalog order), at most
    /// `limit` of them, among those `admit` lets through.
    ///
    /// Each query word scores a document once: by the word itself, or by its best
    /// synonym at [`SYNONYM_WEIGHT`], whichever is higher; a tool that matches several
    /// synonyms of one word does not outrank one that matches two different words.
    pub fn search(&self, query: &str, limit: usize, admit: impl Fn(usize) -> bool) -> Vec<(usize, f64)> {
        let mut scores: HashMap<u32, (f64, u32)> = HashMap::new();
        let mut word_scores: HashMap<u32, f64> = HashMap::new();
        let query_words = self.query_words(query);
        for alternatives in &query_words {
            word_scores.clear();
            for (term, weight) in alternatives {
                let Some(list) = self.postings.get(term) else { continue };
                let idf = self.idf(list.len());
                for posting in list {
                    let score = weight * idf * posting.saturated;
                    let best = word_scores.entry(posting.document).or_default();
                    *best = best.max(score);
                }
            }
            // Added in document order, so that sums do not depend on hash order.
            let mut matched: Vec<(u32, f64)> =
                word_scores.iter().map(|(&document, &score)| (document, score)).collect();
            matched.sort_by_key(|&(document, _)| document);
            for (document, score) in matched {
                let total = scores.entry(document).or_default();
                total.0 += score;
                total.1 += 1;
            }
        }
        // Coordination: a tool that matches more of the query's words ranks higher.
        let words = query_words.len().max(1) as f64;
        let mut ranked: Vec<(usize, f64)> = scores
            .into_iter()
            .map(|(document, (score, matched))| {
                let coverage = match self.ranking {
                    Ranking::Plain => 1.0,
                    Ranking::Tuned => (f64::from(matched) / words).powf(COVERAGE_EXPONENT),
                };
                (document as usize, score * coverage)
            })
            .filter(|&(document, score)| score > 0.0 && admit(document))
            .collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        ranked.truncate(limit);
        ranked
    }

    fn idf(&self, frequency: usize) -> f64 {
        let count = self.lengths.len() as f64;
        let frequency = frequency as f64;
        (1.0 + (count - frequency + 0.5) / (frequency + 0.5)).ln()
    }

    /// The query's words, each with its alternatives (itself at weight 1, then its
    /// synonyms), each word once, in query order.
    fn query_words(&self, query: &str) -> Vec<Vec<(String, f64)>> {
        let mut seen: Vec<String> = Vec::new();
        let mut groups = Vec::new();
        for word in words(query, self.ranking) {
            if seen.contains(&word) {
                continue;
            }
            seen.push(word.clone());
            let mut alternatives = Vec::new();
            if self.ranking == Ranking::Tuned {
                let folded = folded_words();
                // Single letters (`what's` → what, s) and stop words match nearly every tool.
                if word.chars().count() < 2 || folded.stop_words.contains(&word) {
                    continue;
                }
                for synonym in folded.synonyms.get(&word).into_iter().flatten() {
                    alternatives.push((synonym.clone(), SYNONYM_WEIGHT));
                }
            }
            alternatives.insert(0, (word, 1.0));
            groups.push(alternatives);
        }
        groups
    }
}

/// BM25F's saturated term frequency of a term that occurs `counts` times in the fields
/// of a document of field lengths `length`: the field-weighted, length-normalised
/// count, through `tf / (k1 + tf)`.
fn saturated_frequency(
    ranking: Ranking,
    counts: &[u16; FIELDS],
    length: &[u32; FIELDS],
    average_lengths: &[f64; FIELDS],
) -> f64 {
    let mut tf = 0.0;
    for field in 0..FIELDS {
        if counts[field] == 0 {
            continue;
        }
        let (field_weight, b) = match ranking {
            Ranking::Plain => (1.0, 0.75),
            Ranking::Tuned => (FIELD_WEIGHTS[field], FIELD_B[field]),
        };
        let norm = 1.0 - b + b * f64::from(length[field]) / average_lengths[field];
        tf += field_weight * f64::from(counts[field]) / norm;
    }
    tf / (K1 + tf)
}

/// The index words of `text`: split, lowercased and, for [`Ranking::Tuned`], folded.
pub fn words(text: &str, ranking: Ranking) -> Vec<String> {
    let mut words = Vec::new();
    for run in text.split(|c: char| !c.is_alphanumeric()).filter(|run| !run.is_empty()) {
        for part in camel_parts(run) {
            let lower = part.to_lowercase();
            words.push(match ranking {
                Ranking::Plain => lower,
                Ranking::Tuned => fold(&lower),
            });
        }
    }
    words
}

/// `run` split at camelCase humps: before an upper-case letter that follows a
/// lower-case one (`pullRequest`), and before the last capital of a capital run that a
/// lower-case letter follows (`HTTPServer` → HTTP, Server). Digits stay with their
/// word (`base64`, `s3`, `oauth2`).
fn camel_parts(run: &str) -> Vec<&str> {
    let chars: Vec<(usize, char)> = run.char_indices().collect();
    let mut parts = Vec::new();
    let mut start = 0;
    for index in 1..chars.len() {
        let (at, current) = chars[index];
        let previous = chars[index - 1].1;
        let next_lower = chars.get(index + 1).is_some_and(|(_, next)| next.is_lowercase());
        let hump = current.is_uppercase()
            && (previous.is_lowercase()
                || previous.is_ascii_digit()
                || (previous.is_uppercase() && next_lower));
        if hump {
            parts.push(&run[start..at]);
            start = at;
        }
    }
    parts.push(&run[start..]);
    parts
}

/// A light English suffix folding, the same for tools and queries: plurals and the
/// common verb endings, so `issues`, `issue`; `merged`, `merging`, `merge` meet.
fn fold(word: &str) -> String {
    if word.len() <= 3 || !word.is_ascii() || word.bytes().any(|byte| byte.is_ascii_digit()) {
        return word.to_owned();
    }
    let stem = if let Some(stem) = word.strip_suffix("ies") {
        format!("{stem}y")
    } else if let Some(stem) = word.strip_suffix("sses") {
        format!("{stem}ss")
    } else if word.ends_with("ss") || word.ends_with("us") || word.ends_with("is") {
        word.to_owned()
    } else if let Some(stem) = ["ches", "shes", "xes", "zes"]
        .iter()
        .find_map(|suffix| word.strip_suffix(suffix).map(|stem| (stem, &suffix[..suffix.len() - 2])))
    {
        format!("{}{}", stem.0, stem.1)
    } else if let Some(stem) = word.strip_suffix('s') {
        stem.to_owned()
    } else if let Some(stem) = word.strip_suffix("ing").filter(|stem| stem.len() >= 3) {
        undouble(stem).to_owned()
    } else if let Some(stem) = word.strip_suffix("ied") {
        format!("{stem}y")
    } else if let Some(stem) = word.strip_suffix("ed").filter(|stem| stem.len() >= 3) {
        undouble(stem).to_owned()
    } else {
        word.to_owned()
    };
    // A final `e` is dropped everywhere, so `merge`, `merged` and `merging` all give `merg`.
    match stem.strip_suffix('e') {
        Some(base) if base.len() >= 3 => base.to_owned(),
        _ => stem,
    }
}

/// `stopp` → `stop`: the doubled consonant of `stopped`, `running`.
fn undouble(stem: &str) -> &str {
    let bytes = stem.as_bytes();
    match bytes {
        [.., a, b] if a == b && !b"aeioulsz".contains(b) => &stem[..stem.len() - 1],
        _ => stem,
    }
}

/// Words a query can do without: they match nearly every description.
const STOP_WORDS: &[&str] = &[
    "a",
    "an",
    "and",
    "are",
    "as",
    "at",
    "be",
    "by",
    "can",
    "do",
    "for",
    "from",
    "how",
    "i",
    "in",
    "into",
    "is",
    "it",
    "its",
    "me",
    "my",
    "of",
    "on",
    "or",
    "our",
    "please",
    "so",
    "some",
    "that",
    "the",
    "their",
    "them",
    "there",
    "this",
    "to",
    "up",
    "us",
    "want",
    "we",
    "what",
    "which",
    "with",
    "you",
    "your",
    "need",
    "should",
    "would",
    "could",
    "let",
    "whether",
    "something",
    "about",
    "out",
];

/// Groups of words agents use for the same tool action or object. A query word in a
/// group also looks for the others (at [`SYNONYM_WEIGHT`]).
const SYNONYM_GROUPS: &[&[&str]] = &[
    &["delete", "remove", "erase", "drop", "destroy", "trash", "discard", "purge"],
    &["create", "make", "new", "add", "open", "start", "compose", "draft"],
    &["update", "edit", "modify", "change", "rename", "patch", "set", "adjust", "amend"],
    &["search", "find", "lookup", "look", "query", "locate", "grep", "filter", "hunt"],
    &["get", "fetch", "retrieve", "read", "show", "view", "see", "display", "inspect", "detail", "info"],
    &["list", "enumerate", "all", "browse", "every", "index"],
    &["send", "post", "message", "notify", "tell", "ping", "dm", "reply"],
    &["issue", "ticket", "bug", "task", "story", "incident"],
    &["repository", "repo", "project", "codebase"],
    &["pull", "pr", "merge", "mr"],
    &["comment", "note", "remark", "feedback", "reply"],
    &["email", "mail", "inbox", "gmail"],
    &["event", "meeting", "appointment", "calendar", "schedule", "invite", "booking"],
    &["file", "document", "doc", "docs"],
    &["folder", "directory", "dir"],
    &["table", "database", "db", "sql", "schema"],
    &["page", "tab", "browser", "website", "site", "url", "webpage"],
    &["navigate", "go", "visit", "goto", "load"],
    &["click", "press", "tap", "hit"],
    &["screenshot", "capture", "snapshot", "image", "picture"],
    &["type", "fill", "enter", "input", "write"],
    &["channel", "room", "conversation", "group"],
    &["user", "member", "person", "people", "account", "profile", "teammate", "colleague"],
    &["close", "resolve", "finish", "complete", "done"],
    &["assign", "owner", "assignee", "give"],
    &["label", "tag", "category"],
    &["upload", "attach", "put"],
    &["download", "export", "save"],
    &["copy", "duplicate", "clone"],
    &["move", "relocate", "transfer"],
    &["share", "permission", "access", "invite"],
    &["run", "execute", "exec", "invoke", "trigger", "evaluate", "eval"],
    &["recent", "latest", "last", "newest"],
    &["size", "big", "large", "bytes"],
    &["commit", "change", "diff", "history"],
    &["branch", "ref"],
    &["release", "version", "tag"],
    &["workflow", "pipeline", "action", "ci", "build", "job"],
    &["reaction", "emoji", "react"],
    &["thread", "conversation", "reply"],
    &["sheet", "spreadsheet", "cell", "row"],
    &["time", "free", "busy", "availability", "slot", "available"],
    &["text", "content", "body"],
    &["status", "state", "progress"],
    &["archive", "hide", "mute"],
    &["reviewer", "review", "approve", "approval"],
    &["wait", "until", "appear"],
    &["cookie", "storage", "session"],
    &["record", "entry", "data"],
];

/// [`STOP_WORDS`] and [`SYNONYM_GROUPS`] folded as query words are, computed once.
struct FoldedWords {
    stop_words: HashSet<String>,
    /// Each folded word → the other folded words of every group it is in.
    synonyms: HashMap<String, Vec<String>>,
}

fn folded_words() -> &'static FoldedWords {
    static FOLDED: OnceLock<FoldedWords> = OnceLock::new();
    FOLDED.get_or_init(|| {
        let stop_words = STOP_WORDS.iter().map(|word| fold(word)).collect();
        let mut synonyms: HashMap<String, Vec<String>> = HashMap::new();
        for group in SYNONYM_GROUPS {
            let folded: Vec<String> = group.iter().map(|member| fold(member)).collect();
            for word in &folded {
                let others = synonyms.entry(word.clone()).or_default();
                for other in &folded {
                    if other != word && !others.contains(other) {
                        others.push(other.clone());
                    }
                }
            }
        }
        FoldedWords { stop_words, synonyms }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_names_into_words() {
        let check =
            |text: &str, expected: &[&str]| assert_eq!(words(text, Ranking::Plain), expected, "{text}");
        check("create_pull_request", &["create", "pull", "request"]);
        check("getPullRequest", &["get", "pull", "request"]);
        check("HTTPServer", &["http", "server"]);
        check("list-s3-buckets", &["list", "s3", "buckets"]);
        check("OAuth2Token", &["o", "auth2", "token"]);
        check("base64Encode", &["base64", "encode"]);
        check("github__search_code", &["github", "search", "code"]);
        check("Créer l'événement", &["créer", "l", "événement"]);
    }

    #[test]
    fn folds_word_endings() {
        let check = |word: &str, expected: &str| assert_eq!(fold(word), expected, "{word}");
        check("issues", "issu");
        check("issue", "issu");
        check("merged", "merg");
        check("merging", "merg");
        check("merge", "merg");
        check("replies", "reply");
        check("replied", "reply");
        check("branches", "branch");
        check("boxes", "box");
        check("stopped", "stop");
        check("running", "run");
        check("status", "status");
        check("access", "access");
        check("pr", "pr");
        check("s3", "s3");
    }

    fn tool(name: &str, description: &str) -> ToolText {
        ToolText { name: name.into(), description: description.into(), ..ToolText::default() }
    }

    #[test]
    fn ranks_the_best_match_first_and_breaks_ties_by_catalog_order() {
        let tools = [
            tool("chat__send_message", "Post a message to a channel"),
            tool("alpha__create_issue", "Create a new issue in a project"),
            tool("beta__create_issue", "Create a new issue in a project"),
            tool("files__delete_file", "Delete a file"),
        ];
        let index = ToolIndex::build(&tools, Ranking::Tuned);
        let found = index.search("open a ticket", 10, |_| true);
        assert_eq!(found.iter().map(|(document, _)| *document).take(2).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(found[0].1, found[1].1);
        let found = index.search("remove a file", 1, |_| true);
        assert_eq!(found[0].0, 3);
        assert!(index.search("zebra", 10, |_| true).is_empty());
        let found = index.search("issue", 10, |document| document != 1);
        assert_eq!(found[0].0, 2);
    }
}
