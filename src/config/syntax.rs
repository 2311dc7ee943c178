//! Finds where a JSON5 syntax error really is, after `json5` has rejected a text.
//!
//! `json5` (through pest) often places an error far from its cause: for a missing comma
//! between two members it points at the start of the *previous* value and says "expected
//! boolean or null". A missing comma is the most common mistake in a hand-edited config,
//! so this module re-reads a rejected text with a small recursive-descent scanner that
//! knows JSON5's structure and reports the first place the text stops making sense, in
//! words a user can act on ("expected `,` or `}`, found `\"`; is a comma missing?").
//!
//! It only locates errors; it builds nothing. When it finds none (the scanner is more
//! permissive than the real grammar in corners such as identifier characters), the
//! loader falls back to `json5`'s own message and position.

/// A syntax error: one-based line and column (in characters) and a message.
pub type SyntaxError = (usize, usize, String);

/// The first syntax error in `text`, if the scanner finds one.
pub fn first_error(text: &str) -> Option<SyntaxError> {
    let mut scanner = Scanner { chars: text.chars().collect(), position: 0 };
    let result = scanner.document();
    result.err().map(|(position, message)| {
        let (line, column) = line_column(&scanner.chars, position);
        (line, column, message)
    })
}

/// How deeply objects and arrays may nest. A config needs a handful of levels; the
/// parser and every later stage recurse once per level, so a limit keeps a hostile or
/// broken file from overflowing the stack.
pub const MAX_DEPTH: usize = 100;

/// Where `text` first nests deeper than [`MAX_DEPTH`], found without recursion (strings
/// and comments skipped), so it is safe to run before the recursive parser.
pub fn too_deep(text: &str) -> Option<SyntaxError> {
    let chars: Vec<char> = text.chars().collect();
    let mut depth = 0usize;
    let mut position = 0;
    while let Some(&c) = chars.get(position) {
        match c {
            '"' | '\'' => {
                position += 1;
                while let Some(&inner) = chars.get(position) {
                    position += if inner == '\\' { 2 } else { 1 };
                    if inner == c || inner == '\n' {
                        break;
                    }
                }
                continue;
            }
            '/' if chars.get(position + 1) == Some(&'/') => {
                while chars.get(position).is_some_and(|&c| c != '\n') {
                    position += 1;
                }
                continue;
            }
            '/' if chars.get(position + 1) == Some(&'*') => {
                position += 2;
                while position < chars.len()
                    && !(chars[position] == '*' && chars.get(position + 1) == Some(&'/'))
                {
                    position += 1;
                }
                position += 2;
                continue;
            }
            '{' | '[' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    let (line, column) = line_column(&chars, position);
                    let message = format!("objects and arrays nest more than {MAX_DEPTH} levels deep here");
                    return Some((line, column, message));
                }
            }
            '}' | ']' => depth = depth.saturating_sub(1),
            _ => {}
        }
        position += 1;
    }
    None
}

/// One-based line and column of a character index (past the end = the end).
fn line_column(chars: &[char], position: usize) -> (usize, usize) {
    let before = &chars[..position.min(chars.len())];
    let line = 1 + before.iter().filter(|&&c| c == '\n').count();
    let column = 1 + before.iter().rev().take_while(|&&c| c != '\n').count();
    (line, column)
}

struct Scanner {
    chars: Vec<char>,
    position: usize,
}

/// An error at a character index.
type Failure = (usize, String);

impl Scanner {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.position).copied()
    }

    fn document(&mut self) -> Result<(), Failure> {
        self.skip_blank()?;
        self.value()?;
        self.skip_blank()?;
        match self.peek() {
            None => Ok(()),
            Some(_) => Err(self.unexpected("the end of the file after the top-level value")),
        }
    }

    /// Skips whitespace and comments.
    fn skip_blank(&mut self) -> Result<(), Failure> {
        loop {
            match (self.peek(), self.chars.get(self.position + 1)) {
                (Some(c), _) if c.is_whitespace() || c == '\u{feff}' => self.position += 1,
                (Some('/'), Some('/')) => {
                    while self.peek().is_some_and(|c| c != '\n') {
                        self.position += 1;
                    }
                }
                (Some('/'), Some('*')) => {
                    let start = self.position;
                    self.position += 2;
                    loop {
                        match self.peek() {
                            None => return Err((start, "unterminated `/*` comment".to_owned())),
                            Some('*') if self.chars.get(self.position + 1) == Some(&'/') => {
                                self.position += 2;
                                break;
                            }
                            Some(_) => self.position += 1,
                        }
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    fn value(&mut self) -> Result<(), Failure> {
        match self.peek() {
            Some('{') => self.container('}', true),
            Some('[') => self.container(']', false),
            Some(quote @ ('"' | '\'')) => self.string(quote),
            Some(c) if c.is_ascii_digit() || matches!(c, '-' | '+' | '.') => self.number(),
            Some(c) if is_identifier_char(c) => {
                let start = self.position;
                let word = self.identifier();
                match word.as_str() {
                    "true" | "false" | "null" | "Infinity" | "NaN" => Ok(()),
                    _ => Err((
                        start,
                        format!("unexpected `{word}`; a string value needs quotes: `\"{word}\"`"),
                    )),
                }
            }
            _ => Err(self.unexpected("a value (object, array, string, number, `true`, `false` or `null`)")),
        }
    }

    /// An object (`{ key: value, ... }`) or an array (`[value, ...]`), trailing comma allowed.
    fn container(&mut self, close: char, is_object: bool) -> Result<(), Failure> {
        let open = self.position;
        self.position += 1;
        loop {
            self.skip_blank()?;
            if self.peek() == Some(close) {
                self.position += 1;
                return Ok(());
            }
            if self.peek().is_none() {
                return Err(self.unclosed(open));
            }
            if is_object {
                self.key()?;
                self.skip_blank()?;
                if self.peek() != Some(':') {
                    return Err(self.unexpected("`:` after the key"));
                }
                self.position += 1;
                self.skip_blank()?;
            }
            self.value()?;
            self.skip_blank()?;
            match self.peek() {
                Some(',') => self.position += 1,
                Some(c) if c == close => {}
                None => return Err(self.unclosed(open)),
                Some(_) => {
                    let mut failure = self.unexpected(&format!("`,` or `{close}`"));
                    failure.1.push_str("; is a comma missing?");
                    return Err(failure);
                }
            }
        }
    }

    fn key(&mut self) -> Result<(), Failure> {
        match self.peek() {
            Some(quote @ ('"' | '\'')) => self.string(quote),
            Some(c) if is_identifier_char(c) && !c.is_ascii_digit() => {
                self.identifier();
                Ok(())
            }
            _ => Err(self.unexpected("a key (a quoted string or a name) or `}`")),
        }
    }

    fn string(&mut self, quote: char) -> Result<(), Failure> {
        let start = self.position;
        self.position += 1;
        loop {
            match self.peek() {
                None => {
                    return Err((start, format!("unterminated string; close it with `{quote}`")));
                }
                Some('\\') => self.position += 2,
                Some('\n' | '\r') => {
                    return Err((
                        self.position,
                        format!(
                            "line break inside a string; close the string with `{quote}` before it, or write `\\n`"
                        ),
                    ));
                }
                Some(c) => {
                    self.position += 1;
                    if c == quote {
                        return Ok(());
                    }
                }
            }
        }
    }

    fn number(&mut self) -> Result<(), Failure> {
        let start = self.position;
        if matches!(self.peek(), Some('-' | '+')) {
            self.position += 1;
        }
        let word = self.identifier_or_digits();
        if matches!(word.as_str(), "Infinity" | "NaN") || is_number(&word) {
            return Ok(());
        }
        let written: String = self.chars[start..self.position].iter().collect();
        Err((start, format!("invalid number `{written}`")))
    }

    fn identifier(&mut self) -> String {
        let start = self.position;
        while self.peek().is_some_and(is_identifier_char) {
            self.position += 1;
        }
        self.chars[start..self.position].iter().collect()
    }

    /// A run of characters that can make up a number: `1.5e+3`, `0xFF`, `.5`.
    fn identifier_or_digits(&mut self) -> String {
        let start = self.position;
        while let Some(c) = self.peek() {
            let exponent_sign = matches!(c, '+' | '-')
                && matches!(self.chars.get(self.position.wrapping_sub(1)), Some('e' | 'E'));
            if !(is_identifier_char(c) || c == '.' || exponent_sign) {
                break;
            }
            self.position += 1;
        }
        self.chars[start..self.position].iter().collect()
    }

    fn unexpected(&self, expected: &str) -> Failure {
        let found = match self.peek() {
            None => "the end of the file".to_owned(),
            Some(c) if is_identifier_char(c) => {
                let word: String =
                    self.chars[self.position..].iter().take_while(|&&c| is_identifier_char(c)).collect();
                format!("`{word}`")
            }
            Some(c) => format!("`{c}`"),
        };
        (self.position, format!("expected {expected}, found {found}"))
    }

    fn unclosed(&self, open: usize) -> Failure {
        let (line, column) = line_column(&self.chars, open);
        (
            self.position,
            format!("unexpected end of file; the `{}` at {line}:{column} is never closed", self.chars[open]),
        )
    }
}

/// ECMAScript identifier characters, approximately (letters, digits, `$`, `_`, `\`
/// escapes); permissive on purpose, see the module docs.
fn is_identifier_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '$' | '_' | '\\' | '\u{200c}' | '\u{200d}')
}

/// A JSON5 number without its sign: decimal (`1`, `1.5`, `.5`, `5.`, `1e-3`) or hex.
fn is_number(word: &str) -> bool {
    if let Some(hex) = word.strip_prefix("0x").or_else(|| word.strip_prefix("0X")) {
        return !hex.is_empty() && hex.chars().all(|c| c.is_ascii_hexdigit());
    }
    let (mantissa, exponent) = match word.find(['e', 'E']) {
        Some(index) => (&word[..index], Some(&word[index + 1..])),
        None => (word, None),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = |part: &str| part.chars().all(|c| c.is_ascii_digit());
    let mantissa_ok = (!whole.is_empty() || !fraction.is_empty()) && digits(whole) && digits(fraction);
    let exponent_ok = exponent.is_none_or(|exponent| {
        let unsigned = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
        !unsigned.is_empty() && digits(unsigned)
    });
    mantissa_ok && exponent_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `expected` is `line:column: message`, or `ok` when the scanner finds nothing.
    #[track_caller]
    fn check(text: &str, expected: &str) {
        let actual = match first_error(text) {
            Some((line, column, message)) => format!("{line}:{column}: {message}"),
            None => "ok".to_owned(),
        };
        assert_eq!(actual, expected, "text: {text}");
    }

    #[test]
    fn nesting_is_bounded_without_recursion() {
        let nested = |depth: usize| format!("{{\"a\": {}1{}}}", "[".repeat(depth), "]".repeat(depth));
        assert_eq!(too_deep(&nested(MAX_DEPTH - 1)), None);
        let (line, column, message) = too_deep(&nested(MAX_DEPTH)).expect("too deep");
        assert_eq!((line, column), (1, MAX_DEPTH + 6));
        assert!(message.contains("nest more than"), "{message}");
        // Brackets in strings and comments do not count; a million unclosed ones is fine.
        assert_eq!(too_deep(&format!("{{\"a\": \"{0}\", /* {0} */ // {0}\n}}", "[".repeat(500))), None);
        assert!(too_deep(&"[".repeat(1_000_000)).is_some());
    }

    #[test]
    fn valid_json5() {
        check("{}", "ok");
        check("  {  } // trailing comment", "ok");
        check("/* a */ { /* b */ a: 1, 'b': \"2\", $c_d: [1, 2,], } /* c */", "ok");
        check(
            r#"{ "s": "esc \" \\ \n \u00e9", 's2': 'it\'s', "cont": "a\
b" }"#,
            "ok",
        );
        check("[1, -2, +3, 1.5, .5, 5., 1e3, 1E-3, 2.5e+10, 0x1F, -0XaB, Infinity, -Infinity, NaN]", "ok");
        check("[true, false, null, [], {}]", "ok");
        check("{ ünïcødé: 1, 'x': 'ünï' }", "ok");
        check("\u{feff}{}", "ok");
    }

    #[test]
    fn errors() {
        check("{\n  \"a\": 1\n  \"b\": 2\n}", "3:3: expected `,` or `}`, found `\"`; is a comma missing?");
        check("[1 2]", "1:4: expected `,` or `]`, found `2`; is a comma missing?");
        check("{ \"a\": npx }", "1:8: unexpected `npx`; a string value needs quotes: `\"npx\"`");
        check("{ \"a\": 1,, }", "1:10: expected a key (a quoted string or a name) or `}`, found `,`");
        check("{ \"a\" 1 }", "1:7: expected `:` after the key, found `1`");
        check("{\n \"a\": 1\n", "3:1: unexpected end of file; the `{` at 1:1 is never closed");
        check("{ \"a\": [1, 2 }", "1:14: expected `,` or `]`, found `}`; is a comma missing?");
        check("{ \"a\": 'x }", "1:8: unterminated string; close it with `'`");
        check(
            "{ \"a\": \"x\ny\" }",
            "1:10: line break inside a string; close the string with `\"` before it, or write `\\n`",
        );
        check("{ \"a\": 1.2.3 }", "1:8: invalid number `1.2.3`");
        check("{ \"a\": 0x }", "1:8: invalid number `0x`");
        check("{ a-b: 1 }", "1:4: expected `:` after the key, found `-`");
        check(
            "{ \"a\": } ",
            "1:8: expected a value (object, array, string, number, `true`, `false` or `null`), found `}`",
        );
        check("{} {}", "1:4: expected the end of the file after the top-level value, found `{`");
        check("/* open", "1:1: unterminated `/*` comment");
        check(
            "",
            "1:1: expected a value (object, array, string, number, `true`, `false` or `null`), found the end of the file",
        );
    }
}
