//! The git source against real servers on loopback: file://, `git daemon`,
//! `git http-backend` behind an HTTP server with basic auth, and `/usr/sbin/sshd`; and
//! commit and tag signatures made by the real gpg and ssh-keygen.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::Ordering;

use lockstep::source::{
    self, Checkout, Credentials, FetchRequest, GitRef, SourceError, Verification,
};
use secrecy::SecretString;
use support::git::{GitDaemon, GpgKey, HttpGit, Signer, SshKey, Sshd, TestRepo, git};

const CANARY: &str = "canary-pw-9f3e1a";

fn fetch(
    url: &str,
    r: &GitRef,
    creds: Option<&Credentials>,
    cache: &Path,
    v: &Verification,
) -> Result<Checkout, SourceError> {
    source::fetch(&FetchRequest {
        url,
        reference: r,
        credentials: creds,
        cache_dir: cache,
        verification: v,
    })
}

fn ok(
    url: &str,
    r: &GitRef,
    creds: Option<&Credentials>,
    cache: &Path,
    v: &Verification,
) -> Checkout {
    fetch(url, r, creds, cache, v).unwrap_or_else(|e| panic!("fetch of {r} from {url} failed: {e}"))
}

fn branch(b: &str) -> GitRef {
    GitRef::Branch(b.into())
}

fn cache() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("lockstep-cache-")
        .tempdir()
        .expect("temp dir")
}

/// Every file below `dir`, relative, sorted.
fn files(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).expect("read dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.push(p.strip_prefix(base).expect("prefix").display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

fn assert_rejected(err: SourceError, commit: &str, reason_part: &str) {
    let msg = err.to_string();
    match &err {
        SourceError::Verification {
            commit: c, reason, ..
        } => {
            assert_eq!(c, commit, "{msg}");
            assert!(
                reason.contains(reason_part),
                "expected {reason_part:?} in: {msg}"
            );
        }
        other => panic!("expected a verification error, got: {other}"),
    }
    assert!(msg.contains(commit), "{msg}");
}

#[test]
fn file_url_branch_tag_commit_and_revision_format() {
    let repo = TestRepo::new(20);
    let first = repo.head();
    repo.tag("v1.0.0", None);
    repo.lightweight_tag("light");
    git(&repo.work, &["checkout", "-q", "-b", "feature/x"]);
    let feature = repo.commit("feature.txt", "feature\n", None);
    git(&repo.work, &["checkout", "-q", "main"]);
    let second = repo.commit("apps/new.yaml", "kind: ConfigMap\n", None);
    let c = cache();
    let url = repo.file_url();
    let none = Verification::None;

    let main = ok(&url, &branch("main"), None, c.path(), &none);
    assert_eq!(main.commit, second);
    assert_eq!(main.revision, format!("main@sha1:{second}"));
    assert!(main.dir.join("apps/new.yaml").is_file());
    assert!(!main.dir.join(".git").exists());
    assert_eq!(files(&main.dir).len(), 22, "{:?}", files(&main.dir));

    let f = ok(&url, &branch("feature/x"), None, c.path(), &none);
    assert_eq!(f.revision, format!("feature/x@sha1:{feature}"));
    assert!(f.dir.join("feature.txt").is_file());

    let t = ok(&url, &GitRef::Tag("v1.0.0".into()), None, c.path(), &none);
    assert_eq!(
        t.revision,
        format!("v1.0.0@sha1:{first}"),
        "tags report the commit"
    );
    assert!(!t.dir.join("apps/new.yaml").exists());
    let l = ok(&url, &GitRef::Tag("light".into()), None, c.path(), &none);
    assert_eq!(l.commit, first);

    let by_id = ok(&url, &GitRef::Commit(first.clone()), None, c.path(), &none);
    assert_eq!(by_id.revision, format!("sha1:{first}"));
    let short = ok(
        &url,
        &GitRef::Commit(first[..10].into()),
        None,
        c.path(),
        &none,
    );
    assert_eq!(short.commit, first);
    assert_eq!(files(&short.dir), files(&t.dir));

    // All of these used one cache entry for the URL (besides the cache's key file).
    let entries: Vec<_> = std::fs::read_dir(c.path())
        .expect("cache")
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert_eq!(entries.len(), 1);

    let missing = fetch(&url, &branch("nope"), None, c.path(), &none).unwrap_err();
    assert!(matches!(missing, SourceError::NotFound { .. }), "{missing}");
    assert!(missing.to_string().contains("nope"));
    let bad = fetch(&url, &GitRef::Commit("zz".into()), None, c.path(), &none).unwrap_err();
    assert!(bad.to_string().contains("not a commit id"), "{bad}");
}

#[test]
fn git_daemon_incremental_fetch_and_deleted_branch() {
    let repo = TestRepo::new(300);
    let daemon = GitDaemon::start(&repo.srv_dir());
    let url = daemon.url("repo.git");
    let c = cache();
    let none = Verification::None;

    let first = ok(&url, &branch("main"), None, c.path(), &none);
    assert!(!first.stats.cache_reused);
    assert!(first.stats.received_objects > 300, "{:?}", first.stats);
    assert_eq!(first.commit, repo.head());

    let new = repo.commit("apps/app00/extra.yaml", "kind: Secret\n", None);
    let second = ok(&url, &branch("main"), None, c.path(), &none);
    assert_eq!(second.commit, new);
    assert_eq!(second.revision, format!("main@sha1:{new}"));
    assert!(second.stats.cache_reused);
    // One commit, one new tree per changed directory level, one blob.
    assert!(
        second.stats.received_objects > 0 && second.stats.received_objects <= 6,
        "incremental fetch transferred {:?}",
        second.stats
    );
    assert!(second.dir.join("apps/app00/extra.yaml").is_file());
    assert!(first.dir.exists(), "a checkout in use is kept");
    let first_dir = first.dir.clone();
    drop(first);

    let third = ok(&url, &branch("main"), None, c.path(), &none);
    assert_eq!(third.stats.received_objects, 0, "{:?}", third.stats);
    assert_eq!(third.dir, second.dir);
    assert!(!first_dir.exists(), "a checkout nobody uses is removed");

    // A branch deleted upstream is not served from the cache.
    git(&repo.work, &["branch", "gone"]);
    repo.publish();
    ok(&url, &branch("gone"), None, c.path(), &none);
    git(&repo.work, &["branch", "-D", "gone"]);
    repo.publish();
    let e = fetch(&url, &branch("gone"), None, c.path(), &none).unwrap_err();
    assert!(matches!(e, SourceError::NotFound { .. }), "{e}");

    // A commit not yet in the cache is fetched; one already there transfers nothing,
    // but is served only after the server was reached.
    let newer = repo.commit("x.txt", "x\n", None);
    let by_id = ok(&url, &GitRef::Commit(newer.clone()), None, c.path(), &none);
    assert_eq!(by_id.commit, newer);
    let again = ok(&url, &GitRef::Commit(newer.clone()), None, c.path(), &none);
    assert_eq!(again.stats.received_objects, 0);
    drop(daemon);
    let offline = fetch(&url, &GitRef::Commit(newer.clone()), None, c.path(), &none).unwrap_err();
    assert!(matches!(offline, SourceError::Fetch { .. }), "{offline}");
    let down = fetch(&url, &branch("main"), None, c.path(), &none).unwrap_err();
    assert!(matches!(down, SourceError::Fetch { .. }), "{down}");
    assert!(down.to_string().contains(&url), "{down}");
}

fn http_creds(user: &str, password: &str) -> Credentials {
    let mut d = BTreeMap::new();
    d.insert("username".to_owned(), user.as_bytes().to_vec());
    d.insert("password".to_owned(), format!("{password}\n").into_bytes());
    Credentials::from_secret_data(&d).expect("credentials")
}

/// Collects tracing output of the closure (the fetch runs on this thread).
fn with_logs<T>(f: impl FnOnce() -> T) -> (T, String) {
    use std::io::Write;
    use std::sync::{Arc, Mutex};
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::Error::other("poisoned"))?
                .extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let w = buf.clone();
    let sub = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || w.clone())
        .finish();
    let out = tracing::subscriber::with_default(sub, f);
    let text = String::from_utf8_lossy(&buf.0.lock().expect("logs")).into_owned();
    (out, text)
}

fn grep_dir(dir: &Path, needle: &str) -> Vec<String> {
    let mut hits = Vec::new();
    for f in files(dir) {
        if let Ok(data) = std::fs::read(dir.join(&f))
            && data.windows(needle.len()).any(|w| w == needle.as_bytes())
        {
            hits.push(f);
        }
    }
    hits
}

#[test]
fn http_backend_basic_auth_and_no_password_leaks() {
    let repo = TestRepo::new(10);
    let server = HttpGit::start(&repo.srv_dir(), "alice", CANARY);
    let url = server.url("repo.git");
    let c = cache();
    let none = Verification::None;

    let good = http_creds("alice", CANARY);
    let (res, logs) = with_logs(|| fetch(&url, &branch("main"), Some(&good), c.path(), &none));
    let co = res.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(co.commit, repo.head());
    assert!(
        server.unauthorized.load(Ordering::SeqCst) >= 1,
        "the server asked for auth"
    );
    assert!(logs.contains("fetched git source"), "{logs}");
    assert!(!logs.contains(CANARY));

    // Incremental over http too.
    let new = repo.commit("b.txt", "b\n", None);
    let co = ok(&url, &branch("main"), Some(&good), c.path(), &none);
    assert_eq!(co.commit, new);
    assert!(
        co.stats.cache_reused && co.stats.received_objects <= 4,
        "{:?}",
        co.stats
    );

    let wrong = http_creds("alice", &format!("{CANARY}-wrong"));
    let (res, logs) = with_logs(|| fetch(&url, &branch("main"), Some(&wrong), c.path(), &none));
    let e = res.unwrap_err();
    assert!(matches!(e, SourceError::Auth { .. }), "{e}");
    let text = format!("{e} {e:?} {logs}");
    assert!(text.contains(&url), "{text}");
    assert!(!text.contains(CANARY), "the password leaked: {text}");

    let e = fetch(&url, &branch("main"), None, c.path(), &none).unwrap_err();
    assert!(matches!(e, SourceError::Auth { .. }), "{e}");
    assert!(e.to_string().contains("none were given"), "{e}");

    // A password in the URL itself is scrubbed from errors and never stored.
    let in_url = format!("http://alice:{CANARY}-x@127.0.0.1:{}/repo.git", server.port);
    let e = fetch(&in_url, &branch("main"), None, c.path(), &none).unwrap_err();
    let text = format!("{e} {e:?}");
    assert!(!text.contains(CANARY), "{text}");
    assert!(text.contains("alice:***@"), "{text}");
    assert!(
        grep_dir(c.path(), CANARY).is_empty(),
        "the cache holds the password"
    );
}

fn ssh_creds(key: &SshKey, known_hosts: Option<&str>) -> Credentials {
    let mut d = BTreeMap::new();
    d.insert("identity".to_owned(), key.private_key.as_bytes().to_vec());
    if let Some(kh) = known_hosts {
        d.insert("known_hosts".to_owned(), kh.as_bytes().to_vec());
    }
    Credentials::from_secret_data(&d).expect("credentials")
}

#[test]
fn sshd_fetch_with_known_hosts_failing_closed() {
    let repo = TestRepo::new(10);
    let sshd = Sshd::start();
    let url = sshd.url(&repo.bare);
    let c = cache();
    let none = Verification::None;

    let creds = ssh_creds(&sshd.client, Some(&sshd.known_hosts()));
    let co = fetch(&url, &branch("main"), Some(&creds), c.path(), &none)
        .unwrap_or_else(|e| panic!("{e}\nsshd log:\n{}", sshd.log()));
    assert_eq!(co.commit, repo.head());
    let new = repo.commit("c.txt", "c\n", None);
    let co = ok(&url, &branch("main"), Some(&creds), c.path(), &none);
    assert_eq!(co.revision, format!("main@sha1:{new}"));
    assert!(co.stats.received_objects <= 4, "{:?}", co.stats);

    // Another host key for this host: refused, naming host and the offered key.
    let other = SshKey::generate("ed25519");
    let wrong_kh = format!("[127.0.0.1]:{} {}\n", sshd.port, other.public_line);
    let creds_bad = ssh_creds(&sshd.client, Some(&wrong_kh));
    let e = fetch(&url, &branch("main"), Some(&creds_bad), c.path(), &none).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, SourceError::HostKey { .. }), "{msg}");
    assert!(msg.contains(&format!("[127.0.0.1]:{}", sshd.port)), "{msg}");
    assert!(msg.contains(&sshd.host_fingerprint), "{msg}");
    assert!(msg.contains("does not match"), "{msg}");

    // The right key, but listed for another host/port: unknown host.
    let other_port = format!("[127.0.0.1]:1 {}\n", sshd.host_public);
    let e = fetch(
        &url,
        &branch("main"),
        Some(&ssh_creds(&sshd.client, Some(&other_port))),
        c.path(),
        &none,
    )
    .unwrap_err();
    assert!(e.to_string().contains("not in known_hosts"), "{e}");

    // No known_hosts at all: nothing is trusted.
    let e = fetch(
        &url,
        &branch("main"),
        Some(&ssh_creds(&sshd.client, None)),
        c.path(),
        &none,
    )
    .unwrap_err();
    assert!(matches!(e, SourceError::HostKey { .. }), "{e}");
    assert!(e.to_string().contains("no known_hosts"), "{e}");

    // A key the server does not authorize.
    let e = fetch(
        &url,
        &branch("main"),
        Some(&ssh_creds(&other, Some(&sshd.known_hosts()))),
        c.path(),
        &none,
    )
    .unwrap_err();
    assert!(matches!(e, SourceError::Auth { .. }), "{e}");
    assert!(!format!("{e:?}").contains("PRIVATE KEY"), "{e:?}");
}

fn head_commit(signers: &[&Signer]) -> Verification {
    Verification::HeadCommit {
        signers: signers.iter().map(|s| s.allowed_entry()).collect(),
    }
}

fn tag_mode(signers: &[&Signer]) -> Verification {
    Verification::Tag {
        signers: signers.iter().map(|s| s.allowed_entry()).collect(),
    }
}

fn signed_head_commit_cases(signer: &Signer, other: &Signer, expected_signer: &str, kind: &str) {
    let repo = TestRepo::new(5);
    let daemon = GitDaemon::start(&repo.srv_dir());
    let url = daemon.url("repo.git");
    let c = cache();
    let allowed = head_commit(&[signer]);

    // Unsigned HEAD.
    let unsigned = repo.head();
    let e = fetch(&url, &branch("main"), None, c.path(), &allowed).unwrap_err();
    assert_rejected(e, &unsigned, "not signed");

    // Signed by the allowed key.
    let good = repo.commit("signed.txt", "s\n", Some(signer));
    let co = ok(&url, &branch("main"), None, c.path(), &allowed);
    assert_eq!(co.commit, good);
    assert_eq!(co.signer.as_deref(), Some(expected_signer), "{kind}");
    // Several allowed signers of both kinds.
    let both = head_commit(&[other, signer]);
    ok(&url, &branch("main"), None, c.path(), &both);

    // Signed by another key.
    let by_other = repo.commit("other.txt", "o\n", Some(other));
    let e = fetch(&url, &branch("main"), None, c.path(), &allowed).unwrap_err();
    assert_rejected(e, &by_other, "not an allowed signer");

    // A signed commit whose content was changed afterwards.
    repo.commit("again.txt", "a\n", Some(signer));
    let forged = repo.tamper_head();
    let e = fetch(&url, &branch("main"), None, c.path(), &allowed).unwrap_err();
    assert_rejected(e, &forged, "bad");

    // Commit reference and HEAD-commit mode.
    let co = ok(
        &url,
        &GitRef::Commit(good.clone()),
        None,
        c.path(),
        &allowed,
    );
    assert_eq!(co.revision, format!("sha1:{good}"));
}

#[test]
fn gpg_signed_commits() {
    let a = Signer::Gpg(GpgKey::generate("Allowed <allowed@example.com>"));
    let b = Signer::Gpg(GpgKey::generate("Other <other@example.com>"));
    let Signer::Gpg(k) = &a else { unreachable!() };
    let fpr = k.fingerprint.clone();
    signed_head_commit_cases(&a, &b, &fpr, "gpg");
}

#[test]
fn ssh_signed_commits_ed25519_and_rsa() {
    let ed = SshKey::generate("ed25519");
    let rsa = SshKey::generate("rsa");
    let ecdsa = SshKey::generate("ecdsa");
    let (ed_f, rsa_f) = (ed.fingerprint.clone(), rsa.fingerprint.clone());
    let ecdsa_f = ecdsa.fingerprint.clone();
    signed_head_commit_cases(
        &Signer::Ssh(ed.clone()),
        &Signer::Ssh(rsa.clone()),
        &ed_f,
        "ssh-ed25519",
    );
    signed_head_commit_cases(
        &Signer::Ssh(rsa),
        &Signer::Ssh(ed.clone()),
        &rsa_f,
        "ssh-rsa",
    );
    signed_head_commit_cases(&Signer::Ssh(ecdsa), &Signer::Ssh(ed), &ecdsa_f, "ecdsa");
}

#[test]
fn mixed_signers_gpg_key_and_ssh_key() {
    let gpg = Signer::Gpg(GpgKey::generate("Mixed <mixed@example.com>"));
    let ssh = Signer::Ssh(SshKey::generate("ed25519"));
    let repo = TestRepo::new(3);
    let c = cache();
    let url = repo.file_url();
    let allowed = head_commit(&[&gpg, &ssh]);
    repo.commit("g.txt", "g\n", Some(&gpg));
    ok(&url, &branch("main"), None, c.path(), &allowed);
    repo.commit("s.txt", "s\n", Some(&ssh));
    ok(&url, &branch("main"), None, c.path(), &allowed);
    // An SSH signature when only OpenPGP keys are allowed.
    let only_gpg = head_commit(&[&gpg]);
    let e = fetch(&url, &branch("main"), None, c.path(), &only_gpg).unwrap_err();
    assert_rejected(e, &repo.head(), "no SSH signer is allowed");
    // An empty or unreadable signer list fails closed.
    let e = fetch(
        &url,
        &branch("main"),
        None,
        c.path(),
        &Verification::HeadCommit { signers: vec![] },
    )
    .unwrap_err();
    assert_rejected(e, &repo.head(), "no allowed signers");
    let junk = Verification::HeadCommit {
        signers: vec!["not a key".into()],
    };
    let e = fetch(&url, &branch("main"), None, c.path(), &junk).unwrap_err();
    assert_rejected(e, &repo.head(), "neither");
}

#[test]
fn signed_tags_gpg_and_ssh() {
    let gpg = Signer::Gpg(GpgKey::generate("Tagger <tagger@example.com>"));
    let ssh = Signer::Ssh(SshKey::generate("ed25519"));
    let other = Signer::Ssh(SshKey::generate("ed25519"));
    let repo = TestRepo::new(5);
    let sshd = Sshd::start();
    let url = sshd.url(&repo.bare);
    let creds = ssh_creds(&sshd.client, Some(&sshd.known_hosts()));
    let c = cache();
    let head = repo.head();

    repo.tag("v1-gpg", Some(&gpg));
    repo.tag("v1-ssh", Some(&ssh));
    repo.tag("v1-plain", None);
    repo.lightweight_tag("v1-light");
    let allowed = tag_mode(&[&gpg, &ssh]);

    for t in ["v1-gpg", "v1-ssh"] {
        let co = fetch(
            &url,
            &GitRef::Tag(t.into()),
            Some(&creds),
            c.path(),
            &allowed,
        )
        .unwrap_or_else(|e| panic!("{t}: {e}"));
        assert_eq!(co.revision, format!("{t}@sha1:{head}"));
        assert!(co.signer.is_some());
    }
    let e = fetch(
        &url,
        &GitRef::Tag("v1-plain".into()),
        Some(&creds),
        c.path(),
        &allowed,
    )
    .unwrap_err();
    assert_rejected(e, &head, "the tag is not signed");
    let e = fetch(
        &url,
        &GitRef::Tag("v1-light".into()),
        Some(&creds),
        c.path(),
        &allowed,
    )
    .unwrap_err();
    assert_rejected(e, &head, "lightweight");
    let only_other = tag_mode(&[&other]);
    let e = fetch(
        &url,
        &GitRef::Tag("v1-ssh".into()),
        Some(&creds),
        c.path(),
        &only_other,
    )
    .unwrap_err();
    assert_rejected(e, &head, "not an allowed signer");
    // Tag mode on a branch is a configuration error; the tagged commit itself is unsigned.
    let e = fetch(&url, &branch("main"), Some(&creds), c.path(), &allowed).unwrap_err();
    assert!(e.to_string().contains("needs a tag"), "{e}");
    let e = fetch(
        &url,
        &GitRef::Tag("v1-ssh".into()),
        Some(&creds),
        c.path(),
        &head_commit(&[&ssh]),
    )
    .unwrap_err();
    assert_rejected(e, &head, "not signed");
}

#[test]
fn credentials_never_show_in_debug() {
    let c = Credentials {
        username: Some("u".into()),
        password: Some(SecretString::from(CANARY)),
        ..Credentials::default()
    };
    assert!(!format!("{c:?}").contains(CANARY));
}

/// Every entry below `dir` with its kind, mode and content (or symlink target), sorted.
fn snapshot(dir: &Path) -> Vec<(String, String)> {
    use std::os::unix::fs::PermissionsExt;
    fn walk(base: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
        for e in std::fs::read_dir(dir).expect("read dir").flatten() {
            let p = e.path();
            let rel = p.strip_prefix(base).expect("prefix").display().to_string();
            let m = std::fs::symlink_metadata(&p).expect("metadata");
            if m.file_type().is_symlink() {
                let t = std::fs::read_link(&p).expect("read link");
                out.push((rel, format!("link {}", t.display())));
            } else if m.is_dir() {
                out.push((rel, "dir".into()));
                walk(base, &p, out);
            } else {
                let content = std::fs::read(&p).expect("read file");
                let mode = m.permissions().mode() & 0o777;
                out.push((
                    rel,
                    format!("file {mode:o} {}", String::from_utf8_lossy(&content)),
                ));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[test]
fn successive_checkouts_equal_a_fresh_checkout() {
    use std::os::unix::fs::PermissionsExt;
    let repo = TestRepo::new(20);
    let url = repo.file_url();
    let warm = cache();
    let w = &repo.work;
    let commit_all = |msg: &str| {
        git(w, &["add", "-A"]);
        git(w, &["commit", "-q", "-m", msg]);
        repo.publish();
    };
    let mut prev = ok(
        &url,
        &branch("main"),
        None,
        warm.path(),
        &Verification::None,
    );
    type Step<'a> = (&'a str, Box<dyn Fn() + 'a>);
    let steps: Vec<Step> = vec![
        (
            "modify and add",
            Box::new(|| {
                std::fs::write(w.join("apps/app01/obj0001.yaml"), "changed\n").unwrap();
                std::fs::create_dir_all(w.join("new/deep")).unwrap();
                std::fs::write(w.join("new/deep/a.txt"), "a\n").unwrap();
            }),
        ),
        (
            "delete and rename",
            Box::new(|| {
                std::fs::remove_file(w.join("apps/app02/obj0002.yaml")).unwrap();
                std::fs::create_dir_all(w.join("moved")).unwrap();
                std::fs::rename(w.join("apps/app03/obj0003.yaml"), w.join("moved/obj3.yaml"))
                    .unwrap();
            }),
        ),
        (
            "mode change and symlinks",
            Box::new(|| {
                let p = w.join("apps/app04/obj0004.yaml");
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
                std::os::unix::fs::symlink("../apps/app05/obj0005.yaml", w.join("new/link"))
                    .unwrap();
            }),
        ),
        (
            "file becomes a directory and a directory a file",
            Box::new(|| {
                std::fs::remove_dir_all(w.join("new/deep")).unwrap();
                std::fs::write(w.join("new/deep"), "now a file\n").unwrap();
                std::fs::remove_file(w.join("README.md")).unwrap();
                std::fs::create_dir_all(w.join("README.md")).unwrap();
                std::fs::write(w.join("README.md/inner"), "inner\n").unwrap();
                let p = w.join("apps/app04/obj0004.yaml");
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
                std::fs::remove_file(w.join("new/link")).unwrap();
                std::fs::write(w.join("new/link"), "link became a file\n").unwrap();
            }),
        ),
        (
            "delete a whole directory",
            Box::new(|| {
                std::fs::remove_dir_all(w.join("apps/app06")).unwrap();
                std::fs::remove_dir_all(w.join("moved")).unwrap();
            }),
        ),
    ];
    for (what, change) in &steps {
        change();
        commit_all(what);
        let next = ok(
            &url,
            &branch("main"),
            None,
            warm.path(),
            &Verification::None,
        );
        assert_ne!(next.commit, prev.commit, "{what}");
        assert!(prev.dir.exists(), "{what}: a checkout in use is kept");
        let fresh_cache = cache();
        let fresh = ok(
            &url,
            &branch("main"),
            None,
            fresh_cache.path(),
            &Verification::None,
        );
        assert_eq!(fresh.commit, next.commit);
        assert_eq!(files(&next.dir), files(&fresh.dir), "{what}");
        assert_eq!(snapshot(&next.dir), snapshot(&fresh.dir), "{what}");
        prev = next;
    }

    // A previous checkout that was changed does not affect the next one.
    std::fs::write(prev.dir.join("stray"), "x").unwrap();
    std::fs::write(prev.dir.join("apps/app07/obj0007.yaml"), "tampered").unwrap();
    repo.commit("after-tamper.txt", "t\n", None);
    let next = ok(
        &url,
        &branch("main"),
        None,
        warm.path(),
        &Verification::None,
    );
    let fresh_cache = cache();
    let fresh = ok(
        &url,
        &branch("main"),
        None,
        fresh_cache.path(),
        &Verification::None,
    );
    assert_eq!(snapshot(&next.dir), snapshot(&fresh.dir));
    assert!(!next.dir.join("stray").exists());
}

fn mode_of(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777
}

#[test]
fn a_cached_private_commit_needs_the_callers_own_credentials() {
    let repo = TestRepo::new(5);
    let head = repo.head();
    let server = HttpGit::start(&repo.srv_dir(), "alice", CANARY);
    let url = server.url("repo.git");
    let c = cache();
    let none = Verification::None;
    let by_id = GitRef::Commit(head.clone());

    let good = http_creds("alice", CANARY);
    let first = ok(&url, &by_id, Some(&good), c.path(), &none);
    assert_eq!(first.commit, head);
    // The owner fetching the cached commit again transfers nothing.
    let again = ok(&url, &by_id, Some(&good), c.path(), &none);
    assert_eq!(again.stats.received_objects, 0, "{:?}", again.stats);

    // Another caller, with no or wrong credentials, is refused although the commit is
    // in the same cache directory.
    let e = fetch(&url, &by_id, None, c.path(), &none).unwrap_err();
    assert!(matches!(e, SourceError::Auth { .. }), "{e}");
    let wrong = http_creds("alice", "not-the-password");
    let e = fetch(&url, &by_id, Some(&wrong), c.path(), &none).unwrap_err();
    assert!(matches!(e, SourceError::Auth { .. }), "{e}");
    let e = fetch(&url, &branch("main"), None, c.path(), &none).unwrap_err();
    assert!(matches!(e, SourceError::Auth { .. }), "{e}");

    // The cache is private and names no credential.
    assert_eq!(mode_of(c.path()), 0o700);
    assert_eq!(mode_of(&c.path().join(".cache-key")), 0o600);
    for entry in std::fs::read_dir(c.path()).expect("cache").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        assert!(!name.contains(CANARY) && !name.contains("alice"), "{name}");
        if entry.path().is_dir() {
            assert_eq!(mode_of(&entry.path()), 0o700, "{name}");
        }
    }
    assert!(grep_dir(c.path(), CANARY).is_empty());
}

#[test]
fn a_cached_commit_over_ssh_needs_the_callers_key() {
    let repo = TestRepo::new(3);
    let head = repo.head();
    let sshd = Sshd::start();
    let url = sshd.url(&repo.bare);
    let c = cache();
    let none = Verification::None;
    let by_id = GitRef::Commit(head.clone());
    let kh = sshd.known_hosts();
    let owner = ssh_creds(&sshd.client, Some(&kh));
    ok(&url, &by_id, Some(&owner), c.path(), &none);
    // A key the server does not accept, and no key at all.
    let stranger = SshKey::generate("ed25519");
    let e = fetch(
        &url,
        &by_id,
        Some(&ssh_creds(&stranger, Some(&kh))),
        c.path(),
        &none,
    )
    .unwrap_err();
    assert!(matches!(e, SourceError::Auth { .. }), "{e}");
    let mut no_key = BTreeMap::new();
    no_key.insert("known_hosts".to_owned(), kh.as_bytes().to_vec());
    let no_key = Credentials::from_secret_data(&no_key).expect("credentials");
    let e = fetch(&url, &by_id, Some(&no_key), c.path(), &none).unwrap_err();
    assert!(matches!(e, SourceError::Auth { .. }), "{e}");
}

#[test]
fn concurrent_fetches_of_one_url_never_disturb_a_checkout_in_use() {
    let repo = TestRepo::new(30);
    let mut commits = Vec::new();
    for i in 0..6 {
        // Each commit changes the same files, so every tree differs everywhere.
        for f in 0..5 {
            support::write(&repo.work.join(format!("d{f}/v.txt")), format!("{i}\n"));
        }
        commits.push(repo.commit("version.txt", &format!("{i}\n"), None));
    }
    // What git itself lists for each commit.
    let listings: Vec<Vec<String>> = commits
        .iter()
        .map(|c| {
            let mut l: Vec<String> = git(&repo.work, &["ls-tree", "-r", "--name-only", c])
                .lines()
                .map(str::to_owned)
                .collect();
            l.sort();
            l
        })
        .collect();
    let url = repo.file_url();
    let c = cache();
    let expected = |i: usize| format!("{i}\n");
    let check = |co: &Checkout, i: usize| -> Result<(), String> {
        for f in ["version.txt", "d0/v.txt", "d4/v.txt"] {
            let got = std::fs::read_to_string(co.dir.join(f))
                .map_err(|e| format!("{}: {f}: {e}", co.commit))?;
            if got != expected(i) {
                return Err(format!("{}: {f} holds {got:?}", co.commit));
            }
        }
        let got = files(&co.dir);
        if got != listings[i] {
            return Err(format!(
                "{}: {} files, not {}",
                co.commit,
                got.len(),
                listings[i].len()
            ));
        }
        Ok(())
    };
    let stop = std::sync::atomic::AtomicBool::new(false);
    let failures = std::sync::Mutex::new(Vec::<String>::new());
    std::thread::scope(|s| {
        // Readers hold one checkout each and read it again and again.
        for r in 0..3 {
            let (commits, c, url, check, stop, failures) =
                (&commits, &c, &url, &check, &stop, &failures);
            s.spawn(move || {
                let co = ok(
                    url,
                    &GitRef::Commit(commits[r].clone()),
                    None,
                    c.path(),
                    &Verification::None,
                );
                while !stop.load(Ordering::SeqCst) {
                    if let Err(e) = check(&co, r) {
                        failures.lock().expect("lock").push(e);
                        return;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
            });
        }
        // Fetchers move between all commits meanwhile.
        let fetchers: Vec<_> = (0..4)
            .map(|t| {
                let (commits, c, url, check, failures) = (&commits, &c, &url, &check, &failures);
                s.spawn(move || {
                    for round in 0..6 {
                        let i = (t + round) % commits.len();
                        let co = ok(
                            url,
                            &GitRef::Commit(commits[i].clone()),
                            None,
                            c.path(),
                            &Verification::None,
                        );
                        if let Err(e) = check(&co, i) {
                            failures.lock().expect("lock").push(e);
                        }
                    }
                })
            })
            .collect();
        for f in fetchers {
            f.join().expect("fetcher");
        }
        stop.store(true, Ordering::SeqCst);
    });
    let failures = failures.into_inner().expect("lock");
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Points `main` at a commit whose root tree is given in `git mktree` input form.
fn publish_crafted_tree(repo: &TestRepo, mktree_input: &str) -> String {
    let mut c = support::git::git_cmd(&repo.work);
    c.args(["mktree"]);
    let tree = support::run_with_stdin(&mut c, Some(mktree_input.as_bytes()))
        .ok()
        .stdout_str()
        .trim()
        .to_owned();
    let commit = git(
        &repo.work,
        &["commit-tree", &tree, "-p", "HEAD", "-m", "crafted"],
    );
    git(&repo.work, &["update-ref", "refs/heads/main", &commit]);
    git(&repo.work, &["push", "-q", "--force", "origin", "main"]);
    commit
}

fn blob(repo: &TestRepo, content: &str) -> String {
    let mut c = support::git::git_cmd(&repo.work);
    c.args(["hash-object", "-w", "--stdin"]);
    support::run_with_stdin(&mut c, Some(content.as_bytes()))
        .ok()
        .stdout_str()
        .trim()
        .to_owned()
}

#[test]
fn symlinks_are_resolved_against_the_tree_and_duplicate_entries_refused() {
    let repo = TestRepo::new(2);
    let url = repo.file_url();
    let none = Verification::None;
    let checkout_error = |c: &Path| -> String {
        match fetch(&url, &branch("main"), None, c, &none) {
            Err(e @ SourceError::Checkout { .. }) => e.to_string(),
            Err(e) => panic!("expected a checkout error, got: {e}"),
            Ok(co) => panic!("checked out {} in {}", co.commit, co.dir.display()),
        }
    };

    // d -> . makes d/d/d the root itself, so d/d/d/../../../etc is three levels up,
    // although it looks like "etc" inside when read lexically.
    let dot = blob(&repo, ".");
    let escape = blob(&repo, "d/d/d/../../../etc");
    publish_crafted_tree(
        &repo,
        &format!("120000 blob {dot}\td\n120000 blob {escape}\te\n"),
    );
    let c = cache();
    let e = checkout_error(c.path());
    assert!(e.contains("e: symlink to") && e.contains("outside"), "{e}");

    // One name twice: a link to a directory inside, then a tree of the same name
    // (a checkout that followed the link would write through it).
    let inside = blob(&repo, "real");
    let file = blob(&repo, "through the link\n");
    let mut c2 = support::git::git_cmd(&repo.work);
    c2.args(["mktree"]);
    let sub = support::run_with_stdin(&mut c2, Some(format!("100644 blob {file}\tf\n").as_bytes()))
        .ok()
        .stdout_str()
        .trim()
        .to_owned();
    publish_crafted_tree(
        &repo,
        &format!("040000 tree {sub}\treal\n120000 blob {inside}\tx\n040000 tree {sub}\tx\n"),
    );
    let c = cache();
    let e = checkout_error(c.path());
    assert!(e.contains("more than once"), "{e}");

    let a = blob(&repo, "a\n");
    publish_crafted_tree(
        &repo,
        &format!("100644 blob {a}\tsame\n100644 blob {a}\tsame\n"),
    );
    let c = cache();
    let e = checkout_error(c.path());
    assert!(
        e.contains("same: the tree lists this name more than once"),
        "{e}"
    );
}

#[test]
fn unencoded_password_characters_and_bearer_tokens_over_http_never_leak() {
    let repo = TestRepo::new(2);
    let server = HttpGit::start(&repo.srv_dir(), "alice", CANARY);
    let c = cache();
    let none = Verification::None;
    let port = server.port;
    for url in [
        format!("http://alice:{CANARY}/x@127.0.0.1:{port}/repo.git"),
        format!("http://alice:{CANARY}@x@127.0.0.1:{port}/repo.git"),
        format!("http://alice:{CANARY}?x@127.0.0.1:{port}/repo.git"),
        format!("http://alice:{CANARY}%2Fwrong%40@127.0.0.1:{port}/repo.git"),
        format!("http://alice:{CANARY}%zz@127.0.0.1:{port}/repo.git"),
    ] {
        let (res, logs) = with_logs(|| fetch(&url, &branch("main"), None, c.path(), &none));
        let e = res.expect_err("a wrong or malformed password must fail");
        let text = format!("{e} {e:?} {logs}");
        assert!(!text.contains(CANARY), "the password leaked: {text}");
    }
    // The correct password with a percent-encoded '/' would be accepted by the
    // server only if it were "canary.../x"; what matters here is that it is decoded
    // and never shown.
    assert!(grep_dir(c.path(), CANARY).is_empty());

    // A bearer token over plain http is warned about like a password.
    let mut d = BTreeMap::new();
    d.insert("bearerToken".to_owned(), CANARY.as_bytes().to_vec());
    let bearer = Credentials::from_secret_data(&d).expect("credentials");
    let url = server.url("repo.git");
    let (res, logs) = with_logs(|| fetch(&url, &branch("main"), Some(&bearer), c.path(), &none));
    let e = res.expect_err("the server wants basic auth");
    assert!(logs.contains("over plain http"), "{logs}");
    let text = format!("{e} {e:?} {logs}");
    assert!(!text.contains(CANARY), "the token leaked: {text}");
}

/// Whether `git verify-commit` (which runs `ssh-keygen -Y verify` with the committer date)
/// accepts HEAD with `line` as the only allowed signer.
fn git_accepts_ssh_signer(repo: &TestRepo, line: &str) -> bool {
    let file = repo.root.path().join("allowed_signers");
    std::fs::write(&file, format!("{line}\n")).expect("allowed_signers");
    let mut c = support::git::git_cmd(&repo.work);
    c.arg("-c")
        .arg(format!("gpg.ssh.allowedSignersFile={}", file.display()))
        .args(["verify-commit", "HEAD"]);
    support::run(&mut c).code == 0
}

#[test]
fn ssh_allowed_signers_options_are_honoured() {
    let key = SshKey::generate("ed25519");
    let signer = Signer::Ssh(key.clone());
    let repo = TestRepo::new(2);
    let head = repo.commit("signed.txt", "s\n", Some(&signer));
    let url = repo.file_url();
    let c = cache();
    let with = |line: String| Verification::HeadCommit {
        signers: vec![line],
    };
    let pk = &key.public_line;
    for accepted in [
        format!("dev@example.com {pk}"),
        format!("dev@example.com namespaces=\"file,git\" {pk}"),
        format!(
            "dev@example.com namespaces=\"g*\",valid-after=\"20000101\",valid-before=\"20990101\" {pk}"
        ),
    ] {
        let co = fetch(
            &url,
            &branch("main"),
            None,
            c.path(),
            &with(accepted.clone()),
        )
        .unwrap_or_else(|e| panic!("{accepted}: {e}"));
        assert_eq!(co.commit, head);
        assert!(
            git_accepts_ssh_signer(&repo, &accepted),
            "git refuses {accepted}"
        );
    }
    for (refused, why) in [
        (
            format!("dev@example.com namespaces=\"file\" {pk}"),
            "namespaces",
        ),
        (
            format!("dev@example.com namespaces=\"*,!git\" {pk}"),
            "namespaces",
        ),
        (
            format!("dev@example.com valid-before=\"20000101\" {pk}"),
            "no longer valid",
        ),
        (
            format!("dev@example.com valid-after=\"20990101\" {pk}"),
            "not yet valid",
        ),
        (
            format!("dev@example.com cert-authority {pk}"),
            "cert-authority",
        ),
        (
            format!("dev@example.com verify-required {pk}"),
            "not supported",
        ),
    ] {
        let e = fetch(
            &url,
            &branch("main"),
            None,
            c.path(),
            &with(refused.clone()),
        )
        .expect_err(&refused);
        assert!(
            matches!(e, SourceError::Verification { .. }),
            "{refused}: {e}"
        );
        assert!(e.to_string().contains(why), "{refused}: {e}");
        // Where git (through ssh-keygen) has a verdict, it is the same.
        if why != "not supported" {
            assert!(
                !git_accepts_ssh_signer(&repo, &refused),
                "git accepts {refused}"
            );
        }
    }
}

#[test]
fn openpgp_sha1_signatures_are_refused() {
    let key = GpgKey::generate_with("SHA-1 Signer <sha1@example.com>", "rsa2048");
    let signer = Signer::Gpg(key.clone());
    let repo = TestRepo::new(2);
    let url = repo.file_url();
    let c = cache();
    let allowed = head_commit(&[&signer]);

    // The same key with gpg's default (SHA-2) digest is accepted.
    let good = repo.commit("sha256.txt", "s\n", Some(&signer));
    assert_eq!(
        ok(&url, &branch("main"), None, c.path(), &allowed).commit,
        good
    );

    std::fs::write(key.home.join("gpg.conf"), "digest-algo SHA1\n").expect("gpg.conf");
    let weak = repo.commit("sha1.txt", "w\n", Some(&signer));
    let e = fetch(&url, &branch("main"), None, c.path(), &allowed).unwrap_err();
    assert_rejected(e, &weak, "SHA-1");
}
