//! The YAML store: a parser and an emitter that behave like sops 3.11's YAML store
//! (`stores/yaml/store.go` on top of `go.yaml.in/yaml/v3` v3.0.4).
//!
//! * [`parse`] turns a YAML stream into one [`Node::Map`] per document. Structure comes
//!   from `saphyr-parser` events; scalars are resolved with yaml.v3's rules
//!   (`resolve.go`). saphyr does not report comments, so they are recovered from the
//!   text (every `#` outside a scalar that starts a line or follows a blank) and placed
//!   the way sops 3.11 places yaml.v3's head/line/foot comments.
//! * [`emit`] reproduces yaml.v3's encoder output byte for byte. It builds the node tree
//!   sops builds (`appendTreeBranch`/`appendSequence`), turns it into emitter events the
//!   way yaml.v3's `encoder.node` does, and runs a port of libyaml's (yaml.v3 flavoured)
//!   emitter state machine over them. Porting the state machine, rather than writing a
//!   pretty-printer, is what keeps comment placement, blank lines after foot comments and
//!   quoting identical.

use std::borrow::Cow;
use std::collections::HashMap;

use base64::Engine as _;
use saphyr_parser::{Event, Parser, ScalarStyle, Span, Tag};
use zeroize::Zeroize;

use crate::sops::tree::{Blob, MapItem, Node, Scalar, Text};

/// Upper bound on the number of nodes produced by alias expansion (alias-bomb guard).
const MAX_ALIAS_NODES: usize = 1_000_000;

/// Deepest nesting of maps and lists accepted. Walking, emitting and dropping the tree
/// recurse, so an unbounded depth would let a hostile file overflow the stack.
pub const MAX_DEPTH: usize = 256;

fn too_deep(line: usize, col: usize) -> YamlError {
    YamlError::Syntax {
        line,
        col,
        msg: format!("maps and lists are nested deeper than {MAX_DEPTH} levels"),
    }
}

/// Errors from [`parse`]. Every variant carries the 1-based line it refers to; the
/// messages follow what sops prints (the caller adds sops' prefixes such as
/// `Error unmarshalling file: `).
#[derive(Debug, thiserror::Error)]
pub enum YamlError {
    /// The YAML text is malformed.
    #[error("yaml: line {line}: {msg}")]
    Syntax {
        line: usize,
        col: usize,
        msg: String,
    },
    /// A key occurs twice in one mapping (checked in the first document only, as sops does).
    #[error(
        "yaml: unmarshal errors:\n  line {line}: mapping key {key} already defined at line {first}"
    )]
    DuplicateKey {
        /// The key, Go-quoted (`"a"`).
        key: String,
        line: usize,
        first: usize,
    },
    /// The first document is not a mapping (`!!seq`, or a scalar with its text).
    #[error(
        "yaml: unmarshal errors:\n  line {line}: cannot unmarshal {what} into map[string]interface {{}}"
    )]
    NotAMap {
        /// yaml.v3's description, e.g. `!!seq` or ``!!str `just a ...` ``.
        what: String,
        line: usize,
    },
    /// A later document is not a mapping (sops' second pass reports this differently).
    #[error("Error unmarshaling input YAML: YAML documents that are {what} are not supported")]
    DocumentNotAMap {
        /// `sequences` or `values`.
        what: &'static str,
        line: usize,
    },
    /// A mapping key that does not decode to a string (sops fails when walking the tree).
    #[error(
        "Tree contains a non-string key (type {ty}): {}. Only string keys aresupported",
        go_bad_verb(ty, key)
    )]
    NonStringKey {
        /// Go type name: `int`, `bool`, `float64`, `<nil>`, `time.Time`, `uint64`, ...
        ty: &'static str,
        key: String,
        line: usize,
    },
    /// An integer that fits only in uint64 (sops cannot walk it).
    #[error("Cannot walk value, unknown type: uint64")]
    Uint64 { line: usize },
    /// A scalar that cannot be decoded as its explicit tag says, or bad `!!binary` data.
    #[error("yaml: line {line}: {msg}")]
    Decode { line: usize, msg: String },
    /// Alias expansion would exceed [`MAX_ALIAS_NODES`] nodes, or an alias is unknown.
    #[error("yaml: line {line}: {msg}")]
    Alias { line: usize, msg: String },
    /// A merge key (`<<`), refused by [`parse_manifest`]: kubectl merges the aliased map
    /// into its parent while sops keeps `<<` as a plain key, so the two would disagree.
    #[error(
        "yaml: line {line}: merge key \"<<\" is not supported in manifests; write the keys out"
    )]
    MergeKey { line: usize },
}

impl YamlError {
    /// The 1-based line the error refers to.
    pub fn line(&self) -> usize {
        match self {
            YamlError::Syntax { line, .. }
            | YamlError::DuplicateKey { line, .. }
            | YamlError::NotAMap { line, .. }
            | YamlError::DocumentNotAMap { line, .. }
            | YamlError::NonStringKey { line, .. }
            | YamlError::Uint64 { line }
            | YamlError::Decode { line, .. }
            | YamlError::Alias { line, .. }
            | YamlError::MergeKey { line } => *line,
        }
    }
}

/// Go's `%s` of a non-string value: `%!s(int=1)`, or `%!s(<nil>)` for nil.
fn go_bad_verb(ty: &str, key: &str) -> String {
    if ty == "<nil>" {
        "%!s(<nil>)".to_string()
    } else {
        format!("%!s({ty}={key})")
    }
}

// ====================================================================================
// Scalar resolution (yaml.v3 resolve.go + decoder.scalar)
// ====================================================================================

/// A resolved scalar, before it is placed in the tree.
enum Resolved {
    Node(Scalar),
    /// Fits only in uint64: sops cannot handle it.
    Uint(u64),
}

/// Result of yaml.v3's `resolve(tag, in)`.
enum RTag {
    Null,
    Bool(bool),
    Int(i64),
    Uint(u64),
    Float(f64),
    Time(String),
    Str,
    /// A tag that is not resolvable (`!!binary`, `!!merge`, `!custom`): value is the text.
    Other(String),
}

impl RTag {
    fn short(&self) -> &str {
        match self {
            RTag::Null => "!!null",
            RTag::Bool(_) => "!!bool",
            RTag::Int(_) | RTag::Uint(_) => "!!int",
            RTag::Float(_) => "!!float",
            RTag::Time(_) => "!!timestamp",
            RTag::Str => "!!str",
            RTag::Other(t) => t,
        }
    }
}

/// Short form of a parsed tag (`!!str` for `tag:yaml.org,2002:str`); `None` for no tag or
/// the non-specific `!`, which yaml.v3 treats as "no tag".
fn short_tag(tag: Option<&Tag>) -> Option<String> {
    let t = tag?;
    let full = format!("{}{}", t.handle, t.suffix);
    if full.is_empty() || full == "!" {
        return None;
    }
    Some(match full.strip_prefix("tag:yaml.org,2002:") {
        Some(rest) => format!("!!{rest}"),
        None => full,
    })
}

/// yaml.v3 `resolve(tag, in)`. Errors are the `failf` messages of its deferred check.
fn resolve(tag: &str, input: &str) -> Result<RTag, String> {
    match tag {
        "" | "!!str" | "!!bool" | "!!int" | "!!float" | "!!null" | "!!timestamp" => {}
        _ => return Ok(RTag::Other(tag.to_string())),
    }
    let r = resolve_implicit(tag, input);
    let rshort = r.short().to_string();
    if tag.is_empty() || tag == rshort || tag == "!!str" {
        return Ok(r);
    }
    if tag == "!!float"
        && let RTag::Int(i) = r
    {
        return Ok(RTag::Float(i as f64));
    }
    // The scalar itself is left out: it may be a secret typed into a plaintext file.
    Err(format!("cannot decode a {rshort} value as a {tag}"))
}

fn resolve_implicit(tag: &str, input: &str) -> RTag {
    if tag == "!!str" {
        return RTag::Str;
    }
    let hint = match input.as_bytes().first() {
        None => b'N',
        Some(b'+' | b'-') => b'S',
        Some(b'0'..=b'9') => b'D',
        Some(b'y' | b'Y' | b'n' | b'N' | b't' | b'T' | b'f' | b'F' | b'o' | b'O' | b'~') => b'M',
        Some(b'.') => b'.',
        Some(_) => return RTag::Str,
    };
    match input {
        "true" | "True" | "TRUE" => return RTag::Bool(true),
        "false" | "False" | "FALSE" => return RTag::Bool(false),
        "" | "~" | "null" | "Null" | "NULL" => return RTag::Null,
        ".nan" | ".NaN" | ".NAN" => return RTag::Float(f64::NAN),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return RTag::Float(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return RTag::Float(f64::NEG_INFINITY),
        _ => {}
    }
    match hint {
        b'.' => {
            if let Some(f) = go_parse_float(input) {
                return RTag::Float(f);
            }
        }
        b'D' | b'S' => {
            if (tag.is_empty() || tag == "!!timestamp")
                && let Some(t) = parse_timestamp(input)
            {
                return RTag::Time(t);
            }
            let plain: Cow<str> = if input.contains('_') {
                Cow::Owned(input.replace('_', ""))
            } else {
                Cow::Borrowed(input)
            };
            match go_parse_int(&plain) {
                Some(IntParse::I64(i)) => return RTag::Int(i),
                Some(IntParse::U64(u)) => return RTag::Uint(u),
                None => {}
            }
            if is_yaml_float(&plain)
                && let Some(f) = go_parse_float(&plain)
            {
                return RTag::Float(f);
            }
        }
        _ => {}
    }
    RTag::Str
}

enum IntParse {
    I64(i64),
    /// Valid for `ParseUint` only (no sign, above i64::MAX).
    U64(u64),
}

/// Go `strconv.ParseInt(s, 0, 64)`, falling back to `ParseUint(s, 0, 64)`.
fn go_parse_int(s: &str) -> Option<IntParse> {
    let (neg, signed, body) = match s.as_bytes().first() {
        Some(b'-') => (true, true, &s[1..]),
        Some(b'+') => (false, true, &s[1..]),
        _ => (false, false, s),
    };
    let lower = body.get(..2).map(|p| p.to_ascii_lowercase());
    let (radix, digits) = match lower.as_deref() {
        Some("0x") => (16, &body[2..]),
        Some("0o") => (8, &body[2..]),
        Some("0b") => (2, &body[2..]),
        _ if body.len() > 1 && body.starts_with('0') => (8, &body[1..]),
        _ => (10, body),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let mag = u128::from_str_radix(digits, radix).ok()?;
    if neg {
        if mag <= 1u128 << 63 {
            return Some(IntParse::I64((mag as i128).wrapping_neg() as i64));
        }
        return None;
    }
    if mag <= i64::MAX as u128 {
        return Some(IntParse::I64(mag as i64));
    }
    if !signed && mag <= u64::MAX as u128 {
        return Some(IntParse::U64(mag as u64));
    }
    None
}

/// yaml.v3's float regex `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`.
fn is_yaml_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if matches!(b.first(), Some(b'+' | b'-')) {
        i += 1;
    }
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - start
    };
    if b.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    } else {
        if digits(&mut i) == 0 {
            return false;
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            digits(&mut i);
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

/// Go `strconv.ParseFloat(s, 64)` for the decimal syntax yaml.v3 feeds it; overflow
/// (which Go reports as an error) gives `None`.
fn go_parse_float(s: &str) -> Option<f64> {
    let b = s.as_bytes();
    let body = b
        .strip_prefix(b"+")
        .or_else(|| b.strip_prefix(b"-"))
        .unwrap_or(b);
    if !body
        .iter()
        .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E' | b'+' | b'-'))
    {
        return None;
    }
    let f: f64 = s.parse().ok()?;
    if f.is_infinite() {
        return None;
    }
    Some(f)
}

/// yaml.v3 `parseTimestamp`: Go `time.Parse` with its four layouts. Returns the Go
/// `MarshalText`/RFC 3339 (nano) form.
fn parse_timestamp(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let n = b.iter().take_while(|c| c.is_ascii_digit()).count();
    if n != 4 || b.get(4) != Some(&b'-') {
        return None;
    }
    // Layouts: date + ('T'|'t'|' ') time [+ zone for T/t], or date only.
    let mut p = GoTimeParser { b, i: 0 };
    let year = p.fixed(4)?;
    p.lit(b'-')?;
    let month = p.num()?;
    p.lit(b'-')?;
    let day = p.num()?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    if day > days_in(month, year) {
        return None;
    }
    let date = format!("{year:04}-{month:02}-{day:02}");
    if p.i == b.len() {
        return Some(format!("{date}T00:00:00Z"));
    }
    let sep = b[p.i];
    let zoned = match sep {
        b'T' | b't' => {
            p.i += 1;
            true
        }
        b' ' => {
            // Go's layout space matches one or more spaces.
            while p.i < b.len() && b[p.i] == b' ' {
                p.i += 1;
            }
            false
        }
        _ => return None,
    };
    let hour = p.num()?;
    p.lit(b':')?;
    let min = p.num()?;
    p.lit(b':')?;
    let sec = p.num()?;
    if hour >= 24 || min >= 60 || sec >= 60 {
        return None;
    }
    let mut nanos = 0u32;
    if p.i + 1 < b.len() && matches!(b[p.i], b'.' | b',') && b[p.i + 1].is_ascii_digit() {
        p.i += 1;
        let start = p.i;
        while p.i < b.len() && b[p.i].is_ascii_digit() {
            p.i += 1;
        }
        let digits = &s[start..p.i];
        let mut frac: String = digits.chars().take(9).collect();
        while frac.len() < 9 {
            frac.push('0');
        }
        nanos = frac.parse().ok()?;
    }
    let offset: i64 = if zoned {
        if b.get(p.i) == Some(&b'Z') {
            p.i += 1;
            0
        } else {
            if p.i + 6 > b.len() || b[p.i + 3] != b':' {
                return None;
            }
            let sign = b[p.i];
            let two = |j: usize| -> Option<i64> {
                let (x, y) = (b[j], b[j + 1]);
                if x.is_ascii_digit() && y.is_ascii_digit() {
                    Some(i64::from(x - b'0') * 10 + i64::from(y - b'0'))
                } else {
                    None
                }
            };
            let hh = two(p.i + 1)?;
            let mm = two(p.i + 4)?;
            if hh > 24 || mm > 60 {
                return None;
            }
            p.i += 6;
            let off = (hh * 60 + mm) * 60;
            match sign {
                b'+' => off,
                b'-' => -off,
                _ => return None,
            }
        }
    } else {
        0
    };
    if p.i != b.len() {
        return None;
    }
    let mut out = format!("{date}T{hour:02}:{min:02}:{sec:02}");
    if nanos != 0 {
        let f = format!("{nanos:09}");
        out.push('.');
        out.push_str(f.trim_end_matches('0'));
    }
    if offset == 0 {
        out.push('Z');
    } else {
        let zone = offset / 60;
        let (sign, zone) = if zone < 0 { ('-', -zone) } else { ('+', zone) };
        out.push_str(&format!("{sign}{:02}:{:02}", zone / 60, zone % 60));
    }
    Some(out)
}

struct GoTimeParser<'a> {
    b: &'a [u8],
    i: usize,
}

impl GoTimeParser<'_> {
    fn fixed(&mut self, n: usize) -> Option<u32> {
        let s = self.b.get(self.i..self.i + n)?;
        if !s.iter().all(u8::is_ascii_digit) {
            return None;
        }
        self.i += n;
        Some(s.iter().fold(0, |a, c| a * 10 + u32::from(c - b'0')))
    }
    /// Go `getnum(s, false)`: one or two digits.
    fn num(&mut self) -> Option<u32> {
        let d0 = *self.b.get(self.i)?;
        if !d0.is_ascii_digit() {
            return None;
        }
        self.i += 1;
        match self.b.get(self.i) {
            Some(d1) if d1.is_ascii_digit() => {
                self.i += 1;
                Some(u32::from(d0 - b'0') * 10 + u32::from(d1 - b'0'))
            }
            _ => Some(u32::from(d0 - b'0')),
        }
    }
    fn lit(&mut self, c: u8) -> Option<()> {
        if self.b.get(self.i) == Some(&c) {
            self.i += 1;
            Some(())
        } else {
            None
        }
    }
}

fn days_in(month: u32, year: u32) -> u32 {
    match month {
        2 if (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400) => {
            29
        }
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// yaml.v3 `decoder.scalar` into `interface{}`.
fn decode_scalar(value: &str, quoted: bool, tag: Option<&str>) -> Result<Resolved, String> {
    if tag == Some("!!str") || (tag.is_none() && quoted) {
        return Ok(Resolved::Node(Scalar::Str(Text::new(value.to_string()))));
    }
    let r = resolve(tag.unwrap_or(""), value)?;
    Ok(Resolved::Node(match r {
        RTag::Null => Scalar::Null,
        RTag::Bool(b) => Scalar::Bool(b),
        RTag::Int(i) => Scalar::Int(i),
        RTag::Uint(u) => return Ok(Resolved::Uint(u)),
        RTag::Float(f) => Scalar::Float(f),
        RTag::Time(t) => Scalar::Time(Text::new(t)),
        RTag::Str => Scalar::Str(Text::new(value.to_string())),
        RTag::Other(t) if t == "!!binary" => {
            let cleaned: String = value.chars().filter(|c| *c != '\n' && *c != '\r').collect();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(cleaned.as_bytes())
                .map_err(|_| "!!binary value contains invalid base64 data".to_string())?;
            match String::from_utf8(bytes) {
                Ok(s) => Scalar::Str(Text::new(s)),
                Err(e) => Scalar::Bytes(Blob::new(e.into_bytes())),
            }
        }
        RTag::Other(_) => Scalar::Str(Text::new(value.to_string())),
    }))
}

/// The tag yaml.v3's parser gives a scalar node (used in "cannot unmarshal" messages).
fn node_tag(value: &str, quoted: bool, tag: Option<&str>) -> String {
    match tag {
        Some(t) => t.to_string(),
        None if quoted => "!!str".to_string(),
        None if value == "<<" => "!!merge".to_string(),
        None => resolve_implicit("", value).short().to_string(),
    }
}

/// Go `%#v` of a string.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

// ====================================================================================
// Parsing
// ====================================================================================

/// A comment found in the text: `pos` is a char index (saphyr markers count chars).
struct Comment<'a> {
    pos: usize,
    col: usize,
    line: usize,
    text: &'a str,
    /// Something other than blanks precedes it on its line.
    eol: bool,
}

/// Finds comments: `#` outside scalar spans, at line start or after a blank.
fn scan_comments<'a>(input: &'a str, spans: &[(usize, usize)]) -> Vec<Comment<'a>> {
    let mut out = Vec::new();
    let bytes = input.as_bytes();
    let (mut b, mut ci, mut si) = (0usize, 0usize, 0usize);
    let (mut line, mut col) = (1usize, 0usize);
    let (mut content, mut prev_blank) = (false, true);
    while b < bytes.len() {
        let c = bytes[b];
        let clen = utf8_width(c).max(1);
        while si < spans.len() && spans[si].1 <= ci {
            si += 1;
        }
        let in_span = si < spans.len() && spans[si].0 <= ci;
        // Line breaks as YAML (saphyr, libyaml) has them: LF, CRLF, and a lone CR. The CR of
        // a CRLF is skipped as a blank; a lone CR is a break like LF.
        if c == b'\n' || (c == b'\r' && bytes.get(b + 1) != Some(&b'\n')) {
            line += 1;
            col = 0;
            content = false;
            prev_blank = true;
            b += 1;
            ci += 1;
            continue;
        }
        if c == b'#' && !in_span && prev_blank {
            let end = input[b..].find(['\n', '\r']).map_or(input.len(), |x| b + x);
            let text = &input[b + 1..end];
            out.push(Comment {
                pos: ci,
                col,
                line,
                text,
                eol: content,
            });
            let n = input[b..end].chars().count();
            ci += n;
            col += n;
            b = end;
            prev_blank = false;
            continue;
        }
        let blank = matches!(c, b' ' | b'\t' | b'\r');
        prev_blank = blank;
        if !blank {
            content = true;
        }
        b += clen;
        ci += 1;
        col += 1;
    }
    out
}

fn utf8_width(b: u8) -> usize {
    if b & 0x80 == 0 {
        1
    } else if b & 0xE0 == 0xC0 {
        2
    } else if b & 0xF0 == 0xE0 {
        3
    } else if b & 0xF8 == 0xF0 {
        4
    } else {
        0
    }
}

struct MapFrame {
    items: Vec<MapItem>,
    pending_key: Option<String>,
    /// Column of the keys (-1 until the first key).
    indent: isize,
    last_entry: Option<usize>,
    /// Raw key text → line, for the duplicate check (first document only).
    seen: Option<HashMap<String, usize>>,
    /// Line of each key, in entry order.
    key_lines: Vec<usize>,
    anchor: usize,
    size: usize,
    start_line: usize,
}

struct SeqFrame {
    items: Vec<Node>,
    /// Column of the `-` indicators (or of `[`).
    indent: isize,
    last_item: Option<usize>,
    last_item_line: usize,
    anchor: usize,
    size: usize,
    start_line: usize,
}

enum Frame {
    Map(MapFrame),
    Seq(SeqFrame),
}

impl Frame {
    fn indent(&self) -> isize {
        match self {
            Frame::Map(m) => m.indent,
            Frame::Seq(s) => s.indent,
        }
    }
}

struct Builder<'a> {
    input: &'a str,
    line_starts: Vec<usize>,
    frames: Vec<Frame>,
    pending: Vec<Comment<'a>>,
    anchors: HashMap<usize, (Node, usize)>,
    alias_nodes: usize,
    docs: Vec<Node>,
    doc_index: usize,
    root: Option<Vec<MapItem>>,
    /// Errors sops only reports when walking the tree (after loading everything).
    deferred: Option<YamlError>,
    /// [`parse_manifest`]: every document is held to the first document's rules.
    strict: bool,
}

fn comment_text(c: &Comment<'_>) -> Text {
    Text::new(c.text.to_string())
}

impl<'a> Builder<'a> {
    fn defer(&mut self, e: YamlError) {
        if self.deferred.is_none() {
            self.deferred = Some(e);
        }
    }

    /// Handles a comment that lies before the next event.
    fn take_comment(&mut self, c: Comment<'a>) {
        if !c.eol {
            self.pending.push(c);
            return;
        }
        // End-of-line comment: sops puts it on its own line before the entry/item it
        // belongs to (the last one started in the innermost open container).
        match self.frames.last_mut() {
            Some(Frame::Map(m)) => {
                let t = MapItem::Comment(comment_text(&c));
                match (m.pending_key.is_some(), m.last_entry) {
                    (false, Some(idx)) => {
                        m.items.insert(idx, t);
                        m.last_entry = Some(idx + 1);
                    }
                    _ => m.items.push(t),
                }
            }
            Some(Frame::Seq(s)) => {
                let t = Node::Comment(comment_text(&c));
                match s.last_item {
                    Some(idx) if s.last_item_line == c.line => {
                        s.items.insert(idx, t);
                        s.last_item = Some(idx + 1);
                    }
                    _ => s.items.push(t),
                }
            }
            None => self.pending.push(c),
        }
    }

    /// Moves all pending own-line comments into the innermost container.
    fn flush_pending(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let pending = std::mem::take(&mut self.pending);
        match self.frames.last_mut() {
            Some(Frame::Map(m)) => m
                .items
                .extend(pending.iter().map(|c| MapItem::Comment(comment_text(c)))),
            Some(Frame::Seq(s)) => s
                .items
                .extend(pending.iter().map(|c| Node::Comment(comment_text(c)))),
            None => self.pending = pending,
        }
    }

    /// Pending comments indented deeper than the parent container belong to the one
    /// that is closing (yaml.v3 makes them foot comments of its last entry).
    fn take_foot_comments(&mut self, parent_indent: isize) -> Vec<Comment<'a>> {
        let n = self
            .pending
            .iter()
            .take_while(|c| c.col as isize > parent_indent)
            .count();
        self.pending.drain(..n).collect()
    }

    /// Whether the current document gets the full checks: sops applies them to the
    /// first document only, [`parse_manifest`] to all.
    fn first_doc(&self) -> bool {
        self.doc_index == 0 || self.strict
    }

    /// The duplicate-key check of the innermost map, for a key that starts at `line`.
    fn check_duplicate(&mut self, value: &str, line: usize) -> Result<(), YamlError> {
        let Some(Frame::Map(m)) = self.frames.last_mut() else {
            return Ok(());
        };
        // Small maps are scanned linearly (no allocation); big ones get an index.
        if m.seen.is_none() && m.key_lines.len() >= 16 {
            let mut h = HashMap::with_capacity(m.key_lines.len() * 2);
            let keys = m.items.iter().filter_map(|it| match it {
                MapItem::Entry(k, _) => Some(k),
                MapItem::Comment(_) => None,
            });
            for (k, l) in keys.zip(m.key_lines.iter()) {
                h.entry(k.clone()).or_insert(*l);
            }
            m.seen = Some(h);
        }
        let prev = match &m.seen {
            Some(h) => h.get(value).copied(),
            None => m
                .items
                .iter()
                .filter_map(|it| match it {
                    MapItem::Entry(k, _) => Some(k),
                    MapItem::Comment(_) => None,
                })
                .zip(m.key_lines.iter())
                .find(|(k, _)| k.as_str() == value)
                .map(|(_, l)| *l),
        };
        if let Some(prev) = prev {
            return Err(YamlError::DuplicateKey {
                key: go_quote(value),
                line,
                first: prev,
            });
        }
        if let Some(h) = &mut m.seen {
            h.insert(value.to_string(), line);
        }
        Ok(())
    }

    /// Column of the `-` before position (line, col), or `col` if there is none.
    fn dash_col(&self, line: usize, col: usize) -> isize {
        let start = self
            .line_starts
            .get(line.wrapping_sub(1))
            .copied()
            .unwrap_or(0);
        let text = self.input.get(start..).unwrap_or("");
        let before: Vec<char> = text.chars().take(col).collect();
        let mut i = before.len();
        while i > 0 && before[i - 1] == ' ' {
            i -= 1;
        }
        if i > 0 && before[i - 1] == '-' {
            (i - 1) as isize
        } else {
            col as isize
        }
    }

    /// Called when a node starts in the current container: in a map without a
    /// pending key that is a key, otherwise a value/item. Head comments go before it.
    fn child_start(&mut self, is_container_value: bool) {
        match self.frames.last() {
            Some(Frame::Map(m)) if m.pending_key.is_some() && is_container_value => {}
            Some(_) => self.flush_pending(),
            None => {}
        }
    }

    /// Places a finished node as a map value, a list item or the document root.
    fn attach(
        &mut self,
        node: Node,
        size: usize,
        line: usize,
        start_line: usize,
    ) -> Result<(), YamlError> {
        match self.frames.last_mut() {
            Some(Frame::Map(m)) => {
                let key = m.pending_key.take().unwrap_or_default();
                m.last_entry = Some(m.items.len());
                m.items.push(MapItem::Entry(key, node));
                m.size += size;
            }
            Some(Frame::Seq(s)) => {
                s.last_item = Some(s.items.len());
                s.last_item_line = start_line;
                s.items.push(node);
                s.size += size;
            }
            None => match node {
                Node::Map(items) => self.root = Some(items),
                Node::Scalar(Scalar::Null) => self.root = Some(Vec::new()),
                Node::List(_) => {
                    return Err(self.not_a_map("!!seq".to_string(), "sequences", line));
                }
                _ => return Err(self.not_a_map("!!str".to_string(), "values", line)),
            },
        }
        Ok(())
    }

    fn not_a_map(&self, what: String, later: &'static str, line: usize) -> YamlError {
        if self.first_doc() {
            YamlError::NotAMap { what, line }
        } else {
            YamlError::DocumentNotAMap { what: later, line }
        }
    }

    fn finish_doc(&mut self) {
        let mut items = self.root.take().unwrap_or_default();
        items.extend(
            self.pending
                .drain(..)
                .map(|c| MapItem::Comment(comment_text(&c))),
        );
        self.docs.push(Node::Map(items));
        self.doc_index += 1;
    }

    fn scalar_key(
        &mut self,
        value: &str,
        quoted: bool,
        tag: Option<&str>,
        line: usize,
        col: usize,
    ) -> Result<(), YamlError> {
        let first = self.first_doc();
        let Some(Frame::Map(m)) = self.frames.last_mut() else {
            return Ok(());
        };
        if m.indent < 0 {
            m.indent = col as isize;
        }
        if self.strict && ((!quoted && value == "<<") || tag == Some("!!merge")) {
            return Err(YamlError::MergeKey { line });
        }
        if first {
            self.check_duplicate(value, line)?;
        }
        let Some(Frame::Map(m)) = self.frames.last_mut() else {
            return Ok(());
        };
        m.key_lines.push(line);
        let key = match decode_scalar(value, quoted, tag) {
            Ok(Resolved::Node(Scalar::Str(ref t))) => t.as_str().to_string(),
            Ok(Resolved::Node(other)) => {
                let (ty, shown) = describe_non_string(&other);
                self.defer(YamlError::NonStringKey {
                    ty,
                    key: shown,
                    line,
                });
                value.to_string()
            }
            Ok(Resolved::Uint(u)) => {
                self.defer(YamlError::NonStringKey {
                    ty: "uint64",
                    key: u.to_string(),
                    line,
                });
                value.to_string()
            }
            Err(msg) => {
                if first {
                    return Err(YamlError::Decode { line, msg });
                }
                value.to_string()
            }
        };
        if let Some(Frame::Map(m)) = self.frames.last_mut() {
            m.pending_key = Some(key);
        }
        Ok(())
    }

    fn store_anchor(&mut self, anchor: usize, node: &Node, size: usize) {
        if anchor != 0 {
            self.anchors.insert(anchor, (node.clone(), size));
        }
    }
}

fn describe_non_string(s: &Scalar) -> (&'static str, String) {
    match s {
        Scalar::Null => ("<nil>", String::new()),
        Scalar::Bool(b) => ("bool", b.to_string()),
        Scalar::Int(i) => ("int", i.to_string()),
        Scalar::Float(f) => ("float64", go_float(*f)),
        Scalar::Time(t) => ("time.Time", t.as_str().to_string()),
        Scalar::Bytes(_) => ("[]uint8", String::new()),
        Scalar::Str(t) => ("string", t.as_str().to_string()),
    }
}

fn syntax_error(e: &saphyr_parser::ScanError) -> YamlError {
    YamlError::Syntax {
        line: e.marker().line(),
        col: e.marker().col() + 1,
        msg: e.info().to_string(),
    }
}

/// Parses a YAML stream into one `Node::Map` per document. An empty stream (or one with
/// only comments) gives `Ok(vec![])`; the caller reports sops' "empty file" error.
pub fn parse(input: &str) -> Result<Vec<Node>, YamlError> {
    parse_with(input, false)
}

/// Parses a Kubernetes manifest stream: like [`parse`], but every document gets the
/// checks sops gives only the first one (duplicate keys, undecodable scalars), duplicate
/// keys made by aliases count, merge keys (`<<`) are refused, anchors do not reach into
/// later documents, and a top-level scalar is never quoted in an error. What this
/// accepts, kubectl and the API server read as the same objects.
pub fn parse_manifest(input: &str) -> Result<Vec<Node>, YamlError> {
    parse_with(input, true)
}

fn parse_with(input: &str, strict: bool) -> Result<Vec<Node>, YamlError> {
    let input = input.strip_prefix('\u{feff}').unwrap_or(input);
    let mut events: Vec<(Event<'_>, Span)> = Vec::new();
    let mut spans: Vec<(usize, usize)> = Vec::new();
    for r in Parser::new_from_str(input) {
        let (ev, span) = r.map_err(|e| syntax_error(&e))?;
        if let Event::Scalar(..) = ev {
            spans.push((span.start.index(), span.end.index()));
        }
        events.push((ev, span));
    }
    let comments = scan_comments(input, &spans);
    drop(spans);

    // Lines end at LF, CRLF or a lone CR, as saphyr counts them for the spans.
    let bytes = input.as_bytes();
    let mut line_starts = vec![0usize];
    line_starts.extend((0..bytes.len()).filter_map(|i| match bytes[i] {
        b'\n' => Some(i + 1),
        b'\r' if bytes.get(i + 1) != Some(&b'\n') => Some(i + 1),
        _ => None,
    }));
    let mut bld = Builder {
        input,
        line_starts,
        frames: Vec::new(),
        pending: Vec::new(),
        anchors: HashMap::new(),
        alias_nodes: 0,
        docs: Vec::new(),
        doc_index: 0,
        root: None,
        deferred: None,
        strict,
    };
    let mut comments = comments.into_iter().peekable();
    let mut in_doc = false;

    for (ev, span) in events {
        let pos = span.start.index();
        while let Some(c) = comments.next_if(|c| c.pos < pos) {
            bld.take_comment(c);
        }
        let line = span.start.line();
        let col = span.start.col();
        match ev {
            Event::StreamStart | Event::Nothing => {}
            Event::StreamEnd => {}
            Event::DocumentStart(_) => {
                in_doc = true;
                bld.root = None;
                // Anchors belong to their document (YAML 1.2, and yaml.v2 under kubectl).
                if bld.strict {
                    bld.anchors.clear();
                }
            }
            Event::DocumentEnd => {
                if in_doc {
                    bld.finish_doc();
                    in_doc = false;
                }
            }
            Event::MappingStart(anchor, _tag) => {
                if bld.frames.len() >= MAX_DEPTH {
                    return Err(too_deep(line, col));
                }
                if let Some(Frame::Map(m)) = bld.frames.last()
                    && m.pending_key.is_none()
                {
                    // A mapping used as a key: sops cannot have non-string keys.
                    return Err(YamlError::NonStringKey {
                        ty: "map[string]interface {}",
                        key: String::new(),
                        line,
                    });
                }
                bld.child_start(true);
                bld.frames.push(Frame::Map(MapFrame {
                    items: Vec::new(),
                    pending_key: None,
                    indent: -1,
                    last_entry: None,
                    seen: None,
                    key_lines: Vec::new(),
                    anchor,
                    size: 1,
                    start_line: line,
                }));
            }
            Event::SequenceStart(anchor, _tag) => {
                if bld.frames.len() >= MAX_DEPTH {
                    return Err(too_deep(line, col));
                }
                match bld.frames.last() {
                    None => return Err(bld.not_a_map("!!seq".to_string(), "sequences", line)),
                    Some(Frame::Map(m)) if m.pending_key.is_none() => {
                        return Err(YamlError::NonStringKey {
                            ty: "[]interface {}",
                            key: String::new(),
                            line,
                        });
                    }
                    _ => {}
                }
                bld.child_start(true);
                let indent = bld.dash_col(line, col);
                bld.frames.push(Frame::Seq(SeqFrame {
                    items: Vec::new(),
                    indent,
                    last_item: None,
                    last_item_line: 0,
                    anchor,
                    size: 1,
                    start_line: line,
                }));
            }
            Event::MappingEnd | Event::SequenceEnd => {
                let parent_indent = if bld.frames.len() >= 2 {
                    bld.frames[bld.frames.len() - 2].indent()
                } else {
                    -1
                };
                let foot = bld.take_foot_comments(parent_indent);
                let Some(frame) = bld.frames.pop() else {
                    continue;
                };
                let (node, size, anchor, start_line) = match frame {
                    Frame::Map(mut m) => {
                        m.items
                            .extend(foot.iter().map(|c| MapItem::Comment(comment_text(c))));
                        (Node::Map(m.items), m.size, m.anchor, m.start_line)
                    }
                    Frame::Seq(mut s) => {
                        s.items
                            .extend(foot.iter().map(|c| Node::Comment(comment_text(c))));
                        (Node::List(s.items), s.size, s.anchor, s.start_line)
                    }
                };
                bld.store_anchor(anchor, &node, size);
                bld.attach(node, size, start_line, start_line)?;
            }
            Event::Scalar(value, style, anchor, tag) => {
                let quoted = style != ScalarStyle::Plain;
                let tag = short_tag(tag.as_deref());
                let is_key =
                    matches!(bld.frames.last(), Some(Frame::Map(m)) if m.pending_key.is_none());
                bld.child_start(false);
                if is_key {
                    bld.scalar_key(&value, quoted, tag.as_deref(), line, col)?;
                    if anchor != 0
                        && let Ok(Resolved::Node(s)) = decode_scalar(&value, quoted, tag.as_deref())
                    {
                        bld.store_anchor(anchor, &Node::Scalar(s), 1);
                    }
                    continue;
                }
                let scalar = match decode_scalar(&value, quoted, tag.as_deref()) {
                    Ok(Resolved::Node(s)) => s,
                    Ok(Resolved::Uint(_)) => {
                        bld.defer(YamlError::Uint64 { line });
                        Scalar::Null
                    }
                    Err(msg) => {
                        if bld.first_doc() {
                            return Err(YamlError::Decode { line, msg });
                        }
                        // sops ignores Decode errors of later documents: the value is nil.
                        Scalar::Null
                    }
                };
                if bld.frames.is_empty() && !matches!(scalar, Scalar::Null) {
                    let tagname = node_tag(&value, quoted, tag.as_deref());
                    // A manifest's lone scalar may be a pasted secret: never quote it.
                    let shown = if bld.strict {
                        String::new()
                    } else if value.len() > 10 {
                        let mut cut = 7;
                        while !value.is_char_boundary(cut) {
                            cut -= 1;
                        }
                        format!(" `{}...`", &value[..cut])
                    } else {
                        format!(" `{value}`")
                    };
                    return Err(bld.not_a_map(format!("{tagname}{shown}"), "values", line));
                }
                let node = Node::Scalar(scalar);
                bld.store_anchor(anchor, &node, 1);
                bld.attach(node, 1, line, line)?;
            }
            Event::Alias(id) => {
                let is_key =
                    matches!(bld.frames.last(), Some(Frame::Map(m)) if m.pending_key.is_none());
                bld.child_start(false);
                let Some((node, size)) = bld.anchors.get(&id).map(|(n, s)| (n.clone(), *s)) else {
                    return Err(YamlError::Alias {
                        line,
                        msg: "unknown anchor".to_string(),
                    });
                };
                bld.alias_nodes += size;
                if bld.alias_nodes > MAX_ALIAS_NODES {
                    return Err(YamlError::Alias {
                        line,
                        msg: "document contains excessive aliasing".to_string(),
                    });
                }
                if is_key {
                    let key = match &node {
                        Node::Scalar(Scalar::Str(t)) => t.as_str().to_string(),
                        Node::Scalar(s) => {
                            let (ty, shown) = describe_non_string(s);
                            bld.defer(YamlError::NonStringKey {
                                ty,
                                key: shown,
                                line,
                            });
                            String::new()
                        }
                        _ => {
                            return Err(YamlError::NonStringKey {
                                ty: "map[string]interface {}",
                                key: String::new(),
                                line,
                            });
                        }
                    };
                    if bld.strict {
                        bld.check_duplicate(&key, line)?;
                    }
                    if let Some(Frame::Map(m)) = bld.frames.last_mut() {
                        if m.indent < 0 {
                            m.indent = col as isize;
                        }
                        m.key_lines.push(line);
                        m.pending_key = Some(key);
                    }
                    continue;
                }
                bld.attach(node, size, line, line)?;
            }
        }
    }
    // Comments after the last event (e.g. after an explicit `...`).
    for c in comments {
        bld.pending.push(c);
    }
    if in_doc {
        bld.finish_doc();
    }
    if !bld.pending.is_empty()
        && let Some(Node::Map(items)) = bld.docs.last_mut()
    {
        items.extend(
            bld.pending
                .drain(..)
                .map(|c| MapItem::Comment(comment_text(&c))),
        );
    }
    if let Some(e) = bld.deferred.take() {
        return Err(e);
    }
    Ok(bld.docs)
}

// ====================================================================================
// Emitting: sops' node building + yaml.v3 encoder.node → events
// ====================================================================================

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Style {
    Plain,
    Single,
    Double,
    Literal,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum EvType {
    StreamStart,
    StreamEnd,
    DocStart,
    DocEnd,
    Scalar,
    SeqStart,
    SeqEnd,
    MapStart,
    MapEnd,
}

/// One emitter event. Comment strings hold yaml.v3 comment text (`#...` lines).
struct Ev<'a> {
    typ: EvType,
    implicit: bool,
    value: Cow<'a, str>,
    /// Long tag (`tag:yaml.org,2002:merge`) or empty.
    tag: &'static str,
    style: Style,
    /// Scalar analysis, computed once when the style is chosen.
    analysis: ScalarAnalysis,
    /// Comments are rare: boxed to keep events small.
    comments: Option<Box<EvComments>>,
}

#[derive(Default)]
struct EvComments {
    head: String,
    line: String,
    foot: String,
    tail: String,
}

impl Drop for EvComments {
    fn drop(&mut self) {
        // Comments may be decrypted secrets.
        self.head.zeroize();
        self.line.zeroize();
        self.foot.zeroize();
        self.tail.zeroize();
    }
}

impl<'a> Ev<'a> {
    fn new(typ: EvType) -> Self {
        Ev {
            typ,
            implicit: true,
            value: Cow::Borrowed(""),
            tag: "",
            style: Style::Plain,
            analysis: ScalarAnalysis::default(),
            comments: None,
        }
    }
    fn set_comments(&mut self, head: String, foot: String, tail: String) {
        if !head.is_empty() || !foot.is_empty() || !tail.is_empty() {
            let c = self.comments.get_or_insert_with(Box::default);
            c.head = head;
            c.foot = foot;
            c.tail = tail;
        }
    }
}

impl Drop for Ev<'_> {
    fn drop(&mut self) {
        // Values may be decrypted secrets.
        if let Cow::Owned(s) = &mut self.value {
            s.zeroize();
        }
    }
}

/// sops joins comment lines as `#` + lines.join("\n#").
fn join_comments(c: &[&str]) -> String {
    let mut s = String::new();
    for (i, t) in c.iter().enumerate() {
        if i > 0 {
            s.push('\n');
        }
        s.push('#');
        s.push_str(t);
    }
    s
}

/// `addCommentsHead`: new comments go before the node's own head comment.
fn prepend_head(outer: String, own: String) -> String {
    match (outer.is_empty(), own.is_empty()) {
        (true, _) => own,
        (false, true) => outer,
        (false, false) => format!("{outer}\n{own}"),
    }
}

/// Go `strconv.FormatFloat(f, 'g', -1, 64)` with yaml.v3's `.inf`/`.nan` spellings.
fn go_float(f: f64) -> String {
    if f.is_nan() {
        return ".nan".to_string();
    }
    if f.is_infinite() {
        return if f > 0.0 { ".inf" } else { "-.inf" }.to_string();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0" } else { "0" }.to_string();
    }
    // Rust's `{:e}` gives the shortest round-trip digits, like Go's -1 precision.
    let e = format!("{:e}", f.abs());
    let (mant, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mant.chars().filter(|c| *c != '.').collect();
    let neg = if f < 0.0 { "-" } else { "" };
    // Shortest formatting uses precision 6 for the %e/%f decision.
    if !(-4..6).contains(&exp) {
        return go_exp_form(neg, &digits, exp);
    }
    // %f with exactly the significant digits.
    let nd = digits.len() as i32;
    let mut s = String::from(neg);
    if exp < 0 {
        s.push_str("0.");
        for _ in 0..(-exp - 1) {
            s.push('0');
        }
        s.push_str(&digits);
    } else if exp + 1 >= nd {
        s.push_str(&digits);
        for _ in 0..(exp + 1 - nd) {
            s.push('0');
        }
    } else {
        let (a, b) = digits.split_at((exp + 1) as usize);
        s.push_str(a);
        s.push('.');
        s.push_str(b);
    }
    s
}

fn go_exp_form(neg: &str, digits: &str, exp: i32) -> String {
    let mut s = String::from(neg);
    s.push_str(&digits[..1]);
    if digits.len() > 1 {
        s.push('.');
        s.push_str(&digits[1..]);
    }
    s.push('e');
    s.push(if exp < 0 { '-' } else { '+' });
    let a = exp.unsigned_abs();
    if a < 10 {
        s.push('0');
    }
    s.push_str(&a.to_string());
    s
}

fn is_old_bool(s: &str) -> bool {
    matches!(
        s,
        "y" | "Y"
            | "yes"
            | "Yes"
            | "YES"
            | "on"
            | "On"
            | "ON"
            | "n"
            | "N"
            | "no"
            | "No"
            | "NO"
            | "off"
            | "Off"
            | "OFF"
    )
}

/// `^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$` (yaml.v3 quotes these).
fn is_base60_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if matches!(b.first(), Some(b'+' | b'-')) {
        i += 1;
    }
    if !b.get(i).is_some_and(u8::is_ascii_digit) || !s.contains(':') {
        return false;
    }
    i += 1;
    while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'_') {
        i += 1;
    }
    let mut groups = 0;
    while b.get(i) == Some(&b':') {
        i += 1;
        // [0-5]?[0-9]
        let d = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
        match d {
            1 => i += 1,
            2 if b[i] <= b'5' => i += 2,
            _ => return false,
        }
        groups += 1;
    }
    if groups == 0 {
        return false;
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'_') {
            i += 1;
        }
    }
    i == b.len()
}

/// Style and tag a Go string gets from `Node.Encode` (yaml.v3 `stringv`, then the
/// emitter's style fallback, then the re-parse that `Node.Encode` does).
fn string_style(s: &str) -> (Style, &'static str, ScalarAnalysis) {
    let requested = if s.contains('\n') {
        Style::Literal
    } else if matches!(resolve_implicit("", s), RTag::Str) && !is_base60_float(s) && !is_old_bool(s)
    {
        Style::Plain
    } else {
        Style::Double
    };
    let a = analyze_scalar(s.as_bytes());
    let mut style = requested;
    if style == Style::Plain && !a.block_plain_allowed {
        style = Style::Single;
    }
    if style == Style::Single && !a.single_quoted_allowed {
        style = Style::Double;
    }
    if style == Style::Literal && !a.block_allowed {
        style = Style::Double;
    }
    // A plain `<<` re-parses as a merge key, and yaml.v3 then keeps the tag.
    if style == Style::Plain && s == "<<" {
        return (style, "tag:yaml.org,2002:merge", a);
    }
    (style, "", a)
}

/// Go `encodeBase64`: base64 broken into 70-column lines when long.
fn encode_base64_lines(b: &[u8]) -> String {
    let enc = base64::engine::general_purpose::STANDARD.encode(b);
    if enc.len() < 70 {
        return enc;
    }
    let mut out = String::with_capacity(enc.len() + enc.len() / 70 + 1);
    for chunk in enc.as_bytes().chunks(70) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or(""));
        out.push('\n');
    }
    out
}

fn scalar_event<'a>(s: &'a Scalar) -> Ev<'a> {
    let mut ev = Ev::new(EvType::Scalar);
    let (value, style, tag): (Cow<'a, str>, Style, &'static str) = match s {
        Scalar::Null => (Cow::Borrowed("null"), Style::Plain, ""),
        Scalar::Bool(true) => (Cow::Borrowed("true"), Style::Plain, ""),
        Scalar::Bool(false) => (Cow::Borrowed("false"), Style::Plain, ""),
        Scalar::Int(i) => (Cow::Owned(i.to_string()), Style::Plain, ""),
        Scalar::Float(f) => (Cow::Owned(go_float(*f)), Style::Plain, ""),
        Scalar::Time(t) => (Cow::Borrowed(t.as_str()), Style::Plain, ""),
        Scalar::Str(t) => {
            let (st, tag, a) = string_style(t.as_str());
            ev.analysis = a;
            (Cow::Borrowed(t.as_str()), st, tag)
        }
        Scalar::Bytes(b) => match std::str::from_utf8(b.as_bytes()) {
            Ok(text) => {
                let (st, tag, a) = string_style(text);
                ev.analysis = a;
                (Cow::Borrowed(text), st, tag)
            }
            // Not UTF-8: yaml.v3 writes such Go strings as `!!binary` base64, which
            // reads back as the same bytes.
            Err(_) => {
                let enc = encode_base64_lines(b.as_bytes());
                let st = if enc.contains('\n') {
                    Style::Literal
                } else {
                    Style::Plain
                };
                (Cow::Owned(enc), st, "tag:yaml.org,2002:binary")
            }
        },
    };
    let analysed = match s {
        Scalar::Str(_) => true,
        Scalar::Bytes(b) => std::str::from_utf8(b.as_bytes()).is_ok(),
        _ => false,
    };
    if !analysed {
        ev.analysis = analyze_scalar(value.as_bytes());
    }
    ev.value = value;
    ev.style = style;
    ev.tag = tag;
    ev.implicit = tag.is_empty();
    ev
}

fn key_event(k: &str) -> Ev<'_> {
    let mut ev = Ev::new(EvType::Scalar);
    let (st, tag, a) = string_style(k);
    ev.analysis = a;
    ev.value = Cow::Borrowed(k);
    ev.style = st;
    ev.tag = tag;
    ev.implicit = tag.is_empty();
    ev
}

/// Emits events for `node`, which carries `head`/`foot` comments given by its parent
/// (sequence item comments).
fn gen_node<'a>(out: &mut Vec<Ev<'a>>, node: &'a Node, head: String, foot: String) {
    match node {
        Node::Map(items) => {
            let mut comments: Vec<&str> = Vec::new();
            let mut map_head = String::new();
            let mut first = true;
            let mut start = Ev::new(EvType::MapStart);
            let start_idx = out.len();
            out.push(Ev::new(EvType::MapStart));
            let mut tail = String::new();
            let mut last_key: Option<usize> = None;
            for item in items {
                match item {
                    MapItem::Comment(t) => comments.push(t.as_str()),
                    MapItem::Entry(k, v) => {
                        let mut kev = key_event(k);
                        let mut khead = String::new();
                        if first {
                            map_head = join_comments(&comments);
                            first = false;
                        } else {
                            khead = join_comments(&comments);
                        }
                        comments.clear();
                        kev.set_comments(khead, String::new(), std::mem::take(&mut tail));
                        last_key = Some(out.len());
                        out.push(kev);
                        gen_node(out, v, String::new(), String::new());
                    }
                }
            }
            let mut end = Ev::new(EvType::MapEnd);
            let mut end_tail = String::new();
            if !comments.is_empty() {
                let c = join_comments(&comments);
                if last_key.is_some() {
                    // Foot of the last key, which yaml.v3 moves to the mapping end's tail.
                    end_tail = c;
                } else {
                    map_head = c;
                }
            }
            end.set_comments(String::new(), foot, end_tail);
            start.set_comments(prepend_head(head, map_head), String::new(), String::new());
            out[start_idx] = start;
            out.push(end);
        }
        Node::List(items) => {
            let start_idx = out.len();
            out.push(Ev::new(EvType::SeqStart));
            let mut comments: Vec<&str> = Vec::new();
            let mut seq_head = String::new();
            let mut first = true;
            let mut pending_items: Vec<(&'a Node, String)> = Vec::new();
            for item in items {
                match item {
                    Node::Comment(t) => comments.push(t.as_str()),
                    other => {
                        let h = if first {
                            seq_head = join_comments(&comments);
                            first = false;
                            String::new()
                        } else {
                            join_comments(&comments)
                        };
                        comments.clear();
                        pending_items.push((other, h));
                    }
                }
            }
            let trailing = join_comments(&comments);
            if pending_items.is_empty() && !comments.is_empty() {
                seq_head = trailing.clone();
            }
            let n = pending_items.len();
            for (i, (item, h)) in pending_items.into_iter().enumerate() {
                let f = if i + 1 == n && !comments.is_empty() {
                    trailing.clone()
                } else {
                    String::new()
                };
                gen_node(out, item, h, f);
            }
            let mut start = Ev::new(EvType::SeqStart);
            start.set_comments(prepend_head(head, seq_head), String::new(), String::new());
            out[start_idx] = start;
            let mut end = Ev::new(EvType::SeqEnd);
            end.set_comments(String::new(), foot, String::new());
            out.push(end);
        }
        Node::Scalar(s) => {
            let mut ev = scalar_event(s);
            ev.set_comments(head, foot, String::new());
            out.push(ev);
        }
        Node::Comment(t) => {
            // Not representable outside a list or map: written as a string.
            let mut ev = key_event(t.as_str());
            ev.set_comments(head, foot, String::new());
            out.push(ev);
        }
    }
}

/// Emits documents as sops 3.11 does (yaml.v3 encoder, `indent` spaces, default 4).
pub fn emit(docs: &[Node], indent: usize) -> String {
    let mut events: Vec<Ev<'_>> = Vec::with_capacity(docs.len() * 16 + 2);
    events.push(Ev::new(EvType::StreamStart));
    for doc in docs {
        events.push(Ev::new(EvType::DocStart));
        gen_node(&mut events, doc, String::new(), String::new());
        events.push(Ev::new(EvType::DocEnd));
    }
    events.push(Ev::new(EvType::StreamEnd));
    let mut em = Emitter::new(indent);
    em.run(&events);
    let mut out = std::mem::take(&mut em.out);

    String::from_utf8(std::mem::take(&mut out)).unwrap_or_else(|e| {
        // Unreachable: only whole UTF-8 characters are copied.
        String::from_utf8_lossy(e.as_bytes()).into_owned()
    })
}

// ====================================================================================
// The emitter: a port of yaml.v3's emitterc.go (block styles, comments, quoting).
// ====================================================================================

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    StreamStart,
    FirstDocumentStart,
    DocumentStart,
    DocumentContent,
    DocumentEnd,
    FlowSequenceFirstItem,
    FlowSequenceTrailItem,
    FlowSequenceItem,
    FlowMappingFirstKey,
    FlowMappingTrailKey,
    FlowMappingKey,
    FlowMappingSimpleValue,
    FlowMappingValue,
    BlockSequenceFirstItem,
    BlockSequenceItem,
    BlockMappingFirstKey,
    BlockMappingKey,
    BlockMappingSimpleValue,
    BlockMappingValue,
    End,
}

#[derive(Default, Clone, Copy)]
struct ScalarAnalysis {
    multiline: bool,
    flow_plain_allowed: bool,
    block_plain_allowed: bool,
    single_quoted_allowed: bool,
    block_allowed: bool,
}

/// Byte at `i`, or NUL past the end (libyaml strings are NUL-terminated).
#[inline]
fn at(b: &[u8], i: usize) -> u8 {
    b.get(i).copied().unwrap_or(0)
}
#[inline]
fn is_space(b: &[u8], i: usize) -> bool {
    at(b, i) == b' '
}
#[inline]
fn is_blank(b: &[u8], i: usize) -> bool {
    matches!(at(b, i), b' ' | b'\t')
}
#[inline]
fn is_break(b: &[u8], i: usize) -> bool {
    let c = at(b, i);
    c == b'\r'
        || c == b'\n'
        || (c == 0xC2 && at(b, i + 1) == 0x85)
        || (c == 0xE2 && at(b, i + 1) == 0x80 && (at(b, i + 2) == 0xA8 || at(b, i + 2) == 0xA9))
}
#[inline]
fn is_blankz(b: &[u8], i: usize) -> bool {
    is_blank(b, i) || is_break(b, i) || at(b, i) == 0
}
#[inline]
fn is_printable(b: &[u8], i: usize) -> bool {
    let c = at(b, i);
    let c1 = at(b, i + 1);
    let c2 = at(b, i + 2);
    c == 0x0A
        || (0x20..=0x7E).contains(&c)
        || (c == 0xC2 && c1 >= 0xA0)
        || (c > 0xC2 && c < 0xED)
        || (c == 0xED && c1 < 0xA0)
        || c == 0xEE
        || (c == 0xEF && !(c1 == 0xBB && c2 == 0xBF) && !(c1 == 0xBF && (c2 == 0xBE || c2 == 0xBF)))
}
#[inline]
fn width(c: u8) -> usize {
    utf8_width(c)
}

fn analyze_scalar(value: &[u8]) -> ScalarAnalysis {
    if value.is_empty() {
        return ScalarAnalysis {
            multiline: false,
            flow_plain_allowed: false,
            block_plain_allowed: true,
            single_quoted_allowed: true,
            block_allowed: false,
        };
    }
    let mut block_indicators = false;
    let mut flow_indicators = false;
    let mut line_breaks = false;
    let mut special_characters = false;
    let mut tab_characters = false;
    let mut leading_space = false;
    let mut leading_break = false;
    let mut trailing_space = false;
    let mut trailing_break = false;
    let mut break_space = false;
    let mut space_break = false;
    let mut previous_space = false;
    let mut previous_break = false;

    if value.len() >= 3 && (value.starts_with(b"---") || value.starts_with(b"...")) {
        block_indicators = true;
        flow_indicators = true;
    }
    let mut preceded_by_whitespace = true;
    let mut i = 0;
    while i < value.len() {
        let c = value[i];
        let w = width(c).max(1);
        let followed_by_whitespace = i + w >= value.len() || is_blank(value, i + w);
        // Fast path: ASCII letters and digits in the middle of a scalar change nothing
        // except clearing the previous space/break state.
        if i > 0 && c.is_ascii_alphanumeric() {
            previous_space = false;
            previous_break = false;
            preceded_by_whitespace = false;
            i += 1;
            continue;
        }
        if i == 0 {
            match c {
                b'#' | b',' | b'[' | b']' | b'{' | b'}' | b'&' | b'*' | b'!' | b'|' | b'>'
                | b'\'' | b'"' | b'%' | b'@' | b'`' => {
                    flow_indicators = true;
                    block_indicators = true;
                }
                b'?' | b':' => {
                    flow_indicators = true;
                    if followed_by_whitespace {
                        block_indicators = true;
                    }
                }
                b'-' if followed_by_whitespace => {
                    flow_indicators = true;
                    block_indicators = true;
                }
                _ => {}
            }
        } else {
            match c {
                b',' | b'?' | b'[' | b']' | b'{' | b'}' => flow_indicators = true,
                b':' => {
                    flow_indicators = true;
                    if followed_by_whitespace {
                        block_indicators = true;
                    }
                }
                b'#' if preceded_by_whitespace => {
                    flow_indicators = true;
                    block_indicators = true;
                }
                _ => {}
            }
        }
        if c == b'\t' {
            tab_characters = true;
        } else if !is_printable(value, i) {
            special_characters = true;
        }
        if is_space(value, i) {
            if i == 0 {
                leading_space = true;
            }
            if i + w == value.len() {
                trailing_space = true;
            }
            if previous_break {
                break_space = true;
            }
            previous_space = true;
            previous_break = false;
        } else if is_break(value, i) {
            line_breaks = true;
            if i == 0 {
                leading_break = true;
            }
            if i + w == value.len() {
                trailing_break = true;
            }
            if previous_space {
                space_break = true;
            }
            previous_space = false;
            previous_break = true;
        } else {
            previous_space = false;
            previous_break = false;
        }
        preceded_by_whitespace = is_blankz(value, i);
        i += w;
    }
    let mut a = ScalarAnalysis {
        multiline: line_breaks,
        flow_plain_allowed: true,
        block_plain_allowed: true,
        single_quoted_allowed: true,
        block_allowed: true,
    };
    if leading_space || leading_break || trailing_space || trailing_break {
        a.flow_plain_allowed = false;
        a.block_plain_allowed = false;
    }
    if trailing_space {
        a.block_allowed = false;
    }
    if break_space {
        a.flow_plain_allowed = false;
        a.block_plain_allowed = false;
        a.single_quoted_allowed = false;
    }
    if space_break || tab_characters || special_characters {
        a.flow_plain_allowed = false;
        a.block_plain_allowed = false;
        a.single_quoted_allowed = false;
    }
    if space_break || special_characters {
        a.block_allowed = false;
    }
    if line_breaks {
        a.flow_plain_allowed = false;
        a.block_plain_allowed = false;
    }
    if flow_indicators {
        a.flow_plain_allowed = false;
    }
    if block_indicators {
        a.block_plain_allowed = false;
    }
    a
}

struct Emitter {
    out: Vec<u8>,
    best_indent: i32,
    state: State,
    states: Vec<State>,
    indent: i32,
    indents: Vec<i32>,
    flow_level: i32,
    root_context: bool,
    sequence_context: bool,
    mapping_context: bool,
    simple_key_context: bool,
    column: i32,
    whitespace: bool,
    indention: bool,
    open_ended: bool,
    foot_indent: i32,
    head_comment: Vec<u8>,
    line_comment: Vec<u8>,
    foot_comment: Vec<u8>,
    tail_comment: Vec<u8>,
    key_line_comment: Vec<u8>,
    // Current event data (analyze_event).
    scalar: ScalarAnalysis,
    scalar_style: Style,
    tag_handle: &'static str,
    tag_suffix: &'static str,
}

impl Drop for Emitter {
    fn drop(&mut self) {
        self.out.zeroize();
        self.head_comment.zeroize();
        self.line_comment.zeroize();
        self.foot_comment.zeroize();
        self.tail_comment.zeroize();
    }
}

impl Emitter {
    fn new(indent: usize) -> Self {
        Emitter {
            out: Vec::new(),
            best_indent: indent.min(100) as i32,
            state: State::StreamStart,
            states: Vec::new(),
            indent: -1,
            indents: Vec::new(),
            flow_level: 0,
            root_context: false,
            sequence_context: false,
            mapping_context: false,
            simple_key_context: false,
            column: 0,
            whitespace: true,
            indention: true,
            open_ended: false,
            foot_indent: -1,
            head_comment: Vec::new(),
            line_comment: Vec::new(),
            foot_comment: Vec::new(),
            tail_comment: Vec::new(),
            key_line_comment: Vec::new(),
            scalar: ScalarAnalysis::default(),
            scalar_style: Style::Plain,
            tag_handle: "",
            tag_suffix: "",
        }
    }

    fn run(&mut self, events: &[Ev<'_>]) {
        for i in 0..events.len() {
            self.analyze_event(&events[i]);
            self.state_machine(events, i);
        }
    }

    fn pop_indent(&mut self) {
        self.indent = self.indents.pop().unwrap_or(-1);
    }
    fn pop_state(&mut self) {
        self.state = self.states.pop().unwrap_or(State::End);
    }

    // ---- low-level writers ----
    fn put(&mut self, c: u8) {
        self.out.push(c);
        self.column += 1;
    }
    fn put_break(&mut self) {
        self.out.push(b'\n');
        self.column = 0;
        self.indention = true;
    }
    fn write(&mut self, s: &[u8], i: &mut usize) {
        let w = width(s[*i]).max(1);
        let end = (*i + w).min(s.len());
        self.out.extend_from_slice(&s[*i..end]);
        self.column += 1;
        *i = end;
    }
    fn write_all(&mut self, s: &[u8]) {
        let mut i = 0;
        while i < s.len() {
            self.write(s, &mut i);
        }
    }
    fn write_break(&mut self, s: &[u8], i: &mut usize) {
        if s[*i] == b'\n' {
            self.put_break();
            *i += 1;
        } else {
            self.write(s, i);
            self.column = 0;
            self.indention = true;
        }
    }

    fn write_indent(&mut self) {
        let indent = self.indent.max(0);
        if !self.indention || self.column > indent || (self.column == indent && !self.whitespace) {
            self.put_break();
        }
        if self.foot_indent == indent {
            self.put_break();
        }
        while self.column < indent {
            self.put(b' ');
        }
        self.whitespace = true;
        self.foot_indent = -1;
    }

    fn write_indicator(
        &mut self,
        ind: &[u8],
        need_whitespace: bool,
        is_whitespace: bool,
        is_indention: bool,
    ) {
        if need_whitespace && !self.whitespace {
            self.put(b' ');
        }
        self.write_all(ind);
        self.whitespace = is_whitespace;
        self.indention = self.indention && is_indention;
        self.open_ended = false;
    }

    fn write_comment(&mut self, comment: &[u8]) {
        let mut breaks = false;
        let mut pound = false;
        let mut i = 0;
        while i < comment.len() {
            if is_break(comment, i) {
                self.write_break(comment, &mut i);
                breaks = true;
                pound = false;
            } else {
                if breaks {
                    self.write_indent();
                }
                if !pound {
                    if comment[i] != b'#' {
                        self.put(b'#');
                        self.put(b' ');
                    }
                    pound = true;
                }
                self.write(comment, &mut i);
                self.indention = false;
                breaks = false;
            }
        }
        if !breaks {
            self.put_break();
        }
        self.whitespace = true;
    }

    fn process_head_comment(&mut self) {
        if !self.tail_comment.is_empty() {
            self.write_indent();
            let c = std::mem::take(&mut self.tail_comment);
            self.write_comment(&c);
            self.foot_indent = self.indent.max(0);
        }
        if self.head_comment.is_empty() {
            return;
        }
        self.write_indent();
        let c = std::mem::take(&mut self.head_comment);
        self.write_comment(&c);
    }

    fn process_line_comment_linebreak(&mut self, linebreak: bool) {
        if self.line_comment.is_empty() {
            if linebreak {
                self.put_break();
            }
            return;
        }
        if !self.whitespace {
            self.put(b' ');
        }
        let c = std::mem::take(&mut self.line_comment);
        self.write_comment(&c);
    }

    fn process_line_comment(&mut self) {
        self.process_line_comment_linebreak(false);
    }

    fn process_foot_comment(&mut self) {
        if self.foot_comment.is_empty() {
            return;
        }
        self.write_indent();
        let c = std::mem::take(&mut self.foot_comment);
        self.write_comment(&c);
        self.foot_indent = self.indent.max(0);
    }

    // ---- events ----
    fn analyze_event(&mut self, ev: &Ev<'_>) {
        self.tag_handle = "";
        self.tag_suffix = "";
        if let Some(c) = &ev.comments {
            if !c.head.is_empty() {
                self.head_comment = c.head.as_bytes().to_vec();
            }
            if !c.line.is_empty() {
                self.line_comment = c.line.as_bytes().to_vec();
            }
            if !c.foot.is_empty() {
                self.foot_comment = c.foot.as_bytes().to_vec();
            }
            if !c.tail.is_empty() {
                self.tail_comment = c.tail.as_bytes().to_vec();
            }
        }
        if ev.typ == EvType::Scalar {
            if !ev.tag.is_empty() && !ev.implicit {
                // Default tag directive `!!` → `tag:yaml.org,2002:`.
                match ev.tag.strip_prefix("tag:yaml.org,2002:") {
                    Some(suffix) => {
                        self.tag_handle = "!!";
                        self.tag_suffix = suffix;
                    }
                    None => self.tag_suffix = ev.tag,
                }
            }
            self.scalar = ev.analysis;
        }
    }

    fn state_machine(&mut self, evs: &[Ev<'_>], i: usize) {
        let ev = &evs[i];
        match self.state {
            State::StreamStart => self.emit_stream_start(),
            State::FirstDocumentStart => self.emit_document_start(ev, true),
            State::DocumentStart => self.emit_document_start(ev, false),
            State::DocumentContent => self.emit_document_content(evs, i),
            State::DocumentEnd => self.emit_document_end(ev),
            State::FlowSequenceFirstItem => self.emit_flow_sequence_item(evs, i, true, false),
            State::FlowSequenceTrailItem => self.emit_flow_sequence_item(evs, i, false, true),
            State::FlowSequenceItem => self.emit_flow_sequence_item(evs, i, false, false),
            State::FlowMappingFirstKey => self.emit_flow_mapping_key(evs, i, true, false),
            State::FlowMappingTrailKey => self.emit_flow_mapping_key(evs, i, false, true),
            State::FlowMappingKey => self.emit_flow_mapping_key(evs, i, false, false),
            State::FlowMappingSimpleValue => self.emit_flow_mapping_value(evs, i, true),
            State::FlowMappingValue => self.emit_flow_mapping_value(evs, i, false),
            State::BlockSequenceFirstItem => self.emit_block_sequence_item(evs, i, true),
            State::BlockSequenceItem => self.emit_block_sequence_item(evs, i, false),
            State::BlockMappingFirstKey => self.emit_block_mapping_key(evs, i, true),
            State::BlockMappingKey => self.emit_block_mapping_key(evs, i, false),
            State::BlockMappingSimpleValue => self.emit_block_mapping_value(evs, i, true),
            State::BlockMappingValue => self.emit_block_mapping_value(evs, i, false),
            State::End => {}
        }
    }

    fn emit_stream_start(&mut self) {
        if self.best_indent < 2 || self.best_indent > 9 {
            self.best_indent = 2;
        }
        self.indent = -1;
        self.column = 0;
        self.whitespace = true;
        self.indention = true;
        self.state = State::FirstDocumentStart;
    }

    fn emit_document_start(&mut self, ev: &Ev<'_>, first: bool) {
        match ev.typ {
            EvType::DocStart => {
                let implicit = ev.implicit && first;
                if !implicit {
                    self.write_indent();
                    self.write_indicator(b"---", true, false, false);
                    self.write_indent();
                }
                if !self.head_comment.is_empty() {
                    self.process_head_comment();
                    self.put_break();
                }
                self.state = State::DocumentContent;
            }
            EvType::StreamEnd => {
                if self.open_ended {
                    self.write_indicator(b"...", true, false, false);
                    self.write_indent();
                }
                self.state = State::End;
            }
            _ => {}
        }
    }

    fn emit_document_content(&mut self, evs: &[Ev<'_>], i: usize) {
        self.states.push(State::DocumentEnd);
        self.process_head_comment();
        self.emit_node(evs, i, true, false, false, false);
        self.process_line_comment();
        self.process_foot_comment();
    }

    fn emit_document_end(&mut self, ev: &Ev<'_>) {
        if ev.typ != EvType::DocEnd {
            return;
        }
        self.foot_indent = 0;
        self.process_foot_comment();
        self.foot_indent = -1;
        self.write_indent();
        if !ev.implicit {
            self.write_indicator(b"...", true, false, false);
            self.write_indent();
        }
        self.state = State::DocumentStart;
    }

    fn increase_indent_compact(&mut self, flow: bool, indentless: bool, compact_seq: bool) {
        self.indents.push(self.indent);
        if self.indent < 0 {
            self.indent = if flow { self.best_indent } else { 0 };
        } else if !indentless {
            if self.states.last() == Some(&State::BlockSequenceItem) {
                self.indent += 2;
            } else {
                self.indent =
                    self.best_indent * ((self.indent + self.best_indent) / self.best_indent);
                if compact_seq {
                    self.indent -= 2;
                }
            }
        }
    }

    fn increase_indent(&mut self, flow: bool, indentless: bool) {
        self.increase_indent_compact(flow, indentless, false);
    }

    fn emit_flow_sequence_item(&mut self, evs: &[Ev<'_>], i: usize, first: bool, trail: bool) {
        let ev = &evs[i];
        if first {
            self.write_indicator(b"[", true, true, false);
            self.increase_indent(true, false);
            self.flow_level += 1;
        }
        if ev.typ == EvType::SeqEnd {
            self.flow_level -= 1;
            self.pop_indent();
            if self.column == 0 {
                self.write_indent();
            }
            self.write_indicator(b"]", false, false, false);
            self.process_line_comment();
            self.process_foot_comment();
            self.pop_state();
            return;
        }
        if !first && !trail {
            self.write_indicator(b",", false, false, false);
        }
        self.process_head_comment();
        if self.column == 0 {
            self.write_indent();
        }
        let has = !self.line_comment.is_empty()
            || !self.foot_comment.is_empty()
            || !self.tail_comment.is_empty();
        self.states.push(if has {
            State::FlowSequenceTrailItem
        } else {
            State::FlowSequenceItem
        });
        self.emit_node(evs, i, false, true, false, false);
        if !self.line_comment.is_empty()
            || !self.foot_comment.is_empty()
            || !self.tail_comment.is_empty()
        {
            self.write_indicator(b",", false, false, false);
        }
        self.process_line_comment();
        self.process_foot_comment();
    }

    fn emit_flow_mapping_key(&mut self, evs: &[Ev<'_>], i: usize, first: bool, trail: bool) {
        let ev = &evs[i];
        if first {
            self.write_indicator(b"{", true, true, false);
            self.increase_indent(true, false);
            self.flow_level += 1;
        }
        if ev.typ == EvType::MapEnd {
            if (!self.head_comment.is_empty()
                || !self.foot_comment.is_empty()
                || !self.tail_comment.is_empty())
                && !first
                && !trail
            {
                self.write_indicator(b",", false, false, false);
            }
            self.process_head_comment();
            self.flow_level -= 1;
            self.pop_indent();
            self.write_indicator(b"}", false, false, false);
            self.process_line_comment();
            self.process_foot_comment();
            self.pop_state();
            return;
        }
        if !first && !trail {
            self.write_indicator(b",", false, false, false);
        }
        self.process_head_comment();
        if self.column == 0 {
            self.write_indent();
        }
        if self.check_simple_key(evs, i) {
            self.states.push(State::FlowMappingSimpleValue);
            self.emit_node(evs, i, false, false, true, true);
            return;
        }
        self.write_indicator(b"?", true, false, false);
        self.states.push(State::FlowMappingValue);
        self.emit_node(evs, i, false, false, true, false);
    }

    fn emit_flow_mapping_value(&mut self, evs: &[Ev<'_>], i: usize, simple: bool) {
        if simple {
            self.write_indicator(b":", false, false, false);
        } else {
            self.write_indicator(b":", true, false, false);
        }
        let has = !self.line_comment.is_empty()
            || !self.foot_comment.is_empty()
            || !self.tail_comment.is_empty();
        self.states.push(if has {
            State::FlowMappingTrailKey
        } else {
            State::FlowMappingKey
        });
        self.emit_node(evs, i, false, false, true, false);
        if !self.line_comment.is_empty()
            || !self.foot_comment.is_empty()
            || !self.tail_comment.is_empty()
        {
            self.write_indicator(b",", false, false, false);
        }
        self.process_line_comment();
        self.process_foot_comment();
    }

    fn emit_block_sequence_item(&mut self, evs: &[Ev<'_>], i: usize, first: bool) {
        let ev = &evs[i];
        if first {
            // yaml.v3 compact_sequence_indent is off by default.
            self.increase_indent_compact(false, false, false);
        }
        if ev.typ == EvType::SeqEnd {
            self.pop_indent();
            self.pop_state();
            return;
        }
        self.process_head_comment();
        self.write_indent();
        self.write_indicator(b"-", true, false, true);
        self.states.push(State::BlockSequenceItem);
        self.emit_node(evs, i, false, true, false, false);
        self.process_line_comment();
        self.process_foot_comment();
    }

    fn emit_block_mapping_key(&mut self, evs: &[Ev<'_>], i: usize, first: bool) {
        let ev = &evs[i];
        if first {
            self.increase_indent(false, false);
        }
        self.process_head_comment();
        if ev.typ == EvType::MapEnd {
            self.pop_indent();
            self.pop_state();
            return;
        }
        self.write_indent();
        if !self.line_comment.is_empty() {
            self.key_line_comment = std::mem::take(&mut self.line_comment);
        }
        if self.check_simple_key(evs, i) {
            self.states.push(State::BlockMappingSimpleValue);
            self.emit_node(evs, i, false, false, true, true);
            return;
        }
        self.write_indicator(b"?", true, false, true);
        self.states.push(State::BlockMappingValue);
        self.emit_node(evs, i, false, false, true, false);
    }

    fn emit_block_mapping_value(&mut self, evs: &[Ev<'_>], i: usize, simple: bool) {
        let ev = &evs[i];
        if simple {
            self.write_indicator(b":", false, false, false);
        } else {
            self.write_indent();
            self.write_indicator(b":", true, false, true);
        }
        if !self.key_line_comment.is_empty() {
            if ev.typ == EvType::Scalar {
                if self.line_comment.is_empty() {
                    self.line_comment = std::mem::take(&mut self.key_line_comment);
                }
            } else if matches!(ev.typ, EvType::MapStart | EvType::SeqStart) {
                std::mem::swap(&mut self.line_comment, &mut self.key_line_comment);
                self.process_line_comment();
                std::mem::swap(&mut self.line_comment, &mut self.key_line_comment);
            }
        }
        self.states.push(State::BlockMappingKey);
        self.emit_node(evs, i, false, false, true, false);
        self.process_line_comment();
        self.process_foot_comment();
    }

    fn emit_node(
        &mut self,
        evs: &[Ev<'_>],
        i: usize,
        root: bool,
        sequence: bool,
        mapping: bool,
        simple_key: bool,
    ) {
        self.root_context = root;
        self.sequence_context = sequence;
        self.mapping_context = mapping;
        self.simple_key_context = simple_key;
        match evs[i].typ {
            EvType::Scalar => self.emit_scalar(&evs[i]),
            EvType::SeqStart => {
                self.state = if self.flow_level > 0 || self.check_empty(evs, i, EvType::SeqEnd) {
                    State::FlowSequenceFirstItem
                } else {
                    State::BlockSequenceFirstItem
                };
            }
            EvType::MapStart => {
                self.state = if self.flow_level > 0 || self.check_empty(evs, i, EvType::MapEnd) {
                    State::FlowMappingFirstKey
                } else {
                    State::BlockMappingFirstKey
                };
            }
            _ => {}
        }
    }

    fn check_empty(&self, evs: &[Ev<'_>], i: usize, end: EvType) -> bool {
        evs.get(i + 1).is_some_and(|e| e.typ == end)
    }

    fn check_simple_key(&self, evs: &[Ev<'_>], i: usize) -> bool {
        let ev = &evs[i];
        let tag_len = self.tag_handle.len() + self.tag_suffix.len();
        let length = match ev.typ {
            EvType::Scalar => {
                if self.scalar.multiline {
                    return false;
                }
                tag_len + ev.value.len()
            }
            EvType::SeqStart => {
                if !self.check_empty(evs, i, EvType::SeqEnd) {
                    return false;
                }
                tag_len
            }
            EvType::MapStart => {
                if !self.check_empty(evs, i, EvType::MapEnd) {
                    return false;
                }
                tag_len
            }
            _ => return false,
        };
        length <= 128
    }

    fn select_scalar_style(&mut self, ev: &Ev<'_>) {
        let no_tag = self.tag_handle.is_empty() && self.tag_suffix.is_empty();
        let mut style = ev.style;
        if self.simple_key_context && self.scalar.multiline {
            style = Style::Double;
        }
        if style == Style::Plain {
            if (self.flow_level > 0 && !self.scalar.flow_plain_allowed)
                || (self.flow_level == 0 && !self.scalar.block_plain_allowed)
            {
                style = Style::Single;
            }
            if ev.value.is_empty() && (self.flow_level > 0 || self.simple_key_context) {
                style = Style::Single;
            }
            if no_tag && !ev.implicit {
                style = Style::Single;
            }
        }
        if style == Style::Single && !self.scalar.single_quoted_allowed {
            style = Style::Double;
        }
        if style == Style::Literal
            && (!self.scalar.block_allowed || self.flow_level > 0 || self.simple_key_context)
        {
            style = Style::Double;
        }
        if no_tag && !ev.implicit && style != Style::Plain {
            self.tag_handle = "!";
        }
        self.scalar_style = style;
    }

    fn emit_scalar(&mut self, ev: &Ev<'_>) {
        self.select_scalar_style(ev);
        self.process_tag();
        self.increase_indent(true, false);
        let v = ev.value.as_bytes();
        let allow_breaks = !self.simple_key_context;
        match self.scalar_style {
            Style::Plain => self.write_plain_scalar(v),
            Style::Single => self.write_single_quoted_scalar(v, allow_breaks),
            Style::Double => self.write_double_quoted_scalar(v),
            Style::Literal => self.write_literal_scalar(v),
        }
        self.pop_indent();
        self.pop_state();
    }

    fn process_tag(&mut self) {
        if self.tag_handle.is_empty() && self.tag_suffix.is_empty() {
            return;
        }
        if !self.tag_handle.is_empty() {
            if !self.whitespace {
                self.put(b' ');
            }
            let h = self.tag_handle;
            self.write_all(h.as_bytes());
            self.whitespace = false;
            self.indention = false;
            if !self.tag_suffix.is_empty() {
                let s = self.tag_suffix;
                self.write_tag_content(s.as_bytes());
            }
        } else {
            self.write_indicator(b"!<", true, false, false);
            let s = self.tag_suffix;
            self.write_tag_content(s.as_bytes());
            self.write_indicator(b">", false, false, false);
        }
    }

    fn write_tag_content(&mut self, value: &[u8]) {
        let mut i = 0;
        while i < value.len() {
            let c = value[i];
            let must_write = matches!(
                c,
                b';' | b'/'
                    | b'?'
                    | b':'
                    | b'@'
                    | b'&'
                    | b'='
                    | b'+'
                    | b'$'
                    | b','
                    | b'_'
                    | b'.'
                    | b'~'
                    | b'*'
                    | b'\''
                    | b'('
                    | b')'
                    | b'['
                    | b']'
            ) || c.is_ascii_alphanumeric()
                || c == b'-';
            if must_write {
                self.write(value, &mut i);
            } else {
                let w = width(c).max(1);
                for _ in 0..w {
                    let o = at(value, i);
                    i += 1;
                    self.put(b'%');
                    let hex = b"0123456789ABCDEF";
                    self.put(hex[(o >> 4) as usize]);
                    self.put(hex[(o & 0x0f) as usize]);
                }
            }
        }
        self.whitespace = false;
        self.indention = false;
    }

    fn write_plain_scalar(&mut self, value: &[u8]) {
        if !value.is_empty() && !self.whitespace {
            self.put(b' ');
        }
        if !self.scalar.multiline {
            // No line breaks: the loop below would copy the text unchanged.
            self.out.extend_from_slice(value);
            self.column += value.iter().filter(|b| (**b & 0xC0) != 0x80).count() as i32;
            if !value.is_empty() {
                self.whitespace = false;
            }
            self.indention = false;
            if self.root_context {
                self.open_ended = true;
            }
            return;
        }
        // best_width is unlimited in yaml.v3, so plain scalars are never folded.
        let mut breaks = false;
        let mut i = 0;
        while i < value.len() {
            if is_space(value, i) {
                self.write(value, &mut i);
            } else if is_break(value, i) {
                if !breaks && value[i] == b'\n' {
                    self.put_break();
                }
                self.write_break(value, &mut i);
                breaks = true;
            } else {
                if breaks {
                    self.write_indent();
                }
                self.write(value, &mut i);
                self.indention = false;
                breaks = false;
            }
        }
        if !value.is_empty() {
            self.whitespace = false;
        }
        self.indention = false;
        if self.root_context {
            self.open_ended = true;
        }
    }

    fn write_single_quoted_scalar(&mut self, value: &[u8], _allow_breaks: bool) {
        self.write_indicator(b"'", true, false, false);
        let mut breaks = false;
        let mut i = 0;
        while i < value.len() {
            if is_space(value, i) {
                self.write(value, &mut i);
            } else if is_break(value, i) {
                if !breaks && value[i] == b'\n' {
                    self.put_break();
                }
                self.write_break(value, &mut i);
                breaks = true;
            } else {
                if breaks {
                    self.write_indent();
                }
                if value[i] == b'\'' {
                    self.put(b'\'');
                }
                self.write(value, &mut i);
                self.indention = false;
                breaks = false;
            }
        }
        self.write_indicator(b"'", false, false, false);
        self.whitespace = false;
        self.indention = false;
    }

    fn write_double_quoted_scalar(&mut self, value: &[u8]) {
        self.write_indicator(b"\"", true, false, false);
        let mut i = 0;
        while i < value.len() {
            let c = value[i];
            let bom = value.len() >= 3 && value[0] == 0xEF && value[1] == 0xBB && value[2] == 0xBF;
            if !is_printable(value, i) || bom || is_break(value, i) || c == b'"' || c == b'\\' {
                let w = width(c).max(1);
                let mut v: u32 = match w {
                    1 => u32::from(c & 0x7F),
                    2 => u32::from(c & 0x1F),
                    3 => u32::from(c & 0x0F),
                    _ => u32::from(c & 0x07),
                };
                for k in 1..w {
                    v = (v << 6) + u32::from(at(value, i + k) & 0x3F);
                }
                i += w;
                self.put(b'\\');
                match v {
                    0x00 => self.put(b'0'),
                    0x07 => self.put(b'a'),
                    0x08 => self.put(b'b'),
                    0x09 => self.put(b't'),
                    0x0A => self.put(b'n'),
                    0x0B => self.put(b'v'),
                    0x0C => self.put(b'f'),
                    0x0D => self.put(b'r'),
                    0x1B => self.put(b'e'),
                    0x22 => self.put(b'"'),
                    0x5C => self.put(b'\\'),
                    0x85 => self.put(b'N'),
                    0xA0 => self.put(b'_'),
                    0x2028 => self.put(b'L'),
                    0x2029 => self.put(b'P'),
                    _ => {
                        let (ch, digits) = if v <= 0xFF {
                            (b'x', 2)
                        } else if v <= 0xFFFF {
                            (b'u', 4)
                        } else {
                            (b'U', 8)
                        };
                        self.put(ch);
                        let hex = b"0123456789ABCDEF";
                        for k in (0..digits).rev() {
                            self.put(hex[((v >> (k * 4)) & 0x0F) as usize]);
                        }
                    }
                }
            } else {
                self.write(value, &mut i);
            }
        }
        self.write_indicator(b"\"", false, false, false);
        self.whitespace = false;
        self.indention = false;
    }

    fn write_block_scalar_hints(&mut self, value: &[u8]) {
        if is_space(value, 0) || is_break(value, 0) {
            let hint = [b'0' + self.best_indent as u8];
            self.write_indicator(&hint, false, false, false);
        }
        self.open_ended = false;
        let mut chomp: Option<u8> = None;
        if value.is_empty() {
            chomp = Some(b'-');
        } else {
            let mut i = value.len() - 1;
            while i > 0 && value[i] & 0xC0 == 0x80 {
                i -= 1;
            }
            if !is_break(value, i) {
                chomp = Some(b'-');
            } else if i == 0 {
                chomp = Some(b'+');
                self.open_ended = true;
            } else {
                i -= 1;
                while i > 0 && value[i] & 0xC0 == 0x80 {
                    i -= 1;
                }
                if is_break(value, i) {
                    chomp = Some(b'+');
                    self.open_ended = true;
                }
            }
        }
        if let Some(c) = chomp {
            self.write_indicator(&[c], false, false, false);
        }
    }

    fn write_literal_scalar(&mut self, value: &[u8]) {
        self.write_indicator(b"|", true, false, false);
        self.write_block_scalar_hints(value);
        self.process_line_comment_linebreak(true);
        self.whitespace = true;
        let mut breaks = true;
        let mut i = 0;
        while i < value.len() {
            if is_break(value, i) {
                self.write_break(value, &mut i);
                breaks = true;
            } else {
                if breaks {
                    self.write_indent();
                }
                self.write(value, &mut i);
                self.indention = false;
                breaks = false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    fn vectors_dir() -> PathBuf {
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/sops"))
    }

    fn files_with_suffix(dir: &Path, suffix: &str, out: &mut Vec<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        let mut entries: Vec<_> = rd.flatten().map(|e| e.path()).collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                files_with_suffix(&p, suffix, out);
            } else if p.to_string_lossy().ends_with(suffix) {
                out.push(p);
            }
        }
    }

    fn roundtrip(src: &str) -> String {
        let docs = parse(src).unwrap_or_else(|e| panic!("parse failed: {e}"));
        emit(&docs, 4)
    }

    #[test]
    fn plain_vectors_emit_like_sops_decrypt() {
        let mut files = Vec::new();
        files_with_suffix(&vectors_dir(), ".plain.yaml", &mut files);
        let mut checked = 0;
        let mut failures = Vec::new();
        for plain in files {
            let dec = PathBuf::from(
                plain
                    .to_string_lossy()
                    .replace(".plain.yaml", ".decrypted.yaml"),
            );
            if !dec.exists() {
                continue;
            }
            let src = std::fs::read_to_string(&plain).unwrap();
            let want = std::fs::read_to_string(&dec).unwrap();
            let got = roundtrip(&src);
            if got != want {
                failures.push(format!(
                    "{}:\n--- want\n{want}\n--- got\n{got}",
                    plain.display()
                ));
            }
            checked += 1;
        }
        assert!(checked >= 10, "only {checked} vectors found");
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn encrypted_vectors_roundtrip_byte_for_byte() {
        let mut files = Vec::new();
        files_with_suffix(&vectors_dir(), ".enc.yaml", &mut files);
        let mut checked = 0;
        let mut failures = Vec::new();
        for f in files {
            let src = std::fs::read_to_string(&f).unwrap();
            // Files edited by hand after sops wrote them are not sops output.
            // 15-written-by-spec was written by a Python script, not by sops.
            if f.to_string_lossy().contains("15-written-by-spec") {
                continue;
            }
            let got = match parse(&src) {
                Ok(d) => emit(&d, 4),
                Err(e) => {
                    failures.push(format!("{}: {e}", f.display()));
                    continue;
                }
            };
            if got != src {
                failures.push(format!("{}:\n--- want\n{src}\n--- got\n{got}", f.display()));
            }
            checked += 1;
        }
        assert!(checked >= 20, "only {checked} vectors found");
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    fn canonical(s: &Scalar) -> (&'static str, String) {
        match s {
            Scalar::Null => ("null", String::new()),
            Scalar::Bool(b) => ("bool", if *b { "True" } else { "False" }.to_string()),
            Scalar::Int(i) => ("int", i.to_string()),
            Scalar::Float(f) if f.is_infinite() => {
                ("float", if *f > 0.0 { "+Inf" } else { "-Inf" }.to_string())
            }
            Scalar::Float(f) if f.is_nan() => ("float", "NaN".to_string()),
            Scalar::Float(f) => ("float", format!("{f}")),
            Scalar::Str(t) => ("str", t.as_str().to_string()),
            Scalar::Time(t) => ("time", t.as_str().to_string()),
            Scalar::Bytes(b) => ("bytes", String::from_utf8_lossy(b.as_bytes()).into_owned()),
        }
    }

    /// Leaves in sops' walk order: (AAD, type, plaintext); nulls and comments skipped.
    fn leaves(n: &Node, path: &str, out: &mut Vec<(String, String, String)>) {
        match n {
            Node::Map(items) => {
                for it in items {
                    if let MapItem::Entry(k, v) = it {
                        if path.is_empty() && k == "sops" {
                            continue;
                        }
                        leaves(v, &format!("{path}{k}:"), out);
                    }
                }
            }
            Node::List(items) => items.iter().for_each(|i| leaves(i, path, out)),
            Node::Scalar(Scalar::Null) | Node::Comment(_) => {}
            Node::Scalar(s) => {
                let (t, v) = canonical(s);
                out.push((path.to_string(), t.to_string(), v));
            }
        }
    }

    #[test]
    fn scalar_types_match_manifest() {
        let dir = vectors_dir();
        let manifest: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("MANIFEST.json")).unwrap())
                .unwrap();
        let manifest = manifest.as_object().unwrap();
        let mut files = Vec::new();
        files_with_suffix(&dir, ".plain.yaml", &mut files);
        let mut checked = 0;
        for plain in files {
            let rel = plain
                .strip_prefix(&dir)
                .unwrap()
                .to_string_lossy()
                .to_string();
            let stem = rel.trim_end_matches(".plain.yaml");
            let Some((_, entry)) = manifest
                .iter()
                .find(|(k, _)| k.starts_with(&format!("{stem}.")) && k.ends_with(".enc.yaml"))
            else {
                continue;
            };
            let want: Vec<(String, String, String)> = entry["leaves_in_mac_order"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|l| l[0] != "COMMENT-IN-LIST")
                .map(|l| {
                    (
                        l[1].as_str().unwrap().to_string(),
                        l[2].as_str().unwrap().to_string(),
                        l[3].as_str().unwrap().to_string(),
                    )
                })
                .collect();
            let docs = parse(&std::fs::read_to_string(&plain).unwrap()).unwrap();
            let mut got = Vec::new();
            for d in &docs {
                leaves(d, "", &mut got);
            }
            assert_eq!(got, want, "{rel}");
            checked += 1;
        }
        assert!(checked >= 8, "only {checked}");
    }

    fn edge(name: &str) -> String {
        std::fs::read_to_string(vectors_dir().join(name)).unwrap()
    }

    #[test]
    fn error_vectors() {
        match parse(&edge("12-edge-cases/err-duplicate-key.plain.yaml")) {
            Err(
                e @ YamlError::DuplicateKey {
                    line: 2, first: 1, ..
                },
            ) => {
                assert!(
                    e.to_string()
                        .ends_with("line 2: mapping key \"a\" already defined at line 1"),
                    "{e}"
                );
            }
            other => panic!("{other:?}"),
        }
        match parse(&edge("12-edge-cases/err-top-level-list.plain.yaml")) {
            Err(e @ YamlError::NotAMap { line: 1, .. }) => {
                assert!(
                    e.to_string()
                        .ends_with("line 1: cannot unmarshal !!seq into map[string]interface {}")
                );
            }
            other => panic!("{other:?}"),
        }
        match parse(&edge("14-misc/err-scalar-document.plain.yaml")) {
            Err(e @ YamlError::NotAMap { .. }) => assert!(
                e.to_string().ends_with(
                    "line 1: cannot unmarshal !!str `just a ...` into map[string]interface {}"
                ),
                "{e}"
            ),
            other => panic!("{other:?}"),
        }
        match parse(&edge("12-edge-cases/err-int-key.plain.yaml")) {
            Err(
                e @ YamlError::NonStringKey {
                    ty: "int", line: 1, ..
                },
            ) => {
                let want = edge("12-edge-cases/err-int-key.stderr.txt");
                assert!(want.contains(&e.to_string()), "{e}");
            }
            other => panic!("{other:?}"),
        }
        match parse(&edge("12-edge-cases/err-bool-key.plain.yaml")) {
            Err(e @ YamlError::NonStringKey { ty: "bool", .. }) => {
                let want = edge("12-edge-cases/err-bool-key.stderr.txt");
                assert!(want.contains(&e.to_string()), "{e}");
            }
            other => panic!("{other:?}"),
        }
        match parse(&edge("12-edge-cases/err-uint64.plain.yaml")) {
            Err(e @ YamlError::Uint64 { line: 1 }) => {
                assert!(edge("12-edge-cases/err-uint64.stderr.txt").contains(&e.to_string()));
            }
            other => panic!("{other:?}"),
        }
        assert!(
            parse(&edge("12-edge-cases/err-empty.plain.yaml"))
                .unwrap()
                .is_empty()
        );
        // The `sops` key check belongs to the caller.
        assert_eq!(
            parse(&edge("12-edge-cases/err-has-sops-key.plain.yaml"))
                .unwrap()
                .len(),
            1
        );
        assert!(matches!(parse("a: [1\n"), Err(YamlError::Syntax { .. })));
        assert!(matches!(
            parse("null: x\n"),
            Err(YamlError::NonStringKey { ty: "<nil>", .. })
        ));
        assert!(matches!(
            parse("a: !!int abc\n"),
            Err(YamlError::Decode { line: 1, .. })
        ));
        assert!(matches!(
            parse("a: 1\n---\n- x\n"),
            Err(YamlError::DocumentNotAMap {
                what: "sequences",
                line: 3
            })
        ));
    }

    #[test]
    fn documents_and_comments() {
        assert!(parse("# only a comment\n").unwrap().is_empty());
        assert!(parse("").unwrap().is_empty());
        let docs = parse("a: 1\n---\n---\nb: 2\n").unwrap();
        assert_eq!(docs.len(), 3);
        assert_eq!(docs[1], Node::Map(vec![]));
        assert_eq!(emit(&docs, 4), "a: 1\n---\n{}\n---\nb: 2\n");
        let src =
            "a:\n  b: 1\n  # foot of a\n# head of c\nc: 2 # eol\nl:\n  - x\n  # foot of list\n";
        let got = emit(&parse(src).unwrap(), 4);
        assert_eq!(
            got,
            "a:\n    b: 1\n    # foot of a\n# head of c\n# eol\nc: 2\nl:\n    - x\n    # foot of list\n"
        );
    }

    #[test]
    fn tag_errors_do_not_quote_the_value() {
        let e = parse("password: !!int canary-5e1f\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("!!int") && !e.contains("canary"), "{e}");
    }

    #[test]
    fn deep_nesting_is_rejected_not_a_stack_overflow() {
        // Flow nesting is bounded by the event parser itself.
        let deep = format!("a: {}1{}\n", "[".repeat(100_000), "]".repeat(100_000));
        assert!(parse(&deep).is_err());
        // Block nesting is bounded here.
        let mut block = String::new();
        for i in 0..300 {
            block.push_str(&" ".repeat(i));
            block.push_str("k:\n");
        }
        let err = parse(&block).unwrap_err().to_string();
        assert!(err.contains("nested deeper"), "{err}");
        let ok = format!("a: {}1{}\n", "[".repeat(100), "]".repeat(100));
        assert!(parse(&ok).is_ok());
    }

    #[test]
    fn alias_bomb_is_rejected() {
        let mut s = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let p = i - 1;
            s.push_str(&format!("a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"));
        }
        assert!(matches!(parse(&s), Err(YamlError::Alias { .. })));
        // Merge keys are not applied.
        let docs = parse("b: &b {x: 1}\nm:\n  <<: *b\n").unwrap();
        assert_eq!(
            emit(&docs, 4),
            "b:\n    x: 1\nm:\n    !!merge <<:\n        x: 1\n"
        );
    }

    #[test]
    fn emitter_quoting_and_numbers() {
        let m = |v: Scalar| Node::Map(vec![MapItem::Entry("k".into(), Node::Scalar(v))]);
        let s = |x: &str| Scalar::Str(Text::new(x.to_string()));
        let cases: Vec<(Scalar, &str)> = vec![
            (s("yes"), "k: \"yes\"\n"),
            (s("123"), "k: \"123\"\n"),
            (s(""), "k: \"\"\n"),
            (s("2024-01-15"), "k: \"2024-01-15\"\n"),
            (s(" lead"), "k: ' lead'\n"),
            (s("a: b"), "k: 'a: b'\n"),
            (s("it's"), "k: it's\n"),
            (s("#x"), "k: '#x'\n"),
            (s("tab\there"), "k: \"tab\\there\"\n"),
            (s("1:30"), "k: \"1:30\"\n"),
            (s("a\nb"), "k: |-\n    a\n    b\n"),
            (s("a\nb\n"), "k: |\n    a\n    b\n"),
            (s("a\n\n"), "k: |+\n    a\n\n"),
            (s("  x\ny"), "k: |4-\n      x\n    y\n"),
            (s("emoji 😀"), "k: \"emoji \\U0001F600\"\n"),
            (Scalar::Float(1e20), "k: 1e+20\n"),
            (Scalar::Float(1.5e-7), "k: 1.5e-07\n"),
            (Scalar::Float(2.0), "k: 2\n"),
            (Scalar::Float(123456.0), "k: 123456\n"),
            (Scalar::Float(1234567.0), "k: 1.234567e+06\n"),
            (Scalar::Float(0.0001), "k: 0.0001\n"),
            (Scalar::Float(f64::NEG_INFINITY), "k: -.inf\n"),
            (Scalar::Int(-5), "k: -5\n"),
            (Scalar::Null, "k: null\n"),
            (
                Scalar::Bytes(Blob::new(vec![0xff, 0x00])),
                "k: !!binary /wA=\n",
            ),
        ];
        for (v, want) in cases {
            assert_eq!(emit(&[m(v)], 4), want);
        }
        let list = Node::Map(vec![MapItem::Entry(
            "l".into(),
            Node::List(vec![
                Node::Comment(Text::from(" c")),
                Node::str("x"),
                Node::List(vec![]),
            ]),
        )]);
        assert_eq!(emit(&[list], 2), "l:\n  # c\n  - x\n  - []\n");
    }

    #[test]
    fn timestamps_resolve_like_go() {
        let t = |s: &str| parse_timestamp(s);
        assert_eq!(t("2024-01-15").as_deref(), Some("2024-01-15T00:00:00Z"));
        assert_eq!(
            t("2024-1-5 1:2:3.5").as_deref(),
            Some("2024-01-05T01:02:03.5Z")
        );
        assert_eq!(
            t("2024-01-15T10:30:00-00:00").as_deref(),
            Some("2024-01-15T10:30:00Z")
        );
        assert_eq!(
            t("2024-01-15T10:30:00.120+05:30").as_deref(),
            Some("2024-01-15T10:30:00.12+05:30")
        );
        assert_eq!(t("2024-02-30"), None);
        assert_eq!(t("2024-01-15T10:30:00"), None);
        assert_eq!(t("2024-01-15T24:00:00Z"), None);
    }

    #[test]
    fn lone_cr_is_a_line_break() {
        // Found by fuzz/yaml_store (input `#\rc:`): a lone CR ends a line in YAML, so
        // `c:` is a key, not part of the comment, and no comment text holds a CR.
        let docs = parse("#\rc: 1").unwrap();
        assert_eq!(docs, parse("#\nc: 1").unwrap());
        assert_eq!(docs[0].get("c"), Some(&Node::Scalar(Scalar::Int(1))));
        assert_eq!(parse(&emit(&docs, 4)).unwrap(), docs);
        // Comments keep their places when every break is a CR, and a CRLF is one break.
        let lf = "a:\n  # head\n  - x # eol\n  # foot\nb: 1\n# last\nn:\n- t:\n #\n";
        assert_eq!(parse(&lf.replace('\n', "\r")).unwrap(), parse(lf).unwrap());
        assert_eq!(
            parse(&lf.replace('\n', "\r\n")).unwrap(),
            parse(lf).unwrap()
        );
    }
}
