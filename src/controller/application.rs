//! The Application kind (`lockstep.dev/v1alpha1`, namespaced): one Git source applied
//! to one namespace as one service account. The CRD in `deploy/crds/` is generated from
//! these types (see [`super::crds`]).
//!
//! References (`secretRef`, `serviceAccountName`, `dependsOn`) never leave the
//! Application's namespace: a reference type may carry `namespace` only so that a
//! cross-namespace reference is refused with a clear reason instead of being silently
//! pruned by the API server's structural schema.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::duration::DURATION_PATTERN;

/// The API group of lockstep's kinds.
pub const GROUP: &str = "lockstep.dev";
/// The API version of lockstep's kinds.
pub const VERSION: &str = "v1alpha1";

/// Setting this annotation to a new value (any text, conventionally a timestamp) asks
/// for a reconcile now; the handled value is echoed in `status.lastHandledReconcileAt`.
pub const RECONCILE_REQUESTED_AT: &str = "lockstep.dev/reconcile-requested-at";

/// What an Application applies, from where, and as whom.
// Several printcolumn(...) entries share keys such as `type_`; that is not a duplicate.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "lockstep.dev",
    version = "v1alpha1",
    kind = "Application",
    doc = "An Application: one Git source applied to one namespace as one service account.",
    plural = "applications",
    singular = "application",
    namespaced,
    status = "ApplicationStatus",
    category = "lockstep",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Revision",
        type_ = "string",
        json_path = ".status.lastAppliedRevision"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(
        name = "Suspended",
        type_ = "boolean",
        json_path = ".spec.suspend",
        priority = "1"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationSpec {
    /// The Git repository, revision and directory to apply.
    pub source: Source,
    /// Where namespaced objects without a namespace land; defaults to the Application's
    /// namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<Destination>,
    /// The service account (in the Application's namespace) impersonated for every read
    /// and write of this Application. Required: there is no fallback identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// How often to reconcile when nothing triggers it sooner (Go duration, e.g. `5m`).
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub interval: String,
    /// How soon to retry after a failure; defaults to `interval`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub retry_interval: Option<String>,
    /// Time allowed for fetch, render, apply and health checks; defaults to `interval`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub timeout: Option<String>,
    /// Applications in the same namespace that must be Ready first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<DependencyRef>,
    /// Delete objects this Application applied before and no longer renders.
    #[serde(default)]
    pub prune: bool,
    /// Allow a render with no objects to prune everything (otherwise it is refused).
    #[serde(default)]
    pub allow_empty: bool,
    /// Stop applying and correcting drift until set back to false.
    #[serde(default)]
    pub suspend: bool,
    /// Keys for SOPS files, read as the Application's service account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decryption: Option<Decryption>,
    /// Where `ref+vault://` references are resolved, and how to log in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault: Option<VaultSpec>,
}

impl Application {
    /// The value of the [`RECONCILE_REQUESTED_AT`] annotation when it asks for a
    /// reconcile not handled yet (differs from `status.lastHandledReconcileAt`).
    pub fn pending_reconcile_request(&self) -> Option<&str> {
        let asked = self
            .metadata
            .annotations
            .as_ref()?
            .get(RECONCILE_REQUESTED_AT)?
            .as_str();
        let handled = self
            .status
            .as_ref()
            .and_then(|s| s.last_handled_reconcile_at.as_deref());
        (!asked.is_empty() && handled != Some(asked)).then_some(asked)
    }
}

/// A reference to an object in the Application's own namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct LocalRef {
    pub name: String,
    /// Accepted only so that a reference into another namespace can be refused by name;
    /// it must be absent or equal to the Application's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

impl LocalRef {
    pub fn new(name: impl Into<String>) -> Self {
        LocalRef {
            name: name.into(),
            namespace: None,
        }
    }
}

/// The Git source.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Source {
    /// `https://`, `http://`, `ssh://`, `git://`, `user@host:path`, or `file://` (only
    /// where a Policy allows it).
    #[schemars(length(min = 1))]
    pub url: String,
    /// Branch, tag or commit; the branch `main` when absent.
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub reference: Option<GitRefSpec>,
    /// Directory inside the repository; the repository root when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// A Secret with Git credentials (`username`/`password`, `bearerToken`, or `identity`
    /// and `known_hosts`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<LocalRef>,
    /// Require signed commits or tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<Verify>,
}

/// Exactly one of `branch`, `tag`, `commit`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
pub struct GitRefSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// A full or abbreviated (at least 7 hex digits) commit id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
}

/// What must be signed.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum VerifyMode {
    /// The commit that is checked out.
    #[default]
    #[serde(rename = "HEAD")]
    Head,
    /// The annotated tag named by `ref.tag`.
    Tag,
}

/// Signature verification. Allowed signers come from `secretRef` and from every
/// binding Policy that requires signatures; with neither, the Application cannot
/// reconcile.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Verify {
    #[serde(default)]
    pub mode: VerifyMode,
    /// A Secret whose values hold the allowed signers: SSH public keys (one per line, as
    /// in an allowed_signers file) or OpenPGP keys (armored) or fingerprints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<LocalRef>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
pub struct Destination {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// Another Application in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct DependencyRef {
    pub name: String,
    /// Must be absent or the Application's own namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// SOPS decryption keys.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Decryption {
    /// A Secret whose data keys ending in `.agekey` hold age identities.
    pub secret_ref: LocalRef,
}

/// Vault (or OpenBao) settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VaultSpec {
    /// `https://vault.example.com` (or `http://` for a local dev server).
    pub address: String,
    /// A Secret whose `ca.crt` holds the CA bundle that signs Vault's certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<LocalRef>,
    /// The Vault Enterprise / OpenBao namespace (not a Kubernetes namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub auth: VaultAuth,
}

/// Exactly one login method.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VaultAuth {
    /// Log in with a token of the Application's service account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<VaultKubernetesAuth>,
    /// Log in with an AppRole whose secret id is in a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_role: Option<VaultAppRoleAuth>,
    /// A Secret whose `token` key holds a Vault token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_secret_ref: Option<LocalRef>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct VaultKubernetesAuth {
    pub role: String,
    /// The auth mount path; `kubernetes` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VaultAppRoleAuth {
    /// The role id; when absent it is read from the Secret's `roleId` key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_id: Option<String>,
    /// A Secret whose `secretId` key holds the AppRole secret id.
    pub secret_ref: LocalRef,
    /// The auth mount path; `approle` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount: Option<String>,
}

/// Observed state, per Kubernetes API conventions.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationStatus {
    /// `Ready`, `Reconciling`, `Stalled` (kstatus), one entry per type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` the Ready or Stalled verdict is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The revision (`main@sha1:<commit>`) last applied in full.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_applied_revision: Option<String>,
    /// The revision of the last attempt, successful or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempted_revision: Option<String>,
    /// The value of the `lockstep.dev/reconcile-requested-at` annotation last handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_reconcile_at: Option<String>,
    /// What this Application applied; prune works from this list only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inventory: Option<Inventory>,
    /// The last reconciles, newest first (at most 5).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<HistoryEntry>,
    /// Objects whose fields another manager took again after lockstep took them back
    /// once (an HPA owning `spec.replicas`): lockstep stops correcting such an object
    /// until its manifest changes in Git. Remove the field from Git to hand it over.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub field_conflicts: Vec<FieldConflict>,
}

/// A field another manager keeps taking.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct FieldConflict {
    /// `Kind namespace/name`.
    pub object: String,
    /// The other field manager, e.g. `kube-controller-manager` for an HPA.
    pub manager: String,
    /// The fields it owns, e.g. `.spec.replicas`.
    #[serde(default)]
    pub fields: Vec<String>,
}

/// One status condition (the shape of `metav1.Condition`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    #[schemars(extend("enum" = ["True", "False", "Unknown"]))]
    pub status: String,
    /// CamelCase reason, e.g. `ReconciliationSucceeded`.
    pub reason: String,
    #[serde(default)]
    pub message: String,
    /// When `status` last changed (RFC 3339).
    #[schemars(extend("format" = "date-time"))]
    pub last_transition_time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
pub struct Inventory {
    #[serde(default)]
    pub entries: Vec<InventoryEntry>,
}

/// One applied object. `group` is empty for the core group; `namespace` is absent for
/// cluster-scoped objects.
#[derive(
    Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, JsonSchema,
)]
pub struct InventoryEntry {
    #[serde(default)]
    pub group: String,
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
    pub version: String,
}

/// One reconcile in `status.history`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    /// The revision attempted (empty when the fetch itself failed).
    #[serde(default)]
    pub revision: String,
    /// The Ready reason it ended with, e.g. `ReconciliationSucceeded`, `BuildFailed`.
    pub result: String,
    /// How long it took (Go duration, e.g. `2.5s`).
    pub duration: String,
    /// When it finished (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reconcile_request_is_pending_until_handled() {
        let mut app: Application = serde_saphyr::from_str(
            "apiVersion: lockstep.dev/v1alpha1\nkind: Application\nmetadata: {name: a, namespace: n}\nspec: {source: {url: 'https://h/r'}, interval: 1m}\n",
        )
        .unwrap();
        assert_eq!(app.pending_reconcile_request(), None);
        app.metadata.annotations = Some(
            [(
                RECONCILE_REQUESTED_AT.to_owned(),
                "2026-01-01T00:00:00Z".to_owned(),
            )]
            .into(),
        );
        assert_eq!(
            app.pending_reconcile_request(),
            Some("2026-01-01T00:00:00Z")
        );
        app.status = Some(ApplicationStatus {
            last_handled_reconcile_at: Some("2026-01-01T00:00:00Z".into()),
            ..Default::default()
        });
        assert_eq!(app.pending_reconcile_request(), None);
    }

    #[test]
    fn the_spec_round_trips_in_camel_case() {
        let text = "apiVersion: lockstep.dev/v1alpha1\nkind: Application\nmetadata: {name: a, namespace: n}\nspec:\n  source: {url: 'https://h/r', ref: {commit: abcdef1}, verify: {mode: Tag}}\n  serviceAccountName: d\n  interval: 1m\n  retryInterval: 10s\n  allowEmpty: true\n  vault: {address: 'https://v', auth: {appRole: {secretRef: {name: s}}}}\n";
        let app: Application = serde_saphyr::from_str(text).unwrap();
        assert_eq!(
            app.spec
                .source
                .reference
                .as_ref()
                .and_then(|r| r.commit.as_deref()),
            Some("abcdef1")
        );
        assert_eq!(
            app.spec.source.verify.as_ref().map(|v| v.mode),
            Some(VerifyMode::Tag)
        );
        assert!(app.spec.allow_empty);
        let json = serde_json::to_value(&app).unwrap();
        assert_eq!(json["spec"]["retryInterval"], "10s");
        assert_eq!(json["spec"]["source"]["ref"]["commit"], "abcdef1");
        assert_eq!(
            json["spec"]["vault"]["auth"]["appRole"]["secretRef"]["name"],
            "s"
        );
        assert!(
            json["spec"].get("decryption").is_none(),
            "absent options are not written"
        );
        let back: Application = serde_json::from_value(json).unwrap();
        assert_eq!(back.spec, app.spec);
    }
}
