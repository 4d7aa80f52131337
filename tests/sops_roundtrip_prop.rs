//! Random documents through both tools: written as YAML and as JSON by lockstep's own
//! emitters, then lockstep encrypt → real sops decrypt, and real sops encrypt → lockstep
//! decrypt, must give back the same values. Each case spawns several processes, so the
//! case count is small.

mod support;

use lockstep::sops::stores::{json, yaml};
use lockstep::sops::tree::{MapItem, Node, Scalar, Text};
use lockstep::sops::{Format, parse_plain};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use support::{Sandbox, docs_equal, recipient_of, render_docs, run, vector};

/// Strings chosen to trip up emitters and resolvers, mixed with random unicode text.
fn string() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "\\PC{0,16}",
        1 => prop::sample::select(vec![
            "", " ", "  padded  ", " leading", "trailing ", "123", "-17", "1.5", "1e3", "0x1F", "017", "08",
            "true", "False", "yes", "no", "on", "n", "y", "null", "~", "NULL", "2024-01-15",
            "2024-01-15T10:30:00Z", ".inf", ".nan", "#not a comment", "a # b", ": colon", "- dash",
            "'single'", "\"double\"", "[flow]", "{flow: map}", "*alias", "&anchor", "!tag", "%directive",
            "@at", "`tick`", "line one\nline two", "line one\nline two\n", "trailing newlines\n\n",
            "\nleading newline", "  indented\nfirst line", "spaces at end \nof a line", "tab\tinside",
            "unicode ✓ héllo 日本語", "emoji 🎉", "<>&", "back\\slash", "ENC[not really]",
        ])
        .prop_map(str::to_owned),
    ]
}

/// Map keys: unicode, non-empty, never starting with `sops`.
fn key() -> impl Strategy<Value = String> {
    "[a-zA-Zà-ÿ一-龥_][a-zA-Z0-9à-ÿ一-龥_ .-]{0,10}"
        .prop_filter("reserved prefix", |k| !k.starts_with("sops"))
}

/// Finite floats with a fractional part: sops writes YAML floats in Go's `%g` style, so a
/// whole-number float (`2.0`) legitimately comes back as the int `2`.
fn float() -> impl Strategy<Value = f64> {
    prop_oneof![
        (
            -1_000_000i64..1_000_000,
            prop::sample::select(vec![0.5, 0.25, 0.125, 0.75, 0.1, 0.3])
        )
            .prop_map(|(i, f)| i as f64 + if i < 0 { -f } else { f }),
        prop::sample::select(vec![1.5e-7, 0.000123, 1e20, -2.5e21, 2.718_5]),
    ]
}

fn leaf() -> impl Strategy<Value = Node> {
    prop_oneof![
        4 => string().prop_map(|s| Node::Scalar(Scalar::Str(Text::new(s)))),
        2 => (-(1i64 << 53)..(1i64 << 53)).prop_map(|i| Node::Scalar(Scalar::Int(i))),
        1 => float().prop_map(|f| Node::Scalar(Scalar::Float(f))),
        1 => any::<bool>().prop_map(|b| Node::Scalar(Scalar::Bool(b))),
        1 => Just(Node::Scalar(Scalar::Null)),
        1 => Just(Node::str("")),
    ]
}

fn dedup(entries: Vec<(String, Node)>) -> Vec<MapItem> {
    let mut seen = std::collections::HashSet::new();
    entries
        .into_iter()
        .filter(|(k, _)| seen.insert(k.clone()))
        .map(|(k, v)| MapItem::Entry(k, v))
        .collect()
}

/// A value of depth at most 4 (maps and lists nest below the document's top level).
fn value() -> impl Strategy<Value = Node> {
    leaf().prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Node::List),
            prop::collection::vec((key(), inner), 0..5).prop_map(|e| Node::Map(dedup(e))),
        ]
    })
}

/// A document: a non-empty top-level map.
fn document() -> impl Strategy<Value = Node> {
    prop::collection::vec((key(), value()), 1..6).prop_map(|e| Node::Map(dedup(e)))
}

fn parse(bytes: &[u8], format: Format, what: &str) -> Result<Vec<Node>, TestCaseError> {
    parse_plain(bytes, format).map_err(|e| {
        TestCaseError::fail(format!(
            "{what}: cannot parse as {format:?}: {e}\n{}",
            String::from_utf8_lossy(bytes)
        ))
    })
}

fn same(expected: &[Node], got: &[u8], format: Format, what: &str) -> Result<(), TestCaseError> {
    let got_docs = parse(got, format, what)?;
    if docs_equal(expected, &got_docs) {
        Ok(())
    } else {
        Err(TestCaseError::fail(format!(
            "{what}: values differ\n--- expected ---\n{}\n--- got ---\n{}\n--- got bytes ---\n{}",
            render_docs(expected),
            render_docs(&got_docs),
            String::from_utf8_lossy(got)
        )))
    }
}

/// One document through both directions in one format.
fn check(sb: &Sandbox, doc: &Node, format: Format) -> Result<(), TestCaseError> {
    let (name, text) = match format {
        Format::Yaml => ("doc.yaml", yaml::emit(std::slice::from_ref(doc), 4)),
        Format::Json => ("doc.json", json::emit(doc, None)),
        _ => unreachable!("only YAML and JSON are generated"),
    };
    let key = vector("key1.txt");
    let recipient = recipient_of(&key);
    // The reference is what the written text means to lockstep's own parser; that it
    // means the generated tree is the stores' unit tests' business, but check it too.
    let expected = parse(text.as_bytes(), format, "lockstep's own emitter output")?;
    if format == Format::Yaml && !docs_equal(&expected, std::slice::from_ref(doc)) {
        return Err(TestCaseError::fail(format!(
            "the YAML emitter and parser disagree\n--- generated ---\n{}\n--- re-parsed ---\n{}\n--- text ---\n{text}",
            render_docs(std::slice::from_ref(doc)),
            render_docs(&expected)
        )));
    }
    let src = sb.write(name, &text);
    let enc_name = format!(
        "doc.enc.{}",
        if format == Format::Yaml {
            "yaml"
        } else {
            "json"
        }
    );

    // lockstep encrypt → sops decrypt.
    let ours = run(&mut sb.lockstep([
        "encrypt".as_ref(),
        "--age".as_ref(),
        recipient.as_ref(),
        src.as_os_str(),
    ]));
    prop_assert_eq!(
        ours.code,
        0,
        "lockstep encrypt failed: {}\n{}",
        ours.stderr,
        text
    );
    let enc = sb.write(&enc_name, &ours.stdout);
    let mut c = sb.sops(["decrypt".as_ref(), enc.as_os_str()]);
    c.env("SOPS_AGE_KEY_FILE", &key);
    let out = run(&mut c);
    prop_assert_eq!(
        out.code,
        0,
        "sops cannot decrypt lockstep's file: {}\n{}",
        out.stderr,
        ours.stdout_str()
    );
    same(
        &expected,
        &out.stdout,
        format,
        "lockstep encrypt → sops decrypt",
    )?;

    // sops encrypt → lockstep decrypt.
    let theirs = run(&mut sb.sops([
        "encrypt".as_ref(),
        "--age".as_ref(),
        recipient.as_ref(),
        src.as_os_str(),
    ]));
    prop_assert_eq!(
        theirs.code,
        0,
        "sops encrypt failed: {}\n{}",
        theirs.stderr,
        text
    );
    let enc = sb.write(&enc_name, &theirs.stdout);
    let mut c = sb.lockstep(["decrypt".as_ref(), enc.as_os_str()]);
    c.env("SOPS_AGE_KEY_FILE", &key);
    let out = run(&mut c);
    prop_assert_eq!(
        out.code,
        0,
        "lockstep cannot decrypt sops' file: {}\n{}",
        out.stderr,
        theirs.stdout_str()
    );
    same(
        &expected,
        &out.stdout,
        format,
        "sops encrypt → lockstep decrypt",
    )?;
    Ok(())
}

/// yaml.v3 (and so sops, and lockstep's byte-compatible emitter) writes a multi-line string
/// that starts with a space or a newline, inside a block sequence, as a `|4-` block whose
/// indentation does not match its indicator; neither sops nor a YAML 1.2 parser can read that
/// back (`sops encrypt` fails with "did not find expected '-' indicator"). Such documents have
/// no YAML form both tools can exchange, so the YAML round trip leaves them out.
fn has_unexchangeable_yaml_string(node: &Node, in_list: bool) -> bool {
    match node {
        Node::Scalar(Scalar::Str(t)) => {
            let s = t.as_str();
            in_list && s.contains('\n') && (s.starts_with(' ') || s.starts_with('\n'))
        }
        Node::List(items) => items
            .iter()
            .any(|n| has_unexchangeable_yaml_string(n, true)),
        Node::Map(items) => items.iter().any(|i| match i {
            MapItem::Entry(_, v) => has_unexchangeable_yaml_string(v, false),
            MapItem::Comment(_) => false,
        }),
        _ => false,
    }
}

/// A fixed seed keeps CI reproducible; set PROPTEST_RNG_SEED to explore other cases.
fn config() -> ProptestConfig {
    let mut c = ProptestConfig {
        cases: 24,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        c.rng_seed = proptest::test_runner::RngSeed::Fixed(0x010c_57e9);
    }
    c
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn yaml_documents_roundtrip_through_both_tools(doc in document()) {
        prop_assume!(!has_unexchangeable_yaml_string(&doc, false));
        let sb = Sandbox::new();
        check(&sb, &doc, Format::Yaml)?;
    }

    #[test]
    fn json_documents_roundtrip_through_both_tools(doc in document()) {
        let sb = Sandbox::new();
        check(&sb, &doc, Format::Json)?;
    }
}
