//! The YAML store: parse arbitrary text; whatever parses must survive emit + parse
//! unchanged (documents, key order, values with their types, comments).
//!
//! Equality is `Node`'s, except that floats compare by bits with all NaNs equal
//! (`.nan` must come back as NaN; `PartialEq` would call NaN != NaN a difference,
//! and `0.0 == -0.0` would hide a lost sign). On a difference the panic names the
//! first differing path, with the texts unredacted (fuzz inputs are not secrets).
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
        (Scalar::Float(x), Scalar::Float(y)) => x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()),
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

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(docs) = yaml::parse(text) else {
        return;
    };
    let out = yaml::emit(&docs, 4);
    let again = match yaml::parse(&out) {
        Ok(d) => d,
        Err(e) => panic!("emitted YAML does not parse: {e}\n--- input\n{text:?}\n--- emitted\n{out}"),
    };
    let mut problem = (docs.len() != again.len())
        .then(|| format!("{} documents vs {}", docs.len(), again.len()));
    for (i, (a, b)) in docs.iter().zip(&again).enumerate() {
        if problem.is_some() {
            break;
        }
        problem = diff(&format!("doc{i}"), a, b);
    }
    if let Some(p) = problem {
        panic!("round trip changed the documents: {p}\n--- input\n{text:?}\n--- emitted\n{out}");
    }
});
