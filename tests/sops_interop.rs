//! Interop with the real sops 3.11 both ways, and with the real `age` CLI: files lockstep
//! writes are read by sops and files sops writes are read by lockstep, across formats,
//! recipients, selection options, `.sops.yaml` rules and key groups. Plus `updatekeys`,
//! `rotate`, `edit`, `keygen`, `completions`, and a check that no failure ever prints a
//! secret.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use lockstep::sops::Format;
use support::{
    Output, Sandbox, assert_same_values, ciphertexts, read, run, run_with_stdin, sops_block,
    sops_field, tool, yaml_value_lines,
};

/// Two fresh identities made with `lockstep keygen -o`.
struct Keys {
    k1: PathBuf,
    r1: String,
    k2: PathBuf,
    r2: String,
}

fn keys(sb: &Sandbox) -> Keys {
    let (k1, r1) = sb.keygen("key1.txt");
    let (k2, r2) = sb.keygen("key2.txt");
    Keys { k1, r1, k2, r2 }
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Tool {
    Lockstep,
    Sops,
}

fn cmd(sb: &Sandbox, t: Tool, args: &[&str]) -> std::process::Command {
    match t {
        Tool::Lockstep => sb.lockstep(args),
        Tool::Sops => sb.sops(args),
    }
}

/// `x.yaml` → `x.enc.yaml` (the format is still picked from the last extension).
fn enc_name(name: &str) -> String {
    match name.rsplit_once('.') {
        Some((stem, ext)) => format!("{stem}.enc.{ext}"),
        None => format!("{name}.enc"),
    }
}

/// Encrypts `file` with `t`, asserts success and returns the encrypted bytes (stdout).
fn encrypt(sb: &Sandbox, t: Tool, file: &Path, args: &[&str]) -> Vec<u8> {
    let path = file.to_str().expect("utf-8 path");
    let mut all = vec!["encrypt"];
    all.extend_from_slice(args);
    all.push(path);
    let out = run(&mut cmd(sb, t, &all)).ok();
    assert!(!out.stdout.is_empty(), "{t:?} encrypt printed nothing");
    out.stdout
}

fn decrypt(sb: &Sandbox, t: Tool, file: &Path, key: &Path, extra: &[&str]) -> Output {
    let path = file.to_str().expect("utf-8 path");
    let mut all = vec!["decrypt"];
    all.extend_from_slice(extra);
    all.push(path);
    let mut c = cmd(sb, t, &all);
    c.env("SOPS_AGE_KEY_FILE", key);
    run(&mut c)
}

fn decrypt_ssh(sb: &Sandbox, t: Tool, file: &Path, ssh_key: &Path) -> Output {
    let mut c = cmd(sb, t, &["decrypt", file.to_str().expect("utf-8 path")]);
    c.env("SOPS_AGE_SSH_PRIVATE_KEY_FILE", ssh_key);
    run(&mut c)
}

/// Writes `plain` as `name`, encrypts it with `writer`, then decrypts the result with both
/// tools and every key in `keys`: each decryption must give the input's values (binary:
/// its exact bytes), and both tools must agree. Returns the encrypted text.
fn roundtrip(
    sb: &Sandbox,
    writer: Tool,
    name: &str,
    plain: &[u8],
    args: &[&str],
    keys: &[&Path],
) -> String {
    let src = sb.write(name, plain);
    let enc = encrypt(sb, writer, &src, args);
    let enc_path = sb.write(&enc_name(name), &enc);
    let format = Format::for_path(&src);
    for key in keys {
        let by_sops = decrypt(sb, Tool::Sops, &enc_path, key, &[]).ok();
        let by_us = decrypt(sb, Tool::Lockstep, &enc_path, key, &[]).ok();
        let what = format!(
            "{name} written by {writer:?} {args:?}, key {}",
            key.display()
        );
        if format == Format::Binary {
            assert!(
                by_sops.stdout == plain,
                "{what}: sops did not give back the input bytes"
            );
            assert!(
                by_us.stdout == plain,
                "{what}: lockstep did not give back the input bytes"
            );
        } else {
            assert_same_values(
                &by_sops.stdout,
                plain,
                format,
                &format!("{what}: sops decrypt vs input"),
            );
            assert_same_values(
                &by_us.stdout,
                plain,
                format,
                &format!("{what}: lockstep decrypt vs input"),
            );
            assert_same_values(
                &by_us.stdout,
                &by_sops.stdout,
                format,
                &format!("{what}: lockstep vs sops"),
            );
        }
    }
    String::from_utf8(enc).expect("encrypted files are UTF-8")
}

/// The encrypted YAML line of a top-level or nested key (first match).
fn line_of<'a>(enc: &'a str, key: &str) -> &'a str {
    let needle = format!("{key}:");
    enc.lines()
        .find(|l| l.trim_start().starts_with(&needle))
        .unwrap_or_else(|| panic!("no line for key {key} in:\n{enc}"))
}

fn assert_encrypted(enc: &str, key: &str) {
    let l = line_of(enc, key);
    assert!(
        l.contains("ENC[AES256_GCM,"),
        "{key} should be encrypted: {l}"
    );
}

fn assert_plain(enc: &str, key: &str) {
    let l = line_of(enc, key);
    assert!(!l.contains("ENC["), "{key} should stay plain: {l}");
}

const YAML: &str = "\
# a head comment
database:
    user: admin
    password: hunter2
    port: 5432
    ratio: 0.5
    enabled: true
    empty: \"\"
    nothing: null
    hosts:
        - alpha.example.com
        - beta.example.com
public_unencrypted: visible
secret_enc: only-with-suffix
text: |
    line one
    line two
unicode: \"héllo wörld ✓\"
";

const MULTIDOC: &str = "\
first: one
n: 1
---
second: two
list:
    - a
    - b
---
third:
    nested: three
";

const JSON: &str = r#"{
	"database": {
		"user": "admin",
		"password": "p@ss<word>&more",
		"port": 5432,
		"ratio": 2.5,
		"ssl": true,
		"replica": null,
		"empty": ""
	},
	"hosts": [
		"a.example.com",
		"b.example.com"
	],
	"plain_unencrypted": "not secret",
	"unicode": "héllo"
}
"#;

const DOTENV: &str = "\
# a comment
DB_USER=admin
DB_PASSWORD=hunter2=with=equals
QUOTED=\"kept quotes\"
export EXPORTED=yes
EMPTY=
";

fn binary_payload() -> Vec<u8> {
    let mut v: Vec<u8> = (0u8..=255).collect();
    v.extend_from_slice(b"\n\xff\xfe not utf-8 \x00\x01 end");
    v
}

// ---- lockstep writes, sops reads (and the reverse), per format ----

fn both_ways(name: &str, plain: &[u8], args: &[&str], check: impl Fn(&str)) {
    for writer in [Tool::Lockstep, Tool::Sops] {
        let sb = Sandbox::new();
        let k = keys(&sb);
        let mut all = vec!["--age", k.r1.as_str()];
        all.extend_from_slice(args);
        let enc = roundtrip(&sb, writer, name, plain, &all, &[&k.k1]);
        check(&enc);
        // The other identity opens nothing, in either tool.
        let enc_path = sb.path(&enc_name(name));
        for t in [Tool::Sops, Tool::Lockstep] {
            let out = decrypt(&sb, t, &enc_path, &k.k2, &[]);
            assert_eq!(
                out.code, 128,
                "{t:?} decrypt with a non-recipient key ({writer:?} wrote it): {}",
                out.stderr
            );
        }
    }
}

#[test]
fn yaml_both_ways() {
    both_ways("doc.yaml", YAML.as_bytes(), &[], |enc| {
        assert_encrypted(enc, "password");
        assert_encrypted(enc, "port");
        assert_plain(enc, "public_unencrypted");
        assert!(
            enc.contains("#ENC[AES256_GCM,"),
            "the head comment should be encrypted:\n{enc}"
        );
        assert!(
            !enc.contains("hunter2"),
            "a secret is visible in the encrypted file"
        );
    });
}

#[test]
fn multidoc_yaml_both_ways() {
    both_ways("multi.yaml", MULTIDOC.as_bytes(), &[], |enc| {
        assert_eq!(
            enc.matches("\nsops:").count(),
            3,
            "every document gets its own sops block:\n{enc}"
        );
        assert_encrypted(enc, "nested");
    });
}

#[test]
fn json_both_ways() {
    both_ways("doc.json", JSON.as_bytes(), &[], |enc| {
        assert!(
            enc.contains("\"plain_unencrypted\": \"not secret\""),
            "{enc}"
        );
        assert!(!enc.contains("p@ss"), "a secret is visible:\n{enc}");
        assert!(
            enc.contains("type:float]"),
            "JSON numbers are floats in sops 3.11:\n{enc}"
        );
    });
}

#[test]
fn dotenv_both_ways() {
    both_ways("app.env", DOTENV.as_bytes(), &[], |enc| {
        assert!(
            enc.lines()
                .any(|l| l.starts_with("DB_PASSWORD=ENC[AES256_GCM,")),
            "{enc}"
        );
        assert!(enc.lines().any(|l| l.starts_with("sops_version=")), "{enc}");
        assert!(!enc.contains("hunter2"), "{enc}");
    });
}

#[test]
fn binary_both_ways() {
    both_ways("blob.bin", &binary_payload(), &[], |enc| {
        assert!(enc.contains("\"data\": \"ENC[AES256_GCM,"), "{enc}");
        assert!(
            !enc.contains("unencrypted_suffix"),
            "the binary store writes no selection option:\n{enc}"
        );
    });
}

#[test]
fn two_recipients_both_ways() {
    for writer in [Tool::Lockstep, Tool::Sops] {
        let sb = Sandbox::new();
        let k = keys(&sb);
        let both = format!("{},{}", k.r1, k.r2);
        let enc = roundtrip(
            &sb,
            writer,
            "two.yaml",
            YAML.as_bytes(),
            &["--age", &both],
            &[&k.k1, &k.k2],
        );
        assert_eq!(
            enc.matches("recipient: age1").count(),
            2,
            "two age entries expected:\n{enc}"
        );
        assert_eq!(
            enc.matches("-----BEGIN AGE ENCRYPTED FILE-----").count(),
            2,
            "{enc}"
        );
    }
}

// ---- selection options ----

#[test]
fn encrypted_regex_both_ways() {
    both_ways(
        "sel.yaml",
        YAML.as_bytes(),
        &["--encrypted-regex", "^(password|hosts)$"],
        |enc| {
            assert_encrypted(enc, "password");
            assert_plain(enc, "user");
            assert_plain(enc, "port");
            assert!(enc.contains("encrypted_regex: ^(password|hosts)$"), "{enc}");
            // The list under a matching key is encrypted item by item.
            assert!(!enc.contains("alpha.example.com"), "{enc}");
        },
    );
}

#[test]
fn unencrypted_regex_both_ways() {
    both_ways(
        "sel.yaml",
        YAML.as_bytes(),
        &["--unencrypted-regex", "^(user|unicode)$"],
        |enc| {
            assert_plain(enc, "user");
            assert_plain(enc, "unicode");
            assert_encrypted(enc, "password");
            assert!(enc.contains("unencrypted_regex: ^(user|unicode)$"), "{enc}");
        },
    );
}

#[test]
fn encrypted_suffix_both_ways() {
    both_ways(
        "sel.yaml",
        YAML.as_bytes(),
        &["--encrypted-suffix", "_enc"],
        |enc| {
            assert_encrypted(enc, "secret_enc");
            assert_plain(enc, "password");
            assert!(enc.contains("encrypted_suffix: _enc"), "{enc}");
        },
    );
}

#[test]
fn unencrypted_suffix_both_ways() {
    both_ways(
        "sel.yaml",
        YAML.as_bytes(),
        &["--unencrypted-suffix", "_enc"],
        |enc| {
            assert_plain(enc, "secret_enc");
            assert_encrypted(enc, "password");
            // With a different suffix, `_unencrypted` is an ordinary key again.
            assert_encrypted(enc, "public_unencrypted");
            assert!(enc.contains("unencrypted_suffix: _enc"), "{enc}");
        },
    );
}

/// `--mac-only-encrypted`: sops' `encrypt` subcommand lacks the flag, so the sops side
/// uses its legacy `-e` form. With it, editing a plain value keeps the file readable by
/// both tools.
#[test]
fn mac_only_encrypted_both_ways() {
    for writer in [Tool::Lockstep, Tool::Sops] {
        let sb = Sandbox::new();
        let k = keys(&sb);
        let src = sb.write("mac.yaml", YAML.as_bytes());
        let path = src.to_str().expect("utf-8 path");
        let enc = match writer {
            Tool::Lockstep => encrypt(
                &sb,
                writer,
                &src,
                &[
                    "--age",
                    &k.r1,
                    "--encrypted-regex",
                    "^password$",
                    "--mac-only-encrypted",
                ],
            ),
            Tool::Sops => {
                run(&mut sb.sops([
                    "-e",
                    "--mac-only-encrypted",
                    "--encrypted-regex",
                    "^password$",
                    "--age",
                    &k.r1,
                    path,
                ]))
                .ok()
                .stdout
            }
        };
        let text = String::from_utf8(enc).expect("utf-8");
        assert!(
            text.contains("mac_only_encrypted: true"),
            "{writer:?}:\n{text}"
        );
        let edited = text.replace("user: admin", "user: someone-else");
        assert_ne!(edited, text, "the plain value to edit was not found");
        let p = sb.write("mac.enc.yaml", &edited);
        let expected = YAML.replace("user: admin", "user: someone-else");
        for t in [Tool::Sops, Tool::Lockstep] {
            let out = decrypt(&sb, t, &p, &k.k1, &[]).ok();
            assert_same_values(
                &out.stdout,
                expected.as_bytes(),
                Format::Yaml,
                &format!("{t:?} reading mac-only file by {writer:?}"),
            );
        }
        // Without mac_only_encrypted the same edit is a MAC mismatch in both tools.
        let full = String::from_utf8(encrypt(
            &sb,
            writer,
            &src,
            &["--age", &k.r1, "--encrypted-regex", "^password$"],
        ))
        .expect("utf-8");
        let p = sb.write(
            "full.enc.yaml",
            full.replace("user: admin", "user: someone-else"),
        );
        for t in [Tool::Sops, Tool::Lockstep] {
            assert_eq!(
                decrypt(&sb, t, &p, &k.k1, &[]).code,
                51,
                "{t:?} on an edited full-MAC file by {writer:?}"
            );
        }
    }
}

// ---- .sops.yaml ----

fn write_rules(sb: &Sandbox, k: &Keys) {
    sb.write(
        ".sops.yaml",
        format!(
            "creation_rules:\n  - path_regex: prod/.*\\.yaml$\n    encrypted_regex: ^(password|hosts)$\n    age: >-\n      {r1}\n  - path_regex: dev/\n    age:\n      - {r2}\n  - key_groups:\n      - age:\n          - {r1}\n      - age:\n          - {r2}\n    shamir_threshold: 2\n",
            r1 = k.r1,
            r2 = k.r2
        ),
    );
}

#[test]
fn creation_rules_both_ways() {
    for writer in [Tool::Lockstep, Tool::Sops] {
        let sb = Sandbox::new();
        let k = keys(&sb);
        write_rules(&sb, &k);
        let both = sb.write(
            "both.txt",
            format!(
                "{}\n{}\n",
                support::secret_of(&k.k1),
                support::secret_of(&k.k2)
            ),
        );

        // prod: key1 only, encrypted_regex from the rule.
        let enc = roundtrip(&sb, writer, "prod/db.yaml", YAML.as_bytes(), &[], &[&k.k1]);
        assert_encrypted(&enc, "password");
        assert_plain(&enc, "user");
        assert!(
            enc.contains(&k.r1) && !enc.contains(&k.r2),
            "prod must be for key1 only:\n{enc}"
        );

        // dev: key2 only.
        let enc = roundtrip(&sb, writer, "dev/db.yaml", YAML.as_bytes(), &[], &[&k.k2]);
        assert!(
            enc.contains(&k.r2) && !enc.contains(&k.r1),
            "dev must be for key2 only:\n{enc}"
        );
        assert_eq!(
            decrypt(&sb, Tool::Sops, &sb.path("dev/db.enc.yaml"), &k.k1, &[]).code,
            128,
            "key1 must not open the dev file"
        );

        // Anything else: two key groups, threshold 2: both keys needed.
        let enc = roundtrip(&sb, writer, "other/x.yaml", YAML.as_bytes(), &[], &[&both]);
        assert!(
            enc.contains("key_groups:") && enc.contains("shamir_threshold: 2"),
            "{enc}"
        );
        for t in [Tool::Sops, Tool::Lockstep] {
            for single in [&k.k1, &k.k2] {
                let out = decrypt(&sb, t, &sb.path("other/x.enc.yaml"), single, &[]);
                assert_eq!(
                    out.code, 128,
                    "{t:?}: one of two Shamir groups must not be enough: {}",
                    out.stderr
                );
            }
        }
    }
}

/// `.sops.yaml` is looked up from the working directory, as sops does: from a
/// sub-directory it is found, and a rule-less run outside fails with exit 1 in both.
#[test]
fn config_is_found_from_the_working_directory() {
    let sb = Sandbox::new();
    let k = keys(&sb);
    write_rules(&sb, &k);
    let src = sb.write("prod/sub/db.yaml", YAML.as_bytes());
    for t in [Tool::Lockstep, Tool::Sops] {
        let mut c = cmd(&sb, t, &["encrypt", "db.yaml"]);
        c.current_dir(sb.path("prod/sub"));
        let out = run(&mut c).ok();
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(&k.r1),
            "{t:?} did not use the prod rule"
        );
    }
    let outside = Sandbox::new();
    for t in [Tool::Lockstep, Tool::Sops] {
        let out = run(&mut cmd(
            &outside,
            t,
            &["encrypt", src.to_str().expect("utf-8")],
        ));
        assert_eq!(
            out.code, 1,
            "{t:?} without a config or --age: {}",
            out.stderr
        );
        assert!(out.stdout.is_empty());
    }
}

// ---- SSH recipient ----

#[test]
fn ssh_ed25519_recipient_both_ways() {
    let sb = Sandbox::new();
    let key = sb.path("id_ed25519");
    run(std::process::Command::new(tool("ssh-keygen"))
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "lockstep-test", "-f"])
        .arg(&key))
    .ok();
    let public = support::read_string(&key.with_extension("pub"))
        .trim()
        .to_owned();
    assert!(public.starts_with("ssh-ed25519 "), "{public}");
    for writer in [Tool::Lockstep, Tool::Sops] {
        let src = sb.write("ssh.yaml", YAML.as_bytes());
        let enc = encrypt(&sb, writer, &src, &["--age", &public]);
        let text = String::from_utf8(enc.clone()).expect("utf-8");
        assert!(
            text.contains(&format!("recipient: {public}")),
            "the recipient is kept verbatim:\n{text}"
        );
        let p = sb.write("ssh.enc.yaml", &enc);
        let by_sops = decrypt_ssh(&sb, Tool::Sops, &p, &key).ok();
        let by_us = decrypt_ssh(&sb, Tool::Lockstep, &p, &key).ok();
        assert_same_values(
            &by_sops.stdout,
            YAML.as_bytes(),
            Format::Yaml,
            &format!("sops, ssh, by {writer:?}"),
        );
        assert_same_values(
            &by_us.stdout,
            YAML.as_bytes(),
            Format::Yaml,
            &format!("lockstep, ssh, by {writer:?}"),
        );
    }
}

// ---- updatekeys ----

#[test]
fn updatekeys_changes_only_the_sops_block() {
    let sb = Sandbox::new();
    let k = keys(&sb);
    sb.write(
        ".sops.yaml",
        format!("creation_rules:\n  - age: {}\n", k.r1),
    );
    let src = sb.write("s.yaml", YAML.as_bytes());
    // Written by the real sops, re-keyed by lockstep.
    run(&mut sb.sops(["encrypt", "-i", src.to_str().expect("utf-8")])).ok();
    let before = read(&src);
    sb.write(
        ".sops.yaml",
        format!("creation_rules:\n  - age: {}\n", k.r2),
    );
    let mut c = sb.lockstep(["updatekeys", "-y", "s.yaml"]);
    c.env("SOPS_AGE_KEY_FILE", &k.k1);
    run(&mut c).ok();
    let after = read(&src);
    assert_ne!(before, after, "updatekeys changed nothing");
    assert_eq!(
        yaml_value_lines(&before),
        yaml_value_lines(&after),
        "a value line changed"
    );
    for field in ["lastmodified", "mac"] {
        assert_eq!(
            sops_field(&before, field),
            sops_field(&after, field),
            "{field} changed"
        );
    }
    let block = sops_block(&after);
    assert!(
        block.contains(&k.r2) && !block.contains(&k.r1),
        "the recipients were not replaced:\n{block}"
    );
    let by_new = decrypt(&sb, Tool::Sops, &src, &k.k2, &[]).ok();
    assert_same_values(
        &by_new.stdout,
        YAML.as_bytes(),
        Format::Yaml,
        "sops with the new key after updatekeys",
    );
    let by_old = decrypt(&sb, Tool::Sops, &src, &k.k1, &[]);
    assert_eq!(
        by_old.code, 128,
        "the removed recipient can still decrypt: {}",
        by_old.stderr
    );
    // Nothing left to do: a second run leaves the file alone.
    let mut c = sb.lockstep(["updatekeys", "-y", "s.yaml"]);
    c.env("SOPS_AGE_KEY_FILE", &k.k2);
    run(&mut c).ok();
    assert_eq!(read(&src), after, "an up-to-date file was rewritten");
}

// ---- rotate ----

#[test]
fn rotate_changes_every_ciphertext() {
    let sb = Sandbox::new();
    let k = keys(&sb);
    let src = sb.write("r.yaml", YAML.as_bytes());
    let enc = encrypt(&sb, Tool::Sops, &src, &["--age", &k.r1]);
    let p = sb.write("r.enc.yaml", &enc);
    let mut c = sb.lockstep(["rotate", "-i", "r.enc.yaml"]);
    c.env("SOPS_AGE_KEY_FILE", &k.k1);
    run(&mut c).ok();
    let rotated = read(&p);
    let old = ciphertexts(&enc);
    let new = ciphertexts(&rotated);
    assert_eq!(
        old.len(),
        new.len(),
        "rotate changed the number of encrypted values"
    );
    for c in &new {
        assert!(!old.contains(c), "a ciphertext survived rotation: {c}");
    }
    assert_ne!(sops_block(&enc), sops_block(&rotated));
    let out = decrypt(&sb, Tool::Sops, &p, &k.k1, &[]).ok();
    assert_same_values(
        &out.stdout,
        YAML.as_bytes(),
        Format::Yaml,
        "sops after lockstep rotate",
    );
}

/// Adds the age entry of `donor` (a file encrypted by sops for another recipient) to
/// the metadata of `target`, as a Git writer can: the MAC does not cover the list.
fn inject_age_entry(target: &[u8], donor: &[u8]) -> Vec<u8> {
    let donor = String::from_utf8_lossy(donor);
    let lines: Vec<&str> = donor.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.trim_start().starts_with("- recipient:"))
        .expect("donor has an age entry");
    let end = start
        + lines[start..]
            .iter()
            .position(|l| l.contains("-----END AGE ENCRYPTED FILE-----"))
            .expect("donor's age entry ends");
    let entry = lines[start..=end].join("\n");
    let target = String::from_utf8_lossy(target);
    let out = target.replacen("    age:\n", &format!("    age:\n{entry}\n"), 1);
    assert_ne!(out, target, "no age list to inject into");
    out.into_bytes()
}

/// An attacker adds their `age1…` entry to a file's metadata. The file still decrypts
/// (nothing authenticates the list), `check` reports it against `.sops.yaml`, and
/// `rotate` / `updatekeys` wrap only for the rule's recipients and name the one dropped.
#[test]
fn injected_recipient_gets_no_key_when_a_rule_covers_the_file() {
    let sb = Sandbox::new();
    let k = keys(&sb);
    let (attacker_key, attacker) = sb.keygen("attacker.txt");
    let src = sb.write("r.yaml", YAML.as_bytes());
    let enc = encrypt(&sb, Tool::Sops, &src, &["--age", &k.r1]);
    let donor = encrypt(&sb, Tool::Sops, &src, &["--age", &attacker]);
    std::fs::remove_file(&src).expect("remove plaintext");
    let injected = inject_age_entry(&enc, &donor);
    assert!(sops_block(&injected).contains(&attacker));
    decrypt(
        &sb,
        Tool::Sops,
        &sb.write("probe.enc.yaml", &injected),
        &k.k1,
        &[],
    )
    .ok();
    std::fs::remove_file(sb.path("probe.enc.yaml")).expect("remove probe");
    sb.write(
        ".sops.yaml",
        format!("creation_rules:\n  - age: {}\n", k.r1),
    );

    let p = sb.write("r.enc.yaml", &injected);
    let out = run(&mut sb.lockstep(["check", "r.enc.yaml"])).fails_with(1);
    assert!(
        out.stdout_str().contains("differ from the .sops.yaml")
            && out.stdout_str().contains(&attacker),
        "check did not report the injected recipient: {}",
        out.all_text()
    );

    let mut c = sb.lockstep(["rotate", "-i", "--add-age", &k.r2, "r.enc.yaml"]);
    c.env("SOPS_AGE_KEY_FILE", &k.k1);
    let out = run(&mut c).ok();
    assert!(
        out.stderr
            .contains(&format!("dropped recipient {attacker}")),
        "rotate did not report the dropped recipient: {}",
        out.stderr
    );
    let rotated = read(&p);
    assert!(!sops_block(&rotated).contains(&attacker));
    decrypt(&sb, Tool::Lockstep, &p, &attacker_key, &[]).fails_with(128);
    for key in [&k.k1, &k.k2] {
        let out = decrypt(&sb, Tool::Sops, &p, key, &[]).ok();
        assert_same_values(
            &out.stdout,
            YAML.as_bytes(),
            Format::Yaml,
            "sops after rotate",
        );
    }

    // updatekeys drops it too (and says the key itself is unchanged).
    sb.write("u.enc.yaml", &injected);
    let mut c = sb.lockstep(["updatekeys", "-y", "u.enc.yaml"]);
    c.env("SOPS_AGE_KEY_FILE", &k.k1);
    let out = run(&mut c).ok();
    assert!(
        out.stderr
            .contains(&format!("dropped recipient {attacker}")),
        "{}",
        out.stderr
    );
    assert!(!sops_block(&read(&sb.path("u.enc.yaml"))).contains(&attacker));
    run(&mut sb.lockstep(["check", "u.enc.yaml"])).ok();
    // --add-age adds to the rule's recipients (and check then reports the extra one).
    let mut c = sb.lockstep(["updatekeys", "-y", "--add-age", &k.r2, "u.enc.yaml"]);
    c.env("SOPS_AGE_KEY_FILE", &k.k1);
    run(&mut c).ok();
    decrypt(&sb, Tool::Sops, &sb.path("u.enc.yaml"), &k.k2, &[]).ok();
    run(&mut sb.lockstep(["check", "u.enc.yaml"])).fails_with(1);
}

/// Without a rule, `rotate` can only use the file's list, and prints whom it wraps for.
#[test]
fn rotate_without_a_rule_prints_the_recipients_it_wraps_for() {
    let sb = Sandbox::new();
    let k = keys(&sb);
    let src = sb.write("r.yaml", YAML.as_bytes());
    let enc = encrypt(
        &sb,
        Tool::Sops,
        &src,
        &["--age", &format!("{},{}", k.r1, k.r2)],
    );
    sb.write("r.enc.yaml", &enc);
    let mut c = sb.lockstep(["rotate", "r.enc.yaml"]);
    c.env("SOPS_AGE_KEY_FILE", &k.k1);
    let out = run(&mut c).ok();
    assert!(
        out.stderr.contains("no .sops.yaml rule covers this file")
            && out.stderr.contains(&k.r1)
            && out.stderr.contains(&k.r2),
        "{}",
        out.stderr
    );
}

// ---- edit ----

fn editor_script(sb: &Sandbox, name: &str, body: &str) -> PathBuf {
    let p = sb.path(name);
    support::write(&p, format!("#!/bin/sh\n{body}\n"));
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))
        .expect("chmod editor script");
    p
}

fn edit(sb: &Sandbox, file: &str, editor: &Path, key: &Path) -> Output {
    let mut c = sb.lockstep(["edit", file]);
    c.env("SOPS_AGE_KEY_FILE", key).env("EDITOR", editor);
    run(&mut c)
}

fn tmp_is_empty(sb: &Sandbox) -> Vec<PathBuf> {
    std::fs::read_dir(sb.tmp())
        .expect("list TMPDIR")
        .map(|e| e.expect("dir entry").path())
        .collect()
}

#[test]
fn edit_changes_only_the_edited_value() {
    let sb = Sandbox::new();
    // A file written earlier by the real sops, so `lastmodified` must move on.
    let p = sb.copy_in(&support::vector("06-tampered/base.enc.yaml"), "e.enc.yaml");
    let key = support::vector("key1.txt");
    let enc = read(&p);
    let ed = editor_script(
        &sb,
        "ed.sh",
        "sed -i 's/^password: .*/password: new-password/' \"$1\"",
    );
    edit(&sb, "e.enc.yaml", &ed, &key).ok();
    let after = read(&p);
    let a: Vec<&str> = std::str::from_utf8(&enc).expect("utf-8").lines().collect();
    let b: Vec<&str> = std::str::from_utf8(&after)
        .expect("utf-8")
        .lines()
        .collect();
    assert_eq!(a.len(), b.len(), "edit changed the number of lines");
    let changed: Vec<&str> = a
        .iter()
        .zip(&b)
        .filter(|(x, y)| x != y)
        .map(|(x, _)| x.trim_start().split(':').next().unwrap_or(""))
        .collect();
    assert_eq!(
        changed,
        vec!["password", "lastmodified", "mac"],
        "unexpected lines changed"
    );
    let out = decrypt(&sb, Tool::Sops, &p, &key, &[]).ok();
    let plain = support::read_string(&support::vector("06-tampered/base.plain.yaml"));
    let expected = plain.replace("password: hunter2", "password: new-password");
    assert_ne!(expected, plain);
    assert_same_values(
        &out.stdout,
        expected.as_bytes(),
        Format::Yaml,
        "sops after lockstep edit",
    );
    assert!(
        tmp_is_empty(&sb).is_empty(),
        "edit left files in TMPDIR: {:?}",
        tmp_is_empty(&sb)
    );
}

#[test]
fn failed_edits_leave_the_file_and_tmpdir_untouched() {
    let sb = Sandbox::new();
    let k = keys(&sb);
    let src = sb.write("e.yaml", YAML.as_bytes());
    let enc = encrypt(&sb, Tool::Lockstep, &src, &["--age", &k.r1]);
    let p = sb.write("e.enc.yaml", &enc);
    for (name, body) in [
        ("fails.sh", "sed -i 's/hunter2/changed/' \"$1\"; exit 3"),
        (
            "invalid.sh",
            "printf 'a: [unclosed\\n  - b: : :\\n' > \"$1\"",
        ),
        ("dup.sh", "printf 'a: 1\\na: 2\\n' > \"$1\""),
    ] {
        let ed = editor_script(&sb, name, body);
        let out = edit(&sb, "e.enc.yaml", &ed, &k.k1);
        assert_ne!(out.code, 0, "{name}: edit succeeded");
        assert_ne!(out.code, 200, "{name}: a failed edit is not 'unchanged'");
        assert_eq!(read(&p), enc, "{name}: the encrypted file changed");
        assert!(out.stdout.is_empty(), "{name}: printed to stdout");
        let left = tmp_is_empty(&sb);
        assert!(
            left.is_empty(),
            "{name}: edit left files in TMPDIR: {left:?}"
        );
    }
    let unchanged = editor_script(&sb, "true.sh", "exit 0");
    let out = edit(&sb, "e.enc.yaml", &unchanged, &k.k1);
    assert_eq!(out.code, 200, "an unchanged edit exits 200: {}", out.stderr);
    assert_eq!(read(&p), enc, "an unchanged edit rewrote the file");
    assert!(tmp_is_empty(&sb).is_empty());
}

/// Equal values at different positions of one list share the AAD (list indices are not
/// part of it), so one ciphertext is valid at both. sops 3.11's `edit` reuses one IV for
/// both and writes identical ciphertexts, showing in Git that they are equal; lockstep
/// keeps each value's own ciphertext, and splits ones that sops made identical.
#[test]
fn edit_never_gives_equal_list_values_one_ciphertext() {
    let sb = Sandbox::new();
    let k = keys(&sb);
    let src = sb.write("l.yaml", "l:\n    - canary-eq\n    - canary-eq\nother: x\n");
    let enc = encrypt(&sb, Tool::Sops, &src, &["--age", &k.r1]);
    std::fs::remove_file(&src).expect("remove plaintext");
    let p = sb.write("l.enc.yaml", &enc);
    let before = ciphertexts(&enc);
    assert_ne!(before[0], before[1]);
    let ed = editor_script(&sb, "ed.sh", "sed -i 's/^other: .*/other: y/' \"$1\"");

    edit(&sb, "l.enc.yaml", &ed, &k.k1).ok();
    let after = ciphertexts(&read(&p));
    assert_eq!(
        after[..2],
        before[..2],
        "unchanged values lost their ciphertext"
    );

    // What sops itself writes after an edit.
    let ed2 = editor_script(&sb, "ed2.sh", "sed -i 's/^other: .*/other: z/' \"$1\"");
    let mut c = sb.sops(["edit", "l.enc.yaml"]);
    c.env("SOPS_AGE_KEY_FILE", &k.k1).env("EDITOR", &ed2);
    run(&mut c).ok();
    let by_sops = ciphertexts(&read(&p));
    eprintln!(
        "sops edit gives equal list values equal ciphertexts: {}",
        by_sops[0] == by_sops[1]
    );

    let ed3 = editor_script(&sb, "ed3.sh", "sed -i 's/^other: .*/other: w/' \"$1\"");
    edit(&sb, "l.enc.yaml", &ed3, &k.k1).ok();
    let split = ciphertexts(&read(&p));
    assert_ne!(split[0], split[1], "lockstep edit wrote equal ciphertexts");
    let out = decrypt(&sb, Tool::Sops, &p, &k.k1, &[]).ok();
    assert_same_values(
        &out.stdout,
        b"l:\n    - canary-eq\n    - canary-eq\nother: w\n",
        Format::Yaml,
        "sops after lockstep edit",
    );
}

/// A `kill` or a closed terminal while the editor runs: the editor is stopped and the
/// plaintext file and its directory are gone before lockstep exits; the file is unchanged.
#[test]
fn edit_removes_the_plaintext_on_sigterm_and_sighup() {
    let sb = Sandbox::new();
    let k = keys(&sb);
    let src = sb.write("e.yaml", "password: canary-sig-4417\n");
    let enc = encrypt(&sb, Tool::Lockstep, &src, &["--age", &k.r1]);
    let p = sb.write("e.enc.yaml", &enc);
    let started = sb.path("started");
    let ed = editor_script(
        &sb,
        "slow.sh",
        &format!("echo \"$1\" > '{}'; exec sleep 30", started.display()),
    );
    for sig in [libc::SIGTERM, libc::SIGHUP] {
        let _ = std::fs::remove_file(&started);
        let mut c = sb.lockstep(["edit", "e.enc.yaml"]);
        c.env("SOPS_AGE_KEY_FILE", &k.k1)
            .env("EDITOR", &ed)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let child = c.spawn().expect("start lockstep edit");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let temp = loop {
            if let Ok(t) = std::fs::read_to_string(&started)
                && t.ends_with('\n')
            {
                break PathBuf::from(t.trim_end());
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the editor never started"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        assert!(temp.exists(), "no plaintext file while editing: {temp:?}");
        let pid = child.id() as libc::pid_t;
        // SAFETY: signals the lockstep process this test started and has not reaped.
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0, "kill failed");
        let killed = std::time::Instant::now();
        // The editor holds lockstep's stdout/stderr: this returns once it has stopped too.
        let out = child.wait_with_output().expect("wait for lockstep edit");
        assert!(
            killed.elapsed() < std::time::Duration::from_secs(10),
            "signal {sig}: the editor kept running"
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "signal {sig}: edit succeeded");
        assert!(
            stderr.contains("plaintext removed"),
            "signal {sig}: lockstep did not handle the signal: {:?} {stderr}",
            out.status
        );
        assert!(!temp.exists(), "signal {sig}: plaintext left at {temp:?}");
        let left = tmp_is_empty(&sb);
        assert!(left.is_empty(), "signal {sig}: TMPDIR not empty: {left:?}");
        assert_eq!(read(&p), enc, "signal {sig}: the encrypted file changed");
        assert!(!stderr.contains("canary") && out.stdout.is_empty());
    }
}

// ---- keygen ----

#[test]
fn keygen_file_is_private_and_works_with_age() {
    let sb = Sandbox::new();
    let (key, recipient) = sb.keygen("id.txt");
    let mode = std::fs::metadata(&key)
        .expect("stat key file")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "key file mode is {mode:o}");
    let before = read(&key);
    let again = run(&mut sb.lockstep(["keygen", "-o", key.to_str().expect("utf-8")]));
    assert_ne!(again.code, 0, "keygen overwrote an existing identity");
    assert!(again.stdout.is_empty());
    assert_eq!(read(&key), before, "keygen changed an existing identity");

    let message = b"round trip through the age CLI\n";
    let enc = run_with_stdin(
        std::process::Command::new(tool("age")).args(["-e", "-r", &recipient]),
        Some(message),
    )
    .ok();
    let dec = run_with_stdin(
        std::process::Command::new(tool("age"))
            .arg("-d")
            .arg("-i")
            .arg(&key),
        Some(&enc.stdout),
    )
    .ok();
    assert_eq!(
        dec.stdout, message,
        "age -d with the lockstep key file did not round-trip"
    );

    // And a key made by age-keygen works with lockstep and sops.
    let agekey = sb.path("agekey.txt");
    run(std::process::Command::new(tool("age-keygen"))
        .arg("-o")
        .arg(&agekey))
    .ok();
    let r = support::recipient_of(&agekey);
    let src = sb.write("k.yaml", YAML.as_bytes());
    let enc = encrypt(&sb, Tool::Lockstep, &src, &["--age", &r]);
    let p = sb.write("k.enc.yaml", &enc);
    let out = decrypt(&sb, Tool::Sops, &p, &agekey, &[]).ok();
    assert_same_values(&out.stdout, YAML.as_bytes(), Format::Yaml, "age-keygen key");
}

#[test]
fn keygen_to_stdout_prints_a_key_file() {
    let sb = Sandbox::new();
    let out = run(&mut sb.lockstep(["keygen"])).ok();
    let text = out.stdout_str();
    assert!(
        text.lines().any(|l| l.starts_with("AGE-SECRET-KEY-1")),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l.starts_with("# public key: age1")),
        "{text}"
    );
}

// ---- nothing secret in any failure ----

const CANARY: &str = "canary-7f3a9c";

#[test]
fn canary_never_leaks_on_failure() {
    let sb = Sandbox::new();
    let k = keys(&sb);
    let plain = format!(
        "user: admin\nnote_unencrypted: plain\ntoken: {CANARY}\nnested:\n    deep: {CANARY}-deep\nlist:\n    - {CANARY}-item\n"
    );
    let src = sb.write("c.yaml", &plain);
    let enc = encrypt(&sb, Tool::Lockstep, &src, &["--age", &k.r1]);
    assert!(
        !String::from_utf8_lossy(&enc).contains(CANARY),
        "the canary is visible in the encrypted file"
    );
    let p = sb.write("c.enc.yaml", &enc);
    let text = String::from_utf8(enc.clone()).expect("utf-8");

    // The explicit outputs do contain it (so the searches below can fail).
    let ok = decrypt(&sb, Tool::Lockstep, &p, &k.k1, &[]).ok();
    assert!(ok.stdout_str().contains(CANARY));
    let ok = decrypt(
        &sb,
        Tool::Lockstep,
        &p,
        &k.k1,
        &["--extract", r#"["token"]"#],
    )
    .ok();
    assert_eq!(ok.stdout_str(), CANARY);

    let mut outputs: Vec<(String, Output)> = Vec::new();
    outputs.push((
        "wrong key".into(),
        decrypt(&sb, Tool::Lockstep, &p, &k.k2, &[]),
    ));
    // A bit flip in the canary's own ciphertext.
    let token_line = line_of(&text, "token").to_owned();
    let data_at = token_line.find("data:").expect("data field") + 5;
    let mut flipped = token_line.clone().into_bytes();
    flipped[data_at] = if flipped[data_at] == b'A' { b'B' } else { b'A' };
    let tampered = text.replace(&token_line, std::str::from_utf8(&flipped).expect("utf-8"));
    let t = sb.write("tampered.enc.yaml", &tampered);
    outputs.push((
        "tampered value".into(),
        decrypt(&sb, Tool::Lockstep, &t, &k.k1, &[]),
    ));
    // A renamed key: its value no longer authenticates (the AAD changed).
    let m = sb.write("renamed.enc.yaml", text.replacen("user: ", "userx: ", 1));
    outputs.push((
        "renamed key".into(),
        decrypt(&sb, Tool::Lockstep, &m, &k.k1, &[]),
    ));
    let lm = sb.write(
        "lm.enc.yaml",
        text.replace(
            &sops_field(&enc, "lastmodified").expect("lastmodified"),
            "\"2001-01-01T00:00:00Z\"",
        ),
    );
    // A changed plain value: MAC mismatch (the message carries MACs, never values).
    let changed = text.replace("note_unencrypted: plain", "note_unencrypted: edited");
    assert_ne!(changed, text, "the plain value to edit was not found");
    let mm = sb.write("mac.enc.yaml", changed);
    outputs.push((
        "plain value changed".into(),
        decrypt(&sb, Tool::Lockstep, &mm, &k.k1, &[]),
    ));
    outputs.push((
        "lastmodified changed".into(),
        decrypt(&sb, Tool::Lockstep, &lm, &k.k1, &[]),
    ));
    for path in [
        r#"["token"]["x"]"#,
        r#"["missing"]"#,
        r#"["list"][5]"#,
        r#"["token""#,
    ] {
        outputs.push((
            format!("--extract {path}"),
            decrypt(&sb, Tool::Lockstep, &p, &k.k1, &["--extract", path]),
        ));
    }
    for (name, body) in [
        ("fail.sh", "exit 1".to_owned()),
        (
            "invalid.sh",
            format!("sed -i 's/^token: .*/token: [{CANARY}: {{/' \"$1\""),
        ),
        ("tab.sh", format!("printf 'a:\\n\\t- {CANARY}\\n' > \"$1\"")),
    ] {
        let ed = editor_script(&sb, name, &body);
        let out = edit(&sb, "c.enc.yaml", &ed, &k.k1);
        assert_ne!(out.code, 0, "edit with {name} succeeded");
        outputs.push((format!("edit {name}"), out));
    }
    let mut c = sb.lockstep(["rotate", "c.enc.yaml"]);
    c.env("SOPS_AGE_KEY_FILE", &k.k2);
    outputs.push(("rotate with wrong key".into(), run(&mut c)));
    outputs.push((
        "encrypt an encrypted file".into(),
        run(&mut sb.lockstep(["encrypt", "--age", &k.r1, "c.enc.yaml"])),
    ));
    // A plaintext .env whose secret line lacks `=` (sops would print the line).
    sb.write("bad.env", format!("USER=admin\n{CANARY}\n"));
    outputs.push((
        "encrypt a .env line without =".into(),
        run(&mut sb.lockstep(["encrypt", "--age", &k.r1, "bad.env"])),
    ));

    for (what, out) in &outputs {
        assert_ne!(out.code, 0, "{what}: expected a failure");
        let all = out.all_text();
        assert!(
            !all.contains(CANARY),
            "{what}: the secret appears in the output:\n{all}"
        );
        assert!(!out.stderr.is_empty(), "{what}: failed without a message");
    }
    assert_eq!(read(&p), enc, "a failure changed the encrypted file");
}

// ---- completions ----

#[test]
fn completions_for_every_shell() {
    let sb = Sandbox::new();
    for shell in ["bash", "zsh", "fish"] {
        let out = run(&mut sb.lockstep(["completions", shell])).ok();
        let text = out.stdout_str();
        assert!(
            text.len() > 100,
            "{shell}: completions are suspiciously short"
        );
        assert!(
            text.contains("lockstep"),
            "{shell}: completions do not mention lockstep"
        );
        assert!(
            text.contains("decrypt"),
            "{shell}: completions lack the decrypt subcommand"
        );
    }
}
