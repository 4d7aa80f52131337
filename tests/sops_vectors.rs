//! The sops 3.11 test vectors: every file the real sops wrote decrypts with `lockstep
//! decrypt` to the bytes the real `sops decrypt` printed (kept as `*.decrypted.*`), and to
//! the same values the real sops prints when run here. Tampered and malformed files fail
//! with sops' exit codes and one clear line on stderr.

mod support;

use std::path::{Path, PathBuf};

use lockstep::sops::Format;
use support::{Output, Sandbox, assert_same_values, read, run, secret_of, vector, vectors_dir};

/// Which identities a decryption gets.
#[derive(Clone, Copy)]
enum Keys {
    /// `SOPS_AGE_KEY_FILE` pointing at one of the vector key files.
    File(&'static str),
    /// `SOPS_AGE_KEY` holding the secrets of several vector key files.
    Env(&'static [&'static str]),
    /// `SOPS_AGE_SSH_PRIVATE_KEY_FILE` (a vector's OpenSSH private key), nothing else.
    Ssh(&'static str),
    /// No identity at all.
    None,
}

fn apply_keys(cmd: &mut std::process::Command, keys: Keys) {
    match keys {
        Keys::File(f) => {
            cmd.env("SOPS_AGE_KEY_FILE", vector(f));
        }
        Keys::Env(files) => {
            let secrets: Vec<String> = files.iter().map(|f| secret_of(&vector(f))).collect();
            cmd.env("SOPS_AGE_KEY", secrets.join("\n"));
        }
        Keys::Ssh(f) => {
            cmd.env("SOPS_AGE_SSH_PRIVATE_KEY_FILE", vector(f));
        }
        Keys::None => {}
    }
}

fn decrypt_with(sb: &Sandbox, tool: &str, file: &Path, keys: Keys, extra: &[&str]) -> Output {
    let mut args: Vec<&std::ffi::OsStr> = vec!["decrypt".as_ref()];
    args.extend(extra.iter().map(std::ffi::OsStr::new));
    args.push(file.as_os_str());
    let mut cmd = match tool {
        "lockstep" => sb.lockstep(args),
        _ => sb.sops(args),
    };
    apply_keys(&mut cmd, keys);
    run(&mut cmd)
}

/// The format sops picks for a file name (`db.yaml.decrypted` is named after `db.yaml`).
fn format_of(enc: &Path) -> Format {
    Format::for_path(enc)
}

/// lockstep decrypts `enc` to exactly the bytes of `decrypted` (when given) and to the
/// same values as the real sops, run now.
fn check_decrypt(enc: &str, decrypted: Option<&str>, keys: Keys) {
    let sb = Sandbox::new();
    let enc_path = vector(enc);
    let ours = decrypt_with(&sb, "lockstep", &enc_path, keys, &[]).ok();
    let theirs = decrypt_with(&sb, "sops", &enc_path, keys, &[]).ok();
    let format = format_of(&enc_path);
    match decrypted {
        Some(d) => {
            let want = read(&vector(d));
            assert!(
                ours.stdout == want,
                "{enc}: lockstep's output differs from {d} byte for byte\n--- lockstep ---\n{}\n--- {d} ---\n{}",
                ours.stdout_str(),
                String::from_utf8_lossy(&want)
            );
        }
        None => {
            // No recorded output: the real sops' output of this run is the reference.
            assert!(
                ours.stdout == theirs.stdout,
                "{enc}: lockstep's output differs from sops' byte for byte\n--- lockstep ---\n{}\n--- sops ---\n{}",
                ours.stdout_str(),
                theirs.stdout_str()
            );
        }
    }
    assert_same_values(
        &ours.stdout,
        &theirs.stdout,
        format,
        &format!("{enc}: lockstep vs sops decrypt"),
    );
    assert!(
        ours.stderr.is_empty(),
        "{enc}: lockstep wrote to stderr on success: {}",
        ours.stderr
    );
}

macro_rules! decrypt_vector {
    ($($name:ident: $enc:expr, $dec:expr, $keys:expr;)*) => {
        $(
            #[test]
            fn $name() {
                check_decrypt($enc, $dec, $keys);
            }
        )*
    };
}

const K1: Keys = Keys::File("key1.txt");

decrypt_vector! {
    v01_k8s_secret: "01-k8s-secret/secret.enc.yaml", Some("01-k8s-secret/secret.decrypted.yaml"), K1;
    v02_complex_yaml: "02-complex-yaml/complex.enc.yaml", Some("02-complex-yaml/complex.decrypted.yaml"), K1;
    v03_json: "03-json/config.enc.json", Some("03-json/config.decrypted.json"), K1;
    v04_dotenv: "04-dotenv/app.enc.env", Some("04-dotenv/app.decrypted.env"), K1;
    v05_multidoc_yaml: "05-multidoc-yaml/multi.enc.yaml", Some("05-multidoc-yaml/multi.decrypted.yaml"), K1;
    v06_base: "06-tampered/base.enc.yaml", None, K1;
    v07_two_recipients_key1: "07-two-recipients/two.enc.yaml", Some("07-two-recipients/two.decrypted.yaml"), K1;
    v07_two_recipients_key2_file: "07-two-recipients/two.enc.yaml", Some("07-two-recipients/two.decrypted.yaml"), Keys::File("key2.txt");
    v07_two_recipients_key2_env: "07-two-recipients/two.enc.yaml", Some("07-two-recipients/two.decrypted.yaml"), Keys::Env(&["key2.txt"]);
    v08_binary_blob: "08-binary/blob.enc.bin", Some("08-binary/blob.decrypted.bin"), K1;
    v08_binary_notes: "08-binary/notes.enc.txt", Some("08-binary/notes.decrypted.txt"), K1;
    // A binary envelope named .json is read as JSON: it decrypts to {"data": "..."}.
    v08_json_as_binary: "08-binary/json-as-binary.enc.json", None, K1;
    v09_repo_prod: "09-sops-yaml-config/repo/secrets/prod/db.yaml", Some("09-sops-yaml-config/repo/secrets/prod/db.yaml.decrypted"), K1;
    v09_repo_dev: "09-sops-yaml-config/repo/secrets/dev/db.yaml", Some("09-sops-yaml-config/repo/secrets/dev/db.yaml.decrypted"), Keys::File("key2.txt");
    v09_repo_app_env: "09-sops-yaml-config/repo/apps/app.env", Some("09-sops-yaml-config/repo/apps/app.env.decrypted"), K1;
    v09_repo_other: "09-sops-yaml-config/repo/apps/other.yaml", Some("09-sops-yaml-config/repo/apps/other.yaml.decrypted"), K1;
    v10_mac_only: "10-mac-only-encrypted/mac-only.enc.yaml", None, K1;
    v10_mac_only_plain_value_edited: "10-mac-only-encrypted/mac-only.unencrypted-value-edited.enc.yaml", None, K1;
    v10_full_mac: "10-mac-only-encrypted/full-mac.enc.yaml", None, K1;
    v11_threshold2_yaml: "11-key-groups-shamir/kg-threshold2.enc.yaml", Some("11-key-groups-shamir/kg-threshold2.decrypted.yaml"), Keys::Env(&["key1.txt", "key2.txt"]);
    v11_threshold2_json: "11-key-groups-shamir/kg-threshold2.enc.json", Some("11-key-groups-shamir/kg-threshold2.decrypted.json"), Keys::Env(&["key1.txt", "key2.txt"]);
    v11_threshold2_env: "11-key-groups-shamir/kg-threshold2.enc.env", Some("11-key-groups-shamir/kg-threshold2.decrypted.env"), Keys::Env(&["key1.txt", "key2.txt"]);
    v11_3groups_keys12: "11-key-groups-shamir/kg-3groups-threshold2.enc.yaml", Some("11-key-groups-shamir/kg-3groups-threshold2.decrypted.yaml"), Keys::Env(&["key1.txt", "key2.txt"]);
    v11_3groups_keys13: "11-key-groups-shamir/kg-3groups-threshold2.enc.yaml", Some("11-key-groups-shamir/kg-3groups-threshold2.decrypted.yaml"), Keys::Env(&["key1.txt", "key3.txt"]);
    v11_3groups_keys23: "11-key-groups-shamir/kg-3groups-threshold2.enc.yaml", Some("11-key-groups-shamir/kg-3groups-threshold2.decrypted.yaml"), Keys::Env(&["key2.txt", "key3.txt"]);
    v12_json_duplicate_key: "12-edge-cases/json-duplicate-key.enc.json", Some("12-edge-cases/json-duplicate-key.decrypted.json"), K1;
    v12_nested_flow: "12-edge-cases/nested-flow.enc.yaml", Some("12-edge-cases/nested-flow.decrypted.yaml"), K1;
    v12_numbers: "12-edge-cases/numbers.enc.yaml", Some("12-edge-cases/numbers.decrypted.yaml"), K1;
    v12_timestamps: "12-edge-cases/timestamps.enc.yaml", Some("12-edge-cases/timestamps.decrypted.yaml"), K1;
    v12_yaml_scalars: "12-edge-cases/yaml-scalars.enc.yaml", Some("12-edge-cases/yaml-scalars.decrypted.yaml"), K1;
    v13_encrypted_regex: "13-selection-rules/rules.encrypted-regex.enc.yaml", Some("13-selection-rules/rules.encrypted-regex.decrypted.yaml"), K1;
    v13_encrypted_suffix: "13-selection-rules/rules.encrypted-suffix.enc.yaml", Some("13-selection-rules/rules.encrypted-suffix.decrypted.yaml"), K1;
    v13_unencrypted_regex: "13-selection-rules/rules.unencrypted-regex.enc.yaml", Some("13-selection-rules/rules.unencrypted-regex.decrypted.yaml"), K1;
    v13_unencrypted_suffix: "13-selection-rules/rules.unencrypted-suffix.enc.yaml", Some("13-selection-rules/rules.unencrypted-suffix.decrypted.yaml"), K1;
    v14_set_before: "14-misc/set-before.enc.yaml", None, K1;
    v14_set_after: "14-misc/set-after.enc.yaml", Some("14-misc/set-after.decrypted.yaml"), K1;
    v14_emptydoc: "14-misc/emptydoc.enc.yaml", Some("14-misc/emptydoc.decrypted.yaml"), K1;
    v14_comment_regex: "14-misc/comment-regex.enc.yaml", Some("14-misc/comment-regex.decrypted.yaml"), K1;
    v14_empty_binary: "14-misc/empty.enc.bin", Some("14-misc/empty.decrypted.bin"), K1;
    v15_spec_yaml: "15-written-by-spec/spec.enc.yaml", Some("15-written-by-spec/spec.decrypted.yaml"), K1;
    v15_spec_json: "15-written-by-spec/spec.enc.json", Some("15-written-by-spec/spec.decrypted.json"), K1;
    v15_spec_env: "15-written-by-spec/spec.enc.env", Some("15-written-by-spec/spec.decrypted.env"), K1;
    v15_spec_yaml_key2: "15-written-by-spec/spec.enc.yaml", Some("15-written-by-spec/spec.decrypted.yaml"), Keys::File("key2.txt");
    v16_ssh_recipient: "16-ssh-recipient/ssh.enc.yaml", Some("16-ssh-recipient/ssh.decrypted.yaml"), Keys::Ssh("16-ssh-recipient/id_ed25519");
}

/// A plain comment added to an encrypted file is kept. sops logs a warning; lockstep may
/// too, so stderr is not checked here (unlike the other vectors).
#[test]
fn v14_plain_comment_added() {
    let sb = Sandbox::new();
    let enc = vector("14-misc/plain-comment-added.enc.yaml");
    let ours = decrypt_with(&sb, "lockstep", &enc, K1, &[]).ok();
    let theirs = decrypt_with(&sb, "sops", &enc, K1, &[]).ok();
    assert_eq!(
        ours.stdout_str(),
        String::from_utf8_lossy(&read(&vector("14-misc/plain-comment-added.decrypted.yaml"))),
        "plain-comment-added: lockstep's output differs from the recorded sops output"
    );
    assert_same_values(
        &ours.stdout,
        &theirs.stdout,
        Format::Yaml,
        "plain-comment-added: lockstep vs sops",
    );
}

/// Checks a failing decryption: the exit code, an empty stdout, and exactly one line on
/// stderr that names the file. Returns that line.
fn assert_clean_failure(out: &Output, file: &Path, code: i32) -> String {
    assert_eq!(
        out.code, code,
        "`{}`: expected exit code {code}, got {}; stderr:\n{}",
        out.what, out.code, out.stderr
    );
    assert!(
        out.stdout.is_empty(),
        "`{}` failed but wrote {} bytes to stdout",
        out.what,
        out.stdout.len()
    );
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "`{}`: expected exactly one line on stderr, got:\n{}",
        out.what,
        out.stderr
    );
    let name = file
        .file_name()
        .expect("file name")
        .to_string_lossy()
        .into_owned();
    assert!(
        lines[0].contains(&name),
        "`{}`: the error line does not name the file {name}: {}",
        out.what,
        lines[0]
    );
    lines[0].to_owned()
}

fn recorded_exit_code(rel: &str) -> i32 {
    let p = vector(rel);
    support::read_string(&p)
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{}: not an exit code: {e}", p.display()))
}

/// What kind of failure a tampered vector is, by its recorded sops message.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Cause {
    /// The recomputed MAC differs (or there is none).
    MacMismatch,
    /// The stored MAC does not decrypt (its AAD, `lastmodified`, changed).
    MacUndecryptable,
    /// A value's GCM tag does not verify.
    ValueAuthentication,
}

fn check_tampered(name: &str, cause: Cause) {
    let sb = Sandbox::new();
    let enc = vector(&format!("06-tampered/{name}.enc.yaml"));
    let code = recorded_exit_code(&format!("06-tampered/{name}.exitcode.txt"));
    let recorded = support::read_string(&vector(&format!("06-tampered/{name}.stderr.txt")));

    let theirs = decrypt_with(&sb, "sops", &enc, K1, &[]);
    assert_eq!(
        theirs.code, code,
        "the real sops no longer fails {name} as recorded: {}",
        theirs.stderr
    );

    let ours = decrypt_with(&sb, "lockstep", &enc, K1, &[]);
    let line = assert_clean_failure(&ours, &enc, code);
    match cause {
        Cause::MacMismatch => {
            assert!(
                line.contains("MAC mismatch"),
                "{name}: expected a MAC mismatch message: {line}"
            );
            // The recorded message is sops' own and includes both MACs, or says there is none.
            let recorded = recorded.trim();
            assert!(
                line.ends_with(recorded),
                "{name}: message should end with sops' {recorded:?}: {line}"
            );
        }
        Cause::MacUndecryptable => {
            assert!(
                line.contains("Cannot decrypt MAC"),
                "{name}: expected a MAC decryption message: {line}"
            );
            assert!(!line.contains("MAC mismatch"), "{name}: {line}");
        }
        Cause::ValueAuthentication => {
            assert!(
                line.contains("authentication failed"),
                "{name}: expected an authentication failure: {line}"
            );
            assert!(
                !line.contains("MAC"),
                "{name}: a value failure must not look like a MAC failure: {line}"
            );
        }
    }
}

#[test]
fn tampered_a_unencrypted_value_changed() {
    check_tampered("a-unencrypted-value-changed", Cause::MacMismatch);
}
#[test]
fn tampered_b_ciphertext_bitflip() {
    check_tampered("b-ciphertext-bitflip", Cause::ValueAuthentication);
}
#[test]
fn tampered_c_list_items_swapped() {
    check_tampered("c-list-items-swapped", Cause::MacMismatch);
}
#[test]
fn tampered_d_key_removed() {
    check_tampered("d-key-removed", Cause::MacMismatch);
}
#[test]
fn tampered_e_values_swapped_between_keys() {
    check_tampered("e-values-swapped-between-keys", Cause::ValueAuthentication);
}
#[test]
fn tampered_f_lastmodified_changed() {
    check_tampered("f-lastmodified-changed", Cause::MacUndecryptable);
}
#[test]
fn tampered_g_mac_empty() {
    check_tampered("g-mac-empty", Cause::MacMismatch);
}

/// Every tampered vector decrypts with `--ignore-mac` only when the damage is in the MAC.
#[test]
fn ignore_mac_skips_only_the_mac_check() {
    let sb = Sandbox::new();
    for (name, opens) in [
        ("a-unencrypted-value-changed", true),
        ("c-list-items-swapped", true),
        ("f-lastmodified-changed", true),
        ("g-mac-empty", true),
        ("b-ciphertext-bitflip", false),
    ] {
        let enc = vector(&format!("06-tampered/{name}.enc.yaml"));
        let ours = decrypt_with(&sb, "lockstep", &enc, K1, &["--ignore-mac"]);
        let theirs = decrypt_with(&sb, "sops", &enc, K1, &["--ignore-mac"]);
        assert_eq!(
            ours.code == 0,
            opens,
            "{name} --ignore-mac: lockstep exit {} ({})",
            ours.code,
            ours.stderr
        );
        assert_eq!(
            ours.code, theirs.code,
            "{name} --ignore-mac: lockstep and sops disagree: {}",
            ours.stderr
        );
        if opens {
            assert_same_values(
                &ours.stdout,
                &theirs.stdout,
                Format::Yaml,
                &format!("{name} --ignore-mac"),
            );
        }
    }
}

#[test]
fn no_identity_fails_with_128() {
    let sb = Sandbox::new();
    let enc = vector("06-tampered/base.enc.yaml");
    let code = recorded_exit_code("06-tampered/no-identity.exitcode.txt");
    assert_eq!(code, 128);
    let theirs = decrypt_with(&sb, "sops", &enc, Keys::None, &[]);
    assert_eq!(
        theirs.code, code,
        "sops without identities: {}",
        theirs.stderr
    );
    let ours = decrypt_with(&sb, "lockstep", &enc, Keys::None, &[]);
    let line = assert_clean_failure(&ours, &enc, code);
    assert!(
        line.contains("age13737pkd5rxzmujsrm4nkmhqdya0tkvhwly424fwgzpqnswwcka3qstlkg8"),
        "the message should name the recipient that could not be opened: {line}"
    );
    assert!(
        line.contains("SOPS_AGE_KEY_FILE"),
        "the message should list where identities were searched: {line}"
    );
}

#[test]
fn wrong_identity_fails_with_128() {
    let sb = Sandbox::new();
    let enc = vector("06-tampered/base.enc.yaml");
    let code = recorded_exit_code("06-tampered/wrong-identity.exitcode.txt");
    let wrong = Keys::File("key2.txt");
    let theirs = decrypt_with(&sb, "sops", &enc, wrong, &[]);
    assert_eq!(
        theirs.code, code,
        "sops with the wrong identity: {}",
        theirs.stderr
    );
    let ours = decrypt_with(&sb, "lockstep", &enc, wrong, &[]);
    assert_clean_failure(&ours, &enc, code);
}

/// With 2 key groups and threshold 2, one key is not enough (exit 128), as in sops.
#[test]
fn shamir_below_threshold_fails_with_128() {
    let sb = Sandbox::new();
    let enc = vector("11-key-groups-shamir/kg-threshold2.enc.yaml");
    let theirs = decrypt_with(&sb, "sops", &enc, K1, &[]);
    assert_eq!(
        theirs.code, 128,
        "sops with one of two groups: {}",
        theirs.stderr
    );
    let ours = decrypt_with(&sb, "lockstep", &enc, K1, &[]);
    let line = assert_clean_failure(&ours, &enc, 128);
    assert!(
        line.contains('2'),
        "the message should say how many groups are needed: {line}"
    );
}

#[test]
fn mac_only_encrypted_off_detects_plain_value_edit() {
    let sb = Sandbox::new();
    let enc = vector("10-mac-only-encrypted/full-mac.unencrypted-value-edited.enc.yaml");
    let code =
        recorded_exit_code("10-mac-only-encrypted/full-mac.unencrypted-value-edited.exitcode.txt");
    let theirs = decrypt_with(&sb, "sops", &enc, K1, &[]);
    assert_eq!(theirs.code, code, "{}", theirs.stderr);
    let ours = decrypt_with(&sb, "lockstep", &enc, K1, &[]);
    let line = assert_clean_failure(&ours, &enc, code);
    assert!(line.contains("MAC mismatch"), "{line}");
}

/// 14-misc `err-*` and `keys-reordered`: malformed encrypted files fail as sops fails.
fn check_misc_failure(name: &str, expect_substring: &str) {
    let sb = Sandbox::new();
    let enc = vector(&format!("14-misc/{name}.enc.yaml"));
    let code = recorded_exit_code(&format!("14-misc/{name}.exitcode.txt"));
    let theirs = decrypt_with(&sb, "sops", &enc, K1, &[]);
    assert_eq!(
        theirs.code, code,
        "the real sops no longer fails {name} as recorded: {}",
        theirs.stderr
    );
    let ours = decrypt_with(&sb, "lockstep", &enc, K1, &[]);
    let line = assert_clean_failure(&ours, &enc, code);
    assert!(
        line.contains(expect_substring),
        "{name}: expected {expect_substring:?} in: {line}"
    );
}

#[test]
fn misc_keys_reordered_is_a_mac_mismatch() {
    check_misc_failure("keys-reordered", "MAC mismatch");
}

#[test]
fn misc_err_plain_in_encrypted_slot() {
    check_misc_failure(
        "err-plain-in-encrypted-slot",
        "does not match sops' data format",
    );
}

#[test]
fn misc_err_no_metadata() {
    check_misc_failure("err-no-metadata", "sops metadata not found");
}

/// sops 3.11 panics on an integer where a ciphertext belongs (Go runtime exit 2; fixed in
/// 3.13.2). A panic is not behaviour to copy: lockstep must fail with a non-zero code and
/// one clear line naming the key, and print nothing on stdout.
#[test]
fn misc_err_int_in_encrypted_slot() {
    let sb = Sandbox::new();
    let enc = vector("14-misc/err-int-in-encrypted-slot.enc.yaml");
    let theirs = decrypt_with(&sb, "sops", &enc, K1, &[]);
    assert_eq!(
        theirs.code, 2,
        "sops 3.11 is expected to panic here: {}",
        theirs.stderr
    );
    let ours = decrypt_with(&sb, "lockstep", &enc, K1, &[]);
    assert_ne!(
        ours.code, 0,
        "lockstep accepted an integer in an encrypted slot"
    );
    assert!(
        !ours.stderr.contains("panicked"),
        "lockstep panicked: {}",
        ours.stderr
    );
    let line = assert_clean_failure(&ours, &enc, ours.code);
    assert!(
        line.contains("username"),
        "the message should name the key: {line}"
    );
}

/// Plain inputs that sops refuses to encrypt: lockstep refuses them with the same code.
fn check_encrypt_failure(rel_plain: &str, rel_code: &str) {
    let sb = Sandbox::new();
    let plain = vector(rel_plain);
    let code = recorded_exit_code(rel_code);
    let r1 = support::recipient_of(&vector("key1.txt"));
    let theirs = run(&mut sb.sops([
        "encrypt".as_ref(),
        "--age".as_ref(),
        r1.as_ref(),
        plain.as_os_str(),
    ]));
    assert_eq!(
        theirs.code, code,
        "the real sops no longer fails {rel_plain} as recorded: {}",
        theirs.stderr
    );
    let ours = run(&mut sb.lockstep([
        "encrypt".as_ref(),
        "--age".as_ref(),
        r1.as_ref(),
        plain.as_os_str(),
    ]));
    assert_clean_failure(&ours, &plain, code);
}

macro_rules! encrypt_error_vector {
    ($($name:ident: $plain:expr, $code:expr;)*) => {
        $(
            #[test]
            fn $name() {
                check_encrypt_failure($plain, $code);
            }
        )*
    };
}

encrypt_error_vector! {
    encrypt_err_bool_key: "12-edge-cases/err-bool-key.plain.yaml", "12-edge-cases/err-bool-key.exitcode.txt";
    encrypt_err_int_key: "12-edge-cases/err-int-key.plain.yaml", "12-edge-cases/err-int-key.exitcode.txt";
    encrypt_err_duplicate_key: "12-edge-cases/err-duplicate-key.plain.yaml", "12-edge-cases/err-duplicate-key.exitcode.txt";
    encrypt_err_empty: "12-edge-cases/err-empty.plain.yaml", "12-edge-cases/err-empty.exitcode.txt";
    encrypt_err_has_sops_key: "12-edge-cases/err-has-sops-key.plain.yaml", "12-edge-cases/err-has-sops-key.exitcode.txt";
    encrypt_err_top_level_list: "12-edge-cases/err-top-level-list.plain.yaml", "12-edge-cases/err-top-level-list.exitcode.txt";
    encrypt_err_top_level_array: "12-edge-cases/err-top-level-array.plain.json", "12-edge-cases/err-top-level-array.exitcode.txt";
    encrypt_err_dotenv_no_equals: "12-edge-cases/err-dotenv-no-equals.plain.env", "12-edge-cases/err-dotenv-no-equals.exitcode.txt";
    encrypt_err_uint64: "12-edge-cases/err-uint64.plain.yaml", "12-edge-cases/err-uint64.exitcode.txt";
    encrypt_err_scalar_document: "14-misc/err-scalar-document.plain.yaml", "14-misc/err-scalar-document.exitcode.txt";
}

/// `decrypt --in-place` on a file that fails to decrypt leaves it byte-identical.
#[test]
fn in_place_on_failure_leaves_file_untouched() {
    let sb = Sandbox::new();
    for (name, keys, code) in [
        ("b-ciphertext-bitflip", K1, 25),
        ("a-unencrypted-value-changed", K1, 51),
        ("f-lastmodified-changed", K1, 51),
        ("base", Keys::File("key2.txt"), 128),
    ] {
        let src = vector(&format!("06-tampered/{name}.enc.yaml"));
        let copy = sb.copy_in(&src, &format!("{name}.enc.yaml"));
        let ours = decrypt_with(&sb, "lockstep", &copy, keys, &["--in-place"]);
        assert_clean_failure(&ours, &copy, code);
        assert_eq!(
            read(&copy),
            read(&src),
            "{name}: decrypt --in-place changed a file it could not decrypt"
        );
        let leftovers: Vec<PathBuf> = std::fs::read_dir(sb.dir())
            .expect("list work dir")
            .map(|e| e.expect("dir entry").path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(".lockstep-"))
            })
            .collect();
        assert!(
            leftovers.is_empty(),
            "{name}: temporary files left behind: {leftovers:?}"
        );
    }
}

/// `decrypt --in-place` on a good file replaces it with exactly what stdout would show.
#[test]
fn in_place_on_success_writes_the_plaintext() {
    let sb = Sandbox::new();
    let copy = sb.copy_in(&vector("02-complex-yaml/complex.enc.yaml"), "complex.yaml");
    let out = decrypt_with(&sb, "lockstep", &copy, K1, &["-i"]).ok();
    assert!(
        out.stdout.is_empty(),
        "decrypt -i must not print the plaintext"
    );
    assert_eq!(
        read(&copy),
        read(&vector("02-complex-yaml/complex.decrypted.yaml"))
    );
}

/// `--extract` prints the same bytes as the real sops, for scalars of every type, list
/// items, maps and lists.
#[test]
fn extract_matches_sops() {
    let sb = Sandbox::new();
    let enc = vector("02-complex-yaml/complex.enc.yaml");
    for path in [
        r#"["app"]["name"]"#,
        r#"["app"]["replicas"]"#,
        r#"["app"]["ratio"]"#,
        r#"["app"]["whole_float"]"#,
        r#"["app"]["enabled"]"#,
        r#"["app"]["empty"]"#,
        r#"["app"]["tags"][2]"#,
        r#"["app"]["multiline"]"#,
        r#"["app"]["public_unencrypted"]"#,
        r#"["unicode"]"#,
        r#"["app"]["servers"][1]"#,
        r#"["app"]["settings_unencrypted"]"#,
        r#"["app"]["tags"]"#,
        r#"["app"]["matrix"]"#,
        r#"["app"]["nothing"]"#,
    ] {
        let ours = decrypt_with(&sb, "lockstep", &enc, K1, &["--extract", path]).ok();
        let theirs = decrypt_with(&sb, "sops", &enc, K1, &["--extract", path]).ok();
        assert_eq!(
            ours.stdout_str(),
            theirs.stdout_str(),
            "--extract {path}: lockstep and sops print different bytes"
        );
    }
    // JSON and dotenv.
    let json = vector("03-json/config.enc.json");
    let dotenv = vector("04-dotenv/app.enc.env");
    let json_text = support::read_string(&vector("03-json/config.plain.json"));
    let first_key = json_text
        .split('"')
        .nth(1)
        .expect("the JSON vector has a first key")
        .to_owned();
    for (file, path) in [
        (&json, format!(r#"["{first_key}"]"#)),
        (&json, r#"["database"]["port"]"#.to_owned()),
        (&json, r#"["database"]["ssl"]"#.to_owned()),
        (&json, r#"["database"]["replica"]"#.to_owned()),
        (&json, r#"["hosts"]"#.to_owned()),
        (&json, r#"["nested_list"]"#.to_owned()),
    ] {
        let ours = decrypt_with(&sb, "lockstep", file, K1, &["--extract", &path]).ok();
        let theirs = decrypt_with(&sb, "sops", file, K1, &["--extract", &path]).ok();
        assert_eq!(
            ours.stdout_str(),
            theirs.stdout_str(),
            "--extract {path} on {}",
            file.display()
        );
    }
    let env_text = support::read_string(&vector("04-dotenv/app.plain.env"));
    let env_key = env_text
        .lines()
        .find(|l| !l.starts_with('#') && l.contains('='))
        .and_then(|l| l.split('=').next())
        .expect("the dotenv vector has a key")
        .to_owned();
    let path = format!(r#"["{env_key}"]"#);
    let ours = decrypt_with(&sb, "lockstep", &dotenv, K1, &["--extract", &path]).ok();
    let theirs = decrypt_with(&sb, "sops", &dotenv, K1, &["--extract", &path]).ok();
    assert_eq!(
        ours.stdout_str(),
        theirs.stdout_str(),
        "--extract {path} on the dotenv vector"
    );
}

/// A path that does not exist fails as in sops, names the missing component, and prints
/// nothing on stdout.
#[test]
fn extract_missing_path_fails() {
    let sb = Sandbox::new();
    let enc = vector("06-tampered/base.enc.yaml");
    for path in [
        r#"["nope"]"#,
        r#"["hosts"][7]"#,
        r#"["username"]["deeper"]"#,
    ] {
        let theirs = decrypt_with(&sb, "sops", &enc, K1, &["--extract", path]);
        assert_ne!(theirs.code, 0, "sops accepted --extract {path}");
        let ours = decrypt_with(&sb, "lockstep", &enc, K1, &["--extract", path]);
        if theirs.stderr.starts_with("panic:") {
            // sops 3.11 panics when a path goes below a scalar; lockstep reports it.
            assert_ne!(ours.code, 0, "lockstep accepted --extract {path}");
            assert_clean_failure(&ours, &enc, ours.code);
        } else {
            assert_clean_failure(&ours, &enc, theirs.code);
        }
    }
    // A malformed path is a usage error (91) in both.
    let bad = r#"["a""#;
    let theirs = decrypt_with(&sb, "sops", &enc, K1, &["--extract", bad]);
    let ours = decrypt_with(&sb, "lockstep", &enc, K1, &["--extract", bad]);
    assert_eq!(ours.code, theirs.code, "--extract {bad}: {}", ours.stderr);
    assert!(ours.stdout.is_empty());
}

/// The vectors directory is there and holds what the tests above rely on.
#[test]
fn vectors_are_present() {
    let dir = vectors_dir();
    for rel in [
        "key1.txt",
        "key2.txt",
        "key3.txt",
        "MANIFEST.json",
        "README.md",
    ] {
        assert!(
            dir.join(rel).is_file(),
            "{} is missing",
            dir.join(rel).display()
        );
    }
}
