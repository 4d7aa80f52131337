//! The Git source: fetch an application's repository with libgit2 (`git2`), resolve a
//! branch, tag or commit, verify its signature, and check out exactly that commit.
//!
//! - Transports: https/http (username and password, or a bearer token), ssh (private key
//!   from memory, host key checked against the given known_hosts, failing closed),
//!   git:// and file://.
//! - Cache: one bare repository per URL *and credential identity* under
//!   `cache_dir/<key>/repo.git`, where `<key>` is an HMAC of the URL and every credential
//!   (password, token, key) under a random key kept in `cache_dir/.cache-key`; no
//!   credential and no URL appears in a path. Every fetch talks to the remote with the
//!   caller's credentials, even when the wanted commit is already cached, so a caller
//!   who may not read the repository gets an error, never a cached commit. A lock file
//!   serialises fetches of one entry. The cache directory is private (0700).
//! - Checkouts are immutable: the tree of a commit is written to a fresh temporary
//!   directory and renamed into `cache_dir/<key>/checkout/<commit>`. A [`Checkout`] holds
//!   a shared lock on that commit's lease file for as long as it (or a clone) lives;
//!   other commits' checkouts are removed only when nobody holds their lease. Symlinks
//!   are resolved link by link against the written tree and must stay inside it.
//! - Isolation: libgit2's global, XDG, system and program-data configuration search paths
//!   are emptied once per process, so no `~/.gitconfig` (credential helpers, `insteadOf`,
//!   proxies) applies; credentials come only from [`Credentials`], never from the
//!   environment; the remote is anonymous, so a URL is never written to disk.
//! - Signatures ([`Verification`]): SSH signatures are verified in-process
//!   ([`sshsig`]); OpenPGP signatures with gpg in a throw-away GNUPGHOME that holds only
//!   the allowed keys ([`openpgp`]). Unsigned, unknown-signer and bad signatures are
//!   rejected with the reason and the commit.
//! - Secrets: errors and logs carry the URL with any password replaced by `***`, and
//!   every message from libgit2 is scrubbed of the password, token and key before use.

pub mod known_hosts;
pub mod openpgp;
pub mod sshsig;
pub mod url;

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;

use git2::{
    AutotagOption, CertificateCheckStatus, Cred, CredentialType, FetchOptions, FetchPrune, Oid,
    RemoteCallbacks, Repository,
};
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use known_hosts::{HostKeyRejection, KnownHosts};
use sshsig::SshSigner;
use url::{Scheme, SourceUrl};

/// What to fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GitRef {
    Branch(String),
    Tag(String),
    /// A full (40 hex digits) or abbreviated (at least 7) commit id.
    Commit(String),
}

impl fmt::Display for GitRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GitRef::Branch(b) => write!(f, "branch {b:?}"),
            GitRef::Tag(t) => write!(f, "tag {t:?}"),
            GitRef::Commit(c) => write!(f, "commit {c}"),
        }
    }
}

/// Credentials for one source, from a Secret (`data` keys as Flux names them) or from
/// the CLI. `Debug` never shows a secret.
#[derive(Debug, Default, Clone)]
pub struct Credentials {
    /// https user name; for ssh, the user when the URL names none (default `git`).
    pub username: Option<String>,
    /// https password or personal access token.
    pub password: Option<SecretString>,
    /// An `Authorization: Bearer` token for https.
    pub bearer_token: Option<SecretString>,
    /// An ssh private key (OpenSSH or PEM format).
    pub ssh_private_key: Option<SecretString>,
    /// The passphrase of `ssh_private_key`.
    pub ssh_passphrase: Option<SecretString>,
    /// known_hosts text for ssh; without it no ssh host is trusted.
    pub known_hosts: Option<String>,
}

impl Credentials {
    /// Reads Secret data with Flux's keys: `username`, `password`, `bearerToken`,
    /// `identity` (ssh private key; `password` is then also its passphrase),
    /// `known_hosts`. Other keys are ignored. Errors name the key, never the value.
    pub fn from_secret_data(data: &BTreeMap<String, Vec<u8>>) -> Result<Self, SourceError> {
        let text = |key: &str| -> Result<Option<String>, SourceError> {
            match data.get(key) {
                None => Ok(None),
                Some(v) => match std::str::from_utf8(v) {
                    Ok(s) => Ok(Some(s.to_owned())),
                    Err(_) => Err(SourceError::Credentials(format!(
                        "the value of key {key:?} is not UTF-8 text"
                    ))),
                },
            }
        };
        let secret = |key: &str| -> Result<Option<SecretString>, SourceError> {
            Ok(text(key)?.map(|s| {
                // Trailing newlines from `kubectl create secret --from-file` are not
                // part of a password or token.
                let trimmed = Zeroizing::new(s.trim_end_matches(['\r', '\n']).to_owned());
                let mut s = s;
                zeroize::Zeroize::zeroize(&mut s);
                SecretString::from(trimmed.as_str())
            }))
        };
        let username = text("username")?.map(|u| u.trim().to_owned());
        let password = secret("password")?;
        let bearer_token = secret("bearerToken")?;
        let ssh_private_key = text("identity")?.map(|k| {
            let k = Zeroizing::new(k);
            SecretString::from(k.as_str())
        });
        let known_hosts = text("known_hosts")?;
        if ssh_private_key.is_some()
            && let Some(kh) = &known_hosts
            && KnownHosts::parse(kh).is_empty()
        {
            return Err(SourceError::Credentials(
                "key \"known_hosts\" holds no usable host key line".into(),
            ));
        }
        let ssh_passphrase = if ssh_private_key.is_some() {
            password.clone()
        } else {
            None
        };
        if username.as_deref() == Some("") {
            return Err(SourceError::Credentials("key \"username\" is empty".into()));
        }
        Ok(Credentials {
            username,
            password,
            bearer_token,
            ssh_private_key,
            ssh_passphrase,
            known_hosts,
        })
    }

    /// Every secret string, for scrubbing messages.
    fn secrets(&self) -> Vec<String> {
        [
            &self.password,
            &self.bearer_token,
            &self.ssh_private_key,
            &self.ssh_passphrase,
        ]
        .into_iter()
        .flatten()
        .map(|s| s.expose_secret().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
    }
}

/// Signature verification of the fetched revision.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Verification {
    #[default]
    None,
    /// The commit checked out must be signed by one of `signers`.
    HeadCommit { signers: Vec<String> },
    /// The reference must be an annotated tag signed by one of `signers`.
    Tag { signers: Vec<String> },
}

/// One fetch.
#[derive(Debug, Clone, Copy)]
pub struct FetchRequest<'a> {
    pub url: &'a str,
    pub reference: &'a GitRef,
    pub credentials: Option<&'a Credentials>,
    pub cache_dir: &'a Path,
    pub verification: &'a Verification,
}

/// Transfer counters of a fetch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FetchStats {
    /// Objects received from the server in this fetch (0 when nothing was new).
    pub received_objects: usize,
    pub received_bytes: usize,
    /// True when the bare repository in the cache existed before this fetch.
    pub cache_reused: bool,
}

/// A checked-out revision. `dir` is neither changed nor removed while this value (or a
/// clone of it) lives: it holds a shared lock on the checkout's lease file.
#[derive(Debug, Clone)]
pub struct Checkout {
    /// `main@sha1:<commit>`, `v1.0.0@sha1:<commit>` or `sha1:<commit>`.
    pub revision: String,
    /// The full commit id.
    pub commit: String,
    /// A directory holding exactly the tree of `commit` (no `.git`).
    pub dir: PathBuf,
    /// Who signed, when verification was requested (a key fingerprint).
    pub signer: Option<String>,
    pub stats: FetchStats,
    /// The shared lock that keeps `dir` in place.
    _lease: std::sync::Arc<fs::File>,
}

/// Why a fetch failed. Every variant names the URL (without password); none carries a
/// credential.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("invalid git credentials: {0}")]
    Credentials(String),
    #[error("invalid git URL {url}: {reason}")]
    Url { url: String, reason: String },
    #[error("{url}: ssh host key of {host} ({key_type} {fingerprint}) rejected: {reason}")]
    HostKey {
        url: String,
        host: String,
        key_type: String,
        fingerprint: String,
        reason: String,
    },
    #[error("{url}: authentication failed while fetching {reference}: {reason}")]
    Auth {
        url: String,
        reference: String,
        reason: String,
    },
    #[error("{url}: {reference} not found")]
    NotFound { url: String, reference: String },
    #[error("{url}: fetching {reference} failed: {reason}")]
    Fetch {
        url: String,
        reference: String,
        reason: String,
    },
    #[error("{url}: {reference} at commit {commit} failed verification: {reason}")]
    Verification {
        url: String,
        reference: String,
        commit: String,
        reason: String,
    },
    #[error("{url}: checkout of commit {commit} failed: {reason}")]
    Checkout {
        url: String,
        commit: String,
        reason: String,
    },
    #[error("git cache {path}: {reason}")]
    Cache { path: String, reason: String },
}

/// Scrubs secrets out of messages that came from libgit2 or gpg.
struct Scrubber {
    secrets: Vec<String>,
}

impl Scrubber {
    fn scrub(&self, msg: &str) -> String {
        let mut out = msg.to_owned();
        for s in &self.secrets {
            if s.len() >= 3 {
                out = out.replace(s.as_str(), "***");
            }
        }
        out
    }
}

impl Drop for Scrubber {
    fn drop(&mut self) {
        for s in &mut self.secrets {
            zeroize::Zeroize::zeroize(s);
        }
    }
}

/// Empties libgit2's configuration search paths once per process, so that no global,
/// XDG, system or program-data configuration is read.
fn isolate_libgit2() -> Result<(), String> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        for level in [
            git2::ConfigLevel::System,
            git2::ConfigLevel::XDG,
            git2::ConfigLevel::Global,
            git2::ConfigLevel::ProgramData,
        ] {
            // SAFETY: set_search_path only updates libgit2's global settings; it is
            // called once, before this module opens any repository.
            unsafe { git2::opts::set_search_path(level, "") }
                .map_err(|e| format!("cannot isolate libgit2 from git configuration: {e}"))?;
        }
        Ok(())
    })
    .clone()
}

/// Fetches `req.reference` from `req.url` into the cache, verifies it and checks out
/// exactly its commit.
pub fn fetch(req: &FetchRequest) -> Result<Checkout, SourceError> {
    let parsed = SourceUrl::parse(req.url).map_err(|reason| SourceError::Url {
        url: SourceUrl::parse(req.url)
            .map(|u| u.redacted)
            .unwrap_or_else(|_| "(unparseable URL)".into()),
        reason,
    })?;
    let url_r = parsed.redacted.clone();
    let reference = req.reference.to_string();
    let mut secrets = req
        .credentials
        .map(Credentials::secrets)
        .unwrap_or_default();
    if let Some(p) = &parsed.embedded_password {
        secrets.push(p.clone());
        // libgit2 decodes the URL, so its messages may hold the decoded form.
        secrets.push(url::percent_decode(p));
    }
    let scrubber = Scrubber { secrets };
    if let GitRef::Commit(c) = req.reference
        && !(c.len() >= 7 && c.len() <= 40 && c.chars().all(|x| x.is_ascii_hexdigit()))
    {
        return Err(SourceError::Url {
            url: url_r,
            reason: format!("{c:?} is not a commit id (7 to 40 hex digits)"),
        });
    }
    if let (Verification::Tag { .. }, GitRef::Branch(_) | GitRef::Commit(_)) =
        (req.verification, req.reference)
    {
        return Err(SourceError::Verification {
            url: url_r,
            reference,
            commit: "(not fetched)".into(),
            reason: "tag verification needs a tag reference".into(),
        });
    }
    isolate_libgit2().map_err(|reason| SourceError::Cache {
        path: req.cache_dir.display().to_string(),
        reason,
    })?;

    let cache_err = |path: &Path, e: &dyn fmt::Display| SourceError::Cache {
        path: path.display().to_string(),
        reason: scrubber.scrub(&e.to_string()),
    };
    make_private_dir(req.cache_dir).map_err(|e| cache_err(req.cache_dir, &e))?;
    let cache_secret = cache_secret(req.cache_dir).map_err(|e| cache_err(req.cache_dir, &e))?;
    let base = req
        .cache_dir
        .join(cache_entry_name(&cache_secret, &parsed, req.credentials));
    make_private_dir(&base).map_err(|e| cache_err(&base, &e))?;
    let lock_path = base.join("lock");
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| cache_err(&lock_path, &e))?;
    lock.lock().map_err(|e| cache_err(&lock_path, &e))?;

    let repo_dir = base.join("repo.git");
    let (repo, cache_reused) = open_or_init(&repo_dir).map_err(|e| cache_err(&repo_dir, &e))?;

    // A commit already in the cache needs no transfer, but the remote must still accept
    // this caller's credentials before it is served.
    let cached_commit = match req.reference {
        GitRef::Commit(c) => find_commit(&repo, c),
        _ => None,
    };
    let mut stats = FetchStats {
        cache_reused,
        ..FetchStats::default()
    };
    let (received_objects, received_bytes) = fetch_into(
        &repo,
        req,
        &parsed,
        &scrubber,
        &reference,
        cached_commit.is_some(),
    )?;
    stats.received_objects = received_objects;
    stats.received_bytes = received_bytes;

    // Resolve.
    let not_found = || SourceError::NotFound {
        url: url_r.clone(),
        reference: reference.clone(),
    };
    let (commit_id, tag_object, label) = match req.reference {
        GitRef::Branch(b) => {
            let r = repo
                .find_reference(&format!("refs/heads/{b}"))
                .map_err(|_| not_found())?;
            let c = r.peel_to_commit().map_err(|_| not_found())?;
            (c.id(), None, Some(b.clone()))
        }
        GitRef::Tag(t) => {
            let r = repo
                .find_reference(&format!("refs/tags/{t}"))
                .map_err(|_| not_found())?;
            let target = r.target().ok_or_else(not_found)?;
            let tag_obj = repo.find_tag(target).ok().map(|tg| tg.id());
            let c = r.peel_to_commit().map_err(|_| not_found())?;
            (c.id(), tag_obj, Some(t.clone()))
        }
        GitRef::Commit(c) => {
            let id = match cached_commit {
                Some(id) => id,
                None => find_commit(&repo, c).ok_or_else(not_found)?,
            };
            (id, None, None)
        }
    };
    let commit = commit_id.to_string();

    // Verify.
    let verify_err = |reason: String| SourceError::Verification {
        url: url_r.clone(),
        reference: reference.clone(),
        commit: commit.clone(),
        reason: scrubber.scrub(&reason),
    };
    let signer = match req.verification {
        Verification::None => None,
        Verification::HeadCommit { signers } => {
            let allowed = AllowedSigners::parse(signers).map_err(verify_err)?;
            let (sig, payload) = match repo.extract_signature(&commit_id, None) {
                Ok((s, p)) => (s.to_vec(), p.to_vec()),
                Err(e) if e.code() == git2::ErrorCode::NotFound => {
                    return Err(verify_err("the commit is not signed".into()));
                }
                Err(e) => {
                    return Err(verify_err(format!("cannot read the commit signature: {e}")));
                }
            };
            // The committer date, as git passes it to `ssh-keygen -Y verify`.
            let signed_at = repo
                .find_commit(commit_id)
                .ok()
                .map(|c| c.committer().when().seconds());
            Some(
                allowed
                    .verify(&sig, &payload, signed_at)
                    .map_err(verify_err)?,
            )
        }
        Verification::Tag { signers } => {
            let allowed = AllowedSigners::parse(signers).map_err(verify_err)?;
            let Some(tag_id) = tag_object else {
                return Err(verify_err(
                    "the tag is a lightweight tag, which cannot be signed".into(),
                ));
            };
            let odb = repo
                .odb()
                .map_err(|e| verify_err(format!("cannot open the object database: {e}")))?;
            let raw = odb
                .read(tag_id)
                .map_err(|e| verify_err(format!("cannot read the tag object: {e}")))?;
            let (payload, sig) = split_tag_signature(raw.data())
                .ok_or_else(|| verify_err("the tag is not signed".into()))?;
            let signed_at = repo
                .find_tag(tag_id)
                .ok()
                .and_then(|t| t.tagger().map(|p| p.when().seconds()));
            Some(
                allowed
                    .verify(sig, payload, signed_at)
                    .map_err(verify_err)?,
            )
        }
    };

    // Check out.
    let checkouts = base.join("checkout");
    let dir = checkouts.join(&commit);
    let co_err = |reason: String| SourceError::Checkout {
        url: url_r.clone(),
        commit: commit.clone(),
        reason: scrubber.scrub(&reason),
    };
    make_private_dir(&checkouts).map_err(|e| co_err(e.to_string()))?;
    // A checkout directory only ever appears by an atomic rename of a complete tree, so
    // one that exists is complete.
    if !dir.is_dir() {
        let tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempdir_in(&checkouts)
            .map_err(|e| co_err(e.to_string()))?;
        let new_tree = repo
            .find_commit(commit_id)
            .and_then(|c| c.tree())
            .map_err(|e| co_err(e.to_string()))?;
        write_tree(&repo, &new_tree, tmp.path(), tmp.path()).map_err(&co_err)?;
        check_symlinks(tmp.path()).map_err(&co_err)?;
        fs::rename(tmp.path(), &dir).map_err(|e| co_err(e.to_string()))?;
        // Renamed away: nothing left to clean up.
        let _ = tmp.keep();
    }
    let lease = take_lease(&checkouts, &commit).map_err(|e| co_err(e.to_string()))?;
    prune_checkouts(&checkouts, &commit);
    drop(lock);

    let revision = match label {
        Some(l) => format!("{l}@sha1:{commit}"),
        None => format!("sha1:{commit}"),
    };
    tracing::info!(url = %url_r, %revision, received_objects = stats.received_objects, "fetched git source");
    Ok(Checkout {
        revision,
        commit,
        dir,
        signer,
        stats,
        _lease: std::sync::Arc::new(lease),
    })
}

fn open_or_init(dir: &Path) -> Result<(Repository, bool), git2::Error> {
    if dir.join("HEAD").is_file()
        && let Ok(r) = Repository::open_bare(dir)
    {
        return Ok((r, true));
    }
    if dir.exists() {
        let _ = fs::remove_dir_all(dir);
    }
    let r = Repository::init_bare(dir)?;
    Ok((r, false))
}

fn find_commit(repo: &Repository, id: &str) -> Option<Oid> {
    let obj = if id.len() == 40 {
        repo.find_object(Oid::from_str(id).ok()?, None).ok()?
    } else {
        repo.find_object_by_prefix(id, None).ok()?
    };
    obj.peel_to_commit().ok().map(|c| c.id())
}

/// Runs the network fetch. Returns (received objects, received bytes). With
/// `probe_only` nothing is transferred: the remote is contacted with the caller's
/// credentials and its references listed, which proves the caller may read it.
fn fetch_into(
    repo: &Repository,
    req: &FetchRequest,
    parsed: &SourceUrl,
    scrubber: &Scrubber,
    reference: &str,
    probe_only: bool,
) -> Result<(usize, usize), SourceError> {
    let url_r = parsed.redacted.clone();
    let (refspecs, wanted): (Vec<String>, Option<String>) = match req.reference {
        // No refspec: libgit2 connects, lists the references and wants nothing.
        _ if probe_only => (Vec::new(), None),
        GitRef::Branch(b) => (
            vec![format!("+refs/heads/{b}:refs/heads/{b}")],
            Some(format!("refs/heads/{b}")),
        ),
        GitRef::Tag(t) => (
            vec![format!("+refs/tags/{t}:refs/tags/{t}")],
            Some(format!("refs/tags/{t}")),
        ),
        GitRef::Commit(_) => (
            vec![
                "+refs/heads/*:refs/heads/*".to_owned(),
                "+refs/tags/*:refs/tags/*".to_owned(),
            ],
            None,
        ),
    };
    if let Some(w) = &wanted
        && !git2::Reference::is_valid_name(w)
    {
        return Err(SourceError::Url {
            url: url_r,
            reason: format!("{reference} is not a valid reference name"),
        });
    }

    let creds = req.credentials;
    let host_key_failure: RefCell<Option<SourceError>> = RefCell::new(None);
    let auth_attempts = Cell::new(0u32);
    let auth_problem: RefCell<Option<String>> = RefCell::new(None);
    let known = creds
        .and_then(|c| c.known_hosts.as_deref())
        .map(KnownHosts::parse)
        .unwrap_or_default();
    let host_names = {
        let mut v = vec![parsed.known_hosts_name()];
        if !v.contains(&parsed.host) && parsed.port.is_none_or(|p| p == 22) {
            v.push(parsed.host.clone());
        }
        v
    };
    let mut callbacks = RemoteCallbacks::new();

    callbacks.credentials(|_url, username_from_url, allowed| {
        let attempt = auth_attempts.get() + 1;
        auth_attempts.set(attempt);
        if attempt > 3 {
            *auth_problem.borrow_mut() = Some("the server rejected the credentials".into());
            return Err(git2::Error::from_str("authentication failed"));
        }
        let Some(c) = creds else {
            *auth_problem.borrow_mut() =
                Some("the server asks for credentials and none were given".into());
            return Err(git2::Error::from_str("no credentials"));
        };
        let user = username_from_url
            .map(str::to_owned)
            .or_else(|| c.username.clone());
        if allowed.contains(CredentialType::SSH_KEY) {
            let Some(key) = &c.ssh_private_key else {
                *auth_problem.borrow_mut() =
                    Some("the server asks for an ssh key and no identity was given".into());
                return Err(git2::Error::from_str("no ssh key"));
            };
            if attempt > 1 {
                *auth_problem.borrow_mut() = Some("the server rejected the ssh key".into());
                return Err(git2::Error::from_str("ssh key rejected"));
            }
            let user = user.unwrap_or_else(|| "git".to_owned());
            return Cred::ssh_key_from_memory(
                &user,
                None,
                key.expose_secret(),
                c.ssh_passphrase.as_ref().map(|p| p.expose_secret()),
            )
            .map_err(|_| {
                *auth_problem.borrow_mut() = Some(
                    "the ssh private key could not be read (wrong format or passphrase)".into(),
                );
                git2::Error::from_str("unusable ssh key")
            });
        }
        if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) {
            let Some(pw) = &c.password else {
                *auth_problem.borrow_mut() =
                    Some("the server asks for a password and none was given".into());
                return Err(git2::Error::from_str("no password"));
            };
            if attempt > 1 {
                *auth_problem.borrow_mut() =
                    Some("the server rejected the username and password".into());
                return Err(git2::Error::from_str("password rejected"));
            }
            // A token without a user name: hosts accept any non-empty user.
            let user = user.unwrap_or_else(|| "git".to_owned());
            return Cred::userpass_plaintext(&user, pw.expose_secret());
        }
        if allowed.contains(CredentialType::USERNAME) {
            return Cred::username(&user.unwrap_or_else(|| "git".to_owned()));
        }
        *auth_problem.borrow_mut() = Some(format!(
            "the server asks for an unsupported kind of credentials ({allowed:?})"
        ));
        Err(git2::Error::from_str("unsupported credential type"))
    });

    callbacks.certificate_check(|cert, _host| {
        let Some(hk) = cert.as_hostkey() else {
            // TLS: libgit2 already checked the chain against the system roots.
            return Ok(CertificateCheckStatus::CertificatePassthrough);
        };
        let (verdict, key_type, fpr) = if let Some(raw) = hk.hostkey() {
            (
                known.check(&host_names, raw),
                known_hosts::key_type(raw).unwrap_or("unknown").to_owned(),
                known_hosts::fingerprint(raw),
            )
        } else if let Some(sha) = hk.hash_sha256() {
            use base64::Engine;
            (
                known.check_sha256(&host_names, sha),
                hk.hostkey_type()
                    .map(|t| t.name().to_owned())
                    .unwrap_or_else(|| "unknown".into()),
                format!(
                    "SHA256:{}",
                    base64::engine::general_purpose::STANDARD_NO_PAD.encode(sha)
                ),
            )
        } else {
            (
                Err(HostKeyRejection::UnknownHost),
                "unknown".into(),
                "(no key offered)".into(),
            )
        };
        match verdict {
            Ok(()) => Ok(CertificateCheckStatus::CertificateOk),
            Err(why) => {
                let reason = if known.is_empty() {
                    "no known_hosts were given, so no ssh host is trusted".to_owned()
                } else {
                    why.to_string()
                };
                *host_key_failure.borrow_mut() = Some(SourceError::HostKey {
                    url: url_r.clone(),
                    host: parsed.known_hosts_name(),
                    key_type,
                    fingerprint: fpr,
                    reason,
                });
                Err(git2::Error::from_str("host key rejected"))
            }
        }
    });

    let bearer = match (creds.and_then(|c| c.bearer_token.as_ref()), parsed.scheme) {
        (Some(t), Scheme::Https | Scheme::Http) => Some(Zeroizing::new(format!(
            "Authorization: Bearer {}",
            t.expose_secret()
        ))),
        _ => None,
    };
    if parsed.scheme == Scheme::Http
        && (parsed.embedded_password.is_some()
            || creds.is_some_and(|c| c.password.is_some() || c.bearer_token.is_some()))
    {
        tracing::warn!(url = %url_r, "sending git credentials over plain http");
    }
    let mut fo = FetchOptions::new();
    fo.remote_callbacks(callbacks)
        .download_tags(AutotagOption::None)
        .prune(FetchPrune::Off)
        .update_fetchhead(false);
    if let Some(h) = &bearer {
        fo.custom_headers(&[h.as_str()]);
    }

    let mut remote = repo
        .remote_anonymous(req.url)
        .map_err(|e| SourceError::Url {
            url: url_r.clone(),
            reason: scrubber.scrub(e.message()),
        })?;
    let result = remote.fetch(&refspecs, Some(&mut fo), None);
    drop(fo);
    if let Err(e) = result {
        if let Some(hk) = host_key_failure.borrow_mut().take() {
            return Err(hk);
        }
        if let Some(p) = auth_problem.borrow_mut().take() {
            return Err(SourceError::Auth {
                url: url_r,
                reference: reference.to_owned(),
                reason: p,
            });
        }
        let msg = scrubber.scrub(e.message());
        if e.class() == git2::ErrorClass::Http && (msg.contains("401") || msg.contains("403")) {
            return Err(SourceError::Auth {
                url: url_r,
                reference: reference.to_owned(),
                reason: msg,
            });
        }
        return Err(SourceError::Fetch {
            url: url_r,
            reference: reference.to_owned(),
            reason: msg,
        });
    }
    let stats = remote.stats();
    let counts = (stats.received_objects(), stats.received_bytes());
    // The wanted reference must have been advertised in this fetch: a branch or tag
    // deleted upstream must not be served from the cache.
    if let Some(w) = &wanted {
        let advertised = remote
            .list()
            .map(|heads| heads.iter().any(|h| h.name() == w))
            .unwrap_or(false);
        if !advertised {
            if let Ok(mut r) = repo.find_reference(w) {
                let _ = r.delete();
            }
            return Err(SourceError::NotFound {
                url: url_r,
                reference: reference.to_owned(),
            });
        }
    }
    Ok(counts)
}

/// The allowed signers, split by kind.
struct AllowedSigners {
    ssh: Vec<SshSigner>,
    pgp_keys: Vec<String>,
    pgp_fingerprints: Vec<String>,
}

impl AllowedSigners {
    fn parse(signers: &[String]) -> Result<Self, String> {
        if signers.is_empty() {
            return Err("verification is required but no allowed signers are configured".into());
        }
        let mut out = AllowedSigners {
            ssh: Vec::new(),
            pgp_keys: Vec::new(),
            pgp_fingerprints: Vec::new(),
        };
        for (i, s) in signers.iter().enumerate() {
            let t = s.trim();
            if t.contains("-----BEGIN PGP PUBLIC KEY BLOCK-----") {
                out.pgp_keys.push(t.to_owned());
            } else if openpgp::looks_like_fingerprint(t) {
                out.pgp_fingerprints.push(openpgp::normalize_fpr(t));
            } else if let Some(k) = SshSigner::parse(t) {
                out.ssh
                    .push(k.map_err(|e| format!("allowed signer #{}: {e}", i + 1))?);
            } else {
                return Err(format!(
                    "allowed signer #{} is neither an armored OpenPGP public key, an OpenPGP fingerprint nor an SSH public key",
                    i + 1
                ));
            }
        }
        Ok(out)
    }

    /// Verifies `sig` over `payload`; returns the signer's fingerprint.
    fn verify(&self, sig: &[u8], payload: &[u8], signed_at: Option<i64>) -> Result<String, String> {
        if sig.starts_with(b"-----BEGIN SSH SIGNATURE-----") {
            if self.ssh.is_empty() {
                return Err(
                    "the revision has an SSH signature but no SSH signer is allowed".into(),
                );
            }
            return sshsig::verify(sig, payload, &self.ssh, signed_at).map_err(|e| e.to_string());
        }
        if sig.starts_with(b"-----BEGIN PGP SIGNATURE-----") {
            if self.pgp_keys.is_empty() {
                return Err(
                    "the revision has an OpenPGP signature but no OpenPGP public key is allowed (fingerprints alone cannot verify)"
                        .into(),
                );
            }
            let keys: Vec<&str> = self.pgp_keys.iter().map(String::as_str).collect();
            let ring = openpgp::Keyring::new(&keys, &self.pgp_fingerprints)?;
            return ring.verify(sig, payload);
        }
        Err("the signature is of an unsupported kind (only OpenPGP and SSH signatures are accepted)".into())
    }
}

/// Splits a raw tag object into (signed payload, armored signature), as git does: the
/// signature starts at the last line that begins an OpenPGP or SSH signature.
fn split_tag_signature(raw: &[u8]) -> Option<(&[u8], &[u8])> {
    const STARTS: [&[u8]; 3] = [
        b"-----BEGIN PGP SIGNATURE-----",
        b"-----BEGIN PGP MESSAGE-----",
        b"-----BEGIN SSH SIGNATURE-----",
    ];
    let mut found = None;
    let mut pos = 0;
    while pos < raw.len() {
        let rest = &raw[pos..];
        if STARTS.iter().any(|s| rest.starts_with(s)) {
            found = Some(pos);
        }
        match rest.iter().position(|&b| b == b'\n') {
            Some(nl) => pos += nl + 1,
            None => break,
        }
    }
    found.map(|p| raw.split_at(p))
}

/// Writes a tree into the new, empty directory `dir`. Names that could escape the
/// directory (`..`, `/`, `.git`) and duplicate names are refused; every entry is created
/// fresh (`create_new`), so nothing already on disk, in particular no link, is followed.
/// Symlink targets are checked afterwards by [`check_symlinks`].
fn write_tree(repo: &Repository, tree: &git2::Tree, dir: &Path, root: &Path) -> Result<(), String> {
    if dir != root {
        fs::create_dir(dir).map_err(|e| format!("{}: {e}", rel_display(dir, root)))?;
    }
    let mut seen = std::collections::HashSet::new();
    for entry in tree.iter() {
        let name = entry
            .name()
            .map_err(|_| "a file name in the tree is not UTF-8".to_owned())?;
        check_name(name)?;
        let path = dir.join(name);
        if !seen.insert(name.to_owned()) {
            return Err(format!(
                "{}: the tree lists this name more than once",
                rel_display(&path, root)
            ));
        }
        if entry.filemode() == 0o040000 {
            let sub = repo
                .find_tree(entry.id())
                .map_err(|e| format!("{}: {e}", rel_display(&path, root)))?;
            write_tree(repo, &sub, &path, root)?;
        } else {
            write_leaf(repo, entry.filemode(), entry.id(), &path, root)?;
        }
    }
    Ok(())
}

/// Refuses names that could escape the directory (`..`, `/`, `.git`).
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name == "."
        || name == ".."
        || name.contains('/')
        || name.contains('\0')
        || name.eq_ignore_ascii_case(".git")
    {
        return Err(format!("the tree contains an unsafe file name {name:?}"));
    }
    Ok(())
}

fn rel_display(path: &Path, root: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// Writes one non-tree entry (file, symlink or submodule) at `path` inside `dir`.
fn write_leaf(
    repo: &Repository,
    mode: i32,
    id: Oid,
    path: &Path,
    root: &Path,
) -> Result<(), String> {
    let rel = || rel_display(path, root);
    {
        match mode {
            0o100644 | 0o100755 | 0o100664 => {
                use std::io::Write;
                use std::os::unix::fs::OpenOptionsExt;
                let blob = repo.find_blob(id).map_err(|e| format!("{}: {e}", rel()))?;
                let file_mode = if mode == 0o100755 { 0o755 } else { 0o644 };
                let mut f = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(file_mode)
                    .open(path)
                    .map_err(|e| format!("{}: {e}", rel()))?;
                f.write_all(blob.content())
                    .map_err(|e| format!("{}: {e}", rel()))?;
                // The umask may have narrowed the mode given at creation.
                use std::os::unix::fs::PermissionsExt;
                f.set_permissions(fs::Permissions::from_mode(file_mode))
                    .map_err(|e| format!("{}: {e}", rel()))?;
            }
            0o120000 => {
                let blob = repo.find_blob(id).map_err(|e| format!("{}: {e}", rel()))?;
                let target = std::str::from_utf8(blob.content())
                    .map_err(|_| format!("{}: symlink target is not UTF-8", rel()))?;
                if Path::new(target).is_absolute() {
                    return Err(format!(
                        "{}: symlink to {target:?} points outside the repository",
                        rel()
                    ));
                }
                std::os::unix::fs::symlink(target, path).map_err(|e| format!("{}: {e}", rel()))?;
            }
            0o160000 => {
                // A submodule: its content is not part of this repository.
                fs::create_dir(path).map_err(|e| format!("{}: {e}", rel()))?;
            }
            other => return Err(format!("{}: unsupported file mode {other:o}", rel())),
        }
    }
    Ok(())
}

/// Creates `dir` (and its parents) and makes it private to this user (0700).
fn make_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let mode = fs::metadata(dir)?.permissions().mode() & 0o777;
    if mode != 0o700 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// The random key of this cache directory (created on first use, mode 0600). It keys the
/// HMAC that names cache entries, so an entry name reveals nothing about the credentials.
fn cache_secret(cache_dir: &Path) -> std::io::Result<Zeroizing<Vec<u8>>> {
    use std::io::{Read, Write};
    use std::os::unix::fs::OpenOptionsExt;
    let path = cache_dir.join(".cache-key");
    let read = |path: &Path| -> std::io::Result<Zeroizing<Vec<u8>>> {
        let mut buf = Zeroizing::new(Vec::new());
        fs::File::open(path)?.read_to_end(&mut buf)?;
        if buf.len() != 32 {
            return Err(std::io::Error::other(
                "the cache key file does not hold 32 bytes",
            ));
        }
        Ok(buf)
    };
    match read(&path) {
        Ok(k) => return Ok(k),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut key = Zeroizing::new(vec![0u8; 32]);
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut key)
        .map_err(|_| std::io::Error::other("no system randomness for the cache key"))?;
    // Written under a unique name and linked into place, so that concurrent first uses
    // agree on one complete key.
    let tmp = cache_dir.join(format!(".cache-key.{}", hex(&key[..8])));
    {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&key)?;
        f.sync_all()?;
    }
    let linked = fs::hard_link(&tmp, &path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(key),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read(&path),
        Err(e) => Err(e),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The cache entry of one URL for one credential identity: an HMAC over the URL (without
/// password) and all credential material, so that callers with different credentials
/// never share a repository or a checkout.
fn cache_entry_name(secret: &[u8], url: &SourceUrl, creds: Option<&Credentials>) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let mut ctx = ring::hmac::Context::with_key(&key);
    let mut field = |tag: &[u8], value: Option<&str>| {
        // Length-prefixed, so that no two different inputs produce the same bytes.
        let v = value.map(str::as_bytes);
        ctx.update(tag);
        ctx.update(&[u8::from(v.is_some())]);
        let v = v.unwrap_or_default();
        ctx.update(&(v.len() as u64).to_be_bytes());
        ctx.update(v);
    };
    field(b"url", Some(&url.redacted));
    field(b"url-password", url.embedded_password.as_deref());
    let c = creds;
    field(b"username", c.and_then(|c| c.username.as_deref()));
    let secret_field = |s: Option<&SecretString>| s.map(|s| s.expose_secret().to_owned());
    let pw = Zeroizing::new(secret_field(c.and_then(|c| c.password.as_ref())));
    field(b"password", pw.as_deref());
    let token = Zeroizing::new(secret_field(c.and_then(|c| c.bearer_token.as_ref())));
    field(b"bearer", token.as_deref());
    let key_text = Zeroizing::new(secret_field(c.and_then(|c| c.ssh_private_key.as_ref())));
    field(b"identity", key_text.as_deref());
    let phrase = Zeroizing::new(secret_field(c.and_then(|c| c.ssh_passphrase.as_ref())));
    field(b"passphrase", phrase.as_deref());
    field(b"known_hosts", c.and_then(|c| c.known_hosts.as_deref()));
    hex(&ctx.sign().as_ref()[..16])
}

/// Opens and share-locks the lease file of `commit`'s checkout.
fn take_lease(checkouts: &Path, commit: &str) -> std::io::Result<fs::File> {
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(checkouts.join(format!("{commit}.lease")))?;
    f.lock_shared()?;
    Ok(f)
}

/// Removes the checkouts of other commits that nobody holds a lease on, and leftovers of
/// interrupted fetches. Runs under the entry's lock, so no new lease or temporary
/// directory appears meanwhile.
fn prune_checkouts(checkouts: &Path, keep: &str) {
    let Ok(entries) = fs::read_dir(checkouts) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with(".tmp-") || name.starts_with(".trash-") {
            let _ = fs::remove_dir_all(e.path());
            continue;
        }
        if name == keep || name.len() != 40 || !name.chars().all(|c| c.is_ascii_hexdigit()) {
            continue;
        }
        let lease_path = checkouts.join(format!("{name}.lease"));
        let Ok(lease) = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lease_path)
        else {
            continue;
        };
        if lease.try_lock().is_err() {
            // Someone still reads this checkout.
            continue;
        }
        // Moved aside first, so that the name never refers to a half-deleted tree.
        let trash = checkouts.join(format!(".trash-{name}"));
        if fs::rename(e.path(), &trash).is_ok() {
            let _ = fs::remove_dir_all(&trash);
            let _ = fs::remove_file(&lease_path);
        }
    }
}

/// Checks every symlink below `root` by resolving its target link by link against the
/// tree on disk (never through the OS, which would follow links): the result must stay
/// inside `root`. A lexical check is not enough: with `d -> .`, `d/d/../..` leaves.
fn check_symlinks(root: &Path) -> Result<(), String> {
    fn walk(root: &Path, rel: &mut Vec<std::ffi::OsString>) -> Result<(), String> {
        let dir = rel.iter().fold(root.to_path_buf(), |p, c| p.join(c));
        let entries = fs::read_dir(&dir).map_err(|e| format!("{}: {e}", rel_str(rel)))?;
        for e in entries {
            let e = e.map_err(|e| format!("{}: {e}", rel_str(rel)))?;
            let ft = e
                .file_type()
                .map_err(|e| format!("{}: {e}", rel_str(rel)))?;
            rel.push(e.file_name());
            if ft.is_symlink() {
                let target =
                    fs::read_link(e.path()).map_err(|e| format!("{}: {e}", rel_str(rel)))?;
                let parent = rel[..rel.len() - 1].to_vec();
                let mut budget = 40;
                if resolve_inside(root, parent, &target, &mut budget).is_none() {
                    return Err(format!(
                        "{}: symlink to {:?} points outside the repository",
                        rel_str(rel),
                        target.display().to_string()
                    ));
                }
            } else if ft.is_dir() {
                walk(root, rel)?;
            }
            rel.pop();
        }
        Ok(())
    }
    walk(root, &mut Vec::new())
}

fn rel_str(rel: &[std::ffi::OsString]) -> String {
    rel.iter()
        .map(|c| c.to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// Resolves `target` (a link's content) from the directory `cur` (components below
/// `root`), following links met on the way the same way, at most `budget` of them.
/// `None` when the path leaves `root`, is absolute, or loops.
fn resolve_inside(
    root: &Path,
    mut cur: Vec<std::ffi::OsString>,
    target: &Path,
    budget: &mut u32,
) -> Option<Vec<std::ffi::OsString>> {
    for c in target.components() {
        match c {
            Component::RootDir | Component::Prefix(_) => return None,
            Component::CurDir => {}
            Component::ParentDir => {
                cur.pop()?;
            }
            Component::Normal(n) => {
                cur.push(n.to_owned());
                let path = cur.iter().fold(root.to_path_buf(), |p, c| p.join(c));
                match fs::symlink_metadata(&path) {
                    Ok(m) if m.file_type().is_symlink() => {
                        *budget = budget.checked_sub(1)?;
                        let next = fs::read_link(&path).ok()?;
                        cur.pop();
                        cur = resolve_inside(root, cur, &next, budget)?;
                    }
                    Ok(_) => {}
                    // The OS would stop here too (ENOENT); continuing lexically is
                    // only stricter.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(_) => return None,
                }
            }
        }
    }
    Some(cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_data_uses_flux_keys_and_never_shows_values() {
        let mut d = BTreeMap::new();
        d.insert("username".to_owned(), b"bob".to_vec());
        d.insert("password".to_owned(), b"canary-pw-77\n".to_vec());
        let c = Credentials::from_secret_data(&d).unwrap();
        assert_eq!(c.username.as_deref(), Some("bob"));
        assert_eq!(c.password.as_ref().unwrap().expose_secret(), "canary-pw-77");
        assert!(!format!("{c:?}").contains("canary-pw-77"));
        d.insert("password".to_owned(), vec![0xff, 0xfe]);
        let e = Credentials::from_secret_data(&d).unwrap_err().to_string();
        assert!(e.contains("password") && e.contains("UTF-8"));
    }

    #[test]
    fn tag_signature_split_and_symlinks() {
        let raw = b"object 1\ntype commit\ntag v1\n\nmsg\n-----BEGIN SSH SIGNATURE-----\nabc\n-----END SSH SIGNATURE-----\n";
        let (p, s) = split_tag_signature(raw).unwrap();
        assert!(p.ends_with(b"msg\n"));
        assert!(s.starts_with(b"-----BEGIN SSH"));
        assert!(split_tag_signature(b"object 1\n\nmsg\n").is_none());
    }

    #[test]
    fn symlinks_are_resolved_against_the_tree_on_disk() {
        use std::os::unix::fs::symlink;
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        fs::create_dir(root.join("a")).unwrap();
        fs::write(root.join("b"), "b").unwrap();
        symlink("../b", root.join("a/up")).unwrap();
        symlink("a/up", root.join("chain")).unwrap();
        assert_eq!(check_symlinks(root), Ok(()));
        // Lexically inside (d/d/d/../../.. is the root), really three levels up.
        symlink(".", root.join("d")).unwrap();
        symlink("d/d/d/../../../etc", root.join("e")).unwrap();
        let err = check_symlinks(root).unwrap_err();
        assert!(
            err.contains("e: symlink to") && err.contains("outside"),
            "{err}"
        );
        fs::remove_file(root.join("e")).unwrap();
        symlink("../../etc", root.join("a/out")).unwrap();
        assert!(check_symlinks(root).is_err());
        fs::remove_file(root.join("a/out")).unwrap();
        // A loop is refused rather than followed forever.
        symlink("loop2", root.join("loop1")).unwrap();
        symlink("loop1/x", root.join("loop2")).unwrap();
        assert!(check_symlinks(root).is_err());
    }

    #[test]
    fn cache_entries_differ_per_credential_and_hide_it() {
        let url = SourceUrl::parse("https://example.com/org/repo.git").unwrap();
        let secret = [7u8; 32];
        let a = Credentials {
            password: Some(SecretString::from("canary-pw-1")),
            ..Credentials::default()
        };
        let mut b = a.clone();
        b.password = Some(SecretString::from("canary-pw-2"));
        let none = cache_entry_name(&secret, &url, None);
        let na = cache_entry_name(&secret, &url, Some(&a));
        let nb = cache_entry_name(&secret, &url, Some(&b));
        assert!(none != na && na != nb && none != nb);
        assert_eq!(na, cache_entry_name(&secret, &url, Some(&a)));
        assert_ne!(na, cache_entry_name(&[8u8; 32], &url, Some(&a)));
    }
}
