//! The YAML store: parse arbitrary text; whatever parses must survive emit + parse
//! unchanged (documents, key order, values with their types, comments), and must parse
//! the same with its line breaks written as CR.
//!
//! Equality is `Node`'s, except that floats compare by bits with all NaNs equal
//! (`.nan` must come back as NaN; `PartialEq` would call NaN != NaN a difference,
//! and `0.0 == -0.0` would hide a lost sign), and a whole-number float may come back
//! as the same number typed int (yaml.v3's float style, see `same_scalar`). On a
//! difference the panic names the first differing path, with the texts unredacted
//! (fuzz inputs are not secrets).
#![no_main]

use libfuzzer_sys::fuzz_target;
use lockstep::sops::stores::yaml;
use lockstep::sops::tree::{MapItem, Node, Scalar};

fn scalar_text(s: &Scalar) -> String {
    match s {
        Scalar::Null => "null".into(),
        Scalar::Bool(b) => format!("bool {b}"),
        Scalar::Int(i) => format!("int {i}"),
        Scalar::Float(f) => format!("float {f:?} (bits {:#x})", f.to_bits()),
        Scalar::Str(t) => format!("str {:?}", t.as_str()),
        Scalar::Time(t) => format!("time {:?}", t.as_str()),
        Scalar::Bytes(b) => format!("bytes {:?}", b.as_bytes()),
    }
}

fn same_scalar(a: &Scalar, b: &Scalar) -> bool {
    match (a, b) {
        (Scalar::Float(x), Scalar::Float(y)) => {
            x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan())
        }
        // Known and intended (sops does the same): yaml.v3 writes floats in Go's `%g`
        // style, so a whole-number float (`08`, `1.`, `1e3`, `-0.0`) is written `8`, `1`,
        // `1000`, `-0` and reads back as that int. The number must still be the same.
        (Scalar::Float(x), Scalar::Int(i)) => x.fract() == 0.0 && *i as f64 == *x,
        _ => a == b,
    }
}

fn node_text(n: &Node) -> String {
    match n {
        Node::Map(items) => format!("map of {} items", items.len()),
        Node::List(items) => format!("list of {} items", items.len()),
        Node::Scalar(s) => scalar_text(s),
        Node::Comment(t) => format!("comment {:?}", t.as_str()),
    }
}

/// The first difference between two nodes, as `path: first vs second`.
fn diff(path: &str, a: &Node, b: &Node) -> Option<String> {
    let here = || Some(format!("{path}: {} vs {}", node_text(a), node_text(b)));
    match (a, b) {
        (Node::Map(x), Node::Map(y)) => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                match (p, q) {
                    (MapItem::Entry(k1, v1), MapItem::Entry(k2, v2)) => {
                        if k1 != k2 {
                            return Some(format!("{path}[{i}]: key {k1:?} vs {k2:?}"));
                        }
                        if let Some(d) = diff(&format!("{path}.{k1:?}"), v1, v2) {
                            return Some(d);
                        }
                    }
                    (MapItem::Comment(c1), MapItem::Comment(c2)) => {
                        if c1 != c2 {
                            return Some(format!("{path}[{i}]: comment {:?} vs {:?}", c1.as_str(), c2.as_str()));
                        }
                    }
                    (MapItem::Entry(k, _), MapItem::Comment(c)) => {
                        return Some(format!("{path}[{i}]: entry {k:?} vs comment {:?}", c.as_str()));
                    }
                    (MapItem::Comment(c), MapItem::Entry(k, _)) => {
                        return Some(format!("{path}[{i}]: comment {:?} vs entry {k:?}", c.as_str()));
                    }
                }
            }
            (x.len() != y.len()).then(|| format!("{path}: {} items vs {}", x.len(), y.len()))
        }
        (Node::List(x), Node::List(y)) => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                if let Some(d) = diff(&format!("{path}[{i}]"), p, q) {
                    return Some(d);
                }
            }
            (x.len() != y.len()).then(|| format!("{path}: {} items vs {}", x.len(), y.len()))
        }
        (Node::Scalar(x), Node::Scalar(y)) => if same_scalar(x, y) { None } else { here() },
        (Node::Comment(x), Node::Comment(y)) => if x == y { None } else { here() },
        _ => here(),
    }
}

/// Moves the comments that open a map which is a list item out to the list, before the
/// item. Known and intended (sops 3.11 does the same): such a comment (`- a: # c` puts
/// one there) is written as the item's head comment (`# c` above `- a:`), which reads
/// back as a comment of the list. The emitted text is sops' own; only the tree level of
/// the comment moves, so both parses are compared after this.
fn hoist_item_comments(node: &Node) -> Node {
    match node {
        Node::Map(items) => Node::Map(
            items
                .iter()
                .map(|i| match i {
                    MapItem::Entry(k, v) => MapItem::Entry(k.clone(), hoist_item_comments(v)),
                    c => c.clone(),
                })
                .collect(),
        ),
        Node::List(items) => {
            let mut out = Vec::new();
            for item in items {
                match hoist_item_comments(item) {
                    Node::Map(mut entries) => {
                        let n = entries.iter().take_while(|e| matches!(e, MapItem::Comment(_))).count();
                        for e in entries.drain(..n) {
                            if let MapItem::Comment(t) = e {
                                out.push(Node::Comment(t));
                            }
                        }
                        out.push(Node::Map(entries));
                    }
                    other => out.push(other),
                }
            }
            Node::List(out)
        }
        other => other.clone(),
    }
}

/// The first difference between two parses, if any.
fn first_difference(docs: &[Node], again: &[Node]) -> Option<String> {
    if docs.len() != again.len() {
        return Some(format!("{} documents vs {}", docs.len(), again.len()));
    }
    docs.iter()
        .zip(again)
        .enumerate()
        .find_map(|(i, (a, b))| diff(&format!("doc{i}"), a, b))
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(docs) = yaml::parse(text) else {
        return;
    };

    // 1. emit + parse gives the same documents.
    let out = yaml::emit(&docs, 4);
    let again = match yaml::parse(&out) {
        Ok(d) => d,
        Err(e) => panic!("emitted YAML does not parse: {e}\n--- input\n{text:?}\n--- emitted\n{out}"),
    };
    let hoisted = |d: &[Node]| d.iter().map(hoist_item_comments).collect::<Vec<_>>();
    if let Some(p) = first_difference(&hoisted(&docs), &hoisted(&again)) {
        panic!("round trip changed the documents: {p}\n--- input\n{text:?}\n--- emitted\n{out}");
    }

    // 2. Line breaks: YAML reads a lone CR as LF (and CRLF as one break), so the same text
    //    with every LF turned into CR must parse to the same documents.
    if !text.contains('\r') && text.contains('\n') {
        let cr = text.replace('\n', "\r");
        match yaml::parse(&cr) {
            Ok(cr_docs) => {
                if let Some(p) = first_difference(&docs, &cr_docs) {
                    panic!("LF -> CR changed the documents: {p}\n--- input\n{text:?}");
                }
            }
            Err(e) => panic!("LF -> CR makes the input fail: {e}\n--- input\n{text:?}"),
        }
    }
});
