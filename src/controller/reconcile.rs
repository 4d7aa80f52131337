//! One reconcile of one Application, stage by stage as DESIGN.md draws it:
//! validate -> policy (app level) -> dependencies -> fetch -> secrets -> render -> policy
//! (objects) -> plan -> apply -> prune -> health -> status.
//!
//! Every stage is a library call the CLI also makes (`render`, `check`, the cluster
//! module). A failure before apply leaves the cluster as it was: nothing applied, nothing
//! pruned, and the status names the stage, the file, the object and the key path.
//!
//! Quiet idempotence: what was applied last (a digest keyed with a per-process random
//! key, since it covers secret values) is kept in memory; a round whose revision and
//! rendered objects are unchanged makes no write and no per-object request.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};

use super::application::{
    Application, ApplicationStatus, FieldConflict, Inventory, InventoryEntry,
};
use super::conditions::{self, reason};
use super::events::{Events, Severity};
use super::validate::{self, ValidSpec};
use super::verify;
use crate::cluster::apply::{self, Action, Applied, ApplyMode, ApplyOptions};
use crate::cluster::client::Clients;
use crate::cluster::discovery::Discovery;
use crate::cluster::watch::{Drift, DriftWatches, RECONCILE_ANNOTATION};
use crate::cluster::{health, inventory, prune};
use crate::crypto::age_keys::Identities;
use crate::policy::cluster::{ClusterPolicy, bound_set, policies_binding};
use crate::render::{self, RenderOptions, RenderedObject};
use crate::sops::tree::Node;
use crate::source::{self, Credentials};

/// An Application's key in the queue and in memory: (namespace, name).
pub type AppKey = (String, String);

/// Tunables of the reconciler.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where the Git cache lives.
    pub cache_dir: PathBuf,
    /// The reconciler's own namespace, holding its sealing Secret.
    pub controller_namespace: String,
    /// The Secret whose `*.agekey` keys hold the cluster's sealing identities.
    pub sealing_secret: String,
    pub budget: prune::Budget,
    pub crd_established_timeout: Duration,
    /// How often health is polled while waiting.
    pub health_poll: Duration,
    /// How long the sealing identities are reused before the Secret is read again.
    pub sealing_refresh: Duration,
}

impl Settings {
    pub fn new(cache_dir: PathBuf, controller_namespace: &str, sealing_secret: &str) -> Settings {
        Settings {
            cache_dir,
            controller_namespace: controller_namespace.to_owned(),
            sealing_secret: sealing_secret.to_owned(),
            budget: prune::Budget::default(),
            crd_established_timeout: Duration::from_secs(30),
            health_poll: Duration::from_millis(500),
            sealing_refresh: Duration::from_secs(30),
        }
    }
}

/// The cluster's Policies as the controller's watch sees them.
pub type PolicySource = Box<dyn Fn() -> Vec<ClusterPolicy> + Send + Sync>;
/// Looks up an Application (namespace, name) in the controller's watch cache.
pub type ApplicationSource = Box<dyn Fn(&str, &str) -> Option<Arc<Application>> + Send + Sync>;

/// What the last successful apply of an app was, in memory only.
#[derive(Clone)]
struct Remembered {
    /// HMAC of the applied objects and where they went (never a plain hash: it covers
    /// secret values).
    digest: Vec<u8>,
    generation: Option<i64>,
    healthy: bool,
    /// The inventory this process last recorded (fresher than a status read from the
    /// watch cache, which may not have caught up with our own write yet).
    inventory: Vec<InventoryEntry>,
}

/// Drift seen on an app's objects, between reconciles.
#[derive(Default)]
struct DriftMemory {
    /// Changes to correct in the next reconcile (for its Event).
    pending: Vec<Drift>,
    /// (object, manager) pairs lockstep already took back once.
    taken_back: HashSet<(String, String)>,
    /// Objects another manager took again: not corrected until their manifest changes.
    /// The digest is of the manifest when the conflict was seen (None: not yet known).
    standing: BTreeMap<String, (Option<Vec<u8>>, FieldConflict)>,
    /// Standing conflicts not yet announced by an Event.
    announce: Vec<FieldConflict>,
}

/// The sealing identities and when they were read.
struct Sealing {
    identities: Arc<Identities>,
    read_at: Option<Instant>,
}

/// Everything a reconcile needs, shared by all of them.
pub struct Context {
    pub clients: Clients,
    pub discovery: Discovery,
    pub settings: Settings,
    pub events: Events,
    /// The cluster's Policies, as the controller sees them (from a watch).
    policies: PolicySource,
    /// Applications as the controller sees them (from a watch), for `dependsOn`.
    applications: ApplicationSource,
    memory: Mutex<HashMap<AppKey, Remembered>>,
    sealing: tokio::sync::Mutex<Sealing>,
    digest_key: ring::hmac::Key,
    drift_watches: std::sync::OnceLock<Arc<DriftWatches>>,
    drifts: Mutex<HashMap<AppKey, DriftMemory>>,
    /// Vault tokens, mount versions and call budgets, shared by every reconcile.
    vault: crate::vault::Vault,
}

impl Context {
    pub fn new(
        clients: Clients,
        settings: Settings,
        events: Events,
        policies: PolicySource,
        applications: ApplicationSource,
    ) -> Result<Context, ring::error::Unspecified> {
        let rng = ring::rand::SystemRandom::new();
        Ok(Context {
            clients,
            discovery: Discovery::new(),
            settings,
            events,
            policies,
            applications,
            memory: Mutex::new(HashMap::new()),
            sealing: tokio::sync::Mutex::new(Sealing {
                identities: Arc::new(Identities::default()),
                read_at: None,
            }),
            digest_key: ring::hmac::Key::generate(ring::hmac::HMAC_SHA256, &rng)?,
            drift_watches: std::sync::OnceLock::new(),
            drifts: Mutex::new(HashMap::new()),
            vault: crate::vault::Vault::default(),
        })
    }

    /// Turns on drift detection: every apply is then tracked by these watches.
    pub fn set_drift_watches(&self, watches: Arc<DriftWatches>) {
        let _ = self.drift_watches.set(watches);
    }

    /// Records a drift a watch saw. Returns whether the app needs a reconcile: always,
    /// either to take the object back (the first time this manager changed it, or a
    /// deletion) or to report a standing conflict (the same manager again).
    pub fn note_drift(&self, drift: Drift) -> bool {
        let object = describe(&drift.object);
        let Ok(mut all) = self.drifts.lock() else {
            return false;
        };
        let mem = all.entry(drift.app.clone()).or_default();
        match &drift.manager {
            Some(manager) => {
                let pair = (object.clone(), manager.clone());
                if mem.taken_back.contains(&pair) {
                    if !mem.standing.contains_key(&object) {
                        let conflict = FieldConflict {
                            object: object.clone(),
                            manager: manager.clone(),
                            fields: drift.fields.clone(),
                        };
                        mem.announce.push(conflict.clone());
                        mem.standing.insert(object, (None, conflict));
                    }
                } else {
                    mem.taken_back.insert(pair);
                    mem.pending.push(drift.clone());
                }
            }
            None => mem.pending.push(drift.clone()),
        }
        drop(all);
        self.forget(&drift.app);
        true
    }

    /// Forgets what was applied for `key`, so that the next reconcile applies again
    /// (drift seen by a watch, or the Application deleted).
    pub fn forget(&self, key: &AppKey) {
        if let Ok(mut m) = self.memory.lock() {
            m.remove(key);
        }
    }

    /// Forgets everything about a deleted Application.
    pub fn forget_app(&self, key: &AppKey) {
        self.forget(key);
        if let Ok(mut d) = self.drifts.lock() {
            d.remove(key);
        }
        if let Some(w) = self.drift_watches.get() {
            w.untrack(key, &[]);
        }
    }

    fn remembered(&self, key: &AppKey) -> Option<Remembered> {
        self.memory.lock().ok()?.get(key).cloned()
    }

    fn remember(&self, key: &AppKey, r: Option<Remembered>) {
        if let Ok(mut m) = self.memory.lock() {
            match r {
                Some(r) => {
                    m.insert(key.clone(), r);
                }
                None => {
                    m.remove(key);
                }
            }
        }
    }

    /// The cluster's sealing identities, read from the reconciler's own Secret as the
    /// reconciler (the only Secret it may read).
    async fn sealing_identities(&self) -> Result<Arc<Identities>, String> {
        let mut s = self.sealing.lock().await;
        if let Some(at) = s.read_at
            && at.elapsed() < self.settings.sealing_refresh
        {
            return Ok(s.identities.clone());
        }
        let api: Api<Secret> = Api::namespaced(
            self.clients.controller(),
            &self.settings.controller_namespace,
        );
        let name = &self.settings.sealing_secret;
        let origin = format!(
            "sealing Secret {}/{}",
            self.settings.controller_namespace, name
        );
        let ids = match api.get_opt(name).await {
            Ok(Some(secret)) => identities_from_secret(&secret, &origin)?,
            // Without the Secret, SealedSecrets fail to unseal with a clear error.
            Ok(None) => Identities::default(),
            Err(e) => return Err(format!("cannot read the {origin}: {}", api_error_text(&e))),
        };
        s.identities = Arc::new(ids);
        s.read_at = Some(Instant::now());
        Ok(s.identities.clone())
    }
}

/// What the queue should do next with this Application.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Run again after this long (the interval, or a dependency wait).
    After(Duration),
    /// A failure: retry after `retryInterval`, or with backoff when the error is
    /// transient (`None`).
    Retry(Option<Duration>),
}

/// Why a stage stopped the reconcile. The message names the file, object and key path
/// where there is one, and never holds a secret value.
#[derive(Debug)]
struct Stop {
    reason: &'static str,
    message: String,
    /// Retrying cannot help until something changes (spec, Policy, approval).
    stalled: bool,
    /// Worth retrying soon with backoff (the API server or Git was unavailable).
    transient: bool,
}

impl Stop {
    fn failed(reason: &'static str, message: impl Into<String>) -> Stop {
        Stop {
            reason,
            message: message.into(),
            stalled: false,
            transient: false,
        }
    }
    fn stalled(reason: &'static str, message: impl Into<String>) -> Stop {
        Stop {
            stalled: true,
            ..Stop::failed(reason, message)
        }
    }
    fn transient(reason: &'static str, message: impl Into<String>) -> Stop {
        Stop {
            transient: true,
            ..Stop::failed(reason, message)
        }
    }
}

/// What a reconcile did, for status, events and the caller.
struct Done {
    revision: String,
    applied: Vec<Applied>,
    pruned: Vec<InventoryEntry>,
    /// False when nothing needed applying (unchanged revision and objects).
    wrote: bool,
    inventory: Vec<InventoryEntry>,
}

/// Reconciles one Application and writes its status. Never panics on input; every
/// failure ends in status and an Event.
pub async fn reconcile(app: Arc<Application>, ctx: &Context) -> Next {
    let started = Instant::now();
    let namespace = app.namespace().unwrap_or_default();
    let name = app.name_any();
    let key: AppKey = (namespace.clone(), name.clone());
    let generation = app.metadata.generation;
    let old_status = app.status.clone().unwrap_or_default();
    let mut status = old_status.clone();
    let now = conditions::now_rfc3339();
    let request = app.pending_reconcile_request().map(str::to_owned);

    let valid = match validate::validate(&app) {
        Ok(v) => v,
        Err(invalid) => {
            invalid.mark(&mut status, generation, &now);
            finish_status(ctx, &app, &old_status, status, request).await;
            ctx.forget(&key);
            // Nothing to retry until the spec changes; a spec change is a new event.
            return Next::After(Duration::from_secs(300));
        }
    };
    if valid.suspend {
        status.set_condition(
            conditions::RECONCILING,
            conditions::Status::False,
            reason::SUSPENDED,
            "reconciliation is suspended (spec.suspend)",
            generation,
            &now,
        );
        finish_status(ctx, &app, &old_status, status, request).await;
        return Next::After(valid.interval);
    }

    // The stages bound themselves by `deadline` (health waits until then); the outer
    // bound only catches a stage that hangs.
    let deadline = started + valid.timeout;
    let outer = valid.timeout + Duration::from_secs(5);
    for c in ctx.take_announcements(&key) {
        event(
            ctx,
            &app,
            Severity::Warning,
            "FieldConflict",
            "Apply",
            format!(
                "{}: {} took {} again after lockstep took it back once; lockstep stops correcting this object until its manifest changes in Git (remove the field from Git to hand it over)",
                c.object,
                c.manager,
                if c.fields.is_empty() { "its fields".to_owned() } else { c.fields.join(", ") }
            ),
        )
        .await;
    }
    let outcome = match tokio::time::timeout(outer, run(&app, &valid, &key, deadline, ctx)).await {
        Ok(r) => r,
        Err(_) => Err((
            Stop::transient(
                reason::FAILED,
                format!(
                    "the reconcile did not finish within spec.timeout ({})",
                    super::duration::format_duration(valid.timeout)
                ),
            ),
            None,
            None,
        )),
    };
    let now = conditions::now_rfc3339();
    let took = started.elapsed();
    match outcome {
        Ok(done) => {
            let message = format!("Applied revision: {}", done.revision);
            status.mark_ready(&message, generation, &now);
            status.last_applied_revision = Some(done.revision.clone());
            status.last_attempted_revision = Some(done.revision.clone());
            status.inventory = Some(Inventory {
                entries: done.inventory.clone(),
            });
            if done.wrote || old_status.history.is_empty() || !old_status.is_ready() {
                status.push_history(&done.revision, reason::SUCCEEDED, took, &now);
            }
            if !done.applied.is_empty() {
                let changed: Vec<String> = done
                    .applied
                    .iter()
                    .filter(|a| a.action != Action::Unchanged)
                    .map(|a| format!("{} {}", describe(&a.entry), action_word(&a.action)))
                    .collect();
                if !changed.is_empty() {
                    event(
                        ctx,
                        &app,
                        Severity::Normal,
                        "Applied",
                        "Apply",
                        format!("revision {}: {}", done.revision, changed.join(", ")),
                    )
                    .await;
                }
            }
            let corrected = ctx.take_pending_drifts(&key);
            if !corrected.is_empty() {
                let what: Vec<String> = corrected
                    .iter()
                    .map(|d| match &d.manager {
                        Some(m) => format!(
                            "{} (changed by {m}{})",
                            describe(&d.object),
                            if d.fields.is_empty() {
                                String::new()
                            } else {
                                format!(": {}", d.fields.join(", "))
                            }
                        ),
                        None => format!("{} (deleted)", describe(&d.object)),
                    })
                    .collect();
                event(
                    ctx,
                    &app,
                    Severity::Normal,
                    "DriftCorrected",
                    "Apply",
                    format!("re-applied {}", what.join("; ")),
                )
                .await;
            }
            if !done.pruned.is_empty() {
                let names: Vec<String> = done.pruned.iter().map(describe).collect();
                event(
                    ctx,
                    &app,
                    Severity::Normal,
                    "Pruned",
                    "Prune",
                    format!("revision {}: deleted {}", done.revision, names.join(", ")),
                )
                .await;
            }
            finish_status(ctx, &app, &old_status, status, request).await;
            Next::After(valid.interval)
        }
        Err((mut stop, revision, partial)) => {
            // A 403 may be the namespace not letting the reconciler act as its account.
            if (stop.message.contains("403") || stop.message.to_lowercase().contains("forbidden"))
                && let Some(m) = super::access::impersonation_denied(
                    &ctx.clients.controller(),
                    &namespace,
                    &valid.service_account,
                )
                .await
            {
                stop = Stop::stalled(reason::IMPERSONATION_FORBIDDEN, m);
            }
            if let Some(rev) = &revision {
                status.last_attempted_revision = Some(rev.clone());
                // Health is checked only after a full apply: that revision is applied.
                if stop.reason == reason::HEALTH_CHECK_FAILED || stop.reason == reason::PRUNE_FAILED
                {
                    status.last_applied_revision = Some(rev.clone());
                }
            }
            if let Some(entries) = partial {
                status.inventory = Some(Inventory { entries });
            }
            if stop.stalled {
                status.mark_stalled(stop.reason, &stop.message, generation, &now);
            } else {
                status.mark_failed(stop.reason, &stop.message, generation, &now);
            }
            let repeated = old_status
                .condition(conditions::READY)
                .is_some_and(|c| c.reason == stop.reason && c.message == stop.message);
            if !repeated {
                status.push_history(revision.as_deref().unwrap_or(""), stop.reason, took, &now);
                event(
                    ctx,
                    &app,
                    Severity::Warning,
                    stop.reason,
                    "Reconcile",
                    stop.message.clone(),
                )
                .await;
            }
            tracing::info!(app = %format!("{namespace}/{name}"), reason = stop.reason, "reconcile failed");
            finish_status(ctx, &app, &old_status, status, request).await;
            if stop.stalled {
                Next::After(valid.interval)
            } else if stop.transient {
                Next::Retry(None)
            } else {
                Next::Retry(Some(valid.retry_interval))
            }
        }
    }
}

type Failure = (Stop, Option<String>, Option<Vec<InventoryEntry>>);

/// The pipeline proper. On failure returns the stop, the revision if one was fetched,
/// and the inventory to record if the cluster changed before the failure.
async fn run(
    app: &Application,
    valid: &ValidSpec,
    key: &AppKey,
    deadline: Instant,
    ctx: &Context,
) -> Result<Done, Failure> {
    let no_rev = |stop: Stop| (stop, None, None);
    let namespace = valid.namespace.as_str();
    let name = valid.name.as_str();

    // Policy, Application level: which source and which service account it may use.
    let cluster_policies = (ctx.policies)();
    let mut policies = Vec::new();
    for p in &cluster_policies {
        match p.to_policy() {
            Ok(p) => policies.push(p),
            Err(e) => {
                return Err(no_rev(Stop::stalled(
                    reason::POLICY_DENIED,
                    format!("{e} (fix the Policy: every Application it could bind is held)"),
                )));
            }
        }
    }
    let bound = policies_binding(namespace, &policies);
    let denials = validate::policy_denials(valid, &bound);
    if !denials.is_empty() {
        let msgs: Vec<String> = denials.iter().map(ToString::to_string).collect();
        return Err(no_rev(Stop::stalled(
            reason::POLICY_DENIED,
            msgs.join("; "),
        )));
    }
    let policy_set = bound_set(namespace, &policies);

    // Dependencies: Ready first.
    for dep in &valid.depends_on {
        let ready = (ctx.applications)(namespace, dep).is_some_and(|d| {
            d.status.as_ref().is_some_and(|s| {
                s.is_ready()
                    && s.condition(conditions::READY)
                        .is_some_and(|c| c.observed_generation == d.metadata.generation)
            })
        });
        if !ready {
            return Err(no_rev(Stop::failed(
                reason::DEPENDENCY_NOT_READY,
                format!("dependency {namespace}/{dep} is not ready"),
            )));
        }
    }

    // Everything this app reads from its namespace is read as its own service account.
    let as_app = ctx
        .clients
        .for_service_account(namespace, &valid.service_account);
    let credentials = match &valid.credentials_secret {
        None => None,
        Some(secret) => {
            let data = read_secret(&as_app, valid, secret, "spec.source.secretRef")
                .await
                .map_err(no_rev)?;
            Some(Credentials::from_secret_data(&data).map_err(|e| {
                no_rev(Stop::stalled(
                    reason::ARTIFACT_FAILED,
                    format!("Secret {namespace}/{secret} (spec.source.secretRef): {e}"),
                ))
            })?)
        }
    };
    let secret_signers = match valid.verify.as_ref().and_then(|v| v.secret.as_ref()) {
        None => None,
        Some(secret) => {
            let data = read_secret(&as_app, valid, secret, "spec.source.verify.secretRef")
                .await
                .map_err(no_rev)?;
            Some(
                verify::signers_from_secret(secret, &data)
                    .map_err(|e| no_rev(Stop::stalled(reason::ARTIFACT_FAILED, e.to_string())))?,
            )
        }
    };
    let verification = verify::verification(
        valid.verify.as_ref(),
        secret_signers,
        policy_set.required_signers(),
    )
    .map_err(|e| no_rev(Stop::stalled(reason::ARTIFACT_FAILED, e.to_string())))?;

    // Fetch (git2 blocks: off the async threads).
    let url = valid.url.clone();
    let reference = valid.reference.clone();
    let cache_dir = ctx.settings.cache_dir.clone();
    let checkout = tokio::task::spawn_blocking(move || {
        source::fetch(&source::FetchRequest {
            url: &url,
            reference: &reference,
            credentials: credentials.as_ref(),
            cache_dir: &cache_dir,
            verification: &verification,
        })
    })
    .await
    .map_err(|e| no_rev(Stop::transient(reason::ARTIFACT_FAILED, e.to_string())))?
    .map_err(|e| {
        let transient = matches!(e, source::SourceError::Fetch { .. });
        let stop = Stop {
            reason: reason::ARTIFACT_FAILED,
            message: e.to_string(),
            stalled: false,
            transient,
        };
        no_rev(stop)
    })?;
    let revision = checkout.revision.clone();
    let with_rev = |stop: Stop| (stop, Some(revision.clone()), None);

    // Secrets stage inputs: the app's SOPS keys (as the app), the cluster's sealing keys.
    let sops_ids = match &valid.decryption_secret {
        None => Arc::new(Identities::default()),
        Some(secret) => {
            let data = read_secret(&as_app, valid, secret, "spec.decryption.secretRef")
                .await
                .map_err(&with_rev)?;
            let origin = format!("decryption Secret {namespace}/{secret}");
            Arc::new(
                identities_from_data(&data, &origin)
                    .map_err(|m| with_rev(Stop::stalled(reason::BUILD_FAILED, m)))?,
            )
        }
    };
    let sealing_ids = ctx
        .sealing_identities()
        .await
        .map_err(|m| with_rev(Stop::transient(reason::BUILD_FAILED, m)))?;

    // Render.
    let root = if valid.path.is_empty() {
        checkout.dir.clone()
    } else {
        checkout.dir.join(&valid.path)
    };
    let destination = valid.destination_namespace.clone();
    let path_label = if valid.path.is_empty() {
        ".".to_owned()
    } else {
        valid.path.clone()
    };
    let resolver = match &valid.vault {
        None => None,
        Some(v) => Some(Arc::new(
            vault_resolver(ctx, &as_app, valid, v, &policy_set)
                .await
                .map_err(&with_rev)?,
        )),
    };
    let vault_outcome = resolver.clone();
    let render_checkout = checkout.clone();
    let render_policies = policy_set.clone();
    let rendered = tokio::task::spawn_blocking(move || {
        let keep = render_checkout;
        if !root.is_dir() {
            return Err(format!(
                "path {path_label:?} is not a directory in the revision"
            ));
        }
        let opts = RenderOptions {
            sops_identities: &sops_ids,
            sealing_identities: &sealing_ids,
            destination_namespace: Some(&destination),
            vault: match &resolver {
                Some(r) => r.as_ref(),
                None => &render::NoVault,
            },
            limits: render::Limits::default(),
            policies: Some(&render_policies),
        };
        // A kustomization's bases may live anywhere in the checkout, never outside it.
        // The resolver (and every value it read) is dropped with this closure.
        render::render_app(&keep.dir, &root, &opts).map_err(|e| format!("{path_label}/{e}"))
    })
    .await
    .map_err(|e| with_rev(Stop::failed(reason::BUILD_FAILED, e.to_string())))?
    .map_err(|m| {
        // A Vault failure decides how soon to try again: Vault down, sealed or slow is
        // retried with backoff; a refusal (policy, ACL, RBAC) waits for a change.
        use crate::vault::FailureClass;
        with_rev(match vault_outcome.as_ref().and_then(|r| r.failure()) {
            Some(FailureClass::Transient) => Stop::transient(reason::BUILD_FAILED, m),
            Some(FailureClass::Stalled) => Stop::stalled(reason::BUILD_FAILED, m),
            _ => Stop::failed(reason::BUILD_FAILED, m),
        })
    })?;
    drop(vault_outcome);
    drop(checkout);
    let mut objects: Vec<RenderedObject> = rendered;

    // Policy, object level: every binding Policy on every object.
    let mut violations = Vec::new();
    for obj in &objects {
        violations.extend(policy_set.check(&obj.subject()).into_iter().map(|mut v| {
            // Name files as they are in the repository.
            v.file = std::path::Path::new(&valid.path).join(&v.file);
            v
        }));
    }
    if !violations.is_empty() {
        let msgs: Vec<String> = violations.iter().map(ToString::to_string).collect();
        return Err(with_rev(Stop::stalled(
            reason::POLICY_DENIED,
            msgs.join("; "),
        )));
    }

    // Plan.
    for obj in &mut objects {
        inventory::stamp(&mut obj.doc, namespace, name);
    }
    let mut desired: Vec<InventoryEntry> = objects.iter().map(inventory::entry_of).collect();
    desired.sort();
    let mut seen = HashSet::new();
    for (obj, entry) in objects.iter().zip(objects.iter().map(inventory::entry_of)) {
        if !seen.insert(entry.clone()) {
            return Err(with_rev(Stop::failed(
                reason::BUILD_FAILED,
                format!("{}: {} is rendered twice", obj.origin, describe(&entry)),
            )));
        }
    }
    let remembered = ctx.remembered(key);
    let previous: Vec<InventoryEntry> = match &remembered {
        Some(r) => r.inventory.clone(),
        None => app
            .status
            .as_ref()
            .and_then(|s| s.inventory.as_ref())
            .map(|i| i.entries.clone())
            .unwrap_or_default(),
    };
    let digest = digest_of(ctx, valid, &objects);
    let unchanged = remembered.as_ref().is_some_and(|r| {
        r.digest == digest && r.generation == app.metadata.generation && previous == desired
    });
    if unchanged && remembered.as_ref().is_some_and(|r| r.healthy) {
        return Ok(Done {
            revision,
            applied: Vec::new(),
            pruned: Vec::new(),
            wrote: false,
            inventory: desired,
        });
    }

    let mut applied = Vec::new();
    let mut pruned = Vec::new();
    let mut new_inventory = desired.clone();
    if !unchanged {
        // Refuse objects another Application manages, before writing anything.
        let lookup = DiscoveryLookup(&ctx.discovery);
        inventory::check_ownership_with(&as_app, &lookup, &desired, namespace, name)
            .await
            .map_err(|e| {
                let transient = matches!(
                    &e,
                    inventory::OwnershipCheckError::Api { code, .. }
                        if code.is_none_or(|c| c == 429 || c >= 500)
                );
                let stop = if transient {
                    Stop::transient(reason::FAILED, e.to_string())
                } else {
                    Stop::failed(reason::FAILED, e.to_string())
                };
                with_rev(stop)
            })?;

        // Objects another manager keeps taking are left alone until their manifest
        // changes (no fight, no event storm); they stay in the inventory.
        let to_apply = without_standing_conflicts(ctx, key, &objects);

        // Prove every object would be accepted (RBAC, validation) before writing any,
        // so that an app is never half-applied. lockstep owns the fields its manifests
        // declare (force), as Flux does; objects of other Applications were refused above.
        let dry = ApplyOptions {
            mode: ApplyMode::DryRun,
            crd_established_timeout: ctx.settings.crd_established_timeout,
            force: true,
        };
        apply::apply_all(&as_app, &ctx.discovery, &to_apply, &dry)
            .await
            .map_err(|e| with_rev(apply_stop(&e)))?;
        let real = ApplyOptions {
            mode: ApplyMode::Apply,
            ..dry
        };
        match apply::apply_all(&as_app, &ctx.discovery, &to_apply, &real).await {
            Ok(a) => applied = a,
            Err(e) => {
                // Some objects may be written: keep them in the inventory with the old one
                // so that nothing written is forgotten by a later prune.
                let mut partial: Vec<InventoryEntry> = previous.clone();
                partial.extend(e.applied.iter().map(|a| a.entry.clone()));
                partial.sort();
                partial.dedup();
                ctx.remember(key, None);
                if let Some(w) = ctx.drift_watches.get() {
                    w.track(key, &valid.service_account, &e.applied).await;
                }
                return Err((apply_stop(&e), Some(revision.clone()), Some(partial)));
            }
        }
        drop(to_apply);
        if let Some(w) = ctx.drift_watches.get() {
            w.track(key, &valid.service_account, &applied).await;
        }

        // Prune: only after a fully successful render and apply, within the budget.
        let approval = app
            .annotations()
            .get(inventory::APPROVE_PRUNE_ANNOTATION)
            .map(String::as_str);
        let input = prune::PruneInput {
            previous: &previous,
            desired: &desired,
            stages: prune::StagesOk {
                fetch: true,
                render: true,
                decrypt: true,
                policy: true,
                apply: true,
            },
            prune_enabled: valid.prune,
            allow_empty: valid.allow_empty,
            opt_ins: prune::OptIns::default(),
            budget: ctx.settings.budget,
            approval,
        };
        match prune::plan(&input) {
            prune::PruneDecision::Nothing => {}
            prune::PruneDecision::Delete { delete, kept } => {
                // Objects the plan keeps (prune off, protected kinds) stay in the cluster
                // and leave the inventory: lockstep no longer manages them.
                drop(kept);
                if let Some(w) = ctx.drift_watches.get() {
                    // Our own deletes are not drift.
                    w.forget_objects(&delete);
                }
                let lookup = DiscoveryLookup(&ctx.discovery);
                let report = prune::execute(&as_app, &lookup, &delete, namespace, name).await;
                let remaining = report.remaining();
                let remaining_set: HashSet<&InventoryEntry> = remaining.iter().collect();
                pruned = delete
                    .iter()
                    .filter(|e| !remaining_set.contains(e))
                    .cloned()
                    .collect();
                new_inventory.extend(remaining);
                new_inventory.sort();
                new_inventory.dedup();
                if let Some(w) = ctx.drift_watches.get() {
                    w.untrack(key, &new_inventory);
                }
                if !report.is_complete() {
                    // Failed deletes stay in the inventory and are retried with backoff.
                    let failures: Vec<String> =
                        report.failed.iter().map(|f| f.message.clone()).collect();
                    ctx.remember(key, None);
                    return Err((
                        Stop::transient(
                            reason::PRUNE_FAILED,
                            format!("prune failed: {}", failures.join("; ")),
                        ),
                        Some(revision.clone()),
                        Some(new_inventory),
                    ));
                }
            }
            prune::PruneDecision::Refused(refusal) => {
                let mut keep = previous.clone();
                keep.extend(desired.iter().cloned());
                keep.sort();
                keep.dedup();
                ctx.remember(key, None);
                let (stop, what) = refusal_stop(&refusal);
                if let Some(what) = what {
                    event(ctx, app, Severity::Warning, "PruneBlocked", "Prune", what).await;
                }
                return Err((stop, Some(revision.clone()), Some(keep)));
            }
        }
        ctx.remember(
            key,
            Some(Remembered {
                digest: digest.clone(),
                generation: app.metadata.generation,
                healthy: false,
                inventory: new_inventory.clone(),
            }),
        );
    }

    // Health of what was applied.
    let to_check: Vec<InventoryEntry> = desired
        .iter()
        .filter(|e| health::has_health_rules(&e.group, &e.kind))
        .cloned()
        .collect();
    if !to_check.is_empty() {
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(500));
        if let Err(u) =
            health::wait_healthy(&as_app, &to_check, left, ctx.settings.health_poll).await
        {
            return Err((
                Stop::failed(
                    reason::HEALTH_CHECK_FAILED,
                    format!("{}: {}", u.object, u.reason),
                ),
                Some(revision.clone()),
                Some(new_inventory),
            ));
        }
    }
    ctx.remember(
        key,
        Some(Remembered {
            digest,
            generation: app.metadata.generation,
            healthy: true,
            inventory: new_inventory.clone(),
        }),
    );
    Ok(Done {
        revision,
        applied,
        pruned,
        wrote: true,
        inventory: new_inventory,
    })
}

/// Prune and ownership checks find each kind's REST path through the shared discovery
/// cache (no request per reconcile once a kind is known).
struct DiscoveryLookup<'a>(&'a Discovery);

impl inventory::ApiLookup for DiscoveryLookup<'_> {
    async fn api_for(
        &self,
        client: &kube::Client,
        entry: &InventoryEntry,
    ) -> Result<Api<kube::api::DynamicObject>, kube::Error> {
        let api_version = inventory::api_version_of(entry);
        let resolved = self
            .0
            .resolve(client, &api_version, &entry.kind)
            .await
            .map_err(|e| {
                kube::Error::Discovery(kube::error::DiscoveryError::MissingKind(e.to_string()))
            })?;
        Ok(match (&entry.namespace, resolved.namespaced) {
            (Some(ns), true) => Api::namespaced_with(client.clone(), ns, &resolved.resource),
            _ => Api::all_with(client.clone(), &resolved.resource),
        })
    }
}

/// The objects to apply: all but paused ones and those with a standing field conflict
/// whose manifest has not changed since the conflict was seen.
fn without_standing_conflicts(
    ctx: &Context,
    key: &AppKey,
    objects: &[RenderedObject],
) -> Vec<RenderedObject> {
    // Paused objects (`lockstep.dev/reconcile: disabled` in Git or on the live object).
    let objects: Vec<&RenderedObject> = objects
        .iter()
        .filter(|obj| {
            let in_git = obj
                .doc
                .get("metadata")
                .and_then(|m| m.get("annotations"))
                .and_then(|a| a.get(RECONCILE_ANNOTATION))
                .and_then(Node::as_str)
                == Some("disabled");
            let live = ctx
                .drift_watches
                .get()
                .is_some_and(|w| w.is_paused(&inventory::entry_of(obj)));
            !in_git && !live
        })
        .collect();
    let Ok(mut all) = ctx.drifts.lock() else {
        return objects.into_iter().cloned().collect();
    };
    let Some(mem) = all.get_mut(key) else {
        return objects.into_iter().cloned().collect();
    };
    let mut out = Vec::with_capacity(objects.len());
    for obj in objects {
        let name = describe(&inventory::entry_of(obj));
        let Some((seen, _)) = mem.standing.get_mut(&name) else {
            out.push(obj.clone());
            continue;
        };
        let now = object_digest(ctx, obj);
        match seen {
            None => *seen = Some(now),
            Some(d) if *d == now => {}
            Some(_) => {
                // The manifest changed in Git: a new intent, taken back once more.
                mem.standing.remove(&name);
                mem.taken_back.retain(|(o, _)| o != &name);
                out.push(obj.clone());
            }
        }
    }
    out
}

impl Context {
    /// Standing field conflicts of an app, for its status.
    fn standing_conflicts(&self, key: &AppKey) -> Vec<FieldConflict> {
        self.drifts
            .lock()
            .ok()
            .and_then(|d| {
                d.get(key)
                    .map(|m| m.standing.values().map(|(_, c)| c.clone()).collect())
            })
            .unwrap_or_default()
    }

    /// Standing conflicts to announce once.
    fn take_announcements(&self, key: &AppKey) -> Vec<FieldConflict> {
        self.drifts
            .lock()
            .ok()
            .and_then(|mut d| d.get_mut(key).map(|m| std::mem::take(&mut m.announce)))
            .unwrap_or_default()
    }

    /// The drifts corrected by the reconcile that just succeeded.
    fn take_pending_drifts(&self, key: &AppKey) -> Vec<Drift> {
        self.drifts
            .lock()
            .ok()
            .and_then(|mut d| d.get_mut(key).map(|m| std::mem::take(&mut m.pending)))
            .unwrap_or_default()
    }
}

fn refusal_stop(refusal: &prune::PruneRefusal) -> (Stop, Option<String>) {
    match refusal {
        prune::PruneRefusal::StageFailed(stage) => (
            Stop::failed(
                reason::PRUNE_FAILED,
                format!("prune skipped: the {stage} stage failed"),
            ),
            None,
        ),
        prune::PruneRefusal::EmptyRender { previous } => {
            let m = format!(
                "the revision renders no objects; pruning all {previous} objects of the inventory needs spec.allowEmpty: true"
            );
            (Stop::stalled(reason::PRUNE_BLOCKED, m.clone()), Some(m))
        }
        prune::PruneRefusal::OverBudget {
            count,
            inventory: total,
            digest,
        } => {
            let m = format!(
                "prune of {count} of {total} objects exceeds the deletion budget; to approve exactly this prune, annotate the Application {}={digest}",
                inventory::APPROVE_PRUNE_ANNOTATION
            );
            (Stop::stalled(reason::PRUNE_BLOCKED, m.clone()), Some(m))
        }
    }
}

fn apply_stop(e: &apply::ApplyError) -> Stop {
    let message = e.to_string();
    if e.is_transient() {
        Stop::transient(reason::FAILED, message)
    } else {
        Stop::failed(reason::FAILED, message)
    }
}

/// The Vault resolver of one reconcile: credentials read from the app's Secrets as the
/// app; for Kubernetes auth, a short-lived token of the app's own service account,
/// requested as the app only when a login is due.
async fn vault_resolver(
    ctx: &Context,
    as_app: &kube::Client,
    valid: &ValidSpec,
    v: &crate::controller::validate::VaultSettings,
    policy_set: &crate::policy::PolicySet,
) -> Result<crate::vault::AppResolver, Stop> {
    use crate::controller::validate::VaultLogin;
    use crate::vault::{Auth, Endpoint, Secret as VSecret};
    let text = |data: &BTreeMap<String, Vec<u8>>, key: &str, field: &str| {
        data.get(key)
            .and_then(|b| std::str::from_utf8(b).ok())
            .map(|s| VSecret::new(s.trim().to_owned()))
            .filter(|s| !s.expose().is_empty())
            .ok_or_else(|| {
                Stop::stalled(
                    reason::BUILD_FAILED,
                    format!("{field}: key {key:?} is missing or empty"),
                )
            })
    };
    let ca_pem = match &v.ca_secret {
        None => None,
        Some(secret) => {
            let data = read_secret(as_app, valid, secret, "spec.vault.caSecretRef").await?;
            Some(data.get("ca.crt").cloned().ok_or_else(|| {
                Stop::stalled(
                    reason::BUILD_FAILED,
                    "spec.vault.caSecretRef: key \"ca.crt\" is missing",
                )
            })?)
        }
    };
    let auth = match &v.login {
        VaultLogin::Token { secret } => {
            let field = "spec.vault.auth.tokenSecretRef";
            let data = read_secret(as_app, valid, secret, field).await?;
            Auth::Token(text(&data, "token", field)?)
        }
        VaultLogin::AppRole {
            role_id,
            secret,
            mount,
        } => {
            let field = "spec.vault.auth.appRole.secretRef";
            let data = read_secret(as_app, valid, secret, field).await?;
            let role_id = match role_id {
                Some(r) => VSecret::new(r.clone()),
                None => text(&data, "roleId", field)?,
            };
            Auth::AppRole {
                mount: mount.clone(),
                role_id,
                secret_id: text(&data, "secretId", field)?,
            }
        }
        VaultLogin::Kubernetes { role, mount } => {
            let ns = valid.namespace.clone();
            let sa = valid
                .service_account
                .rsplit(':')
                .next()
                .unwrap_or_default()
                .to_owned();
            let jwt = token_request_jwt(as_app.clone(), ns, sa, v.address.clone());
            Auth::Kubernetes {
                mount: mount.clone(),
                role: role.clone(),
                jwt,
            }
        }
    };
    Ok(ctx.vault.resolver(
        tokio::runtime::Handle::current(),
        Endpoint {
            address: v.address.clone(),
            namespace: v.vault_namespace.clone(),
            ca_pem,
            timeout: crate::vault::DEFAULT_TIMEOUT,
        },
        auth,
        format!("{}/{}", valid.namespace, valid.name),
        // The full identity: `deployer` of team-a and of team-b are two tenants, and
        // one's Vault token must never serve the other.
        valid.impersonated_user(),
        crate::vault::rules_of(policy_set),
    ))
}

/// Reads a Secret of the Application's namespace as the Application's service account.
/// Errors say which field named it and why it could not be read, never its content.
async fn read_secret(
    as_app: &kube::Client,
    valid: &ValidSpec,
    secret: &str,
    field: &str,
) -> Result<BTreeMap<String, Vec<u8>>, Stop> {
    let api: Api<Secret> = Api::namespaced(as_app.clone(), &valid.namespace);
    let who = valid.impersonated_user();
    match api.get(secret).await {
        Ok(s) => Ok(s
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect()),
        Err(kube::Error::Api(s)) if s.code == 404 => Err(Stop::failed(
            reason::ARTIFACT_FAILED,
            format!("Secret {}/{secret} ({field}) not found", valid.namespace),
        )),
        Err(kube::Error::Api(s)) if s.code == 403 => Err(Stop::stalled(
            reason::ARTIFACT_FAILED,
            format!(
                "{who} may not read Secret {}/{secret} ({field}): forbidden",
                valid.namespace
            ),
        )),
        Err(e) => Err(Stop::transient(
            reason::ARTIFACT_FAILED,
            format!(
                "reading Secret {}/{secret} ({field}): {}",
                valid.namespace,
                api_error_text(&e)
            ),
        )),
    }
}
/// The JWT source of Kubernetes auth: a TokenRequest of service account `sa` in `ns` for
/// itself, audience-bound to `audience` (the Vault address), 10 minutes, made with `client`
/// (the reconciler impersonating that same account) each time a login is due. A 403 names
/// the RBAC the tenant must grant.
pub fn token_request_jwt(
    client: kube::Client,
    ns: String,
    sa: String,
    audience: String,
) -> crate::vault::JwtSource {
    use crate::vault::{FailureClass, Secret as VSecret};
    Arc::new(move || {
        let (client, ns, sa, audience) = (client.clone(), ns.clone(), sa.clone(), audience.clone());
        Box::pin(async move {
            use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
            use k8s_openapi::api::core::v1::ServiceAccount;
            let api: Api<ServiceAccount> = Api::namespaced(client, &ns);
            let req = TokenRequest {
                spec: Some(TokenRequestSpec {
                    audiences: Some(vec![audience]),
                    expiration_seconds: Some(600),
                    ..Default::default()
                }),
                ..Default::default()
            };
            let resp = api
                .create_token_request(&sa, &Default::default(), &req)
                .await
                .map_err(|e| match &e {
                    // The RBAC the tenant must grant, named exactly.
                    kube::Error::Api(s) if s.code == 403 => (
                        format!(
                            "system:serviceaccount:{ns}:{sa} may not request its own \
                             token: it needs create on serviceaccounts/token \
                             (resourceNames [{sa}]) in namespace {ns}"
                        ),
                        FailureClass::Stalled,
                    ),
                    kube::Error::Api(s) if s.code < 500 && s.code != 429 => (
                        format!("TokenRequest for {ns}/{sa}: {}", api_error_text(&e)),
                        FailureClass::Failed,
                    ),
                    _ => (
                        format!("TokenRequest for {ns}/{sa}: {}", api_error_text(&e)),
                        FailureClass::Transient,
                    ),
                })?;
            resp.status
                .and_then(|s| s.token)
                .filter(|t| !t.is_empty())
                .map(VSecret::new)
                .ok_or_else(|| {
                    (
                        format!("TokenRequest for {ns}/{sa}: no token returned"),
                        FailureClass::Transient,
                    )
                })
        })
    })
}

/// An API error as status code and reason only: the server's message can echo a
/// request body, which for Secrets holds values.
pub fn api_error_text(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("the API server answered {} {}", s.code, s.reason),
        kube::Error::HyperError(_) | kube::Error::Service(_) => {
            "the API server could not be reached".to_owned()
        }
        _ => "the API request failed".to_owned(),
    }
}

/// Identities from every `*.agekey` key of a Secret's data.
fn identities_from_data(
    data: &BTreeMap<String, Vec<u8>>,
    origin: &str,
) -> Result<Identities, String> {
    let mut ids = Identities::default();
    for (k, v) in data {
        if !k.ends_with(".agekey") {
            continue;
        }
        let text = zeroize::Zeroizing::new(
            std::str::from_utf8(v)
                .map_err(|_| format!("{origin}: key {k:?} is not UTF-8 text"))?
                .to_owned(),
        );
        ids.add_key_file_text(&text, &format!("{origin} key {k}"))
            .map_err(|e| e.to_string())?;
    }
    Ok(ids)
}

fn identities_from_secret(secret: &Secret, origin: &str) -> Result<Identities, String> {
    let data: BTreeMap<String, Vec<u8>> = secret
        .data
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    let ids = identities_from_data(&data, origin);
    // The copies above held private keys.
    for (_, mut v) in data {
        zeroize::Zeroize::zeroize(&mut v);
    }
    ids
}

/// A digest of what an apply would send, keyed per process (it covers secret values).
fn digest_of(ctx: &Context, valid: &ValidSpec, objects: &[RenderedObject]) -> Vec<u8> {
    let mut h = ring::hmac::Context::with_key(&ctx.digest_key);
    h.update(valid.namespace.as_bytes());
    h.update(b"\0");
    h.update(valid.name.as_bytes());
    h.update(b"\0");
    h.update(valid.service_account.as_bytes());
    h.update(b"\0");
    for obj in objects {
        let body = apply::json_body(&obj.doc);
        h.update(&(body.len() as u64).to_be_bytes());
        h.update(&body);
    }
    h.sign().as_ref().to_vec()
}

fn object_digest(ctx: &Context, obj: &RenderedObject) -> Vec<u8> {
    let body = apply::json_body(&obj.doc);
    ring::hmac::sign(&ctx.digest_key, &body).as_ref().to_vec()
}

/// `Kind namespace/name` or `Kind name`.
pub fn describe(e: &InventoryEntry) -> String {
    health::object_name(e)
}

fn action_word(a: &Action) -> &'static str {
    match a {
        Action::Created => "created",
        Action::Configured => "configured",
        Action::Unchanged => "unchanged",
    }
}

async fn event(
    ctx: &Context,
    app: &Application,
    severity: Severity,
    reason: &str,
    action: &str,
    note: String,
) {
    ctx.events
        .publish(app, severity, reason, action, &note)
        .await;
}

/// Writes the status when it changed (server-side apply of the status subresource).
async fn finish_status(
    ctx: &Context,
    app: &Application,
    old: &ApplicationStatus,
    mut status: ApplicationStatus,
    request: Option<String>,
) {
    if let Some(r) = request {
        status.last_handled_reconcile_at = Some(r);
    }
    let key = (app.namespace().unwrap_or_default(), app.name_any());
    status.field_conflicts = ctx.standing_conflicts(&key);
    if &status == old {
        return;
    }
    let ns = app.namespace().unwrap_or_default();
    let api: Api<Application> = Api::namespaced(ctx.clients.controller(), &ns);
    let body = serde_json::json!({
        "apiVersion": format!("{}/{}", super::application::GROUP, super::application::VERSION),
        "kind": "Application",
        "status": status,
    });
    let params = PatchParams::apply(apply::FIELD_MANAGER).force();
    if let Err(e) = api
        .patch_status(&app.name_any(), &params, &Patch::Apply(&body))
        .await
    {
        tracing::warn!(app = %format!("{ns}/{}", app.name_any()), error = %api_error_text(&e), "cannot write status");
    }
}
