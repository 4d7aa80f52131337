//! Vault (or OpenBao) references: `ref+vault://PATH#KEY` in a Secret's `data` or
//! `stringData`, resolved at render time with vaultrs.
//!
//! One [`Vault`] lives as long as the process and holds what may outlive a reconcile:
//! login tokens (one per address, Vault namespace, auth method, mount, role and tenant
//! identity, renewed before expiry, one login at a time per key), the KV version of each
//! mount, and each app's call budget. One [`AppResolver`] lives for one render: it reads
//! each distinct path once, keeps the values only until it is dropped, and checks every
//! path against the policies' `vaultPaths` before any call.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vaultrs::client::{Client, VaultClient, VaultClientSettingsBuilder};
use vaultrs::error::ClientError;
use zeroize::Zeroizing;

use crate::render::VaultResolver;
use crate::sealed::SecretValue;

/// A reference parsed from `ref+vault://PATH#KEY`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// The path as written, without leading or trailing `/`.
    pub path: String,
    pub key: String,
}

/// Parses a reference; `None` when `s` is not one. Rejects empty, `.` and `..` segments
/// so that a path cannot climb out of the prefix a policy allows.
pub fn parse_reference(s: &str) -> Option<Result<Reference, String>> {
    let rest = s.strip_prefix("ref+vault://")?;
    let Some((path, key)) = rest.split_once('#') else {
        return Some(Err("reference has no #KEY".into()));
    };
    let path = path.trim_matches('/');
    if path.is_empty() || key.is_empty() {
        return Some(Err(
            "reference needs a path and a key (ref+vault://PATH#KEY)".into(),
        ));
    }
    if path
        .split('/')
        .any(|seg| seg.is_empty() || seg == "." || seg == ".." || seg.contains(['?', '%']))
    {
        return Some(Err(format!(
            "Vault path {path:?} has an empty, '.', '..' or escaped segment"
        )));
    }
    if !path.contains('/') {
        return Some(Err(format!("Vault path {path:?} names a mount only")));
    }
    Some(Ok(Reference {
        path: path.to_owned(),
        key: key.to_owned(),
    }))
}

/// What a failure asks of the reconciler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FailureClass {
    /// Wrong input (a key or path missing): retry at the app's retry interval.
    Failed,
    /// Refused (policy, Vault ACL, RBAC): retrying cannot help until someone changes a
    /// policy or a role, so no backoff loop against Vault.
    Stalled,
    /// Vault down, sealed, slow, or the budget spent: retry soon, with backoff.
    Transient,
}

/// Why a reference could not be resolved. Never carries a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VaultError {
    #[error("Vault path {path:?} is refused by policy {policy:?} (vaultPaths {prefixes:?})")]
    Policy {
        path: String,
        policy: String,
        prefixes: Vec<String>,
    },
    #[error("Vault denied {path:?} (permission denied)")]
    Denied { path: String },
    #[error("Vault path {path:?} not found")]
    NotFound { path: String },
    #[error("key {key:?} missing at Vault path {path:?}")]
    KeyMissing { path: String, key: String },
    #[error("Vault timed out on {path:?}")]
    Timeout { path: String },
    #[error("Vault is sealed ({path:?})")]
    Sealed { path: String },
    #[error("Vault is unavailable ({path:?})")]
    Unavailable { path: String },
    #[error("Vault rejected the request for {path:?} (status {code})")]
    Rejected { path: String, code: u16 },
    #[error("Vault unreachable ({path:?}): {cause}")]
    Unreachable { path: String, cause: String },
    #[error("Vault login failed ({method} at mount {mount:?}): {cause}")]
    Login {
        method: &'static str,
        mount: String,
        cause: String,
        class: FailureClass,
    },
    #[error("Vault call budget exceeded for this application ({per_minute} calls per minute)")]
    Budget { per_minute: u32 },
    #[error("Vault value at {path:?} key {key:?} is not a string")]
    NotString { path: String, key: String },
    #[error("Vault client: {0}")]
    Client(String),
}

impl VaultError {
    pub fn class(&self) -> FailureClass {
        match self {
            VaultError::Policy { .. } | VaultError::Denied { .. } => FailureClass::Stalled,
            VaultError::Timeout { .. }
            | VaultError::Sealed { .. }
            | VaultError::Unavailable { .. }
            | VaultError::Unreachable { .. }
            | VaultError::Budget { .. } => FailureClass::Transient,
            VaultError::Login { class, .. } => *class,
            VaultError::NotFound { .. }
            | VaultError::KeyMissing { .. }
            | VaultError::NotString { .. }
            | VaultError::Rejected { .. }
            | VaultError::Client(_) => FailureClass::Failed,
        }
    }
}

/// Where Vault is and how long a call may take.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// `https://vault.example.com` (no trailing `/`).
    pub address: String,
    /// Vault Enterprise / OpenBao namespace.
    pub namespace: Option<String>,
    /// CA bundle (PEM) that signs Vault's certificate; the system roots when absent.
    pub ca_pem: Option<Vec<u8>>,
    pub timeout: Duration,
}

/// A secret string that prints redacted.
#[derive(Clone)]
pub struct Secret(Zeroizing<String>);
impl Secret {
    pub fn new(s: String) -> Self {
        Secret(Zeroizing::new(s))
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}
impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Gets a JWT of the app's own service account when a Kubernetes login is due (and only
/// then: a TokenRequest per login, not per reconcile). An error says why, and whether
/// retrying can help.
pub type JwtSource = Arc<
    dyn Fn() -> futures::future::BoxFuture<'static, Result<Secret, (String, FailureClass)>>
        + Send
        + Sync,
>;

/// How to log in.
#[derive(Clone)]
pub enum Auth {
    /// A token given as is: used, never renewed, never cached.
    Token(Secret),
    AppRole {
        mount: String,
        role_id: Secret,
        secret_id: Secret,
    },
    Kubernetes {
        mount: String,
        role: String,
        jwt: JwtSource,
    },
}

impl Auth {
    fn method(&self) -> &'static str {
        match self {
            Auth::Token(_) => "token",
            Auth::AppRole { .. } => "approle",
            Auth::Kubernetes { .. } => "kubernetes",
        }
    }
    fn mount(&self) -> String {
        match self {
            Auth::Token(_) => String::new(),
            Auth::AppRole { mount, .. } | Auth::Kubernetes { mount, .. } => mount.clone(),
        }
    }
}

/// One cached login. The key holds the tenant so that a token never serves another
/// tenant, and a digest of the AppRole credentials so that changed credentials log in
/// again.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct TokenKey {
    address: String,
    namespace: Option<String>,
    method: &'static str,
    mount: String,
    role: String,
    tenant: String,
}

struct CachedToken {
    token: Secret,
    renewable: bool,
    /// Lease length at login or last renewal.
    lease: Duration,
    obtained: Instant,
}

impl CachedToken {
    fn remaining(&self) -> Duration {
        self.lease.saturating_sub(self.obtained.elapsed())
    }
    /// Renew (or log in again) once two thirds of the lease is gone.
    fn due(&self) -> bool {
        self.remaining() < self.lease / 3
    }
}

/// Counts of calls made to Vault, for tests and metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    pub logins: u64,
    pub renewals: u64,
    pub reads: u64,
    pub mount_lookups: u64,
    /// Cached logins found gone on the server (and replaced).
    pub stale_logins: u64,
}

#[derive(Default)]
struct Budget {
    window_start: Option<Instant>,
    used: u32,
}

/// (address, Vault namespace).
type ServerKey = (String, Option<String>);

type TokenSlot = Arc<tokio::sync::Mutex<Option<CachedToken>>>;

#[derive(Default)]
struct Shared {
    tokens: Mutex<HashMap<TokenKey, TokenSlot>>,
    /// (address, namespace) -> mount path (with trailing `/`) -> KV version.
    mounts: Mutex<HashMap<ServerKey, HashMap<String, u8>>>,
    budgets: Mutex<HashMap<String, Budget>>,
    counters: Mutex<Counters>,
}

/// Process-wide Vault state. Cheap to clone.
#[derive(Clone)]
pub struct Vault {
    shared: Arc<Shared>,
    /// Vault calls one app may make per minute.
    pub calls_per_minute: u32,
}

impl Default for Vault {
    fn default() -> Self {
        Vault::new(600)
    }
}

/// The default timeout on every Vault call.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Vault {
    pub fn new(calls_per_minute: u32) -> Self {
        // vaultrs' HTTP client needs a process-wide rustls provider; the binary installs
        // ring first, this covers library users (tests, embedders) that did not.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Vault {
            shared: Arc::default(),
            calls_per_minute,
        }
    }

    pub fn counters(&self) -> Counters {
        *lock(&self.shared.counters)
    }

    /// Forgets every cached token (for tests of cold starts).
    pub fn forget_tokens(&self) {
        lock(&self.shared.tokens).clear();
    }

    /// A resolver for one render of one app. `app` names the budget (namespace/name);
    /// `tenant` is the identity logins are cached for (the app's service account);
    /// `rules` are the binding policies' `vaultPaths` as (policy name, prefixes).
    pub fn resolver(
        &self,
        handle: tokio::runtime::Handle,
        endpoint: Endpoint,
        auth: Auth,
        app: String,
        tenant: String,
        rules: Vec<(String, Vec<String>)>,
    ) -> AppResolver {
        AppResolver {
            vault: self.clone(),
            handle,
            endpoint,
            auth,
            app,
            tenant,
            rules,
            reads: Mutex::new(HashMap::new()),
            api_reads: Mutex::new(HashMap::new()),
            failure: Mutex::new(None),
        }
    }

    fn spend(&self, app: &str) -> Result<(), VaultError> {
        let mut budgets = lock(&self.shared.budgets);
        let b = budgets.entry(app.to_owned()).or_default();
        let now = Instant::now();
        if b.window_start
            .is_none_or(|s| now.duration_since(s) >= Duration::from_secs(60))
        {
            b.window_start = Some(now);
            b.used = 0;
        }
        if b.used >= self.calls_per_minute {
            return Err(VaultError::Budget {
                per_minute: self.calls_per_minute,
            });
        }
        b.used += 1;
        Ok(())
    }

    fn count(&self, f: impl FnOnce(&mut Counters)) {
        f(&mut lock(&self.shared.counters));
    }
}

/// The values of one Vault path.
type Values = HashMap<String, SecretValue>;

/// Resolves references for one render; values live until it is dropped.
pub struct AppResolver {
    vault: Vault,
    handle: tokio::runtime::Handle,
    endpoint: Endpoint,
    auth: Auth,
    app: String,
    tenant: String,
    rules: Vec<(String, Vec<String>)>,
    /// One read per distinct path (the outcome, failure included, is reused).
    reads: Mutex<HashMap<String, Result<Arc<Values>, VaultError>>>,
    /// The same, by the path Vault sees: `mount/data/x` and `mount/x` are one read.
    api_reads: Mutex<HashMap<String, Arc<Values>>>,
    /// The most pressing class among the failures of this render.
    failure: Mutex<Option<FailureClass>>,
}

/// Inserts `data/` after the first segment (the KV v2 API form of a logical path).
fn v2_api_form(path: &str) -> Option<String> {
    let (mount, rest) = path.split_once('/')?;
    Some(format!("{mount}/data/{rest}"))
}

fn matches_prefix(path: &str, prefix: &str) -> bool {
    path.starts_with(prefix)
}

/// True when `path` (as written in a reference) falls under one of `prefixes`, as written
/// or in its KV v2 API form (`mount/data/...`).
pub fn path_allowed(path: &str, prefixes: &[String]) -> bool {
    let v2 = v2_api_form(path);
    prefixes
        .iter()
        .any(|p| matches_prefix(path, p) || v2.as_deref().is_some_and(|v| matches_prefix(v, p)))
}

impl AppResolver {
    /// Every policy with `vaultPaths` must allow the path, as written or in its KV v2
    /// API form. Runs before any Vault call.
    pub fn check_policy(&self, path: &str) -> Result<(), VaultError> {
        for (policy, prefixes) in &self.rules {
            if !path_allowed(path, prefixes) {
                return Err(VaultError::Policy {
                    path: path.to_owned(),
                    policy: policy.clone(),
                    prefixes: prefixes.clone(),
                });
            }
        }
        Ok(())
    }

    /// After the mount is known: the path Vault's ACL sees (or, on a KV v2 mount, its
    /// logical form) must be allowed, so a prefix written for a KV v2 mount never opens
    /// a KV v1 path by accident.
    fn check_api_path(
        &self,
        written: &str,
        api: &str,
        logical: Option<&str>,
    ) -> Result<(), VaultError> {
        for (policy, prefixes) in &self.rules {
            if !prefixes
                .iter()
                .any(|p| matches_prefix(api, p) || logical.is_some_and(|l| matches_prefix(l, p)))
            {
                return Err(VaultError::Policy {
                    path: written.to_owned(),
                    policy: policy.clone(),
                    prefixes: prefixes.clone(),
                });
            }
        }
        Ok(())
    }

    fn client(&self, token: Option<&str>) -> Result<VaultClient, VaultError> {
        let mut b = VaultClientSettingsBuilder::default();
        b.address(&self.endpoint.address)
            // Behind the timeout in `call`, which is the one that reports.
            .timeout(Some(self.endpoint.timeout + Duration::from_secs(1)))
            .verify(true)
            .token(token.unwrap_or(""));
        if let Some(ns) = &self.endpoint.namespace {
            b.set_namespace(ns.clone());
        }
        // vaultrs reads CA bundles from files; a CA is public, so a temporary file is
        // fine, removed as soon as the client holds the certificates.
        let ca_file = match &self.endpoint.ca_pem {
            Some(pem) => {
                let f = tempfile::NamedTempFile::new()
                    .map_err(|e| VaultError::Client(format!("CA file: {e}")))?;
                std::fs::write(f.path(), pem)
                    .map_err(|e| VaultError::Client(format!("CA file: {e}")))?;
                b.ca_certs(vec![f.path().display().to_string()]);
                Some(f)
            }
            None => {
                b.ca_certs(vec![]);
                None
            }
        };
        let settings = b
            .build()
            .map_err(|e| VaultError::Client(format!("settings: {e}")))?;
        let client = VaultClient::new(settings).map_err(|e| VaultError::Client(e.to_string()));
        drop(ca_file);
        client
    }

    async fn call<T, F>(&self, path: &str, fut: F) -> Result<T, VaultError>
    where
        F: std::future::Future<Output = Result<T, ClientError>>,
    {
        self.vault.spend(&self.app)?;
        match tokio::time::timeout(self.endpoint.timeout, fut).await {
            Err(_) => Err(VaultError::Timeout {
                path: path.to_owned(),
            }),
            Ok(r) => r.map_err(|e| classify(path, e)),
        }
    }

    fn token_key(&self) -> TokenKey {
        let role = match &self.auth {
            Auth::Token(_) => String::new(),
            Auth::AppRole {
                role_id, secret_id, ..
            } => {
                // Never the credentials themselves: a digest that changes when they do.
                let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
                ctx.update(role_id.expose().as_bytes());
                ctx.update(&[0]);
                ctx.update(secret_id.expose().as_bytes());
                ctx.finish()
                    .as_ref()
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect()
            }
            Auth::Kubernetes { role, .. } => role.clone(),
        };
        TokenKey {
            address: self.endpoint.address.clone(),
            namespace: self.endpoint.namespace.clone(),
            method: self.auth.method(),
            mount: self.auth.mount(),
            role,
            tenant: self.tenant.clone(),
        }
    }

    /// A token for this app: the given one, or a cached login, renewed or replaced when
    /// due. Concurrent callers with the same key wait for one login.
    async fn token(&self) -> Result<Secret, VaultError> {
        if let Auth::Token(t) = &self.auth {
            return Ok(t.clone());
        }
        let key = self.token_key();
        let slot = lock(&self.vault.shared.tokens)
            .entry(key)
            .or_default()
            .clone();
        let mut guard = slot.lock().await;
        if let Some(cached) = guard.as_mut() {
            if !cached.due() {
                return Ok(cached.token.clone());
            }
            if cached.renewable && cached.remaining() > Duration::ZERO {
                let client = self.client(Some(cached.token.expose()))?;
                let renewed = self.call("auth/token/renew-self", client.renew(None)).await;
                self.vault.count(|c| c.renewals += 1);
                // Renewal keeps the token only if it got a real extension; otherwise
                // (max TTL reached, revoked) log in again below.
                if let Ok(info) = renewed
                    && Duration::from_secs(info.lease_duration) > cached.remaining()
                {
                    cached.lease = Duration::from_secs(info.lease_duration);
                    cached.obtained = Instant::now();
                    cached.renewable = info.renewable;
                    return Ok(cached.token.clone());
                }
            }
        }
        *guard = None;
        let login = self.login().await?;
        let token = login.token.clone();
        *guard = Some(login);
        Ok(token)
    }

    async fn login(&self) -> Result<CachedToken, VaultError> {
        let client = self.client(None)?;
        let method = self.auth.method();
        let mount = self.auth.mount();
        let login_err = |e: VaultError| VaultError::Login {
            method,
            mount: mount.clone(),
            cause: e.to_string(),
            class: e.class(),
        };
        let path = format!("auth/{mount}/login");
        let info = match &self.auth {
            Auth::Token(_) => return Err(VaultError::Client("no login for a token".into())),
            Auth::AppRole {
                mount,
                role_id,
                secret_id,
            } => self
                .call(
                    &path,
                    vaultrs::auth::approle::login(
                        &client,
                        mount,
                        role_id.expose(),
                        secret_id.expose(),
                    ),
                )
                .await
                .map_err(login_err)?,
            Auth::Kubernetes { mount, role, jwt } => {
                let jwt = jwt().await.map_err(|(cause, class)| VaultError::Login {
                    method,
                    mount: mount.clone(),
                    cause: format!("service account token: {cause}"),
                    class,
                })?;
                self.call(
                    &path,
                    vaultrs::auth::kubernetes::login(&client, mount, role, jwt.expose()),
                )
                .await
                .map_err(login_err)?
            }
        };
        self.vault.count(|c| c.logins += 1);
        tracing::debug!(app = %self.app, method, "logged in to Vault");
        Ok(CachedToken {
            token: Secret::new(info.client_token),
            renewable: info.renewable,
            lease: Duration::from_secs(info.lease_duration),
            obtained: Instant::now(),
        })
    }

    /// The KV version of the mount holding `path`, and the mount path (`mount/`).
    async fn mount_of(&self, client: &VaultClient, path: &str) -> Result<(String, u8), VaultError> {
        let cache_key = (
            self.endpoint.address.clone(),
            self.endpoint.namespace.clone(),
        );
        if let Some(found) = lock(&self.vault.shared.mounts)
            .get(&cache_key)
            .and_then(|m| m.iter().find(|(mp, _)| path.starts_with(mp.as_str())))
            .map(|(mp, v)| (mp.clone(), *v))
        {
            return Ok(found);
        }
        // Any token with a capability on the path may ask which mount holds it.
        let resp = self
            .call(
                path,
                vaultrs::kv1::get_raw(client, "sys/internal/ui/mounts", path),
            )
            .await?;
        self.vault.count(|c| c.mount_lookups += 1);
        let mount_path = resp
            .data
            .get("path")
            .and_then(|p| p.as_str())
            .filter(|p| !p.is_empty())
            .ok_or_else(|| VaultError::NotFound {
                path: path.to_owned(),
            })?
            .to_owned();
        let kind = resp.data.get("type").and_then(|t| t.as_str()).unwrap_or("");
        if kind != "kv" && kind != "generic" {
            return Err(VaultError::Client(format!(
                "Vault path {path:?} is on a {kind:?} mount, not KV"
            )));
        }
        let version = match resp
            .data
            .get("options")
            .and_then(|o| o.get("version"))
            .and_then(|v| v.as_str())
        {
            Some("2") => 2,
            _ => 1,
        };
        lock(&self.vault.shared.mounts)
            .entry(cache_key)
            .or_default()
            .insert(mount_path.clone(), version);
        Ok((mount_path, version))
    }

    async fn read_path(&self, path: &str) -> Result<Arc<Values>, VaultError> {
        let token = self.token().await?;
        match self.read_with(&token, path).await {
            Err(VaultError::Denied { .. }) if self.stale_login(&token).await => {
                // The cached login no longer exists on the server (Vault restored or
                // restarted, token revoked): log in once more and retry once.
                self.vault.count(|c| c.stale_logins += 1);
                let token = self.token().await?;
                self.read_with(&token, path).await
            }
            r => r,
        }
    }

    /// After a 403: true (and the cache slot emptied) when `token` is a cached login that
    /// Vault no longer knows. A real ACL denial keeps the token, so a denied path never
    /// turns into a login per reconcile.
    async fn stale_login(&self, token: &Secret) -> bool {
        if matches!(self.auth, Auth::Token(_)) {
            return false;
        }
        let Ok(client) = self.client(Some(token.expose())) else {
            return false;
        };
        let gone = matches!(
            self.call(
                "auth/token/lookup-self",
                vaultrs::token::lookup_self(&client)
            )
            .await,
            Err(VaultError::Denied { .. })
        );
        if gone {
            let slot = lock(&self.vault.shared.tokens)
                .get(&self.token_key())
                .cloned();
            if let Some(slot) = slot {
                let mut guard = slot.lock().await;
                if guard
                    .as_ref()
                    .is_some_and(|c| c.token.expose() == token.expose())
                {
                    *guard = None;
                }
            }
        }
        gone
    }

    async fn read_with(&self, token: &Secret, path: &str) -> Result<Arc<Values>, VaultError> {
        let client = self.client(Some(token.expose()))?;
        let (mount_path, version) = self.mount_of(&client, path).await?;
        let mount = mount_path.trim_end_matches('/');
        let rest = path
            .strip_prefix(mount_path.as_str())
            .unwrap_or("")
            .trim_start_matches('/');
        let (api_path, data) = if version == 2 {
            // Both the API form (mount/data/x) and the logical form (mount/x) work.
            let logical = rest.strip_prefix("data/").unwrap_or(rest);
            let api = format!("{mount}/data/{logical}");
            self.check_api_path(path, &api, Some(&format!("{mount}/{logical}")))?;
            if let Some(v) = lock(&self.api_reads).get(&api) {
                return Ok(v.clone());
            }
            let v: serde_json::Map<String, serde_json::Value> = self
                .call(path, vaultrs::kv2::read(&client, mount, logical))
                .await?;
            (api, v)
        } else {
            let api = path.to_owned();
            self.check_api_path(path, &api, None)?;
            if let Some(v) = lock(&self.api_reads).get(&api) {
                return Ok(v.clone());
            }
            let v: serde_json::Map<String, serde_json::Value> = self
                .call(path, vaultrs::kv1::get(&client, mount, rest))
                .await?;
            (api, v)
        };
        self.vault.count(|c| c.reads += 1);
        let mut out = Values::new();
        for (k, v) in data {
            let bytes = match v {
                serde_json::Value::String(s) => s.into_bytes(),
                // Numbers and booleans read as their JSON text; objects stay refused.
                serde_json::Value::Number(n) => n.to_string().into_bytes(),
                serde_json::Value::Bool(b) => b.to_string().into_bytes(),
                _ => continue,
            };
            out.insert(k, SecretValue::new(bytes));
        }
        let out = Arc::new(out);
        lock(&self.api_reads).insert(api_path, out.clone());
        Ok(out)
    }

    /// Reads one path (deduplicated) and returns all its values.
    pub fn read_all(&self, path: &str) -> Result<Arc<Values>, VaultError> {
        let r = self.read_all_inner(path);
        if let Err(e) = &r {
            self.note(e.class());
        }
        r
    }

    fn read_all_inner(&self, path: &str) -> Result<Arc<Values>, VaultError> {
        self.check_policy(path)?;
        if let Some(r) = lock(&self.reads).get(path) {
            return r.clone();
        }
        let r = self.handle.block_on(self.read_path(path));
        lock(&self.reads).insert(path.to_owned(), r.clone());
        r
    }

    fn note(&self, class: FailureClass) {
        let mut f = lock(&self.failure);
        *f = Some(f.map_or(class, |old| old.max(class)));
    }

    /// The most pressing class among this render's Vault failures (transient over
    /// stalled over failed); `None` when Vault failed nothing.
    pub fn failure(&self) -> Option<FailureClass> {
        *lock(&self.failure)
    }
}

fn classify(path: &str, e: ClientError) -> VaultError {
    let path = path.to_owned();
    match e {
        ClientError::APIError { code: 403, .. } => VaultError::Denied { path },
        ClientError::APIError { code: 404, .. } => VaultError::NotFound { path },
        // Vault's own error text, checked for the one word that tells sealed from
        // overloaded; it is never copied into the message.
        ClientError::APIError { code: 503, errors }
            if errors
                .iter()
                .any(|e| e.to_ascii_lowercase().contains("sealed")) =>
        {
            VaultError::Sealed { path }
        }
        ClientError::APIError { code: 503, .. } => VaultError::Unavailable { path },
        // A request Vault will refuse again (a bad AppRole id, a malformed call): no
        // backoff loop against Vault, the app's retry interval instead.
        ClientError::APIError { code, .. } if (400..500).contains(&code) && code != 429 => {
            VaultError::Rejected { path, code }
        }
        ClientError::APIError { code, .. } => VaultError::Unreachable {
            path,
            cause: format!("status {code}"),
        },
        ClientError::RestClientError { source } => {
            // The HTTP client's own timeout sits behind ours, so this is a connection
            // failure (refused, reset, TLS); its text names no value.
            let mut cause = source.to_string();
            let mut cur = std::error::Error::source(&source);
            while let Some(e) = cur {
                cause = format!("{cause}: {e}");
                cur = e.source();
            }
            VaultError::Unreachable { path, cause }
        }
        ClientError::ResponseEmptyError | ClientError::ResponseDataEmptyError => {
            VaultError::NotFound { path }
        }
        other => VaultError::Unreachable {
            path,
            cause: other.to_string(),
        },
    }
}

impl VaultResolver for AppResolver {
    fn resolve_all(&self, path: &str) -> Result<Vec<(String, SecretValue)>, String> {
        self.all_values(path).map_err(|e| e.to_string())
    }

    fn resolve(&self, path: &str, key: &str) -> Result<SecretValue, String> {
        let path = path.trim_matches('/');
        let values = self.read_all(path).map_err(|e| e.to_string())?;
        values
            .get(key)
            .map(|v| SecretValue::new(v.expose().to_vec()))
            .ok_or_else(|| {
                self.note(FailureClass::Failed);
                VaultError::KeyMissing {
                    path: path.to_owned(),
                    key: key.to_owned(),
                }
                .to_string()
            })
    }
}

impl AppResolver {
    /// Every string value at `path`, sorted by key.
    pub fn all_values(&self, path: &str) -> Result<Vec<(String, SecretValue)>, VaultError> {
        let values = self.read_all(path.trim_matches('/'))?;
        let mut out: Vec<(String, SecretValue)> = values
            .iter()
            .map(|(k, v)| (k.clone(), SecretValue::new(v.expose().to_vec())))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }
}

/// The `vaultPaths` rules of a policy set, as (policy name, prefixes).
pub fn rules_of(policies: &crate::policy::PolicySet) -> Vec<(String, Vec<String>)> {
    policies
        .policies
        .iter()
        .filter_map(|p| p.vault_paths.clone().map(|v| (p.name.clone(), v)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_references() {
        let r = parse_reference("ref+vault://secret/data/app#password")
            .unwrap()
            .unwrap();
        assert_eq!(r.path, "secret/data/app");
        assert_eq!(r.key, "password");
        assert!(parse_reference("plain").is_none());
        for bad in [
            "ref+vault://secret/app",
            "ref+vault://#k",
            "ref+vault://secret#k",
            "ref+vault://secret/../other#k",
            "ref+vault://secret//x#k",
            "ref+vault://secret/%2e%2e/x#k",
        ] {
            assert!(parse_reference(bad).unwrap().is_err(), "{bad}");
        }
    }

    fn resolver(rules: Vec<(String, Vec<String>)>) -> AppResolver {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        Vault::default().resolver(
            rt.handle().clone(),
            Endpoint {
                address: "http://127.0.0.1:1".into(),
                namespace: None,
                ca_pem: None,
                timeout: Duration::from_millis(200),
            },
            Auth::Token(Secret::new("t".into())),
            "ns/app".into(),
            "ns/sa".into(),
            rules,
        )
    }

    #[test]
    fn policy_prefixes_apply_before_any_call() {
        let r = resolver(vec![("tenants".into(), vec!["secret/data/team-a/".into()])]);
        assert!(r.check_policy("secret/data/team-a/db").is_ok());
        assert!(r.check_policy("secret/team-a/db").is_ok());
        let e = r.check_policy("secret/data/team-b/db").unwrap_err();
        assert!(e.to_string().contains("tenants"), "{e}");
        // The refusal happens without a call: the address is unreachable, the error is
        // the policy's.
        let e = r.resolve("secret/team-b/db", "k").unwrap_err();
        assert!(e.contains("refused by policy"), "{e}");
        assert_eq!(r.vault.counters(), Counters::default());
    }

    #[test]
    fn budget_limits_calls_per_app() {
        let v = Vault::new(2);
        assert!(v.spend("a").is_ok());
        assert!(v.spend("a").is_ok());
        assert!(matches!(v.spend("a"), Err(VaultError::Budget { .. })));
        assert!(v.spend("b").is_ok());
    }

    #[test]
    fn failures_are_classed_for_retry() {
        let p = || "secret/a".to_owned();
        for (e, class) in [
            (VaultError::Timeout { path: p() }, FailureClass::Transient),
            (
                VaultError::Unavailable { path: p() },
                FailureClass::Transient,
            ),
            (VaultError::Sealed { path: p() }, FailureClass::Transient),
            (
                VaultError::Unreachable {
                    path: p(),
                    cause: "refused".into(),
                },
                FailureClass::Transient,
            ),
            (
                VaultError::Budget { per_minute: 1 },
                FailureClass::Transient,
            ),
            (VaultError::Denied { path: p() }, FailureClass::Stalled),
            (
                VaultError::Policy {
                    path: p(),
                    policy: "x".into(),
                    prefixes: vec![],
                },
                FailureClass::Stalled,
            ),
            (VaultError::NotFound { path: p() }, FailureClass::Failed),
            (
                VaultError::Rejected {
                    path: p(),
                    code: 400,
                },
                FailureClass::Failed,
            ),
            (
                VaultError::KeyMissing {
                    path: p(),
                    key: "k".into(),
                },
                FailureClass::Failed,
            ),
        ] {
            assert_eq!(e.class(), class, "{e}");
        }
        // A login keeps the class of what failed under it.
        let e = VaultError::Login {
            method: "kubernetes",
            mount: "kubernetes".into(),
            cause: "x".into(),
            class: FailureClass::Transient,
        };
        assert_eq!(e.class(), FailureClass::Transient);
    }

    #[test]
    fn a_render_reports_its_most_pressing_failure() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let r = Vault::default().resolver(
            rt.handle().clone(),
            Endpoint {
                address: "http://127.0.0.1:1".into(),
                namespace: None,
                ca_pem: None,
                timeout: Duration::from_millis(500),
            },
            Auth::Token(Secret::new("t".into())),
            "ns/app".into(),
            "system:serviceaccount:ns:sa".into(),
            vec![("tenants".into(), vec!["secret/data/a/".into()])],
        );
        assert_eq!(r.failure(), None);
        let _ = r.resolve("secret/b/x", "k");
        assert_eq!(r.failure(), Some(FailureClass::Stalled));
        // The address is unreachable: transient wins over the policy refusal.
        let _ = r.resolve("secret/a/x", "k");
        assert_eq!(r.failure(), Some(FailureClass::Transient));
    }

    #[test]
    fn secrets_print_redacted() {
        let s = Secret::new("canary-123".into());
        assert!(!format!("{s:?}").contains("canary"));
    }
}
