//! The JSON store, byte-compatible with sops 3.11 (`stores/json/store.go`).
//!
//! Reading: the top level must be an object. Key order **and duplicate keys** are kept
//! (sops walks the token stream, so `{"a":1,"a":2}` keeps both entries). Every number
//! becomes a [`Scalar::Float`] because sops 3.11's decoder has no `UseNumber`. Strings are
//! decoded as Go's `encoding/json` does: invalid UTF-8 bytes and unpaired surrogate escapes
//! become U+FFFD.
//!
//! Differences from sops' reader, all stricter: trailing data after the top-level object
//! and a truncated object are rejected (Go's token loop stops early and accepts both), and
//! nesting is limited to [`MAX_DEPTH`] (Go allows 10000).
//!
//! Writing: sops builds compact JSON with `json.Marshal` for keys and scalars and then
//! re-indents it with `json.Indent` (tab by default, or N spaces). [`emit`] writes the same
//! bytes directly: Go's string escaping (`<`, `>`, `&`, U+2028/2029 as `\uXXXX`; `\b`,
//! `\f`, `\n`, `\r`, `\t` short escapes as Go >= 1.22 writes them), Go's float format,
//! `{}`/`[]` for empty containers, comments dropped. `Scalar::Bytes` is written as a string;
//! invalid UTF-8 bytes become `\ufffd` one per byte, exactly as Go marshals a `string`
//! holding those bytes. `Scalar::Time` is written as its RFC 3339 text.

use crate::sops::tree::{MapItem, Node, Scalar, Text};

/// Maximum nesting of objects and arrays accepted by [`parse`].
pub const MAX_DEPTH: usize = 512;

/// A JSON read or write error. Messages follow sops' (`Could not unmarshal input data: …`);
/// syntax errors add the 1-based line and column (column counted in characters).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JsonError {
    /// The top-level value is not an object. The message is exactly sops'; the position
    /// of the offending value is kept in the fields.
    #[error("Could not unmarshal input data: Expected JSON object start, got {found} instead")]
    NotAnObject {
        found: String,
        line: usize,
        column: usize,
    },
    #[error("Could not unmarshal input data: {message} at line {line}, column {column}")]
    Syntax {
        message: String,
        line: usize,
        column: usize,
    },
    #[error(
        "Could not unmarshal input data: exceeded max depth of {limit} at line {line}, column {column}"
    )]
    TooDeep {
        limit: usize,
        line: usize,
        column: usize,
    },
    /// A key occurs twice in one object; only [`parse_manifest`] refuses this.
    #[error("duplicate key {key:?} at line {line} (first at line {first})")]
    DuplicateKey {
        key: String,
        line: usize,
        first: usize,
    },
    /// Empty or whitespace-only input (Go's decoder reports a bare `EOF`).
    #[error("Could not unmarshal input data: EOF")]
    Empty,
    /// Only from [`try_emit`]: `json.Marshal` refuses NaN and ±Inf.
    #[error("Error marshaling to json: json: unsupported value: {value}")]
    UnsupportedValue { value: String },
}

/// Parses a JSON document whose top level is an object into a `Node::Map`.
pub fn parse(input: &[u8]) -> Result<Node, JsonError> {
    parse_with(input, false)
}

/// Parses a Kubernetes manifest: like [`parse`], but a key that occurs twice in one
/// object is an error (Go's decoder, and so the API server, keeps the last one while
/// lockstep reads the first).
pub fn parse_manifest(input: &[u8]) -> Result<Node, JsonError> {
    parse_with(input, true)
}

fn parse_with(input: &[u8], strict: bool) -> Result<Node, JsonError> {
    let mut p = Parser {
        b: input,
        pos: 0,
        depth: 0,
        strict,
    };
    p.skip_ws();
    let node = match p.peek() {
        None => return Err(JsonError::Empty),
        Some(b'{') => p.parse_object()?,
        Some(b'[') => {
            let (line, column) = line_col(input, p.pos);
            return Err(JsonError::NotAnObject {
                found: "delimiter [".to_owned(),
                line,
                column,
            });
        }
        Some(_) => {
            let at = p.pos;
            let value = p.parse_value()?;
            let (line, column) = line_col(input, at);
            return Err(JsonError::NotAnObject {
                found: describe_scalar(&value),
                line,
                column,
            });
        }
    };
    p.skip_ws();
    if p.peek().is_some() {
        return Err(p.unexpected("after top-level value"));
    }
    Ok(node)
}

/// Writes `doc` as sops does: `None` indents with tabs (sops' default), `Some(n)` with n
/// spaces. The result ends with one `\n`. NaN and ±Inf, which `json.Marshal` (and so sops)
/// refuses, are written as the strings `"NaN"`, `"+Inf"`, `"-Inf"`; use [`try_emit`] to get
/// sops' error instead.
pub fn emit(doc: &Node, indent: Option<usize>) -> String {
    let mut e = Emitter::new(indent, false);
    // Cannot fail when not strict.
    let _ = e.value(doc, 0);
    e.finish()
}

/// Like [`emit`], but fails on NaN/±Inf floats as sops' `json.Marshal` does.
pub fn try_emit(doc: &Node, indent: Option<usize>) -> Result<String, JsonError> {
    let mut e = Emitter::new(indent, true);
    e.value(doc, 0)?;
    Ok(e.finish())
}

// ---------------------------------------------------------------------------------------
// Parser

struct Parser<'a> {
    b: &'a [u8],
    pos: usize,
    depth: usize,
    /// Refuse duplicate keys ([`parse_manifest`]).
    strict: bool,
}

/// 1-based line and column (in characters) of byte offset `at`.
fn line_col(b: &[u8], at: usize) -> (usize, usize) {
    let before = &b[..at.min(b.len())];
    let line_start = before
        .iter()
        .rposition(|&c| c == b'\n')
        .map_or(0, |i| i + 1);
    let line = 1 + before.iter().filter(|&&c| c == b'\n').count();
    // Count characters, not bytes: skip UTF-8 continuation bytes.
    let column = 1 + before[line_start..]
        .iter()
        .filter(|&&c| (c & 0xC0) != 0x80)
        .count();
    (line, column)
}

/// Go's `quoteChar` for scanner errors: the byte is shown as a (Latin-1) character.
fn quote_byte(c: u8) -> String {
    match c {
        b'\'' => "'\\''".to_owned(),
        b'"' => "'\"'".to_owned(),
        _ => {
            let ch = char::from(c);
            let shown: String = if ch.is_control() {
                match c {
                    b'\n' => "\\n".to_owned(),
                    b'\r' => "\\r".to_owned(),
                    b'\t' => "\\t".to_owned(),
                    _ => format!("\\x{c:02x}"),
                }
            } else {
                ch.to_string()
            };
            format!("'{shown}'")
        }
    }
}

/// How sops (Go `%#v of type %T`) describes a non-object top-level value.
fn describe_scalar(n: &Node) -> String {
    match n {
        Node::Scalar(Scalar::Str(s)) => format!("{:?} of type string", s.as_str()),
        Node::Scalar(Scalar::Float(f)) => {
            let mut out = Vec::new();
            push_float(&mut out, *f);
            format!("{} of type float64", String::from_utf8_lossy(&out))
        }
        Node::Scalar(Scalar::Bool(b)) => format!("{b} of type bool"),
        _ => "<nil> of type <nil>".to_owned(),
    }
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    fn syntax_at(&self, at: usize, message: String) -> JsonError {
        let (line, column) = line_col(self.b, at);
        JsonError::Syntax {
            message,
            line,
            column,
        }
    }

    /// Error for the byte at the current position (or end of input), in Go's wording.
    fn unexpected(&self, context: &str) -> JsonError {
        match self.peek() {
            None => self.syntax_at(self.pos, "unexpected EOF".to_owned()),
            Some(c) => self.syntax_at(
                self.pos,
                format!("invalid character {} {context}", quote_byte(c)),
            ),
        }
    }

    fn enter(&mut self) -> Result<(), JsonError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            let (line, column) = line_col(self.b, self.pos);
            return Err(JsonError::TooDeep {
                limit: MAX_DEPTH,
                line,
                column,
            });
        }
        Ok(())
    }

    fn parse_value(&mut self) -> Result<Node, JsonError> {
        self.skip_ws();
        match self.peek() {
            Some(b'{') => self.parse_object(),
            Some(b'[') => self.parse_array(),
            Some(b'"') => Ok(Node::Scalar(Scalar::Str(Text::new(self.parse_string()?)))),
            Some(b'-' | b'0'..=b'9') => Ok(Node::Scalar(Scalar::Float(self.parse_number()?))),
            Some(b't') => self.parse_literal(b"true", Scalar::Bool(true)),
            Some(b'f') => self.parse_literal(b"false", Scalar::Bool(false)),
            Some(b'n') => self.parse_literal(b"null", Scalar::Null),
            _ => Err(self.unexpected("looking for beginning of value")),
        }
    }

    fn parse_object(&mut self) -> Result<Node, JsonError> {
        self.enter()?;
        self.pos += 1; // '{'
        let mut items = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            self.depth -= 1;
            return Ok(Node::Map(items));
        }
        // Key → byte offset of its first occurrence (strict only).
        let mut seen: std::collections::HashMap<String, usize> = Default::default();
        loop {
            self.skip_ws();
            if self.peek() != Some(b'"') {
                return Err(self.unexpected("looking for beginning of object key string"));
            }
            let at = self.pos;
            let key = self.parse_string()?;
            if self.strict {
                if let Some(&first) = seen.get(&key) {
                    return Err(JsonError::DuplicateKey {
                        key,
                        line: line_col(self.b, at).0,
                        first: line_col(self.b, first).0,
                    });
                }
                seen.insert(key.clone(), at);
            }
            self.skip_ws();
            if self.peek() != Some(b':') {
                return Err(self.unexpected("after object key"));
            }
            self.pos += 1;
            let value = self.parse_value()?;
            items.push(MapItem::Entry(key, value));
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    break;
                }
                _ => return Err(self.unexpected("after object key:value pair")),
            }
        }
        self.depth -= 1;
        Ok(Node::Map(items))
    }

    fn parse_array(&mut self) -> Result<Node, JsonError> {
        self.enter()?;
        self.pos += 1; // '['
        let mut items = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            self.depth -= 1;
            return Ok(Node::List(items));
        }
        loop {
            items.push(self.parse_value()?);
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    break;
                }
                _ => return Err(self.unexpected("after array element")),
            }
        }
        self.depth -= 1;
        Ok(Node::List(items))
    }

    fn parse_literal(&mut self, word: &[u8], value: Scalar) -> Result<Node, JsonError> {
        for (i, &expected) in word.iter().enumerate() {
            match self.peek() {
                Some(c) if c == expected => self.pos += 1,
                _ => {
                    let name = String::from_utf8_lossy(word);
                    return Err(self.unexpected(&format!(
                        "in literal {name} (expecting {})",
                        quote_byte(word[i])
                    )));
                }
            }
        }
        Ok(Node::Scalar(value))
    }

    fn eat_digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
    }

    /// A number per the JSON grammar, read as float64 like Go's `ParseFloat`.
    fn parse_number(&mut self) -> Result<f64, JsonError> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => self.eat_digits(),
            _ => return Err(self.unexpected("in numeric literal")),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.unexpected("after decimal point in numeric literal"));
            }
            self.eat_digits();
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.unexpected("in exponent of numeric literal"));
            }
            self.eat_digits();
        }
        let text = String::from_utf8_lossy(&self.b[start..self.pos]);
        match text.parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(f),
            // Go's ParseFloat fails with ErrRange where Rust gives ±Inf.
            _ => Err(self.syntax_at(
                start,
                format!("json: cannot unmarshal number {text} into Go value of type float64"),
            )),
        }
    }

    /// Reads four hex digits at `at`, or reports the first bad one.
    fn hex4(&self, at: usize) -> Result<u32, JsonError> {
        let mut v = 0u32;
        for i in at..at + 4 {
            let d = match self.b.get(i) {
                Some(c @ b'0'..=b'9') => c - b'0',
                Some(c @ b'a'..=b'f') => c - b'a' + 10,
                Some(c @ b'A'..=b'F') => c - b'A' + 10,
                Some(&c) => {
                    return Err(self.syntax_at(
                        i,
                        format!(
                            "invalid character {} in \\u hexadecimal character escape",
                            quote_byte(c)
                        ),
                    ));
                }
                None => return Err(self.syntax_at(i, "unexpected EOF".to_owned())),
            };
            v = (v << 4) | u32::from(d);
        }
        Ok(v)
    }

    /// Decodes a string starting at the opening quote, as Go's `unquote` does.
    fn parse_string(&mut self) -> Result<String, JsonError> {
        let b = self.b;
        let start = self.pos + 1; // after the opening quote
        let mut i = start;
        while i < b.len() && !STRING_STOP[usize::from(b[i])] {
            i += 1;
        }
        // Fast path: no escapes. Go validates UTF-8 the same way in both paths.
        if b.get(i) == Some(&b'"') {
            let mut out = Vec::with_capacity(i - start);
            push_go_utf8(&mut out, &b[start..i]);
            self.pos = i + 1;
            return Ok(into_string(out));
        }
        // Slow path: size the buffer once so a secret is not copied by regrowth.
        let mut out = Vec::with_capacity(self.string_extent(start));
        let mut chunk = start;
        loop {
            while i < b.len() && !STRING_STOP[usize::from(b[i])] {
                i += 1;
            }
            self.pos = i;
            match b.get(i) {
                None => return Err(self.syntax_at(i, "unexpected EOF".to_owned())),
                Some(b'"') => {
                    push_go_utf8(&mut out, &b[chunk..i]);
                    self.pos = i + 1;
                    return Ok(into_string(out));
                }
                Some(b'\\') => {
                    push_go_utf8(&mut out, &b[chunk..i]);
                    self.parse_escape(&mut out)?;
                    i = self.pos;
                    chunk = i;
                }
                Some(_) => return Err(self.unexpected("in string literal")),
            }
        }
    }

    /// Bytes from `start` to the closing quote (or end of input), skipping escapes.
    fn string_extent(&self, start: usize) -> usize {
        let mut i = start;
        while let Some(&c) = self.b.get(i) {
            match c {
                b'"' => break,
                b'\\' => i += 2,
                _ => i += 1,
            }
        }
        i.min(self.b.len()) - start
    }

    /// Handles one escape; `self.pos` is at the backslash.
    fn parse_escape(&mut self, out: &mut Vec<u8>) -> Result<(), JsonError> {
        self.pos += 1;
        let Some(c) = self.peek() else {
            return Err(self.syntax_at(self.pos, "unexpected EOF".to_owned()));
        };
        let simple = match c {
            b'"' => Some(b'"'),
            b'\\' => Some(b'\\'),
            b'/' => Some(b'/'),
            b'b' => Some(0x08),
            b'f' => Some(0x0c),
            b'n' => Some(b'\n'),
            b'r' => Some(b'\r'),
            b't' => Some(b'\t'),
            b'u' => None,
            _ => return Err(self.unexpected("in string escape code")),
        };
        if let Some(byte) = simple {
            out.push(byte);
            self.pos += 1;
            return Ok(());
        }
        let r = self.hex4(self.pos + 1)?;
        self.pos += 5;
        let ch = if (0xD800..0xE000).contains(&r) {
            // A surrogate: only a high one followed by an escaped low one forms a pair;
            // anything else becomes U+FFFD and the next escape is read on its own.
            let pair = if r < 0xDC00 && self.b[self.pos..].starts_with(b"\\u") {
                match self.hex4(self.pos + 2) {
                    Ok(r2) if (0xDC00..0xE000).contains(&r2) => Some(r2),
                    _ => None,
                }
            } else {
                None
            };
            match pair {
                Some(r2) => {
                    self.pos += 6;
                    char::from_u32(0x10000 + ((r - 0xD800) << 10) + (r2 - 0xDC00))
                        .unwrap_or('\u{FFFD}')
                }
                None => '\u{FFFD}',
            }
        } else {
            char::from_u32(r).unwrap_or('\u{FFFD}')
        };
        let mut buf = [0u8; 4];
        out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
        Ok(())
    }
}

/// Appends `bytes`, replacing each invalid UTF-8 byte with U+FFFD as Go does.
/// (`utf8_chunks` reports maximal invalid prefixes; their trailing bytes are continuation
/// bytes, which Go also replaces one by one, so the counts agree.)
fn push_go_utf8(out: &mut Vec<u8>, bytes: &[u8]) {
    for chunk in bytes.utf8_chunks() {
        out.extend_from_slice(chunk.valid().as_bytes());
        for _ in chunk.invalid() {
            out.extend_from_slice("\u{FFFD}".as_bytes());
        }
    }
}

fn into_string(bytes: Vec<u8>) -> String {
    match String::from_utf8(bytes) {
        Ok(s) => s,
        // Unreachable: only valid UTF-8 is ever appended.
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

// ---------------------------------------------------------------------------------------
// Emitter

struct Emitter {
    out: Vec<u8>,
    indent: Vec<u8>,
    strict: bool,
}

impl Emitter {
    fn new(indent: Option<usize>, strict: bool) -> Self {
        let indent = match indent {
            None => b"\t".to_vec(),
            Some(n) => vec![b' '; n],
        };
        Emitter {
            out: Vec::with_capacity(4096),
            indent,
            strict,
        }
    }

    fn finish(mut self) -> String {
        self.out.push(b'\n');
        into_string(std::mem::take(&mut self.out))
    }

    fn newline(&mut self, depth: usize) {
        self.out.push(b'\n');
        for _ in 0..depth {
            self.out.extend_from_slice(&self.indent);
        }
    }

    fn value(&mut self, node: &Node, depth: usize) -> Result<(), JsonError> {
        match node {
            Node::Map(items) => {
                // json.Indent keeps `{}` for an empty object; comments are not written.
                let mut first = true;
                for item in items {
                    let MapItem::Entry(key, value) = item else {
                        continue;
                    };
                    self.out.push(if first { b'{' } else { b',' });
                    first = false;
                    self.newline(depth + 1);
                    push_go_string(&mut self.out, key.as_bytes());
                    self.out.extend_from_slice(b": ");
                    self.value(value, depth + 1)?;
                }
                if first {
                    self.out.extend_from_slice(b"{}");
                } else {
                    self.newline(depth);
                    self.out.push(b'}');
                }
            }
            Node::List(items) => {
                let mut first = true;
                for item in items {
                    if matches!(item, Node::Comment(_)) {
                        continue;
                    }
                    self.out.push(if first { b'[' } else { b',' });
                    first = false;
                    self.newline(depth + 1);
                    self.value(item, depth + 1)?;
                }
                if first {
                    self.out.extend_from_slice(b"[]");
                } else {
                    self.newline(depth);
                    self.out.push(b']');
                }
            }
            Node::Scalar(s) => self.scalar(s)?,
            // A bare comment is not a value; only reachable for a malformed document.
            Node::Comment(_) => self.out.extend_from_slice(b"null"),
        }
        Ok(())
    }

    fn scalar(&mut self, s: &Scalar) -> Result<(), JsonError> {
        match s {
            Scalar::Null => self.out.extend_from_slice(b"null"),
            Scalar::Bool(true) => self.out.extend_from_slice(b"true"),
            Scalar::Bool(false) => self.out.extend_from_slice(b"false"),
            Scalar::Int(i) => self.out.extend_from_slice(i.to_string().as_bytes()),
            Scalar::Float(f) if f.is_finite() => push_float(&mut self.out, *f),
            Scalar::Float(f) => {
                let text = if f.is_nan() {
                    "NaN"
                } else if *f > 0.0 {
                    "+Inf"
                } else {
                    "-Inf"
                };
                if self.strict {
                    return Err(JsonError::UnsupportedValue {
                        value: text.to_owned(),
                    });
                }
                push_go_string(&mut self.out, text.as_bytes());
            }
            Scalar::Str(t) | Scalar::Time(t) => {
                push_go_string(&mut self.out, t.as_str().as_bytes())
            }
            Scalar::Bytes(b) => push_go_string(&mut self.out, b.as_bytes()),
        }
        Ok(())
    }
}

/// Go `encoding/json` float64 encoding: shortest round-trip digits, `'f'` format for
/// 1e-6 <= |x| < 1e21 (and 0), otherwise `'e'` with `e-07` shortened to `e-7`.
fn push_float(out: &mut Vec<u8>, f: f64) {
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        // Rust's `{:e}` gives the same shortest mantissa; only the exponent differs.
        let s = format!("{f:e}");
        let (mantissa, exp) = s.split_once('e').unwrap_or((s.as_str(), "0"));
        out.extend_from_slice(mantissa.as_bytes());
        out.push(b'e');
        match exp.strip_prefix('-') {
            // Go writes at least two exponent digits, then trims `e-0X` to `e-X`.
            Some(digits) => {
                out.push(b'-');
                out.extend_from_slice(digits.as_bytes());
            }
            None => {
                out.push(b'+');
                if exp.len() < 2 {
                    out.push(b'0');
                }
                out.extend_from_slice(exp.as_bytes());
            }
        }
    } else {
        // Rust's Display is Go's FormatFloat(f, 'f', -1, 64) for finite values.
        out.extend_from_slice(format!("{f}").as_bytes());
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Bytes that end the plain run of a JSON string being read: quote, backslash, controls.
const STRING_STOP: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = true;
        i += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

/// Bytes that Go's encoder may escape: controls, `"`, `\`, `<`, `>`, `&`, and 0xE2 (the
/// lead byte of U+2028/U+2029, checked further).
const ESCAPE_CHECK: [bool; 256] = {
    let mut t = STRING_STOP;
    t[b'<' as usize] = true;
    t[b'>' as usize] = true;
    t[b'&' as usize] = true;
    t[0xE2] = true;
    t
};

/// Go `json.Marshal` string encoding with HTML escaping (Go >= 1.22 rules).
fn push_go_string(out: &mut Vec<u8>, src: &[u8]) {
    out.reserve(src.len() + 2);
    out.push(b'"');
    for chunk in src.utf8_chunks() {
        let s = chunk.valid().as_bytes();
        let mut start = 0;
        let mut i = 0;
        while i < s.len() {
            let b = s[i];
            if !ESCAPE_CHECK[usize::from(b)] {
                i += 1;
                continue;
            }
            if b == 0xE2 {
                // U+2028 / U+2029 (line/paragraph separator) are E2 80 A8 / E2 80 A9.
                if s.get(i + 1) == Some(&0x80) && matches!(s.get(i + 2), Some(0xA8 | 0xA9)) {
                    out.extend_from_slice(&s[start..i]);
                    out.extend_from_slice(b"\\u202");
                    out.push(if s[i + 2] == 0xA8 { b'8' } else { b'9' });
                    i += 3;
                    start = i;
                } else {
                    i += 1;
                }
                continue;
            }
            out.extend_from_slice(&s[start..i]);
            match b {
                b'\\' => out.extend_from_slice(b"\\\\"),
                b'"' => out.extend_from_slice(b"\\\""),
                0x08 => out.extend_from_slice(b"\\b"),
                0x0c => out.extend_from_slice(b"\\f"),
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b'\t' => out.extend_from_slice(b"\\t"),
                // Other controls and `<`, `>`, `&`.
                _ => out.extend_from_slice(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[usize::from(b >> 4)],
                    HEX[usize::from(b & 0xF)],
                ]),
            }
            i += 1;
            start = i;
        }
        out.extend_from_slice(&s[start..]);
        for _ in chunk.invalid() {
            out.extend_from_slice(b"\\ufffd");
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sops::tree::Blob;
    use std::path::PathBuf;

    fn vectors() -> PathBuf {
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/sops"))
    }

    fn read(rel: &str) -> Vec<u8> {
        let p = vectors().join(rel);
        std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    fn read_str(rel: &str) -> String {
        String::from_utf8(read(rel)).unwrap()
    }

    fn roundtrip(rel: &str, indent: Option<usize>) -> String {
        emit(&parse(&read(rel)).unwrap(), indent)
    }

    #[test]
    fn vector_03_plain_to_decrypted() {
        assert_eq!(
            roundtrip("03-json/config.plain.json", None),
            read_str("03-json/config.decrypted.json")
        );
    }

    #[test]
    fn vector_03_enc_roundtrip() {
        assert_eq!(
            roundtrip("03-json/config.enc.json", None),
            read_str("03-json/config.enc.json")
        );
        assert_eq!(
            roundtrip("03-json/config.decrypted.json", None),
            read_str("03-json/config.decrypted.json")
        );
    }

    #[test]
    fn vector_03_numbers_are_floats() {
        let doc = parse(&read("03-json/config.plain.json")).unwrap();
        let db = doc.get("database").unwrap();
        assert_eq!(db.get("port"), Some(&Node::Scalar(Scalar::Float(5432.0))));
        assert_eq!(db.get("whole"), Some(&Node::Scalar(Scalar::Float(3.0))));
        assert_eq!(db.get("ssl"), Some(&Node::Scalar(Scalar::Bool(true))));
        assert_eq!(db.get("replica"), Some(&Node::Scalar(Scalar::Null)));
        assert_eq!(
            doc.get("unicode").and_then(Node::as_str),
            Some("h\u{e9}llo")
        );
    }

    #[test]
    fn vector_11_key_groups() {
        assert_eq!(
            roundtrip("11-key-groups-shamir/kg.plain.json", None),
            read_str("11-key-groups-shamir/kg-threshold2.decrypted.json")
        );
        let enc = read("11-key-groups-shamir/kg-threshold2.enc.json");
        let doc = parse(&enc).unwrap();
        assert_eq!(
            emit(&doc, None),
            read_str("11-key-groups-shamir/kg-threshold2.enc.json")
        );
        let sops = doc.get("sops").unwrap();
        assert_eq!(
            sops.get("shamir_threshold"),
            Some(&Node::Scalar(Scalar::Float(2.0)))
        );
        let Some(Node::List(groups)) = sops.get("key_groups") else {
            panic!("no key_groups")
        };
        assert_eq!(groups[0].get("hc_vault"), Some(&Node::Scalar(Scalar::Null)));
    }

    #[test]
    fn vector_12_duplicate_keys_survive() {
        let doc = parse(&read("12-edge-cases/json-duplicate-key.plain.json")).unwrap();
        let items = doc.as_map().unwrap();
        assert_eq!(items.len(), 2);
        assert!(
            matches!(&items[0], MapItem::Entry(k, Node::Scalar(Scalar::Float(f))) if k == "a" && *f == 1.0)
        );
        assert!(
            matches!(&items[1], MapItem::Entry(k, Node::Scalar(Scalar::Float(f))) if k == "a" && *f == 2.0)
        );
        assert_eq!(
            emit(&doc, None),
            read_str("12-edge-cases/json-duplicate-key.decrypted.json")
        );
        assert_eq!(
            roundtrip("12-edge-cases/json-duplicate-key.enc.json", None),
            read_str("12-edge-cases/json-duplicate-key.enc.json")
        );
    }

    #[test]
    fn vector_12_top_level_array() {
        let err = parse(&read("12-edge-cases/err-top-level-array.plain.json")).unwrap_err();
        let stderr = read_str("12-edge-cases/err-top-level-array.stderr.txt");
        assert_eq!(format!("Error unmarshalling file: {err}\n"), stderr);
        assert!(matches!(
            err,
            JsonError::NotAnObject {
                line: 1,
                column: 1,
                ..
            }
        ));
    }

    #[test]
    fn vector_08_and_14_binary_envelopes() {
        for f in [
            "08-binary/blob.enc.bin",
            "08-binary/notes.enc.txt",
            "08-binary/json-as-binary.enc.json",
            "14-misc/empty.enc.bin",
        ] {
            assert_eq!(roundtrip(f, None), read_str(f), "{f}");
        }
        let doc = parse(&read("14-misc/empty.enc.bin")).unwrap();
        assert_eq!(doc.get("data").and_then(Node::as_str), Some(""));
    }

    #[test]
    fn vector_15_spec_written_two_space_indent() {
        assert_eq!(
            roundtrip("15-written-by-spec/spec.enc.json", Some(2)),
            read_str("15-written-by-spec/spec.enc.json")
        );
        assert_eq!(
            roundtrip("15-written-by-spec/spec.decrypted.json", None),
            read_str("15-written-by-spec/spec.decrypted.json")
        );
    }

    fn s(v: &str) -> Node {
        Node::str(v)
    }

    fn one(key: &str, v: Node) -> Node {
        Node::Map(vec![MapItem::Entry(key.to_owned(), v)])
    }

    #[test]
    fn go_string_escaping() {
        let doc = one(
            "<k>&",
            s("a\"b\\c\u{8}\u{c}\n\r\t\u{1}\u{1f}\u{7f}<>&\u{2028}\u{2029}é€😀\u{FFFD}/"),
        );
        assert_eq!(
            emit(&doc, Some(0)),
            "{\n\"\\u003ck\\u003e\\u0026\": \"a\\\"b\\\\c\\b\\f\\n\\r\\t\\u0001\\u001f\u{7f}\\u003c\\u003e\\u0026\\u2028\\u2029é€😀\u{FFFD}/\"\n}\n"
        );
    }

    #[test]
    fn bytes_invalid_utf8_become_escaped_replacement_per_byte() {
        let doc = one(
            "data",
            Node::Scalar(Scalar::Bytes(Blob::new(vec![
                b'a', 0xff, 0xe2, 0x82, b'b', 0xc3, 0xa9,
            ]))),
        );
        assert_eq!(
            emit(&doc, None),
            "{\n\t\"data\": \"a\\ufffd\\ufffd\\ufffdbé\"\n}\n"
        );
    }

    #[test]
    fn go_float_format() {
        let cases: &[(f64, &str)] = &[
            (0.0, "0"),
            (-0.0, "-0"),
            (1.0, "1"),
            (2.5, "2.5"),
            (5432.0, "5432"),
            (1e20, "100000000000000000000"),
            (1e21, "1e+21"),
            (1.5e300, "1.5e+300"),
            (1e-6, "0.000001"),
            (1e-7, "1e-7"),
            (1.5e-7, "1.5e-7"),
            (-2.5e-10, "-2.5e-10"),
            (1e-100, "1e-100"),
            (123456789.125, "123456789.125"),
            (0.1, "0.1"),
            (5e-324, "5e-324"),
            (f64::MAX, "1.7976931348623157e+308"),
        ];
        for (f, want) in cases {
            let mut out = Vec::new();
            push_float(&mut out, *f);
            assert_eq!(String::from_utf8(out).unwrap(), *want, "{f}");
        }
        let doc = one("i", Node::Scalar(Scalar::Int(-42)));
        assert_eq!(emit(&doc, None), "{\n\t\"i\": -42\n}\n");
    }

    #[test]
    fn non_finite_floats() {
        let doc = one("x", Node::Scalar(Scalar::Float(f64::NAN)));
        assert_eq!(emit(&doc, None), "{\n\t\"x\": \"NaN\"\n}\n");
        assert!(matches!(
            try_emit(&doc, None),
            Err(JsonError::UnsupportedValue { .. })
        ));
        let doc = one("x", Node::Scalar(Scalar::Float(f64::NEG_INFINITY)));
        assert_eq!(emit(&doc, Some(1)), "{\n \"x\": \"-Inf\"\n}\n");
    }

    #[test]
    fn empty_containers_comments_time_and_indent() {
        let doc = Node::Map(vec![
            MapItem::Comment(Text::from(" c")),
            MapItem::Entry("m".into(), Node::map()),
            MapItem::Entry("l".into(), Node::List(vec![])),
            MapItem::Entry(
                "lc".into(),
                Node::List(vec![
                    Node::Comment(Text::from("x")),
                    s("v"),
                    Node::Comment(Text::from("y")),
                ]),
            ),
            MapItem::Entry(
                "mc".into(),
                Node::Map(vec![MapItem::Comment(Text::from("z"))]),
            ),
            MapItem::Entry(
                "t".into(),
                Node::Scalar(Scalar::Time(Text::from("2024-01-15T00:00:00Z"))),
            ),
        ]);
        assert_eq!(
            emit(&doc, Some(2)),
            "{\n  \"m\": {},\n  \"l\": [],\n  \"lc\": [\n    \"v\"\n  ],\n  \"mc\": {},\n  \"t\": \"2024-01-15T00:00:00Z\"\n}\n"
        );
        assert_eq!(emit(&Node::map(), None), "{}\n");
        assert_eq!(emit(&parse(b" { } ").unwrap(), None), "{}\n");
        assert_eq!(
            emit(&parse(b"{\"a\":[[],{}]}").unwrap(), Some(0)),
            "{\n\"a\": [\n[],\n{}\n]\n}\n"
        );
    }

    #[test]
    fn string_escapes_and_surrogates() {
        let doc = parse(
            br#"{"k": "\"\\\/\b\f\n\r\t\u0041\u00e9\ud83d\ude00|\ud800|\udc00|\ud800\u0041|\ud800\ud800"}"#,
        )
        .unwrap();
        assert_eq!(
            doc.get("k").and_then(Node::as_str),
            Some(
                "\"\\/\u{8}\u{c}\n\r\tA\u{e9}\u{1F600}|\u{FFFD}|\u{FFFD}|\u{FFFD}A|\u{FFFD}\u{FFFD}"
            )
        );
        // Raw invalid UTF-8 inside strings: one U+FFFD per bad byte, like Go.
        let doc = parse(b"{\"k\": \"a\xff\xe2\x82b\", \"\xc3\xa9\": 1}").unwrap();
        assert_eq!(
            doc.get("k").and_then(Node::as_str),
            Some("a\u{FFFD}\u{FFFD}\u{FFFD}b")
        );
        assert!(doc.get("\u{e9}").is_some());
    }

    #[test]
    fn numbers() {
        let doc = parse(b"{\"a\": [0, -0, 1.5e3, -2E-2, 12345678901234567890, 1e-400]}").unwrap();
        let Some(Node::List(l)) = doc.get("a") else {
            panic!()
        };
        let fl: Vec<f64> = l
            .iter()
            .map(|n| match n {
                Node::Scalar(Scalar::Float(f)) => *f,
                _ => panic!(),
            })
            .collect();
        assert_eq!(
            fl,
            vec![0.0, -0.0, 1500.0, -0.02, 12345678901234567890.0, 0.0]
        );
        assert_eq!(
            emit(&doc, Some(0)),
            "{\n\"a\": [\n0,\n-0,\n1500,\n-0.02,\n12345678901234567000,\n0\n]\n}\n"
        );
        for bad in [
            &b"{\"a\": 01}"[..],
            b"{\"a\": 1.}",
            b"{\"a\": -}",
            b"{\"a\": 1e}",
            b"{\"a\": .5}",
            b"{\"a\": +1}",
            b"{\"a\": 1e400}",
        ] {
            assert!(parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn syntax_errors_with_positions() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "Could not unmarshal input data: EOF"),
            (b"  \n ", "Could not unmarshal input data: EOF"),
            (
                b"{\"a\": 1} x",
                "Could not unmarshal input data: invalid character 'x' after top-level value at line 1, column 10",
            ),
            (
                b"{\"a\": 1",
                "Could not unmarshal input data: unexpected EOF at line 1, column 8",
            ),
            (
                b"{\"a\": 1,}",
                "Could not unmarshal input data: invalid character '}' looking for beginning of object key string at line 1, column 9",
            ),
            (
                b"{\n  \"a\" 1}",
                "Could not unmarshal input data: invalid character '1' after object key at line 2, column 7",
            ),
            (
                b"{\"a\": [1 2]}",
                "Could not unmarshal input data: invalid character '2' after array element at line 1, column 10",
            ),
            (
                b"{\"a\": tru}",
                "Could not unmarshal input data: invalid character '}' in literal true (expecting 'e') at line 1, column 10",
            ),
            (
                b"{\"a\": \"x\ty\"}",
                "Could not unmarshal input data: invalid character '\\t' in string literal at line 1, column 9",
            ),
            (
                b"{\"a\": \"\\x\"}",
                "Could not unmarshal input data: invalid character 'x' in string escape code at line 1, column 9",
            ),
            (
                b"{\"a\": \"\\u12g4\"}",
                "Could not unmarshal input data: invalid character 'g' in \\u hexadecimal character escape at line 1, column 12",
            ),
            (
                b"{\"\xc3\xa9\": x}",
                "Could not unmarshal input data: invalid character 'x' looking for beginning of value at line 1, column 7",
            ),
            (
                b"\xef\xbb\xbf{}",
                "Could not unmarshal input data: invalid character '\u{ef}' looking for beginning of value at line 1, column 1",
            ),
            (
                b"\"str\"",
                "Could not unmarshal input data: Expected JSON object start, got \"str\" of type string instead",
            ),
            (
                b"12",
                "Could not unmarshal input data: Expected JSON object start, got 12 of type float64 instead",
            ),
            (
                b"null",
                "Could not unmarshal input data: Expected JSON object start, got <nil> of type <nil> instead",
            ),
        ];
        for (input, want) in cases {
            let err = parse(input).unwrap_err();
            assert_eq!(err.to_string(), *want, "{}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn depth_limit() {
        let ok = format!(
            "{}{}",
            "{\"a\":".repeat(MAX_DEPTH),
            "1".to_owned() + &"}".repeat(MAX_DEPTH)
        );
        assert!(parse(ok.as_bytes()).is_ok());
        let deep = format!(
            "{{\"a\":{}{}",
            "[".repeat(MAX_DEPTH),
            "]".repeat(MAX_DEPTH) + "}"
        );
        assert!(matches!(
            parse(deep.as_bytes()),
            Err(JsonError::TooDeep { .. })
        ));
        // Far beyond the limit must not overflow the stack.
        let huge = "[".repeat(1_000_000);
        let huge = format!("{{\"a\":{huge}");
        assert!(matches!(
            parse(huge.as_bytes()),
            Err(JsonError::TooDeep { .. })
        ));
    }

    #[test]
    fn reparse_of_output_is_identical() {
        let doc = parse(&read("03-json/config.plain.json")).unwrap();
        let out = emit(&doc, Some(4));
        assert_eq!(parse(out.as_bytes()).unwrap(), doc);
    }
}
