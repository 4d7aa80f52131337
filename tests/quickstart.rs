//! The README's first command, as a test: `lockstep quickstart` settles every example
//! Application as expected, applies a pushed commit, corrects a hand edit, prints no
//! secret value, and leaves no work directory behind.

mod support;

use support::{Sandbox, repo, run};

#[test]
fn the_quickstart_settles_the_examples_and_leaves_nothing_behind() {
    let sb = Sandbox::new();
    // The example Secrets' plaintext values, to look for in the output.
    let mut plaintexts = Vec::new();
    let mut dec = run(sb
        .lockstep(["decrypt", "--identity"])
        .arg(repo("keys-example/sops.agekey"))
        .arg(repo("examples/apps/payments/secret.enc.yaml")))
    .ok()
    .stdout_str();
    dec.push_str(
        &run(sb
            .lockstep(["unseal", "--identity"])
            .arg(repo("keys-example/sealing.agekey"))
            .arg(repo("examples/apps/billing/api-token.sealed.yaml")))
        .ok()
        .stdout_str(),
    );
    let mut in_data = false;
    for line in dec.lines() {
        if line.starts_with("stringData:") || line.starts_with("data:") {
            in_data = true;
            continue;
        }
        if in_data && line.starts_with("  ") {
            if let Some((_, v)) = line.trim().split_once(": ") {
                let v = v.trim_matches('"');
                // Long values only: a short one ("payments") is also a namespace name.
                if v.len() >= 10 {
                    plaintexts.push(v.to_owned());
                }
                // `data:` values are base64 of the plaintext.
                use base64::Engine;
                if let Ok(b) = base64::engine::general_purpose::STANDARD.decode(v)
                    && let Ok(t) = String::from_utf8(b)
                    && t.len() >= 10
                {
                    plaintexts.push(t);
                }
            }
        } else {
            in_data = false;
        }
    }
    assert!(
        plaintexts.iter().any(|p| p.contains("b1ll1ng")) && plaintexts.len() >= 2,
        "plaintexts not found in:\n{dec}"
    );

    let tmp = sb.tmp();
    let out = run(sb
        .lockstep(["quickstart", "-o", "json", "--project"])
        .arg(repo(""))
        .env("TMPDIR", &tmp)
        .env("PATH", path_without_bao())
        .current_dir(sb.dir()));
    assert_eq!(out.code, 0, "quickstart failed:\n{}", out.all_text());
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json summary");
    assert_eq!(summary["ok"], true);
    let apps = summary["apps"].as_array().unwrap();
    let names: Vec<&str> = apps.iter().map(|a| a["name"].as_str().unwrap()).collect();
    for want in ["frontend", "payments", "billing", "rogue"] {
        assert!(names.contains(&want), "{names:?}");
    }
    for a in apps {
        let name = a["name"].as_str().unwrap();
        if name == "rogue" {
            assert_eq!(a["ready"], false);
            assert_eq!(a["reason"], "PolicyDenied", "{a}");
            assert!(
                a["message"].as_str().unwrap().contains("escalate.yaml"),
                "{a}"
            );
        } else {
            assert_eq!(a["ready"], true, "{a}");
            assert!(!a["objects"].as_array().unwrap().is_empty(), "{a}");
        }
    }
    assert!(!names.contains(&"vault"), "{names:?}");
    assert!(
        out.all_text().contains("no OpenBao `bao` on PATH")
            && out.all_text().contains("put `bao` on PATH"),
        "the quickstart says how to add the Vault example:\n{}",
        out.all_text()
    );
    assert!(summary["push"].is_array(), "{summary}");
    assert!(summary["drift"].is_array(), "{summary}");
    let secrets = summary["secrets"].as_array().unwrap();
    assert!(secrets.len() >= 2, "{summary}");

    let text = out.all_text();
    for p in &plaintexts {
        for form in support::leak_forms(p.as_bytes()) {
            assert!(
                !text.contains(&form),
                "the quickstart printed a secret value"
            );
        }
    }
    // Nothing left in the temp directory it used.
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("lockstep-quickstart-")
        })
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// PATH without any directory holding an executable `bao`.
fn path_without_bao() -> std::ffi::OsString {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::join_paths(std::env::split_paths(&path).filter(|d| !d.join("bao").is_file())).unwrap()
}

/// With OpenBao's `bao` on PATH the quickstart starts a dev server and adds the Vault
/// example tenant: its Application reads a Secret through Kubernetes auth and settles
/// Ready; the server is gone afterwards.
#[test]
fn the_quickstart_adds_a_vault_app_when_bao_is_on_path() {
    let sb = Sandbox::new();
    let tools = repo(".tools/bin");
    let bao = support::openbao::bao_bin();
    let dir = bao.parent().unwrap().to_path_buf();
    let path = std::env::join_paths(
        [dir, tools]
            .into_iter()
            .chain(std::env::split_paths(&path_without_bao())),
    )
    .unwrap();
    let tmp = sb.tmp();
    let out = run(sb
        .lockstep(["quickstart", "-o", "json", "--project"])
        .arg(repo(""))
        .env("TMPDIR", &tmp)
        .env("PATH", &path)
        .current_dir(sb.dir()));
    assert_eq!(out.code, 0, "quickstart failed:\n{}", out.all_text());
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json summary");
    assert_eq!(summary["ok"], true, "{summary}");
    let vault = summary["apps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["namespace"] == "team-vault")
        .unwrap_or_else(|| panic!("no Vault app: {summary}"));
    assert_eq!(vault["ready"], true, "{vault}");
    assert_eq!(
        vault["objects"],
        serde_json::json!(["Secret team-vault/db"])
    );
    let secret = summary["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["namespace"] == "team-vault")
        .unwrap_or_else(|| panic!("{summary}"));
    assert_eq!(secret["keys"], serde_json::json!(["password"]));
    let text = out.all_text();
    assert!(
        text.contains("OpenBao dev server at http://127.0.0.1:"),
        "{text}"
    );
    // The dev server the quickstart started is gone with it (the port answers no more).
    let addr = text
        .split("OpenBao dev server at http://")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap()
        .to_owned();
    assert!(
        std::net::TcpStream::connect(&addr).is_err(),
        "OpenBao still listening at {addr}"
    );
}
