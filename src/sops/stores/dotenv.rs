//! The dotenv store, byte-compatible with sops 3.11 (`stores/dotenv/store.go`,
//! `stores/flatten.go`).
//!
//! Reading: the input is split on `\n` and empty lines are dropped. A line starting with `#`
//! is a comment (the text after `#`). Any other line is `KEY=VALUE` split at the first `=`;
//! key and value are kept verbatim (no quote handling, `export ` stays in the key, a CR from
//! CRLF stays in the value), except that the two characters `\n` in a value become a newline.
//! sops keeps non-UTF-8 bytes as they are; the document model holds text, so such input is
//! rejected here with [`DotenvError::InvalidUtf8`] rather than altered.
//!
//! Metadata: an encrypted file carries the `sops` block as `sops_<flat key>=<value>` lines,
//! flattened with `__map_<key>` / `__list_<index>` and sorted by flat key. [`split_metadata`]
//! and [`emit`] convert between those lines and a nested metadata map.

use std::collections::BTreeMap;

use crate::sops::tree::{MapItem, Node, Scalar, Text};

/// Prefix of the flattened metadata keys (`stores.SopsMetadataKey + "_"`).
const SOPS_PREFIX: &str = "sops_";
const MAP_SEP: &str = "__map_";
const LIST_SEP: &str = "__list_";
/// Largest `__list_` index accepted when unflattening, and the most list slots (missing
/// indices become nulls) that one document may make. sops allocates whatever the file
/// says; the bounds keep a hostile file from exhausting memory.
const MAX_LIST_INDEX: usize = 65_535;
const MAX_LIST_SLOTS: usize = 1 << 20;

/// A dotenv read or write error. Messages are sops' where sops has one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DotenvError {
    /// A non-comment line without `=`. `line` is the 1-based line number. sops prints the line
    /// itself; lockstep does not, because in a plaintext file that line may be a secret.
    #[error("invalid dotenv input at line {line}: expected KEY=VALUE")]
    InvalidLine { line: usize },
    #[error("invalid UTF-8 in dotenv input at line {line}")]
    InvalidUtf8 { line: usize },
    #[error("cannot use complex value in dotenv file; offending key {key}")]
    ComplexValue { key: String },
    #[error("a dotenv document must be a mapping")]
    NotAMap,
}

/// Parses dotenv text into a `Node::Map` of string entries and comments.
pub fn parse(input: &[u8]) -> Result<Node, DotenvError> {
    let mut items = Vec::new();
    for (idx, line) in input.split(|&b| b == b'\n').enumerate() {
        let lineno = idx + 1;
        if line.is_empty() {
            continue;
        }
        let text = |bytes: &[u8]| -> Result<String, DotenvError> {
            String::from_utf8(bytes.to_vec()).map_err(|_| DotenvError::InvalidUtf8 { line: lineno })
        };
        if line[0] == b'#' {
            items.push(MapItem::Comment(Text::new(text(&line[1..])?)));
            continue;
        }
        let Some(eq) = line.iter().position(|&b| b == b'=') else {
            return Err(DotenvError::InvalidLine { line: lineno });
        };
        let key = text(&line[..eq])?;
        let value = text(&line[eq + 1..])?;
        let value = decode_newlines(value);
        items.push(MapItem::Entry(
            key,
            Node::Scalar(Scalar::Str(Text::new(value))),
        ));
    }
    Ok(Node::Map(items))
}

/// The two characters `\n` become a newline (sops `strings.Replace(v, "\\n", "\n", -1)`).
fn decode_newlines(value: String) -> String {
    if value.contains("\\n") {
        let mut v = value;
        let out = v.replace("\\n", "\n");
        // The original may hold a secret; wipe it before it is dropped.
        zeroize::Zeroize::zeroize(&mut v);
        out
    } else {
        value
    }
}

/// Moves the `sops_*` entries out of a parsed document and unflattens them into the
/// metadata map, shaped like the YAML/JSON `sops` block: maps are sorted by key (sops goes
/// through a Go map and `json.Marshal`), lists are in index order with missing indices as
/// null, `shamir_threshold` becomes `Int` and `mac_only_encrypted` becomes `Bool` (true only
/// for the text `true`). Returns `None` when there are no `sops_*` entries.
///
/// Where sops would fail or panic, this stays total and leaves the decision to the metadata
/// reader: a `shamir_threshold` that is not an integer stays a string; of two flat keys
/// that clash (one is a value, the other a container below it) the later one in sorted
/// order wins; a `__list_` index that is negative, not a number or above 65535 drops that
/// line, as does a line past a total of 2^20 list slots. A repeated flat key keeps its
/// last value, as sops' map does.
pub fn split_metadata(doc: Node) -> (Node, Option<Node>) {
    let Node::Map(items) = doc else {
        return (doc, None);
    };
    let mut data = Vec::with_capacity(items.len());
    // A map keyed by flat key: sorted, and a repeated key keeps its last value.
    let mut flat: BTreeMap<String, Node> = BTreeMap::new();
    for item in items {
        match item {
            MapItem::Entry(key, value) if key.starts_with(SOPS_PREFIX) => {
                flat.insert(key[SOPS_PREFIX.len()..].to_owned(), value);
            }
            other => data.push(other),
        }
    }
    if flat.is_empty() {
        return (Node::Map(data), None);
    }

    let mut root = Builder::Map(BTreeMap::new());
    let mut slot_budget = MAX_LIST_SLOTS;
    for (key, value) in flat {
        let value = decode_metadata_value(&key, value);
        if let Some(path) = tokenize(&key) {
            root.place(&path, value, &mut slot_budget);
        }
    }
    (Node::Map(data), Some(root.into_node()))
}

/// sops `DecodeNewLines` (a second pass over metadata values) and `DecodeNonStrings`.
fn decode_metadata_value(key: &str, value: Node) -> Node {
    let mut value = value;
    let Node::Scalar(Scalar::Str(text)) = &mut value else {
        return value;
    };
    let s = decode_newlines(text.take());
    match key {
        "mac_only_encrypted" => Node::Scalar(Scalar::Bool(s == "true")),
        "shamir_threshold" => match parse_go_int(&s) {
            Some(n) => Node::Scalar(Scalar::Int(n)),
            None => Node::Scalar(Scalar::Str(Text::new(s))),
        },
        _ => Node::Scalar(Scalar::Str(Text::new(s))),
    }
}

/// `strconv.Atoi`, falling back to a float that is an exact integer (older sops wrote
/// `shamir_threshold` as a float).
fn parse_go_int(s: &str) -> Option<i64> {
    if let Ok(n) = s.parse::<i64>() {
        return Some(n);
    }
    let f = s.parse::<f64>().ok()?;
    let in_range = f.is_finite() && f.fract() == 0.0 && f.abs() < 9.2e18;
    #[allow(clippy::cast_possible_truncation)]
    in_range.then_some(f as i64)
}

enum Token {
    Key(String),
    Index(usize),
}

/// sops `tokenize`: the text before the first separator is a key, then each `__map_<key>`
/// or `__list_<n>`. Returns `None` for an unusable list index.
fn tokenize(path: &str) -> Option<Vec<Token>> {
    #[derive(Clone, Copy)]
    enum Kind {
        Key,
        Index,
    }
    let mut tokens = Vec::new();
    let mut kind = Kind::Key;
    let mut start = 0;
    let mut i = 0;
    let finish = |kind: Kind, text: &str, tokens: &mut Vec<Token>| -> Option<()> {
        match kind {
            Kind::Key => tokens.push(Token::Key(text.to_owned())),
            Kind::Index => {
                let n: usize = text.parse().ok()?;
                if n > MAX_LIST_INDEX {
                    return None;
                }
                tokens.push(Token::Index(n));
            }
        }
        Some(())
    };
    while i < path.len() {
        let rest = &path[i..];
        let (sep_kind, sep_len) = if rest.starts_with(MAP_SEP) {
            (Kind::Key, MAP_SEP.len())
        } else if rest.starts_with(LIST_SEP) {
            (Kind::Index, LIST_SEP.len())
        } else {
            // Separators are ASCII, so stepping by bytes stays on char boundaries there.
            i += rest.chars().next().map_or(1, char::len_utf8);
            continue;
        };
        finish(kind, &path[start..i], &mut tokens)?;
        kind = sep_kind;
        i += sep_len;
        start = i;
    }
    finish(kind, &path[start..], &mut tokens)?;
    Some(tokens)
}

/// Metadata being rebuilt from flat keys.
enum Builder {
    Leaf(Node),
    Map(BTreeMap<String, Builder>),
    List(Vec<Option<Builder>>),
}

impl Builder {
    /// Puts `value` at `path`. Drops it if the list slots it needs exceed `budget`.
    fn place(&mut self, path: &[Token], value: Node, budget: &mut usize) {
        let Some((first, rest)) = path.split_first() else {
            *self = Builder::Leaf(value);
            return;
        };
        // The next token decides what container this level must be.
        let child = match first {
            Token::Key(k) => {
                if !matches!(self, Builder::Map(_)) {
                    *self = Builder::Map(BTreeMap::new());
                }
                let Builder::Map(entries) = self else { return };
                entries
                    .entry(k.clone())
                    .or_insert(Builder::Leaf(Node::Scalar(Scalar::Null)))
            }
            Token::Index(n) => {
                if !matches!(self, Builder::List(_)) {
                    *self = Builder::List(Vec::new());
                }
                let Builder::List(slots) = self else { return };
                if slots.len() <= *n {
                    let needed = n + 1 - slots.len();
                    if needed > *budget {
                        return;
                    }
                    *budget -= needed;
                    slots.resize_with(n + 1, || None);
                }
                slots[*n].get_or_insert(Builder::Leaf(Node::Scalar(Scalar::Null)))
            }
        };
        child.place(rest, value, budget);
    }

    fn into_node(self) -> Node {
        match self {
            Builder::Leaf(n) => n,
            Builder::Map(entries) => Node::Map(
                entries
                    .into_iter()
                    .map(|(k, b)| MapItem::Entry(k, b.into_node()))
                    .collect(),
            ),
            Builder::List(slots) => Node::List(
                slots
                    .into_iter()
                    .map(|s| s.map_or(Node::Scalar(Scalar::Null), Builder::into_node))
                    .collect(),
            ),
        }
    }
}

/// Writes a document as sops does. A top-level `sops` entry holding a map is the metadata:
/// it is flattened into `sops_…` lines, sorted by flat key and written after the data.
/// Other values must be scalars; they are written as sops' `ValToString` does (ints in
/// decimal, bools as `true`/`false`, floats with Go `%G` and a `.0` added to integral
/// values, times in RFC 3339 without fractional seconds, null as `<nil>`).
pub fn emit(doc: &Node) -> Result<String, DotenvError> {
    let Node::Map(items) = doc else {
        return Err(DotenvError::NotAMap);
    };
    let mut out = String::new();
    let mut metadata = None;
    for item in items {
        match item {
            MapItem::Comment(c) => {
                out.push('#');
                out.push_str(c.as_str());
                out.push('\n');
            }
            MapItem::Entry(key, value) => {
                if key == "sops" && metadata.is_none() && matches!(value, Node::Map(_)) {
                    metadata = Some(value);
                    continue;
                }
                let text = match value {
                    Node::Map(_) | Node::List(_) => {
                        return Err(DotenvError::ComplexValue { key: key.clone() });
                    }
                    Node::Comment(c) => c.as_str().to_owned(),
                    Node::Scalar(s) => val_to_string(s),
                };
                out.push_str(key);
                out.push('=');
                out.push_str(&text.replace('\n', "\\n"));
                out.push('\n');
            }
        }
    }
    if let Some(md) = metadata {
        let mut flat = Vec::new();
        flatten(md, String::new(), &mut flat);
        // Stable sort, then keep the last of equal keys (sops builds a Go map).
        flat.sort_by(|a, b| a.0.cmp(&b.0));
        let mut lines: Vec<(String, String)> = Vec::with_capacity(flat.len());
        for (k, v) in flat {
            match lines.last_mut() {
                Some(last) if last.0 == k => last.1 = v,
                _ => lines.push((k, v)),
            }
        }
        for (k, v) in lines {
            out.push_str(SOPS_PREFIX);
            out.push_str(&k);
            out.push('=');
            out.push_str(&v.replace('\n', "\\n"));
            out.push('\n');
        }
    }
    Ok(out)
}

/// sops `Flatten` of the metadata after its JSON round trip: nulls and empty containers
/// produce no line, comments are skipped, list indices count non-comment items.
fn flatten(node: &Node, prefix: String, out: &mut Vec<(String, String)>) {
    match node {
        Node::Map(items) => {
            for item in items {
                if let MapItem::Entry(k, v) = item {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}{MAP_SEP}{k}")
                    };
                    flatten(v, key, out);
                }
            }
        }
        Node::List(items) => {
            let values = items.iter().filter(|n| !matches!(n, Node::Comment(_)));
            for (i, v) in values.enumerate() {
                flatten(v, format!("{prefix}{LIST_SEP}{i}"), out);
            }
        }
        Node::Comment(_) | Node::Scalar(Scalar::Null) => {}
        Node::Scalar(s) => {
            let text = match s {
                // Every JSON number is a float64 in sops and `EncodeNonStrings` writes
                // shamir_threshold with `%.0f`.
                Scalar::Int(n) => n.to_string(),
                Scalar::Float(f) if prefix == "shamir_threshold" && f.is_finite() => {
                    format!("{f:.0}")
                }
                Scalar::Time(t) => t.as_str().to_owned(),
                other => val_to_string(other),
            };
            out.push((prefix, text));
        }
    }
}

/// sops `stores.ValToString` for a scalar.
fn val_to_string(s: &Scalar) -> String {
    match s {
        Scalar::Null => "<nil>".to_owned(),
        Scalar::Bool(b) => b.to_string(),
        Scalar::Int(n) => n.to_string(),
        Scalar::Float(f) => go_float_g_with_point(*f),
        Scalar::Str(t) => t.as_str().to_owned(),
        Scalar::Time(t) => rfc3339_seconds(t.as_str()),
        // The model's bytes; sops would hold them in a Go string. Lossy for invalid UTF-8.
        Scalar::Bytes(b) => String::from_utf8_lossy(b.as_bytes()).into_owned(),
    }
}

/// Go `FormatFloat(f, 'G', -1, 64)`, then `FormatFloat(f, 'f', 1, 64)` if the result has
/// neither `.` nor `E` (so `5` is written `5.0`).
fn go_float_g_with_point(f: f64) -> String {
    if f.is_nan() {
        return "NaN".to_owned();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf" } else { "-Inf" }.to_owned();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0.0" } else { "0.0" }.to_owned();
    }
    // Shortest digits and decimal exponent from Rust's `{:e}` (same digits as Go's).
    let e = format!("{f:e}");
    let (mantissa, exp) = e.split_once('e').unwrap_or((e.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    // Go's %G with shortest precision uses the exponent form when exp < -4 || exp >= 6
    // (strconv `formatDigits`: "use precision 6 for this decision").
    if !(-4..6).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{mantissa}E{sign}{:02}", exp.unsigned_abs());
    }
    let plain = format!("{f}");
    if plain.contains('.') {
        plain
    } else {
        format!("{f:.1}")
    }
}

/// Go `time.RFC3339` drops fractional seconds; the model keeps RFC 3339 with nanoseconds.
fn rfc3339_seconds(t: &str) -> String {
    // `YYYY-MM-DDTHH:MM:SS` is 19 bytes; fractional seconds follow as `.ddd`.
    match t.get(19..20) {
        Some(".") => {
            let frac_end = t[20..]
                .find(|c: char| !c.is_ascii_digit())
                .map_or(t.len(), |i| 20 + i);
            format!("{}{}", &t[..19], &t[frac_end..])
        }
        _ => t.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn read(rel: &str) -> Vec<u8> {
        let p = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/sops"));
        let p = p.join(rel);
        std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    fn read_str(rel: &str) -> String {
        String::from_utf8(read(rel)).unwrap()
    }

    /// parse → split_metadata → put the metadata back as `sops` → emit.
    fn enc_roundtrip(rel: &str) -> (String, Node) {
        let (mut data, md) = split_metadata(parse(&read(rel)).unwrap());
        let md = md.expect("metadata");
        data.as_map_mut()
            .unwrap()
            .push(MapItem::Entry("sops".into(), md.clone()));
        (emit(&data).unwrap(), md)
    }

    #[test]
    fn vector_04_plain_to_decrypted() {
        let doc = parse(&read("04-dotenv/app.plain.env")).unwrap();
        let items = doc.as_map().unwrap();
        assert!(matches!(&items[0], MapItem::Comment(c) if c.as_str() == " dotenv comment"));
        assert_eq!(
            doc.get("DB_PASSWORD").and_then(Node::as_str),
            Some("s3cr3t=with=equals")
        );
        assert_eq!(
            doc.get("QUOTED").and_then(Node::as_str),
            Some("\"double quoted\"")
        );
        assert_eq!(
            doc.get("MULTI").and_then(Node::as_str),
            Some("line1\nline2")
        );
        assert_eq!(doc.get("EMPTY").and_then(Node::as_str), Some(""));
        assert_eq!(
            doc.get("export EXPORTED").and_then(Node::as_str),
            Some("val")
        );
        assert_eq!(emit(&doc).unwrap(), read_str("04-dotenv/app.decrypted.env"));
        let (data, md) = split_metadata(doc);
        assert!(md.is_none());
        assert_eq!(data.as_map().unwrap().len(), 8);
    }

    #[test]
    fn vector_04_enc_roundtrip() {
        let (out, md) = enc_roundtrip("04-dotenv/app.enc.env");
        assert_eq!(out, read_str("04-dotenv/app.enc.env"));
        let Some(Node::List(age)) = md.get("age") else {
            panic!("age")
        };
        assert_eq!(age.len(), 1);
        let enc = age[0].get("enc").and_then(Node::as_str).unwrap();
        assert!(enc.starts_with("-----BEGIN AGE ENCRYPTED FILE-----\n"));
        assert!(enc.ends_with("\n-----END AGE ENCRYPTED FILE-----\n"));
        assert_eq!(
            age[0].get("recipient").and_then(Node::as_str),
            Some("age13737pkd5rxzmujsrm4nkmhqdya0tkvhwly424fwgzpqnswwcka3qstlkg8")
        );
        assert_eq!(
            md.get("lastmodified").and_then(Node::as_str),
            Some("2026-11-26T06:32:58Z")
        );
        assert_eq!(
            md.get("unencrypted_suffix").and_then(Node::as_str),
            Some("_unencrypted")
        );
        assert_eq!(md.get("version").and_then(Node::as_str), Some("3.11.0"));
        assert!(
            md.get("mac")
                .and_then(Node::as_str)
                .unwrap()
                .starts_with("ENC[")
        );
        let keys: Vec<&str> = md
            .as_map()
            .unwrap()
            .iter()
            .filter_map(|i| match i {
                MapItem::Entry(k, _) => Some(k.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(
            keys,
            [
                "age",
                "lastmodified",
                "mac",
                "unencrypted_suffix",
                "version"
            ]
        );
    }

    #[test]
    fn vector_11_key_groups() {
        assert_eq!(
            emit(&parse(&read("11-key-groups-shamir/kg.plain.env")).unwrap()).unwrap(),
            read_str("11-key-groups-shamir/kg-threshold2.decrypted.env")
        );
        let (out, md) = enc_roundtrip("11-key-groups-shamir/kg-threshold2.enc.env");
        assert_eq!(out, read_str("11-key-groups-shamir/kg-threshold2.enc.env"));
        assert_eq!(
            md.get("shamir_threshold"),
            Some(&Node::Scalar(Scalar::Int(2)))
        );
        let Some(Node::List(groups)) = md.get("key_groups") else {
            panic!()
        };
        assert_eq!(groups.len(), 2);
        let Some(Node::List(age)) = groups[1].get("age") else {
            panic!()
        };
        assert_eq!(
            age[0].get("recipient").and_then(Node::as_str),
            Some("age1tm3yt545vx5jsvk8xvpz9dfcwnhfwvgrllh3gl42uvqyqkrs7eas34t2hh")
        );
    }

    #[test]
    fn key_groups_as_json_store_builds_them_flatten_like_sops() {
        // What the JSON/YAML reader produces (hc_vault null, float threshold) must flatten
        // to the same lines sops wrote for the dotenv file.
        let md_doc =
            crate::sops::stores::json::parse(&read("11-key-groups-shamir/kg-threshold2.enc.json"))
                .unwrap();
        let md = md_doc.get("sops").unwrap().clone();
        let doc = Node::Map(vec![
            MapItem::Entry("A".into(), Node::str("x")),
            MapItem::Entry("sops".into(), md),
        ]);
        let out = emit(&doc).unwrap();
        let lines: Vec<&str> = out.lines().map(|l| l.split('=').next().unwrap()).collect();
        assert_eq!(
            lines,
            [
                "A",
                "sops_key_groups__list_0__map_age__list_0__map_enc",
                "sops_key_groups__list_0__map_age__list_0__map_recipient",
                "sops_key_groups__list_1__map_age__list_0__map_enc",
                "sops_key_groups__list_1__map_age__list_0__map_recipient",
                "sops_lastmodified",
                "sops_mac",
                "sops_shamir_threshold",
                "sops_unencrypted_suffix",
                "sops_version",
            ]
        );
        assert!(out.contains("\nsops_shamir_threshold=2\n"));
    }

    #[test]
    fn vector_15_written_by_spec() {
        assert_eq!(
            emit(&parse(&read("15-written-by-spec/spec.plain.env")).unwrap()).unwrap(),
            read_str("15-written-by-spec/spec.decrypted.env")
        );
        let (out, _) = enc_roundtrip("15-written-by-spec/spec.enc.env");
        assert_eq!(out, read_str("15-written-by-spec/spec.enc.env"));
    }

    #[test]
    fn vector_12_no_equals() {
        // sops echoes the offending line; lockstep names its number and never its text.
        let sops = read_str("12-edge-cases/err-dotenv-no-equals.stderr.txt");
        assert!(sops.contains("NOEQUALS"));
        let err = parse(&read("12-edge-cases/err-dotenv-no-equals.plain.env")).unwrap_err();
        let msg = err.to_string();
        assert!(!msg.contains("NOEQUALS"), "{msg}");
        assert!(msg.starts_with("invalid dotenv input at line "), "{msg}");
        assert_eq!(
            parse(b"A=1\n\n#c\nBAD\n"),
            Err(DotenvError::InvalidLine { line: 4 })
        );
    }

    #[test]
    fn parsing_rules() {
        let doc = parse(b"\n\nK=v\r\n k = a\\nb\\\\n \n#\n#x=y\n=v\nX=\\n\nutf=\xc3\xa9").unwrap();
        let items = doc.as_map().unwrap();
        assert_eq!(items.len(), 7);
        assert_eq!(doc.get("K").and_then(Node::as_str), Some("v\r"));
        assert_eq!(doc.get(" k ").and_then(Node::as_str), Some(" a\nb\\\n "));
        assert!(matches!(&items[2], MapItem::Comment(c) if c.as_str().is_empty()));
        assert!(matches!(&items[3], MapItem::Comment(c) if c.as_str() == "x=y"));
        assert_eq!(doc.get("").and_then(Node::as_str), Some("v"));
        assert_eq!(doc.get("X").and_then(Node::as_str), Some("\n"));
        assert_eq!(doc.get("utf").and_then(Node::as_str), Some("\u{e9}"));
        assert_eq!(
            emit(&doc).unwrap(),
            "K=v\r\n k = a\\nb\\\\n \n#\n#x=y\n=v\nX=\\n\nutf=\u{e9}\n"
        );
        assert_eq!(parse(b"A=\xff"), Err(DotenvError::InvalidUtf8 { line: 1 }));
        assert_eq!(parse(b"").unwrap(), Node::map());
    }

    #[test]
    fn emit_non_strings_and_errors() {
        let doc = Node::Map(vec![
            MapItem::Entry("i".into(), Node::Scalar(Scalar::Int(-7))),
            MapItem::Entry("t".into(), Node::Scalar(Scalar::Bool(true))),
            MapItem::Entry("f".into(), Node::Scalar(Scalar::Bool(false))),
            MapItem::Entry("fl".into(), Node::Scalar(Scalar::Float(5.0))),
            MapItem::Entry("fl2".into(), Node::Scalar(Scalar::Float(2.5))),
            MapItem::Entry("fl3".into(), Node::Scalar(Scalar::Float(1e21))),
            MapItem::Entry("fl4".into(), Node::Scalar(Scalar::Float(1.5e-7))),
            MapItem::Entry("fl5".into(), Node::Scalar(Scalar::Float(1e20))),
            MapItem::Entry("n".into(), Node::Scalar(Scalar::Null)),
            MapItem::Entry(
                "tm".into(),
                Node::Scalar(Scalar::Time(Text::from("2024-01-15T10:00:00.5+02:00"))),
            ),
        ]);
        assert_eq!(
            emit(&doc).unwrap(),
            "i=-7\nt=true\nf=false\nfl=5.0\nfl2=2.5\nfl3=1E+21\nfl4=1.5E-07\nfl5=1E+20\nn=<nil>\ntm=2024-01-15T10:00:00+02:00\n"
        );
        let doc = Node::Map(vec![MapItem::Entry("m".into(), Node::map())]);
        assert_eq!(
            emit(&doc),
            Err(DotenvError::ComplexValue { key: "m".into() })
        );
        assert_eq!(
            emit(&doc).unwrap_err().to_string(),
            "cannot use complex value in dotenv file; offending key m"
        );
        assert_eq!(emit(&Node::List(vec![])), Err(DotenvError::NotAMap));
    }

    #[test]
    fn flatten_metadata_details() {
        let md = Node::Map(vec![
            MapItem::Entry("version".into(), Node::str("3.11.0")),
            MapItem::Entry(
                "mac_only_encrypted".into(),
                Node::Scalar(Scalar::Bool(true)),
            ),
            MapItem::Entry("shamir_threshold".into(), Node::Scalar(Scalar::Float(3.0))),
            MapItem::Entry("kms".into(), Node::List(vec![])),
            MapItem::Entry("pgp".into(), Node::Scalar(Scalar::Null)),
            MapItem::Entry(
                "age".into(),
                Node::List(vec![Node::Map(vec![
                    MapItem::Entry("recipient".into(), Node::str("r")),
                    MapItem::Entry("enc".into(), Node::str("a\nb\n")),
                ])]),
            ),
        ]);
        let doc = Node::Map(vec![
            MapItem::Comment(Text::from(" top")),
            MapItem::Entry("sops".into(), md),
            MapItem::Entry("Z".into(), Node::str("z")),
        ]);
        let out = emit(&doc).unwrap();
        assert_eq!(
            out,
            "# top\nZ=z\nsops_age__list_0__map_enc=a\\nb\\n\nsops_age__list_0__map_recipient=r\nsops_mac_only_encrypted=true\nsops_shamir_threshold=3\nsops_version=3.11.0\n"
        );
        let (data, md) = split_metadata(parse(out.as_bytes()).unwrap());
        assert_eq!(data.as_map().unwrap().len(), 2);
        let md = md.unwrap();
        assert_eq!(
            md.get("mac_only_encrypted"),
            Some(&Node::Scalar(Scalar::Bool(true)))
        );
        assert_eq!(
            md.get("shamir_threshold"),
            Some(&Node::Scalar(Scalar::Int(3)))
        );
        let Some(Node::List(age)) = md.get("age") else {
            panic!()
        };
        assert_eq!(age[0].get("enc").and_then(Node::as_str), Some("a\nb\n"));
    }

    #[test]
    fn unflatten_edge_cases() {
        let input = b"sops_age__list_1__map_recipient=b\nsops_age__list_0__map_recipient=a\n\
sops_key_groups__list_10__map_x=ten\nsops_key_groups__list_2__map_x=two\n\
sops_mac_only_encrypted=yes\nsops_shamir_threshold=2.0\nsops_version=1\nsops_version=2\n\
sops_bad__list_x=1\nsops_neg__list_-1=1\nsops_big__list_99999999=1\nsops_=empty\n";
        let (_, md) = split_metadata(parse(input).unwrap());
        let md = md.unwrap();
        let Some(Node::List(age)) = md.get("age") else {
            panic!()
        };
        assert_eq!(age[0].get("recipient").and_then(Node::as_str), Some("a"));
        assert_eq!(age[1].get("recipient").and_then(Node::as_str), Some("b"));
        let Some(Node::List(kg)) = md.get("key_groups") else {
            panic!()
        };
        assert_eq!(kg.len(), 11);
        assert_eq!(kg[0], Node::Scalar(Scalar::Null));
        assert_eq!(kg[10].get("x").and_then(Node::as_str), Some("ten"));
        assert_eq!(
            md.get("mac_only_encrypted"),
            Some(&Node::Scalar(Scalar::Bool(false)))
        );
        assert_eq!(
            md.get("shamir_threshold"),
            Some(&Node::Scalar(Scalar::Int(2)))
        );
        assert_eq!(md.get("version").and_then(Node::as_str), Some("2"));
        assert!(md.get("bad").is_none() && md.get("neg").is_none() && md.get("big").is_none());
        assert_eq!(md.get("").and_then(Node::as_str), Some("empty"));

        let (_, md) = split_metadata(parse(b"sops_shamir_threshold=two\n").unwrap());
        assert_eq!(
            md.unwrap().get("shamir_threshold").and_then(Node::as_str),
            Some("two")
        );
        // Far-apart list indices cannot make the metadata huge.
        let hostile: String = (0..100)
            .map(|i| format!("sops_l{i}__list_65535=x\n"))
            .collect();
        let (_, md) = split_metadata(parse(hostile.as_bytes()).unwrap());
        let md = md.unwrap();
        let slots: usize = md
            .as_map()
            .unwrap()
            .iter()
            .map(|i| match i {
                MapItem::Entry(_, Node::List(l)) => l.len(),
                _ => 0,
            })
            .sum();
        assert!(slots <= MAX_LIST_SLOTS, "{slots}");
        // A clash between a value and a container below the same key does not panic.
        let (_, md) = split_metadata(parse(b"sops_age=x\nsops_age__list_0__map_enc=e\n").unwrap());
        assert!(matches!(md.unwrap().get("age"), Some(Node::List(_))));
    }

    #[test]
    fn helpers() {
        assert_eq!(go_float_g_with_point(0.0), "0.0");
        assert_eq!(go_float_g_with_point(-3.0), "-3.0");
        assert_eq!(go_float_g_with_point(0.0001), "0.0001");
        assert_eq!(go_float_g_with_point(0.00001), "1E-05");
        assert_eq!(go_float_g_with_point(123456789.0), "1.23456789E+08");
        assert_eq!(go_float_g_with_point(999999.0), "999999.0");
        assert_eq!(go_float_g_with_point(1e6), "1E+06");
        assert_eq!(go_float_g_with_point(f64::INFINITY), "+Inf");
        assert_eq!(
            rfc3339_seconds("2024-01-15T00:00:00Z"),
            "2024-01-15T00:00:00Z"
        );
        assert_eq!(
            rfc3339_seconds("2024-01-15T00:00:00.123456789Z"),
            "2024-01-15T00:00:00Z"
        );
    }
}
