//! The sealed-secrets CLI end to end: `seal`, `unseal`, `reseal` and `keys inventory`
//! driven as a user would, against the real `age` and `ssh-keygen`. Round trips for
//! every scope and recipient set, every bad input (one stderr line naming file, object
//! and key, nothing on stdout), a 200-file reseal, and a canary value that must never
//! be printed by anything but a successful `unseal`.

mod support;

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use lockstep::sealed::{self, PlainSecret, Scope, SealedSecret};
use support::{Output, Sandbox, assert_no_leak, read, run, run_with_stdin, tool};

const CANARY: &str = "canary-sealed-51c0";

/// A Secret with the canary under `data` (base64), a `stringData` value, a type,
/// labels, annotations and `immutable`.
fn secret_yaml(namespace: Option<&str>, name: &str) -> String {
    let ns = namespace
        .map(|n| format!("  namespace: {n}\n"))
        .unwrap_or_default();
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n{ns}  labels:\n    tier: db\n    app: api\n  annotations:\n    owner: team-a\ntype: kubernetes.io/basic-auth\nimmutable: true\ndata:\n  password: {}\nstringData:\n  username: admin\n",
        STANDARD.encode(CANARY)
    )
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// `lockstep seal ARGS FILE`; asserts success and that nothing leaked.
fn seal(sb: &Sandbox, args: &[&str], file: &Path) -> Vec<u8> {
    let mut all = vec!["seal"];
    all.extend_from_slice(args);
    all.push(s(file));
    let out = run(&mut sb.lockstep(&all)).ok();
    assert_no_leak(&out, CANARY.as_bytes());
    assert!(
        out.stderr.is_empty(),
        "seal wrote to stderr: {}",
        out.stderr
    );
    out.stdout
}

/// `lockstep unseal --identity I... [ARGS] FILE`.
fn unseal(sb: &Sandbox, identities: &[&Path], args: &[&str], file: &Path) -> Output {
    let mut all = vec!["unseal"];
    for i in identities {
        all.extend(["--identity", s(i)]);
    }
    all.extend_from_slice(args);
    all.push(s(file));
    run(&mut sb.lockstep(&all))
}

/// Every object of a manifest file (List items expanded).
fn objects(bytes: &[u8]) -> Vec<lockstep::sops::tree::Node> {
    lockstep::manifest::expand_lists(lockstep::manifest::load_documents(bytes).unwrap_or_else(
        |e| {
            panic!(
                "cannot parse manifest: {e}\n{}",
                String::from_utf8_lossy(bytes)
            )
        },
    ))
}

fn plain_of(bytes: &[u8]) -> Vec<PlainSecret> {
    objects(bytes)
        .iter()
        .map(|d| sealed::secret_from_node(d, "doc").expect("a v1/Secret"))
        .collect()
}

fn sealed_of(bytes: &[u8]) -> Vec<SealedSecret> {
    objects(bytes)
        .iter()
        .map(|d| sealed::sealed_from_node(d, "doc").expect("a SealedSecret"))
        .collect()
}

/// The encryptedData value of `key` in a single-object sealed YAML file.
fn value_of(yaml: &str, key: &str) -> String {
    let prefix = format!("    {key}: ");
    yaml.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no encryptedData {key:?} in:\n{yaml}"))
        .to_owned()
}

/// Replaces the encryptedData value of `key`.
fn with_value(yaml: &str, key: &str, value: &str) -> String {
    let prefix = format!("    {key}: ");
    let mut hit = false;
    let out: Vec<String> = yaml
        .lines()
        .map(|l| {
            if l.starts_with(&prefix) {
                hit = true;
                format!("{prefix}{value}")
            } else {
                l.to_owned()
            }
        })
        .collect();
    assert!(hit, "no encryptedData {key:?} in:\n{yaml}");
    out.join("\n") + "\n"
}

fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert_eq!(text.matches(from).count(), 1, "{from:?} in:\n{text}");
    text.replacen(from, to, 1)
}

/// A failure as the issue wants it: non-zero exit, nothing on stdout, exactly one
/// stderr line containing every needle, and no trace of the canary.
fn assert_one_line_failure(out: &Output, needles: &[&str]) {
    assert_ne!(out.code, 0, "`{}` succeeded", out.what);
    assert!(
        out.stdout.is_empty(),
        "`{}` failed but wrote to stdout:\n{}",
        out.what,
        out.stdout_str()
    );
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "`{}`: expected one stderr line, got:\n{}",
        out.what,
        out.stderr
    );
    for n in needles {
        assert!(
            lines[0].contains(n),
            "`{}`: stderr does not name {n:?}: {}",
            out.what,
            lines[0]
        );
    }
    assert_no_leak(out, CANARY.as_bytes());
}

/// A failure with trace logging on: non-zero exit, nothing on stdout, no canary (the
/// log lines make stderr longer than one line).
fn assert_failed_quietly(out: &Output) {
    assert_ne!(out.code, 0, "`{}` succeeded", out.what);
    assert!(
        out.stdout.is_empty(),
        "`{}`: {}",
        out.what,
        out.stdout_str()
    );
    assert_no_leak(out, CANARY.as_bytes());
}

/// An OpenSSH ed25519 key made by `ssh-keygen`; returns (private key, public key line).
fn ssh_key(sb: &Sandbox, name: &str) -> (PathBuf, String) {
    let key = sb.path(name);
    run(sb
        .command(tool("ssh-keygen"))
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "test@lockstep", "-f"])
        .arg(&key))
    .ok();
    let public = String::from_utf8(read(&key.with_extension("pub")))
        .expect("utf-8 public key")
        .trim()
        .to_owned();
    assert!(public.starts_with("ssh-ed25519 "), "{public}");
    (key, public)
}

const SCOPES: [(&str, Scope); 3] = [
    ("strict", Scope::Strict),
    ("namespace-wide", Scope::NamespaceWide),
    ("cluster-wide", Scope::ClusterWide),
];

#[test]
fn round_trips_every_scope_and_recipient_set() {
    let sb = Sandbox::new();
    let (k1, r1) = sb.keygen("k1.txt");
    let (k2, r2) = sb.keygen("k2.txt");
    let (ssh, ssh_pub) = ssh_key(&sb, "id_ed25519");
    let (other, _) = sb.keygen("other.txt");
    let rfile = sb.write(
        "cluster.recipients",
        format!("# the cluster\n{r1}\n\n# break-glass\n  {ssh_pub}  \n"),
    );
    let input = sb.write("secret.yaml", secret_yaml(Some("payments"), "db"));
    let expected = plain_of(&read(&input));

    // (seal args, recipients expected in spec.recipients, identities that each open alone)
    let sets: Vec<(Vec<String>, Vec<String>, Vec<&Path>)> = vec![
        (vec!["-r".into(), r1.clone()], vec![r1.clone()], vec![&k1]),
        (
            vec![
                "--recipient".into(),
                r1.clone(),
                "--recipient".into(),
                r2.clone(),
            ],
            vec![r1.clone(), r2.clone()],
            vec![&k1, &k2],
        ),
        (
            vec!["--recipient".into(), ssh_pub.clone()],
            vec![ssh_pub.clone()],
            vec![&ssh],
        ),
        (
            vec!["--recipients-file".into(), s(&rfile).into()],
            vec![r1.clone(), ssh_pub.clone()],
            vec![&k1, &ssh],
        ),
    ];
    for (scope_name, scope) in SCOPES {
        for (args, recipients, ids) in &sets {
            let mut all: Vec<&str> = args.iter().map(String::as_str).collect();
            all.extend(["--scope", scope_name]);
            let out = seal(&sb, &all, &input);
            let what = format!("{scope_name} {args:?}");
            let text = String::from_utf8(out.clone()).expect("utf-8");
            assert!(
                text.starts_with("apiVersion: lockstep.dev/v1alpha1\nkind: SealedSecret\n"),
                "{what}:\n{text}"
            );
            let parsed = sealed_of(&out);
            assert_eq!(parsed.len(), 1, "{what}");
            let got = &parsed[0];
            assert_eq!(got.scope, scope, "{what}");
            assert_eq!(&got.recipients, recipients, "{what}");
            assert_eq!(got.template.type_, "kubernetes.io/basic-auth", "{what}");
            assert_eq!(
                got.template.labels,
                [("app".into(), "api".into()), ("tier".into(), "db".into())],
                "{what}"
            );
            assert_eq!(
                got.template.annotations,
                [("owner".into(), "team-a".into())],
                "{what}"
            );
            assert_eq!(got.template.immutable, Some(true), "{what}");
            assert!(text.contains("\n  template:\n    type: kubernetes.io/basic-auth\n    immutable: true\n    metadata:\n      labels:\n        app: api\n        tier: db\n      annotations:\n        owner: team-a\n"), "{what}: template not carried:\n{text}");
            let keys: Vec<&str> = got.encrypted_data.iter().map(|(k, _)| k.as_str()).collect();
            assert_eq!(keys, ["password", "username"], "{what}");

            let sealed_file = sb.write(&format!("sealed-{scope_name}.yaml"), &out);
            for id in ids {
                let opened = unseal(&sb, &[id], &[], &sealed_file).ok();
                assert!(opened.stderr.is_empty(), "{what}: {}", opened.stderr);
                assert_eq!(plain_of(&opened.stdout), expected, "{what}, {id:?}");
                // The only output allowed to hold the canary, base64-encoded.
                assert!(
                    opened
                        .stdout_str()
                        .contains(&format!("password: {}", STANDARD.encode(CANARY))),
                    "{what}"
                );
            }
            assert_one_line_failure(
                &unseal(&sb, &[&other], &[], &sealed_file),
                &[
                    s(&sealed_file),
                    "SealedSecret payments/db",
                    "key \"password\"",
                ],
            );
        }
    }
}

#[test]
fn scopes_allow_exactly_the_moves_they_promise() {
    let sb = Sandbox::new();
    let (k1, r1) = sb.keygen("k1.txt");
    let input = sb.write("secret.yaml", secret_yaml(Some("payments"), "db"));
    for (scope_name, _) in SCOPES {
        let text = String::from_utf8(seal(&sb, &["-r", &r1, "--scope", scope_name], &input))
            .expect("utf-8");
        let renamed = sb.write(
            &format!("{scope_name}-renamed.yaml"),
            replace_once(&text, "  name: db\n", "  name: other\n"),
        );
        let moved = sb.write(
            &format!("{scope_name}-moved.yaml"),
            replace_once(&text, "namespace: payments", "namespace: elsewhere"),
        );
        let rename = unseal(&sb, &[&k1], &[], &renamed);
        let r#move = unseal(&sb, &[&k1], &[], &moved);
        match scope_name {
            "strict" => {
                assert_one_line_failure(
                    &rename,
                    &[
                        s(&renamed),
                        "SealedSecret payments/other",
                        "key \"password\"",
                    ],
                );
                assert_one_line_failure(
                    &r#move,
                    &[s(&moved), "SealedSecret elsewhere/db", "key \"password\""],
                );
            }
            "namespace-wide" => {
                rename.ok();
                assert_one_line_failure(
                    &r#move,
                    &[s(&moved), "SealedSecret elsewhere/db", "key \"password\""],
                );
            }
            _ => {
                rename.ok();
                r#move.ok();
            }
        }
        // The scope itself is bound too: relabelling a value's scope fails.
        let other_scope = if scope_name == "strict" {
            "cluster-wide"
        } else {
            "strict"
        };
        let rescoped = sb.write(
            &format!("{scope_name}-rescoped.yaml"),
            replace_once(
                &text,
                &format!("scope: {scope_name}\n"),
                &format!("scope: {other_scope}\n"),
            ),
        );
        assert_one_line_failure(
            &unseal(&sb, &[&k1], &[], &rescoped),
            &[
                s(&rescoped),
                "SealedSecret payments/db",
                "key \"password\"",
                "scope",
            ],
        );
    }
}

#[test]
fn cluster_wide_needs_no_namespace_but_strict_does() {
    let sb = Sandbox::new();
    let (k1, r1) = sb.keygen("k1.txt");
    let input = sb.write("secret.yaml", secret_yaml(None, "db"));
    let out = seal(&sb, &["-r", &r1, "--scope", "cluster-wide"], &input);
    let sealed_file = sb.write("sealed.yaml", &out);
    let opened = unseal(&sb, &[&k1], &[], &sealed_file).ok();
    assert_eq!(plain_of(&opened.stdout), plain_of(&read(&input)));

    for scope in ["strict", "namespace-wide"] {
        let out = run(&mut sb.lockstep(["seal", "-r", &r1, "--scope", scope, s(&input)]));
        assert_one_line_failure(&out, &[s(&input), "Secret db", "namespace"]);
    }
}

#[test]
fn multi_document_yaml_and_json_inputs_round_trip() {
    let sb = Sandbox::new();
    let (k1, r1) = sb.keygen("k1.txt");
    // Binary bytes under data, a multi-line stringData value, an empty value.
    let multi = sb.write(
        "multi.yaml",
        format!(
            "{}---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: tls\n  namespace: edge\ntype: kubernetes.io/tls\ndata:\n  tls.key: AAH/gICA\n  empty: \"\"\nstringData:\n  tls.crt: |\n    -----BEGIN CERTIFICATE-----\n    MIIB\n    -----END CERTIFICATE-----\n",
            secret_yaml(Some("payments"), "db")
        ),
    );
    let expected = plain_of(&read(&multi));
    assert_eq!(expected.len(), 2);
    assert_eq!(expected[1].data[2].1.expose(), b"\x00\x01\xff\x80\x80\x80");

    let out = seal(&sb, &["-r", &r1], &multi);
    let parsed = sealed_of(&out);
    assert_eq!(parsed.len(), 2);
    assert_eq!(parsed[1].object(), "SealedSecret edge/tls");
    assert_eq!(parsed[1].template.type_, "kubernetes.io/tls");
    let sealed_multi = sb.write("multi.sealed.yaml", &out);
    let opened = unseal(&sb, &[&k1], &[], &sealed_multi).ok();
    assert_eq!(plain_of(&opened.stdout), expected);

    // Several Secrets as JSON come out as a v1/List, which unseal reads back.
    let out = seal(&sb, &["-r", &r1, "-o", "json"], &multi);
    let v: serde_json::Value = serde_json::from_slice(&out).expect("seal -o json parses");
    assert_eq!(v["kind"], "List");
    assert_eq!(v["items"].as_array().map(Vec::len), Some(2));
    assert_eq!(v["items"][1]["kind"], "SealedSecret");
    let sealed_list = sb.write("multi.sealed.json", &out);
    let opened = unseal(&sb, &[&k1], &["-o", "json"], &sealed_list).ok();
    let v: serde_json::Value = serde_json::from_slice(&opened.stdout).expect("JSON");
    assert_eq!(v["items"][0]["data"]["password"], STANDARD.encode(CANARY));
    assert_eq!(plain_of(&opened.stdout), expected);

    // A single JSON object, with data (base64) and stringData.
    let json = sb.write(
        "secret.json",
        format!(
            r#"{{"apiVersion": "v1", "kind": "Secret",
  "metadata": {{"name": "api", "namespace": "payments", "labels": {{"app": "api"}}}},
  "data": {{"token": "{}"}}, "stringData": {{"user": "svc"}}}}"#,
            STANDARD.encode(CANARY)
        ),
    );
    let out = seal(&sb, &["-r", &r1, "-o", "json"], &json);
    let v: serde_json::Value = serde_json::from_slice(&out).expect("seal -o json parses");
    assert_eq!(v["apiVersion"], "lockstep.dev/v1alpha1");
    assert_eq!(v["kind"], "SealedSecret");
    assert_eq!(v["metadata"]["namespace"], "payments");
    assert_eq!(v["spec"]["scope"], "strict");
    assert_eq!(v["spec"]["recipients"][0], r1.as_str());
    assert_eq!(v["spec"]["template"]["metadata"]["labels"]["app"], "api");
    let keys: Vec<&String> = v["spec"]["encryptedData"]
        .as_object()
        .expect("encryptedData is an object")
        .keys()
        .collect();
    assert_eq!(keys, ["token", "user"]);
    let sealed_json = sb.write("secret.sealed.json", &out);
    let opened = unseal(&sb, &[&k1], &["-o", "json"], &sealed_json).ok();
    let v: serde_json::Value = serde_json::from_slice(&opened.stdout).expect("JSON");
    assert_eq!(v["kind"], "Secret");
    assert_eq!(v["data"]["token"], STANDARD.encode(CANARY));
    assert_eq!(v["data"]["user"], STANDARD.encode("svc"));
    assert_eq!(plain_of(&opened.stdout), plain_of(&read(&json)));

    // stdin works too.
    let out = run_with_stdin(
        &mut sb.lockstep(["seal", "-r", &r1, "-"]),
        Some(&read(&multi)),
    )
    .ok();
    assert_no_leak(&out, CANARY.as_bytes());
    assert_eq!(sealed_of(&out.stdout).len(), 2);
}

#[test]
fn non_secret_input_is_refused() {
    let sb = Sandbox::new();
    let (_, r1) = sb.keygen("k1.txt");
    let file = sb.write(
        "mixed.yaml",
        format!(
            "{}---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\ndata:\n  a: b\n",
            secret_yaml(Some("payments"), "db")
        ),
    );
    let out = run(&mut sb.lockstep(["seal", "-r", &r1, s(&file)]));
    assert_one_line_failure(&out, &[s(&file), "document 2", "ConfigMap", "Secret"]);

    // A SealedSecret is not sealed a second time.
    let once = sb.write(
        "once.yaml",
        seal(
            &sb,
            &["-r", &r1],
            &sb.write("s.yaml", secret_yaml(Some("p"), "db")),
        ),
    );
    let out = run(&mut sb.lockstep(["seal", "-r", &r1, s(&once)]));
    assert_one_line_failure(&out, &[s(&once), "document 1", "SealedSecret"]);
}

/// Every encryptedData value replaced by `<v>`.
fn masked(text: &str) -> String {
    let mut in_data = false;
    text.lines()
        .map(|l| {
            if l == "  encryptedData:" {
                in_data = true;
                return l.to_owned();
            }
            if in_data && l.starts_with("    ") {
                let (k, _) = l.split_once(": ").expect("key: value");
                return format!("{k}: <v>");
            }
            in_data = false;
            l.to_owned()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn sealing_twice_gives_the_same_structure() {
    let sb = Sandbox::new();
    let (_, r1) = sb.keygen("k1.txt");
    let (_, r2) = sb.keygen("k2.txt");
    let input = sb.write(
        "unsorted.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata:\n  namespace: p\n  name: x\n  labels: {z: '1', a: '2'}\nstringData:\n  zeta: '1'\n  alpha: '2'\n  mid: '3'\n",
    );
    let args = ["-r", &r2, "-r", &r1, "--scope", "namespace-wide"];
    let a = String::from_utf8(seal(&sb, &args, &input)).expect("utf-8");
    let b = String::from_utf8(seal(&sb, &args, &input)).expect("utf-8");
    assert_eq!(masked(&a), masked(&b));
    assert_eq!(
        masked(&a),
        format!(
            "apiVersion: lockstep.dev/v1alpha1\nkind: SealedSecret\nmetadata:\n  name: x\n  namespace: p\nspec:\n  scope: namespace-wide\n  recipients:\n    - {r2}\n    - {r1}\n  encryptedData:\n    alpha: <v>\n    mid: <v>\n    zeta: <v>\n  template:\n    type: Opaque\n    metadata:\n      labels:\n        a: \"2\"\n        z: \"1\""
        )
    );
    for key in ["alpha", "mid", "zeta"] {
        assert_ne!(
            value_of(&a, key),
            value_of(&b, key),
            "{key}: same ciphertext twice"
        );
    }
    let ja = seal(&sb, &["-o", "json", "-r", &r1], &input);
    let jb = seal(&sb, &["-o", "json", "-r", &r1], &input);
    let strip = |j: &[u8]| {
        let mut v: serde_json::Value = serde_json::from_slice(j).expect("json");
        for (_, x) in v["spec"]["encryptedData"]
            .as_object_mut()
            .expect("object")
            .iter_mut()
        {
            *x = serde_json::Value::Null;
        }
        serde_json::to_string(&v).expect("json")
    };
    assert_eq!(strip(&ja), strip(&jb));
    assert_ne!(ja, jb);
}

/// The fixture for the bad-input cases: one strict SealedSecret payments/db sealed to k1.
struct Bad {
    sb: Sandbox,
    k1: PathBuf,
    r1: String,
    text: String,
}

fn bad_fixture() -> Bad {
    let sb = Sandbox::new();
    let (k1, r1) = sb.keygen("k1.txt");
    let input = sb.write("secret.yaml", secret_yaml(Some("payments"), "db"));
    let text = String::from_utf8(seal(&sb, &["-r", &r1], &input)).expect("utf-8");
    Bad { sb, k1, r1, text }
}

impl Bad {
    /// Writes `text` as `name` and unseals it with k1; asserts the one-line failure.
    fn expect_failure(&self, name: &str, text: &str, needles: &[&str]) {
        let file = self.sb.write(name, text);
        let out = unseal(&self.sb, &[&self.k1], &[], &file);
        let mut all = vec![s(&file)];
        all.extend_from_slice(needles);
        assert_one_line_failure(&out, &all);
    }

    /// The password value with its age bytes changed by `f`.
    fn edited(&self, f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut bytes = STANDARD
            .decode(value_of(&self.text, "password"))
            .expect("base64");
        f(&mut bytes);
        with_value(&self.text, "password", &STANDARD.encode(bytes))
    }
}

const OBJ: &str = "SealedSecret payments/db";
const KEY: &str = "key \"password\"";

#[test]
fn bad_input_value_moved_to_another_namespace_name_or_key() {
    let f = bad_fixture();
    f.expect_failure(
        "ns.yaml",
        &replace_once(&f.text, "namespace: payments", "namespace: other"),
        &["SealedSecret other/db", KEY, "namespace \"payments\""],
    );
    f.expect_failure(
        "name.yaml",
        &replace_once(&f.text, "  name: db\n", "  name: db2\n"),
        &["SealedSecret payments/db2", KEY, "name \"db\""],
    );
    let (p, u) = (value_of(&f.text, "password"), value_of(&f.text, "username"));
    let swapped = with_value(&with_value(&f.text, "password", &u), "username", &p);
    f.expect_failure("swap.yaml", &swapped, &[OBJ, KEY, "key \"username\""]);
    // A value copied under a new key name.
    let renamed_key = replace_once(&f.text, "    username: ", "    login: ");
    f.expect_failure(
        "key.yaml",
        &renamed_key,
        &[OBJ, "key \"login\"", "key \"username\""],
    );
}

#[test]
fn bad_input_flipped_bit_and_truncated_value() {
    let f = bad_fixture();
    for back in [1, 5, 17] {
        let flipped = f.edited(|b| {
            let i = b.len() - back;
            b[i] ^= 0x04;
        });
        f.expect_failure(
            &format!("flip-{back}.yaml"),
            &flipped,
            &[OBJ, KEY, "cannot open"],
        );
    }
    let truncated = f.edited(|b| b.truncate(b.len() - 20));
    f.expect_failure("trunc.yaml", &truncated, &[OBJ, KEY, "cannot open"]);
    let header_only = f.edited(|b| {
        let end = b
            .windows(4)
            .position(|w| w == b"--- ")
            .expect("age header end");
        b.truncate(end + 10);
    });
    f.expect_failure("header-only.yaml", &header_only, &[OBJ, KEY]);
    // Cut in the middle of the base64 text.
    let v = value_of(&f.text, "password");
    let cut = with_value(&f.text, "password", &v[..v.len() / 2 + 1]);
    f.expect_failure("cut.yaml", &cut, &[OBJ, KEY]);
    f.expect_failure(
        "empty.yaml",
        &with_value(&f.text, "password", "''"),
        &[OBJ, KEY],
    );
}

#[test]
fn bad_input_wrong_identity() {
    let f = bad_fixture();
    let (k2, _) = f.sb.keygen("k2.txt");
    let file = f.sb.write("sealed.yaml", &f.text);
    assert_one_line_failure(
        &unseal(&f.sb, &[&k2], &[], &file),
        &[s(&file), OBJ, KEY, "cannot open"],
    );
    // An SSH key that is not a recipient either.
    let (ssh, _) = ssh_key(&f.sb, "id_ed25519");
    assert_one_line_failure(
        &unseal(&f.sb, &[&ssh], &[], &file),
        &[s(&file), OBJ, KEY, "cannot open"],
    );
    // Several identities: one right one is enough.
    unseal(&f.sb, &[&k2, &f.k1], &[], &file).ok();
}

#[test]
fn bad_input_unknown_envelope_version_made_with_the_real_age() {
    let f = bad_fixture();
    let envelope = format!(
        "lockstep.dev/sealed/v9\nscope: strict\nnamespace: payments\nname: db\nkey: password\n\n{CANARY}"
    );
    let age = run_with_stdin(
        f.sb.command(tool("age")).args(["-e", "-r", &f.r1]),
        Some(envelope.as_bytes()),
    )
    .ok();
    assert!(age.stdout.starts_with(b"age-encryption.org/v1\n"));
    let v9 = with_value(&f.text, "password", &STANDARD.encode(&age.stdout));
    f.expect_failure("v9.yaml", &v9, &[OBJ, KEY, "version", "v9"]);

    // The same hand-written envelope as v1 opens: the failure above is the version.
    let v1 = envelope.replace("/v9\n", "/v1\n");
    let age = run_with_stdin(
        f.sb.command(tool("age")).args(["-e", "-r", &f.r1]),
        Some(v1.as_bytes()),
    )
    .ok();
    let file = f.sb.write(
        "v1.yaml",
        with_value(&f.text, "password", &STANDARD.encode(&age.stdout)),
    );
    let opened = unseal(&f.sb, &[&f.k1], &[], &file).ok();
    assert_eq!(
        plain_of(&opened.stdout)[0].data[0].1.expose(),
        CANARY.as_bytes()
    );

    // Not an envelope at all.
    let age = run_with_stdin(
        f.sb.command(tool("age")).args(["-e", "-r", &f.r1]),
        Some(CANARY.as_bytes()),
    )
    .ok();
    let raw = with_value(&f.text, "password", &STANDARD.encode(&age.stdout));
    f.expect_failure("raw.yaml", &raw, &[OBJ, KEY, "envelope"]);
}

#[test]
fn bad_input_strict_scope_without_namespace() {
    let f = bad_fixture();
    let text = replace_once(&f.text, "  namespace: payments\n", "");
    // The object has no namespace to name; the line names the file and the object.
    f.expect_failure(
        "nons.yaml",
        &text,
        &["SealedSecret db", "strict", "namespace"],
    );
    let nsw = replace_once(&text, "scope: strict", "scope: namespace-wide");
    f.expect_failure(
        "nons-nsw.yaml",
        &nsw,
        &["SealedSecret db", "namespace-wide", "namespace"],
    );
}

#[test]
fn bad_input_malformed_documents() {
    let f = bad_fixture();
    // YAML that does not parse: the line names the file (and where).
    let broken = replace_once(&f.text, "  encryptedData:\n", "  encryptedData: [\n");
    f.expect_failure("syntax.yaml", &broken, &["line"]);
    f.expect_failure(
        "syntax.json",
        "{\"apiVersion\": \"lockstep.dev/v1alpha1\", ",
        &[],
    );
    f.expect_failure("binary.yaml", "\u{0}\u{1}\u{2}", &[]);
    // Structurally wrong: object and key are named.
    let nested = with_value(&f.text, "password", "{nested: map}");
    f.expect_failure("nested.yaml", &nested, &[OBJ, KEY, "encryptedData"]);
    let bad_key = replace_once(&f.text, "    username: ", "    'bad key!': ");
    f.expect_failure("badkey.yaml", &bad_key, &[OBJ, "key \"bad key!\""]);
    let scope = replace_once(&f.text, "scope: strict", "scope: galaxy");
    f.expect_failure("scope.yaml", &scope, &[OBJ, "scope"]);
    let no_spec = f.text[..f.text.find("spec:").expect("spec")].to_owned();
    f.expect_failure("nospec.yaml", &no_spec, &[OBJ, "spec"]);
    let name = replace_once(&f.text, "  name: db\n", "  name: Not_A_Name\n");
    f.expect_failure(
        "name.yaml",
        &name,
        &["SealedSecret payments/Not_A_Name", "metadata.name"],
    );
    // A second, broken document: nothing is printed for the first one either.
    let two = format!("{}---\n{}", f.text, with_value(&f.text, "username", "AAAA"));
    f.expect_failure("two.yaml", &two, &[OBJ, "key \"username\""]);
    // Not a SealedSecret at all.
    f.expect_failure(
        "secret.yaml",
        &secret_yaml(Some("payments"), "db"),
        &["document 1", "SealedSecret"],
    );
}

#[test]
fn the_real_age_cli_opens_a_sealed_value() {
    let sb = Sandbox::new();
    let (k1, r1) = sb.keygen("k1.txt");
    let (ssh, ssh_pub) = ssh_key(&sb, "id_ed25519");
    let input = sb.write("secret.yaml", secret_yaml(Some("payments"), "db"));
    for (scope, header) in [
        ("strict", "scope: strict\nnamespace: payments\nname: db\n"),
        (
            "namespace-wide",
            "scope: namespace-wide\nnamespace: payments\nname: \n",
        ),
        ("cluster-wide", "scope: cluster-wide\nnamespace: \nname: \n"),
    ] {
        let text = String::from_utf8(seal(
            &sb,
            &["-r", &r1, "-r", &ssh_pub, "--scope", scope],
            &input,
        ))
        .expect("utf-8");
        let file = sb.write(
            &format!("password-{scope}.age"),
            STANDARD
                .decode(value_of(&text, "password"))
                .expect("base64"),
        );
        assert!(read(&file).starts_with(b"age-encryption.org/v1\n"));
        for id in [&k1, &ssh] {
            let out = run(sb
                .command(tool("age"))
                .arg("-d")
                .arg("-i")
                .arg(id)
                .arg(&file))
            .ok();
            assert!(
                out.stdout.starts_with(b"lockstep.dev/sealed/v1\n"),
                "{scope}"
            );
            assert_eq!(
                out.stdout_str(),
                format!("lockstep.dev/sealed/v1\n{header}key: password\n\n{CANARY}"),
                "{scope}"
            );
        }
    }
}

/// Splits a sealed multi-document YAML into single-document texts.
fn split_docs(bytes: &[u8]) -> Vec<String> {
    lockstep::manifest::load_documents(bytes)
        .expect("sealed YAML parses")
        .iter()
        .map(|d| lockstep::manifest::emit_documents(std::slice::from_ref(d)))
        .collect()
}

fn many_secrets(prefix: &str, n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {prefix}-{i:03}\n  namespace: team-{}\nstringData:\n  password: {CANARY}-{prefix}-{i}\n  user: u{i}\n",
                i % 7
            )
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

#[test]
fn reseal_a_tree_of_200_files() {
    let sb = Sandbox::new();
    let (old, r_old) = sb.keygen("old.txt");
    let (new, r_new) = sb.keygen("new.txt");
    let (_, r_bg) = sb.keygen("breakglass.txt");
    let target = ["-r", r_new.as_str(), "-r", r_bg.as_str()];

    // 150 files already sealed to the target set (recipients in another order).
    let fresh_in = sb.write("in/fresh.yaml", many_secrets("fresh", 150));
    let fresh = split_docs(&seal(&sb, &["-r", &r_bg, "-r", &r_new], &fresh_in));
    // 50 files sealed to the old key: 48 YAML, one JSON object, one JSON List of two.
    let stale_in = sb.write("in/stale.yaml", many_secrets("stale", 50));
    let mut stale = split_docs(&seal(&sb, &["-r", &r_old], &stale_in));
    let json_one = sb.write("in/one.yaml", many_secrets("json", 1));
    stale[48] =
        String::from_utf8(seal(&sb, &["-r", &r_old, "-o", "json"], &json_one)).expect("utf-8");
    let json_two = sb.write("in/two.yaml", many_secrets("list", 2));
    stale[49] =
        String::from_utf8(seal(&sb, &["-r", &r_old, "-o", "json"], &json_two)).expect("utf-8");

    let tree = sb.path("tree");
    let place =
        |i: usize, ext: &str| format!("tree/cluster-{}/ns-{}/app-{i:03}.{ext}", i % 3, i % 5);
    let mut fresh_files = Vec::new();
    for (i, text) in fresh.iter().enumerate() {
        fresh_files.push(sb.write(&place(i, "yaml"), text));
    }
    let mut stale_files = Vec::new();
    for (i, text) in stale.iter().enumerate() {
        let ext = if i >= 48 { "json" } else { "yml" };
        stale_files.push(sb.write(&place(150 + i, ext), text));
    }
    // One corrupted file (sealed to the old key, one bit flipped): it must fail.
    let corrupt_src = split_docs(&seal(
        &sb,
        &["-r", &r_old],
        &sb.write("in/c.yaml", many_secrets("corrupt", 1)),
    ))
    .remove(0);
    let v = value_of(&corrupt_src, "password");
    let mut bytes = STANDARD.decode(&v).expect("base64");
    let last = bytes.len() - 3;
    bytes[last] ^= 1;
    let corrupt = sb.write(
        "tree/cluster-1/ns-2/corrupt.yaml",
        with_value(&corrupt_src, "password", &STANDARD.encode(bytes)),
    );
    // Neither of these is resealed or counted as a failure.
    let cm = sb.write(
        "tree/cluster-0/configmap.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n",
    );
    let hidden = sb.write("tree/.git/hidden.yaml", &stale[0]);
    let before = |p: &Path| read(p);
    let fresh_before: Vec<Vec<u8>> = fresh_files.iter().map(|p| before(p)).collect();
    let stale_before: Vec<Vec<u8>> = stale_files.iter().map(|p| before(p)).collect();
    let corrupt_before = read(&corrupt);

    let mut args = vec!["reseal", "--identity", s(&old)];
    args.extend(target);
    args.push(s(&tree));
    let out = run(&mut sb.lockstep(&args)).fails_with(1);
    assert_no_leak(&out, CANARY.as_bytes());
    assert!(
        out.stdout.is_empty(),
        "reseal wrote to stdout: {}",
        out.stdout_str()
    );
    let corrupt_lines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains(s(&corrupt)))
        .collect();
    assert_eq!(corrupt_lines.len(), 1, "{}", out.stderr);
    assert!(
        corrupt_lines[0].contains("SealedSecret team-0/corrupt-000")
            && corrupt_lines[0].contains("key \"password\""),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("reseal: 50 file(s) resealed (51 SealedSecrets), 150 already sealed to this set, 1 failed, 202 scanned"),
        "{}",
        out.stderr
    );

    assert_eq!(
        read(&corrupt),
        corrupt_before,
        "the failed file was modified"
    );
    assert_eq!(
        read(&hidden),
        stale[0].as_bytes(),
        "a hidden directory was walked"
    );
    assert!(read(&cm).starts_with(b"apiVersion: v1\nkind: ConfigMap"));
    for (p, b) in fresh_files.iter().zip(&fresh_before) {
        assert_eq!(
            &read(p),
            b,
            "{} changed though already sealed to the set",
            p.display()
        );
    }
    let want_set = sealed::normalized([r_new.as_str(), r_bg.as_str()].into_iter());
    for (i, (p, b)) in stale_files.iter().zip(&stale_before).enumerate() {
        let now = read(p);
        assert_ne!(&now, b, "{} was not resealed", p.display());
        assert_eq!(
            now.starts_with(b"{"),
            i >= 48,
            "{}: format changed",
            p.display()
        );
        for obj in sealed_of(&now) {
            assert_eq!(obj.recipient_set(), want_set, "{}", p.display());
        }
        let opened = unseal(&sb, &[&new], &[], p).ok();
        assert_eq!(
            plain_of(&opened.stdout),
            plain_of(
                &unseal(&sb, &[&old], &[], &sb.write("prev.yaml", b))
                    .ok()
                    .stdout
            ),
            "{}",
            p.display()
        );
        let refused = unseal(&sb, &[&old], &[], p);
        assert_one_line_failure(&refused, &[s(p), "key \"password\"", "cannot open"]);
    }

    // Without the corrupted file, a second run is a no-op: every file byte-identical.
    std::fs::remove_file(&corrupt).expect("remove");
    let snapshot: Vec<Vec<u8>> = fresh_files
        .iter()
        .chain(&stale_files)
        .map(|p| read(p))
        .collect();
    let out = run(&mut sb.lockstep(&args)).ok();
    assert_no_leak(&out, CANARY.as_bytes());
    assert!(out.stderr.contains("reseal: 0 file(s) resealed (0 SealedSecrets), 200 already sealed to this set, 0 failed, 201 scanned"), "{}", out.stderr);
    let after: Vec<Vec<u8>> = fresh_files
        .iter()
        .chain(&stale_files)
        .map(|p| read(p))
        .collect();
    assert!(snapshot == after, "a no-op reseal changed files");
}

/// A Git writer edits `spec.recipients` to claim the new key while the values stay
/// sealed to the old one: `reseal` still reseals them, and `keys inventory` reports
/// that the list does not match the age headers.
#[test]
fn reseal_and_inventory_do_not_trust_an_edited_recipient_list() {
    let sb = Sandbox::new();
    let (old, r_old) = sb.keygen("old.txt");
    let (new, r_new) = sb.keygen("new.txt");
    let (_, r_other) = sb.keygen("other.txt");
    let input = sb.write("in/secret.yaml", secret_yaml(Some("payments"), "db"));
    let text =
        String::from_utf8(seal(&sb, &["-r", &r_old, "-r", &r_other], &input)).expect("utf-8");
    std::fs::remove_file(&input).expect("remove plaintext");
    let lying = text.replacen(&format!("- {r_old}\n"), "", 1);
    let lying = lying.replacen(&r_other, &r_new, 1);
    assert!(!lying.contains(&r_old) && lying.contains(&r_new), "{lying}");
    let p = sb.write("tree/db.yaml", &lying);

    let out = run(&mut sb.lockstep(["keys", "inventory", s(&sb.path("tree"))])).ok();
    assert!(
        out.stdout_str().contains("2: X25519, X25519")
            && out
                .stderr
                .contains("recipients do not match the age headers"),
        "{}",
        out.all_text()
    );

    let out = run(&mut sb.lockstep(["reseal", "--identity", s(&old), "-r", &r_new, s(&p)])).ok();
    assert_no_leak(&out, CANARY.as_bytes());
    assert!(
        out.stderr.contains("reseal: 1 file(s) resealed"),
        "{}",
        out.stderr
    );
    unseal(&sb, &[&new], &[], &p).ok();
    let refused = unseal(&sb, &[&old], &[], &p);
    assert_ne!(refused.code, 0, "the old key still opens the resealed file");
    let out = run(&mut sb.lockstep(["keys", "inventory", s(&p)])).ok();
    assert!(!out.stderr.contains("do not match"), "{}", out.stderr);
}

#[test]
fn keys_inventory_lists_sealed_and_sops_files() {
    let sb = Sandbox::new();
    let (_, r1) = sb.keygen("k1.txt");
    let (_, r2) = sb.keygen("k2.txt");
    let input = sb.write("in/secret.yaml", secret_yaml(Some("payments"), "db"));
    sb.write("repo/a/one.sealed.yaml", seal(&sb, &["-r", &r1], &input));
    let multi = sb.write("in/multi.yaml", many_secrets("m", 2));
    sb.write(
        "repo/b/two.sealed.yaml",
        seal(&sb, &["-r", &r1, "-r", &r2], &multi),
    );
    sb.write(
        "repo/b/list.sealed.json",
        seal(&sb, &["-r", &r2, "-o", "json"], &multi),
    );
    let enc = run(&mut sb.lockstep(["encrypt", "--age", &r2, s(&input)])).ok();
    assert_no_leak(&enc, CANARY.as_bytes());
    sb.write("repo/c/secret.enc.yaml", &enc.stdout);
    sb.write(
        "repo/c/plain-configmap.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n",
    );
    let repo = sb.path("repo");

    let table = run(&mut sb.lockstep(["keys", "inventory", s(&repo)])).ok();
    assert_no_leak(&table, CANARY.as_bytes());
    let text = table.stdout_str();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0], "FILE\tKIND\tOBJECT\tRECIPIENTS\tSTANZAS",
        "{text}"
    );
    assert!(
        table.stderr.contains("nothing authenticates them"),
        "{}",
        table.stderr
    );
    let rel = |p: &str| format!("{}/{p}", s(&repo));
    let expected = [
        format!(
            "{}\tSealedSecret\tSealedSecret payments/db\t{r1}\t1: X25519",
            rel("a/one.sealed.yaml")
        ),
        format!(
            "{}\tSealedSecret\tSealedSecret team-0/m-000\t{r2}\t1: X25519",
            rel("b/list.sealed.json")
        ),
        format!(
            "{}\tSealedSecret\tSealedSecret team-1/m-001\t{r2}\t1: X25519",
            rel("b/list.sealed.json")
        ),
        format!(
            "{}\tSealedSecret\tSealedSecret team-0/m-000\t{r1},{r2}\t2: X25519, X25519",
            rel("b/two.sealed.yaml")
        ),
        format!(
            "{}\tSealedSecret\tSealedSecret team-1/m-001\t{r1},{r2}\t2: X25519, X25519",
            rel("b/two.sealed.yaml")
        ),
        format!("{}\tSOPS\tyaml\t{r2}\t1: X25519", rel("c/secret.enc.yaml")),
    ];
    assert_eq!(&lines[1..], expected.as_slice(), "{text}");

    let json = run(&mut sb.lockstep([
        "keys",
        "inventory",
        "-o",
        "json",
        "--recipient",
        &r1,
        s(&repo),
    ]))
    .ok();
    assert_no_leak(&json, CANARY.as_bytes());
    let v: serde_json::Value =
        serde_json::from_slice(&json.stdout).expect("inventory -o json parses");
    let entries = v.as_array().expect("a JSON array");
    let objects: Vec<(&str, &str)> = entries
        .iter()
        .map(|e| {
            (
                e["file"].as_str().expect("file"),
                e["object"].as_str().expect("object"),
            )
        })
        .collect();
    assert_eq!(
        objects,
        [
            (
                rel("a/one.sealed.yaml").as_str(),
                "SealedSecret payments/db"
            ),
            (
                rel("b/two.sealed.yaml").as_str(),
                "SealedSecret team-0/m-000"
            ),
            (
                rel("b/two.sealed.yaml").as_str(),
                "SealedSecret team-1/m-001"
            ),
        ]
    );
    assert_eq!(entries[1]["kind"], "SealedSecret");
    assert_eq!(entries[1]["recipients"], serde_json::json!([r1, r2]));

    let json = run(&mut sb.lockstep([
        "keys",
        "inventory",
        "-o",
        "json",
        "--recipient",
        &r2,
        s(&repo),
    ]))
    .ok();
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON");
    let kinds: Vec<&str> = v
        .as_array()
        .expect("array")
        .iter()
        .map(|e| e["kind"].as_str().expect("kind"))
        .collect();
    assert_eq!(
        kinds,
        [
            "SealedSecret",
            "SealedSecret",
            "SealedSecret",
            "SealedSecret",
            "SOPS"
        ]
    );
    let sops = &v[4];
    assert_eq!(sops["recipients"], serde_json::json!([r2]));
    assert_eq!(sops["key_groups"], 1);

    // A broken SealedSecret is reported on stderr (exit 1); the others are still listed.
    let broken = sb.write("repo/d/broken.yaml", "apiVersion: lockstep.dev/v1alpha1\nkind: SealedSecret\nmetadata: {name: x, namespace: y}\nspec: {scope: nope}\n");
    let out = run(&mut sb.lockstep(["keys", "inventory", s(&repo)])).fails_with(1);
    assert_no_leak(&out, CANARY.as_bytes());
    assert!(
        out.stderr.contains(s(&broken)) && out.stderr.contains("SealedSecret y/x"),
        "{}",
        out.stderr
    );
    assert_eq!(out.stdout_str().lines().count(), 7);
}

#[test]
fn canary_is_never_printed_even_with_trace_logging() {
    let sb = Sandbox::new();
    let (k1, r1) = sb.keygen("k1.txt");
    let (k2, r2) = sb.keygen("k2.txt");
    let input = sb.write("secret.yaml", secret_yaml(Some("payments"), "db"));
    let traced = |args: &[&str]| {
        let mut c = sb.lockstep(args);
        c.env("LOCKSTEP_LOG", "trace");
        run(&mut c)
    };
    let out = traced(&["seal", "-r", &r1, s(&input)]).ok();
    assert_no_leak(&out, CANARY.as_bytes());
    let text = out.stdout_str();
    let sealed_file = sb.write("tree/sealed.yaml", &out.stdout);
    let out = traced(&["seal", "-r", &r1, "-o", "json", s(&input)]).ok();
    assert_no_leak(&out, CANARY.as_bytes());
    // Failing commands, including a bad Secret and wrong identities.
    let bad_secret = sb.write(
        "bad.yaml",
        format!("apiVersion: v1\nkind: Secret\nmetadata: {{name: db, namespace: p}}\nstringData:\n  'bad key': {CANARY}\ndata:\n  x: '{CANARY}'\n"),
    );
    let out = traced(&["seal", "-r", &r1, s(&bad_secret)]);
    assert_failed_quietly(&out);
    let out = traced(&["unseal", "--identity", s(&k2), s(&sealed_file)]);
    assert_failed_quietly(&out);
    let moved = sb.write(
        "moved.yaml",
        replace_once(&text, "name: db\n", "name: dc\n"),
    );
    let out = traced(&["unseal", "--identity", s(&k1), s(&moved)]);
    assert_failed_quietly(&out);
    let out = traced(&["reseal", "--identity", s(&k2), "-r", &r2, s(&sealed_file)]).fails_with(1);
    assert_no_leak(&out, CANARY.as_bytes());
    let out = traced(&[
        "reseal",
        "--identity",
        s(&k1),
        "-r",
        &r2,
        s(&sb.path("tree")),
    ])
    .ok();
    assert_no_leak(&out, CANARY.as_bytes());
    let out = traced(&["keys", "inventory", s(&sb.path("tree"))]).ok();
    assert_no_leak(&out, CANARY.as_bytes());
    // And the check itself finds the canary where it is: in unseal's output.
    let out = traced(&["unseal", "--identity", s(&k2), s(&sealed_file)]).ok();
    assert!(
        support::leak_forms(CANARY.as_bytes())
            .iter()
            .any(|f| out.stdout_str().contains(f))
    );
}
