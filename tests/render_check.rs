//! `lockstep render` and `lockstep check` end to end, as a user or a pre-commit hook
//! drives them: the example tree with its keys and policy, SOPS files made by the real
//! sops, SealedSecrets moved to another namespace, hostile trees (links out, huge files,
//! alias bombs, too many objects), and a canary value that must never be printed without
//! `--reveal` — not in output, not in errors, not in trace logs.

mod support;

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use lockstep::sops::tree::Node;
use support::{
    Output, Sandbox, assert_no_leak, copy_dir, read_string, repo, run, sops_encrypt_yaml,
};

const CANARY: &str = "canary-render-77aa";
const POLICY: &str = "policies/tenant-baseline.yaml";
const PAYMENTS_PASSWORD: &str = "example-only-4f9c2a";
const BILLING_TOKEN: &str = "example-only-b1ll1ng";

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

fn sops_key() -> PathBuf {
    repo("keys-example/sops.agekey")
}

fn sealing_key() -> PathBuf {
    repo("keys-example/sealing.agekey")
}

fn sops_recipient() -> String {
    read_string(&repo("keys-example/sops.recipient"))
        .trim()
        .to_owned()
}

/// `lockstep render DIR --identity … --sealing-identity … --policy …` plus `extra`.
fn render(sb: &Sandbox, dir: &Path, extra: &[&str]) -> Output {
    let (k, sk, p) = (sops_key(), sealing_key(), repo(POLICY));
    let mut args = vec![
        "render",
        s(dir),
        "--identity",
        s(&k),
        "--sealing-identity",
        s(&sk),
        "--policy",
        s(&p),
    ];
    args.extend_from_slice(extra);
    run(&mut sb.lockstep(&args))
}

fn docs(out: &Output) -> Vec<Node> {
    lockstep::manifest::load_documents(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "`{}` printed what does not parse: {e}\n{}",
            out.what,
            out.stdout_str()
        )
    })
}

fn str_at<'a>(doc: &'a Node, path: &[&str]) -> Option<&'a str> {
    let mut n = doc;
    for p in path {
        n = n.get(p)?;
    }
    n.as_str()
}

/// (kind, name, namespace) of every rendered object, in order.
fn identities_of(docs: &[Node]) -> Vec<(String, String, String)> {
    docs.iter()
        .map(|d| {
            (
                str_at(d, &["kind"]).unwrap_or("").to_owned(),
                str_at(d, &["metadata", "name"]).unwrap_or("").to_owned(),
                str_at(d, &["metadata", "namespace"])
                    .unwrap_or("")
                    .to_owned(),
            )
        })
        .collect()
}

/// (kind, name, namespace) expected of a rendered object.
type Expected<'a> = (&'a str, &'a str, &'a str);

fn ids(list: &[Expected]) -> Vec<(String, String, String)> {
    list.iter()
        .map(|(k, n, ns)| (k.to_string(), n.to_string(), ns.to_string()))
        .collect()
}

/// Asserts a failed command: exit code `code`, nothing on stdout, each of `needles` on
/// stderr.
fn assert_refused(out: &Output, code: i32, needles: &[&str]) {
    assert_eq!(
        out.code, code,
        "`{}`: expected exit code {code}; stderr:\n{}",
        out.what, out.stderr
    );
    assert!(
        out.stdout.is_empty(),
        "`{}` failed but printed on stdout:\n{}",
        out.what,
        out.stdout_str()
    );
    for n in needles {
        assert!(
            out.stderr.contains(n),
            "`{}`: stderr does not mention {n:?}:\n{}",
            out.what,
            out.stderr
        );
    }
}

/// A Secret holding the canary in `stringData` (plain) and in `data` (base64).
fn canary_secret(name: &str, namespace: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: {namespace}\ntype: Opaque\nstringData:\n  password: {CANARY}\ndata:\n  token: {}\n",
        STANDARD.encode(CANARY)
    )
}

/// An app directory holding a Secret encrypted by the real sops to the example SOPS key.
fn real_sops_app(sb: &Sandbox) -> PathBuf {
    let plain = sb.write("plain/secret.yaml", canary_secret("db", "team-a"));
    let enc = sops_encrypt_yaml(sb, &plain, &sops_recipient(), "^(data|stringData)$");
    assert!(!String::from_utf8_lossy(&enc).contains(CANARY));
    sb.write("app/secret.enc.yaml", enc);
    sb.write(
        "app/config.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\n  namespace: team-a\ndata:\n  mode: fast\n",
    );
    sb.path("app")
}

#[test]
fn example_apps_render_with_their_keys_and_policy_and_redact_secrets() {
    let sb = Sandbox::new();
    let cases: [(&str, &[Expected]); 3] = [
        (
            "frontend",
            &[
                ("Deployment", "frontend", "team-frontend"),
                ("Service", "frontend", "team-frontend"),
                ("ConfigMap", "frontend-config", "team-frontend"),
            ],
        ),
        (
            "payments",
            &[
                ("Deployment", "payments", "team-payments"),
                ("Secret", "payments-db", "team-payments"),
            ],
        ),
        (
            "billing",
            &[
                ("Secret", "billing-api", "team-billing"),
                ("Deployment", "billing", "team-billing"),
            ],
        ),
    ];
    for (app, expected) in cases {
        let out = render(&sb, &repo(&format!("examples/apps/{app}")), &[]).ok();
        let d = docs(&out);
        assert_eq!(identities_of(&d), ids(expected), "objects of {app}");
        for doc in d.iter().filter(|d| str_at(d, &["kind"]) == Some("Secret")) {
            for field in ["data", "stringData"] {
                if let Some(Node::Map(items)) = doc.get(field) {
                    for item in items {
                        if let lockstep::sops::tree::MapItem::Entry(k, v) = item {
                            assert_eq!(v.as_str(), Some("<redacted>"), "{app}: {field}.{k}");
                        }
                    }
                }
            }
        }
        assert_no_leak(&out, PAYMENTS_PASSWORD.as_bytes());
        assert_no_leak(&out, BILLING_TOKEN.as_bytes());
    }

    // --reveal: the values as the input had them (stringData plain, data base64).
    let out = render(&sb, &repo("examples/apps/payments"), &["--reveal"]).ok();
    let d = docs(&out);
    assert_eq!(
        str_at(&d[1], &["stringData", "DB_PASSWORD"]),
        Some(PAYMENTS_PASSWORD)
    );
    assert_eq!(str_at(&d[1], &["stringData", "DB_USER"]), Some("payments"));
    assert!(d[1].get("data").is_none());

    let out = render(&sb, &repo("examples/apps/billing"), &["--reveal"]).ok();
    let d = docs(&out);
    let token = STANDARD.encode(BILLING_TOKEN);
    assert_eq!(str_at(&d[0], &["data", "API_TOKEN"]), Some(token.as_str()));

    // JSON output is redacted the same way.
    let out = render(&sb, &repo("examples/apps/billing"), &["-o", "json"]).ok();
    let d = lockstep::manifest::expand_lists(docs(&out));
    assert_eq!(
        identities_of(&d),
        ids(&[
            ("Secret", "billing-api", "team-billing"),
            ("Deployment", "billing", "team-billing"),
        ])
    );
    assert_eq!(str_at(&d[0], &["data", "API_TOKEN"]), Some("<redacted>"));
    assert_no_leak(&out, BILLING_TOKEN.as_bytes());
}

#[test]
fn the_rogue_app_is_refused_with_one_line_per_violation_and_nothing_on_stdout() {
    let sb = Sandbox::new();
    let out = render(&sb, &repo("examples/apps/rogue"), &[]);
    assert_refused(&out, 1, &["nothing rendered"]);
    let lines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("denied by policy"))
        .collect();
    let expected = [
        ("ClusterRoleBinding rogue-admin", "kinds.allow"),
        ("ClusterRoleBinding rogue-admin", "cluster-scoped kinds"),
        ("ConfigMap kube-system/rogue", "namespaces"),
    ];
    assert_eq!(lines.len(), expected.len(), "{}", out.stderr);
    for (line, (object, rule)) in lines.iter().zip(expected) {
        for needle in [
            "escalate.yaml: ",
            object,
            "denied by policy \"tenant-baseline\"",
            &format!("({rule})"),
        ] {
            assert!(line.contains(needle), "{needle:?} missing in {line:?}");
        }
    }
    assert_eq!(
        out.stderr.lines().count(),
        expected.len() + 1,
        "{}",
        out.stderr
    );
}

#[test]
fn a_secret_encrypted_by_the_real_sops_renders_only_with_the_right_identity() {
    let sb = Sandbox::new();
    let app = real_sops_app(&sb);

    let out = render(&sb, &app, &[]).ok();
    let d = docs(&out);
    assert_eq!(
        identities_of(&d),
        ids(&[("ConfigMap", "cfg", "team-a"), ("Secret", "db", "team-a")])
    );
    assert_eq!(
        str_at(&d[1], &["stringData", "password"]),
        Some("<redacted>")
    );
    assert_eq!(str_at(&d[1], &["data", "token"]), Some("<redacted>"));
    assert_no_leak(&out, CANARY.as_bytes());

    let out = render(&sb, &app, &["--reveal"]).ok();
    let d = docs(&out);
    assert_eq!(str_at(&d[1], &["stringData", "password"]), Some(CANARY));
    let b64 = STANDARD.encode(CANARY);
    assert_eq!(str_at(&d[1], &["data", "token"]), Some(b64.as_str()));

    // Wrong identity (the sealing key is not a recipient) and no identity at all.
    let wrong = sealing_key();
    for args in [
        vec!["render", s(&app), "--identity", s(&wrong)],
        vec!["render", s(&app)],
    ] {
        let out = run(&mut sb.lockstep(&args));
        assert_refused(&out, 1, &["secret.enc.yaml", "no identity opens"]);
        assert_no_leak(&out, CANARY.as_bytes());
    }
    // Also through SOPS_AGE_KEY_FILE pointing at the wrong key.
    let out = run(&mut support::with_key(
        sb.lockstep(["render", s(&app)]),
        &wrong,
    ));
    assert_refused(&out, 1, &["secret.enc.yaml"]);
}

#[test]
fn a_sealed_secret_moved_to_another_namespace_fails_naming_file_object_and_key() {
    let sb = Sandbox::new();
    let original = read_string(&repo("examples/apps/billing/api-token.sealed.yaml"));
    let sk = sealing_key();

    // No namespace in the manifest: the destination namespace decides.
    let without_ns: String = original
        .lines()
        .filter(|l| l.trim() != "namespace: team-billing")
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(without_ns, original);
    sb.write("moved/api-token.sealed.yaml", &without_ns);
    let app = sb.path("moved");
    let out = run(&mut sb.lockstep([
        "render",
        s(&app),
        "--sealing-identity",
        s(&sk),
        "-n",
        "team-other",
    ]));
    assert_refused(
        &out,
        1,
        &[
            "api-token.sealed.yaml: SealedSecret team-other/billing-api: key \"API_TOKEN\"",
            "sealed for namespace \"team-billing\"",
        ],
    );
    assert_no_leak(&out, BILLING_TOKEN.as_bytes());
    // The namespace it was sealed for renders.
    let out = run(&mut sb.lockstep([
        "render",
        s(&app),
        "--sealing-identity",
        s(&sk),
        "-n",
        "team-billing",
    ]))
    .ok();
    assert_eq!(
        identities_of(&docs(&out)),
        ids(&[("Secret", "billing-api", "team-billing")])
    );

    // The namespace edited in the manifest.
    sb.write(
        "edited/api-token.sealed.yaml",
        original.replace("namespace: team-billing", "namespace: team-evil"),
    );
    let out = run(&mut sb.lockstep([
        "render",
        s(&sb.path("edited")),
        "--sealing-identity",
        s(&sk),
    ]));
    assert_refused(
        &out,
        1,
        &[
            "api-token.sealed.yaml: SealedSecret team-evil/billing-api: key \"API_TOKEN\"",
            "sealed for namespace \"team-billing\"",
        ],
    );
    assert_no_leak(&out, BILLING_TOKEN.as_bytes());
}

#[test]
fn hostile_trees_are_refused_with_clear_errors() {
    let sb = Sandbox::new();
    let ok_cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ok, namespace: team-a}\n";
    sb.write("outside/secret.yaml", canary_secret("x", "team-a"));

    // A file link leaving the app directory.
    sb.write("link-file/ok.yaml", ok_cm);
    std::os::unix::fs::symlink(sb.path("outside/secret.yaml"), sb.path("link-file/l.yaml"))
        .unwrap();
    // A directory link leaving it, one level down.
    sb.write("link-dir/ok.yaml", ok_cm);
    std::fs::create_dir(sb.path("link-dir/sub")).unwrap();
    std::os::unix::fs::symlink(sb.path("outside"), sb.path("link-dir/sub/out")).unwrap();
    for (app, file) in [("link-file", "l.yaml"), ("link-dir", "sub/out")] {
        let dir = sb.path(app);
        let out = run(&mut sb.lockstep(["render", s(&dir)]));
        assert_refused(
            &out,
            1,
            &[&format!("{file}: is a link that leaves the checkout")],
        );
        // Named relative to the app, not with the app's path twice.
        assert!(
            !out.stderr.contains(&format!("{}/{file}", dir.display())),
            "{}",
            out.stderr
        );
        assert_no_leak(&out, CANARY.as_bytes());
    }
    // A link that stays inside is fine.
    sb.write("link-in/real/cm.yaml", ok_cm);
    std::os::unix::fs::symlink(
        sb.path("link-in/real/cm.yaml"),
        sb.path("link-in/alias.yaml"),
    )
    .unwrap();
    let out = run(&mut sb.lockstep(["render", s(&sb.path("link-in"))])).ok();
    assert_eq!(docs(&out).len(), 2);

    // A file over 5 MiB.
    let big = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: big}}\ndata:\n  a: \"{}\"\n",
        "x".repeat(5 * 1024 * 1024)
    );
    sb.write("big/ok.yaml", ok_cm);
    sb.write("big/big.yaml", &big);
    let out = run(&mut sb.lockstep(["render", s(&sb.path("big"))]));
    assert_refused(&out, 1, &["big.yaml: is ", "over the 5242880 byte limit"]);

    // A YAML alias bomb (a billion laughs in nine levels).
    let mut bomb = String::from(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: bomb}\nl0: &l0 [x,x,x,x,x,x,x,x,x,x]\n",
    );
    for i in 1..9 {
        let p = i - 1;
        bomb.push_str(&format!(
            "l{i}: &l{i} [*l{p},*l{p},*l{p},*l{p},*l{p},*l{p},*l{p},*l{p},*l{p},*l{p}]\n"
        ));
    }
    sb.write("bomb/bomb.yaml", &bomb);
    let out = run(&mut sb.lockstep(["render", s(&sb.path("bomb"))]));
    assert_refused(&out, 1, &["bomb.yaml: ", "excessive aliasing"]);
    let out = run(&mut sb.lockstep(["check", s(&sb.path("bomb"))]));
    assert_eq!(out.code, 1, "{}", out.all_text());
    assert!(
        out.stdout_str().contains("bomb.yaml:") && out.stdout_str().contains("excessive aliasing"),
        "{}",
        out.all_text()
    );

    // More than 10,000 objects (over two files, each under the size limit).
    for part in 0..2 {
        let many: String = (0..5001)
            .map(|i| {
                format!("---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c{part}-{i}}}\n")
            })
            .collect();
        sb.write(&format!("many/part{part}.yaml"), many);
    }
    let out = run(&mut sb.lockstep(["render", s(&sb.path("many"))]));
    assert_refused(
        &out,
        1,
        &["part1.yaml: the application renders more than 10000 objects"],
    );
    // Exactly 10,000 is allowed.
    std::fs::remove_file(sb.path("many/part1.yaml")).unwrap();
    let many: String = (0..4999)
        .map(|i| format!("---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: d{i}}}\n"))
        .collect();
    sb.write("many/part1.yaml", many);
    let out = run(&mut sb.lockstep(["render", s(&sb.path("many")), "-o", "json"])).ok();
    assert!(!out.stdout.is_empty());
}

#[test]
fn check_on_the_example_tree_lists_exactly_the_rogue_findings() {
    let sb = Sandbox::new();
    copy_dir(&repo("examples/apps"), &sb.path("apps"));
    sb.copy_in(&repo(POLICY), "policies/tenant-baseline.yaml");

    let out = run(&mut sb.lockstep(["check", "--policy", "policies/tenant-baseline.yaml", "apps"]));
    assert_eq!(out.code, 1, "{}", out.all_text());
    let expected = [
        "apps/rogue/escalate.yaml:3: ClusterRoleBinding rogue-admin: denied by policy \"tenant-baseline\" (kinds.allow): kind rbac.authorization.k8s.io/ClusterRoleBinding is not in the allowed kinds",
        "apps/rogue/escalate.yaml:3: ClusterRoleBinding rogue-admin: denied by policy \"tenant-baseline\" (cluster-scoped kinds): rbac.authorization.k8s.io/ClusterRoleBinding is cluster-scoped; list it in spec.kinds.allow to permit it",
        "apps/rogue/escalate.yaml:16: ConfigMap kube-system/rogue: denied by policy \"tenant-baseline\" (namespaces): namespace \"kube-system\" is not one of [\"team-*\"]",
    ];
    assert_eq!(out.stdout_str().lines().collect::<Vec<_>>(), expected);
    // The line numbers point at each document's `apiVersion`.
    let text = read_string(&sb.path("apps/rogue/escalate.yaml"));
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[2].starts_with("apiVersion:") && lines[15].starts_with("apiVersion:"));

    // The same tree with the SOPS identity: the payments MAC verifies, nothing new.
    let out = run(&mut support::with_key(
        sb.lockstep(["check", "--policy", "policies/tenant-baseline.yaml", "apps"]),
        &sops_key(),
    ));
    assert_eq!(out.code, 1);
    assert_eq!(out.stdout_str().lines().count(), 3, "{}", out.all_text());

    for app in ["frontend", "payments", "billing"] {
        let out = run(&mut support::with_key(
            sb.lockstep([
                "check",
                "--policy",
                "policies/tenant-baseline.yaml",
                &format!("apps/{app}"),
            ]),
            &sops_key(),
        ))
        .ok();
        assert!(out.stdout.is_empty(), "{app}: {}", out.stdout_str());
    }
}

#[test]
fn check_finds_plaintext_secrets_partial_sops_files_parse_errors_and_mac_failures() {
    let sb = Sandbox::new();
    let recipient = sops_recipient();
    let plain = sb.write("src/secret.yaml", canary_secret("db", "team-a"));

    sb.write(
        "repo/plain.yaml",
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c}}\n---\n{}",
            canary_secret("db", "team-a")
        ),
    );
    // The selection rule encrypts only stringData: data.token stays in plain text.
    sb.write(
        "repo/partial.enc.yaml",
        sops_encrypt_yaml(&sb, &plain, &recipient, "^stringData$"),
    );
    sb.write(
        "repo/broken.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\ndata:\n  a: [1, 2\n  b: 3\n",
    );
    let good = sops_encrypt_yaml(&sb, &plain, &recipient, "^(data|stringData)$");
    sb.write("repo/good.enc.yaml", &good);
    // Tamper with a value the MAC covers (the Secret's name is left in plain text).
    let text = String::from_utf8(good).unwrap();
    let tampered = text.replacen("  name: db\n", "  name: dc\n", 1);
    assert_ne!(tampered, text);
    sb.write("tampered/secret.enc.yaml", tampered);

    let out = run(&mut sb.lockstep(["check", "repo"]));
    assert_eq!(out.code, 1, "{}", out.all_text());
    let got: Vec<String> = out.stdout_str().lines().map(str::to_owned).collect();
    let fix = "encrypt the file with `lockstep encrypt` or seal it with `lockstep seal`";
    assert_eq!(got.len(), 4, "{got:#?}");
    assert!(
        got[0].starts_with("repo/broken.yaml:7: ") && got[0].contains("line 7"),
        "{}",
        got[0]
    );
    assert_eq!(
        got[1],
        format!(
            "repo/partial.enc.yaml:1: Secret team-a/db: data.token is not encrypted (the file's selection rule leaves it in plain text); {fix}"
        )
    );
    assert_eq!(
        got[2],
        format!("repo/plain.yaml:5: Secret team-a/db: data.token is not encrypted; {fix}")
    );
    assert_eq!(
        got[3],
        format!("repo/plain.yaml:5: Secret team-a/db: stringData.password is not encrypted; {fix}")
    );
    assert!(
        out.stderr.contains("4 finding(s) in 4 file(s) checked"),
        "{}",
        out.stderr
    );
    assert_no_leak(&out, CANARY.as_bytes());

    // Without an identity a tampered file cannot be told apart: no MAC claim, exit 0.
    let out = run(&mut sb.lockstep(["check", "tampered"])).ok();
    assert!(out.stdout.is_empty(), "{}", out.stdout_str());
    assert!(!out.all_text().contains("MAC"), "{}", out.all_text());
    // With one (flag or environment) the MAC failure is found.
    let k = sops_key();
    for mut cmd in [
        sb.lockstep(["check", "--identity", s(&k), "tampered"]),
        support::with_key(sb.lockstep(["check", "tampered"]), &k),
    ] {
        let out = run(&mut cmd);
        assert_eq!(out.code, 1, "{}", out.all_text());
        let text = out.stdout_str();
        assert!(
            text.starts_with(
                "tampered/secret.enc.yaml:1: SOPS file does not decrypt: MAC mismatch"
            ),
            "{text}"
        );
        assert_eq!(text.lines().count(), 1, "{text}");
        assert_no_leak(&out, CANARY.as_bytes());
    }
    // The untampered file passes the MAC check.
    let out = run(&mut sb.lockstep(["check", "--identity", s(&k), "repo/good.enc.yaml"])).ok();
    assert!(out.stdout.is_empty());
}

#[test]
fn the_canary_never_appears_without_reveal_in_output_errors_or_trace_logs() {
    let sb = Sandbox::new();
    let app = real_sops_app(&sb);
    let b64 = STANDARD.encode(CANARY);
    // A plaintext Secret renders redacted too, and so does the copy of it kubectl keeps
    // in an annotation, a Secret inside a List inside a List, and a misplaced field.
    sb.write("plain-app/secret.yaml", canary_secret("p", "team-a"));
    sb.write(
        "plain-app/list.json",
        format!(
            r#"{{"apiVersion": "v1", "kind": "List", "items": [{{"apiVersion": "v1", "kind": "List", "items": [
  {{"apiVersion": "v1", "kind": "Secret", "strigData": {{"p": "{CANARY}"}}, "metadata": {{"name": "l", "namespace": "team-a",
    "annotations": {{"kubectl.kubernetes.io/last-applied-configuration": "{{\"stringData\":{{\"p\":\"{CANARY}\"}}}}"}}}}}}]}}]}}"#
        ),
    );
    // Inputs that fail, each with the canary inside.
    let bad: [(&str, String); 9] = [
        // The value under a tag it cannot have: parsers like to quote the value.
        (
            "tagged.yaml",
            format!(
                "apiVersion: v1\nkind: Secret\nmetadata: {{name: s}}\nstringData:\n  p: !!int {CANARY}\n"
            ),
        ),
        (
            "unterminated.yaml",
            format!(
                "apiVersion: v1\nkind: Secret\nmetadata: {{name: s}}\nstringData:\n  p: \"{CANARY}\n"
            ),
        ),
        (
            "tab.yaml",
            format!(
                "apiVersion: v1\nkind: Secret\nmetadata: {{name: s}}\nstringData:\n  p: {CANARY}\n\tq: 1\n"
            ),
        ),
        (
            "flow.json",
            format!(
                "{{\"apiVersion\": \"v1\", \"kind\": \"Secret\", \"data\": {{\"p\": \"{b64}\" \"x\"}}}}"
            ),
        ),
        ("scalar-doc.yaml", format!("{CANARY}\n")),
        // A lone JSON or YAML string: sops' reader quotes it whole.
        ("scalar-doc.json", format!("\"{CANARY}\"\n")),
        ("quoted-scalar-doc.yaml", format!("'{CANARY}'\n")),
        (
            "scalar-second-doc.yaml",
            format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c}}\n---\n\"{CANARY}\"\n"),
        ),
        // A policy violation on a Secret holding the canary.
        ("kube-system.yaml", canary_secret("s", "kube-system")),
    ];
    let k = sops_key();
    let (p, wrong) = (repo(POLICY), sealing_key());
    let mut runs: Vec<(Vec<String>, bool)> = vec![
        (
            vec![
                "render".into(),
                s(&app).into(),
                "--identity".into(),
                s(&k).into(),
            ],
            true,
        ),
        (
            vec![
                "render".into(),
                s(&app).into(),
                "--identity".into(),
                s(&k).into(),
                "-o".into(),
                "json".into(),
            ],
            true,
        ),
        (
            vec![
                "render".into(),
                s(&app).into(),
                "--identity".into(),
                s(&wrong).into(),
            ],
            false,
        ),
        (vec!["render".into(), s(&app).into()], false),
        (vec!["render".into(), s(&sb.path("plain-app")).into()], true),
        (
            vec![
                "check".into(),
                s(&app).into(),
                "--identity".into(),
                s(&k).into(),
            ],
            true,
        ),
        (vec!["check".into(), s(&sb.path("plain-app")).into()], false),
    ];
    for (name, text) in &bad {
        let dir = sb.write(&format!("bad-{name}/{name}"), text);
        let dir = dir.parent().unwrap();
        runs.push((
            vec![
                "render".into(),
                s(dir).into(),
                "--identity".into(),
                s(&k).into(),
                "--policy".into(),
                s(&p).into(),
            ],
            false,
        ));
        runs.push((
            vec![
                "check".into(),
                "--policy".into(),
                s(&p).into(),
                s(dir).into(),
            ],
            false,
        ));
    }
    for (args, succeeds) in runs {
        for log in [None, Some("trace")] {
            let mut cmd = sb.lockstep(&args);
            if let Some(level) = log {
                cmd.env("LOCKSTEP_LOG", level);
            }
            let out = run(&mut cmd);
            assert_eq!(
                out.code == 0,
                succeeds,
                "`{}` exit code {}:\n{}",
                out.what,
                out.code,
                out.all_text()
            );
            if !succeeds && args[0] == "render" {
                assert!(
                    out.stdout.is_empty(),
                    "`{}`: {}",
                    out.what,
                    out.stdout_str()
                );
            }
            assert_no_leak(&out, CANARY.as_bytes());
        }
    }
    // The bad files fail for the reason expected, naming the file.
    let out = run(&mut sb.lockstep(["render", s(&sb.path("bad-tagged.yaml"))]));
    assert_refused(&out, 1, &["tagged.yaml: ", "as a !!int"]);
    let out = run(&mut sb.lockstep(["check", s(&sb.path("bad-tagged.yaml"))]));
    assert!(
        out.stdout_str().contains("tagged.yaml:5: "),
        "{}",
        out.all_text()
    );
}

/// One reading of a manifest: the hostile corpus (also the fuzz seeds
/// fuzz/seeds/render_file/hostile-*) goes through `check --policy` and `render --policy`,
/// which must agree with each other and with what the file's name says: `refused-*` is
/// an error in both (naming the file and line or document), `denied-*` parses and is
/// denied by policy for the same objects in both, `ok-*` passes both.
#[test]
fn check_render_and_policy_agree_on_the_hostile_corpus() {
    let sb = Sandbox::new();
    let p = repo(POLICY);
    let seeds = repo("fuzz/seeds/render_file");
    let mut corpus: Vec<_> = std::fs::read_dir(&seeds)
        .expect("seeds")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("hostile-"))
        .collect();
    corpus.sort();
    let mut seen = std::collections::BTreeMap::<&str, usize>::new();
    for name in &corpus {
        let outcome = ["refused", "denied", "ok"]
            .into_iter()
            .find(|o| name.starts_with(&format!("hostile-{o}-")))
            .unwrap_or_else(|| panic!("{name}: name does not say refused, denied or ok"));
        *seen.entry(outcome).or_default() += 1;
        let dir = sb.path(&format!("corpus/{name}.d"));
        sb.copy_in(&seeds.join(name), &format!("corpus/{name}.d/{name}"));
        let rendered = run(&mut sb.lockstep(["render", s(&dir), "--policy", s(&p)]));
        let checked = run(&mut sb.lockstep(["check", "--policy", s(&p), s(&dir)]));
        let findings: Vec<String> = checked.stdout_str().lines().map(str::to_owned).collect();
        let file = dir.join(name);
        let check_prefix = format!("{}:", file.display());
        for f in &findings {
            assert!(f.starts_with(&check_prefix), "{name}: {f}");
        }
        match outcome {
            "ok" => {
                rendered.ok();
                checked.ok();
            }
            "refused" => {
                assert_refused(&rendered, 1, &[name]);
                assert!(
                    !rendered.stderr.contains("denied by policy"),
                    "{name}: {}",
                    rendered.stderr
                );
                assert_eq!(checked.code, 1, "{name}: {}", checked.all_text());
                assert_eq!(findings.len(), 1, "{name}: {findings:?}");
                assert!(
                    findings[0].contains("does not parse")
                        || findings[0].contains("is not a valid object")
                        || findings[0].contains("not a Kubernetes object"),
                    "{name}: {findings:?}"
                );
                // The reason is the same in both.
                let after_line = findings[0].split_once(": ").map_or("", |(_, r)| r);
                let reason = match after_line.split_once(": ") {
                    Some((_, r)) if !after_line.starts_with("not a Kubernetes object") => r,
                    _ => after_line,
                };
                assert!(
                    !reason.is_empty() && rendered.stderr.contains(reason),
                    "{name}: check says {:?}, render says {}",
                    findings[0],
                    rendered.stderr
                );
            }
            _ => {
                assert_refused(&rendered, 1, &["nothing rendered"]);
                assert_eq!(checked.code, 1, "{name}: {}", checked.all_text());
                // `lockstep: DIR: FILE: OBJECT: denied …` and `DIR/FILE:LINE: OBJECT: denied …`
                let render_prefix = format!("lockstep: {}: {name}: ", dir.display());
                let mut from_render: Vec<&str> = rendered
                    .stderr
                    .lines()
                    .filter_map(|l| l.strip_prefix(&render_prefix))
                    .collect();
                let mut from_check: Vec<&str> = findings
                    .iter()
                    .filter_map(|f| {
                        f.strip_prefix(&check_prefix)?
                            .trim_start_matches(|c: char| c.is_ascii_digit())
                            .strip_prefix(": ")
                    })
                    .collect();
                from_render.sort();
                from_check.sort();
                assert!(!from_render.is_empty(), "{name}: {}", rendered.stderr);
                assert_eq!(from_render, from_check, "{name}");
                assert_eq!(from_check.len(), findings.len(), "{name}: {findings:?}");
            }
        }
    }
    // The corpus covers every outcome.
    assert!(seen.get("refused") >= Some(&8), "{seen:?}");
    assert!(seen.get("denied") >= Some(&2), "{seen:?}");
    assert!(seen.get("ok") >= Some(&1), "{seen:?}");
}
