//! The Policy kind (`lockstep.dev/v1alpha1`): what an application may write.
//!
//! Cluster-scoped Policy objects and the Application-level rules (binding, sources,
//! service accounts) are in [`cluster`].
//!
//! Policies are checked on every rendered object before anything is applied, on top of
//! the Kubernetes RBAC of the impersonated service account. Several policies may bind an
//! application; an object must satisfy all of them. Cluster-scoped kinds and RBAC kinds
//! are denied unless a policy explicitly allows them, because they reach beyond a
//! tenant's namespace.
//!
//! ```yaml
//! apiVersion: lockstep.dev/v1alpha1
//! kind: Policy
//! metadata: {name: tenants}
//! spec:
//!   namespaces: ["team-*"]                 # allowed destination namespaces (globs)
//!   kinds:
//!     allow: ["apps/*", "ConfigMap"]       # Kind, group/Kind, globs; "" group = core
//!     deny: ["Secret"]
//!   sealedSecretScopes: [strict]           # accepted SealedSecret scopes
//!   vaultPaths: ["secret/data/team-a/"]    # allowed Vault path prefixes
//!   vaultAddresses: ["https://vault.example.com:8200"]  # Vault origins Applications may name
//!   vaultReferences: {outsideSecrets: true} # resolve references outside Secret data
//!   signatures: {required: true, signers: ["ssh-ed25519 AAAA..."]}
//!   applications: {namespaces: ["team-*"]} # which Applications it binds (all if absent)
//!   sources: {allow: ["https://git.example.com/*"]}  # file:// only by a file:// pattern
//!   serviceAccounts: [{namespaces: ["team-*"], names: ["*-deployer"]}]
//! ```

pub mod cluster;

use std::path::{Path, PathBuf};

pub use cluster::{
    ClusterPolicy, Denial, PolicySpec, ServiceAccountRule, bound_set, check_service_account,
    check_source, check_vault_address, policies_binding,
};

use crate::sealed::Scope;
use crate::sops::tree::{MapItem, Node, Scalar};

pub const API_VERSION: &str = "lockstep.dev/v1alpha1";
pub const KIND: &str = "Policy";

/// Kinds whose objects live outside any namespace. Without a cluster at hand this list
/// decides; objects of unknown kinds are treated as namespaced when they carry a
/// namespace and as cluster-scoped when they do not.
const CLUSTER_SCOPED: &[(&str, &str)] = &[
    ("", "Namespace"),
    ("", "Node"),
    ("", "PersistentVolume"),
    ("", "ComponentStatus"),
    ("rbac.authorization.k8s.io", "ClusterRole"),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
    ("apiextensions.k8s.io", "CustomResourceDefinition"),
    ("apiregistration.k8s.io", "APIService"),
    (
        "admissionregistration.k8s.io",
        "MutatingWebhookConfiguration",
    ),
    (
        "admissionregistration.k8s.io",
        "ValidatingWebhookConfiguration",
    ),
    ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy"),
    (
        "admissionregistration.k8s.io",
        "ValidatingAdmissionPolicyBinding",
    ),
    ("storage.k8s.io", "StorageClass"),
    ("storage.k8s.io", "CSIDriver"),
    ("storage.k8s.io", "CSINode"),
    ("storage.k8s.io", "VolumeAttachment"),
    ("scheduling.k8s.io", "PriorityClass"),
    ("networking.k8s.io", "IngressClass"),
    ("node.k8s.io", "RuntimeClass"),
    ("certificates.k8s.io", "CertificateSigningRequest"),
    ("flowcontrol.apiserver.k8s.io", "FlowSchema"),
    ("flowcontrol.apiserver.k8s.io", "PriorityLevelConfiguration"),
];

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// A rendered object as the policy sees it.
#[derive(Debug, Clone)]
pub struct Subject<'a> {
    pub api_version: &'a str,
    pub kind: &'a str,
    pub name: &'a str,
    /// The namespace the object will land in (after defaulting to the destination).
    pub namespace: Option<&'a str>,
    /// Where it came from, for messages.
    pub file: &'a Path,
    /// For Secrets made from a SealedSecret: the scope it was sealed with.
    pub sealed_scope: Option<Scope>,
    /// Vault paths the object's references read.
    pub vault_paths: Vec<String>,
}

impl Subject<'_> {
    pub fn group(&self) -> &str {
        match self.api_version.rsplit_once('/') {
            Some((g, _)) => g,
            None => "",
        }
    }
    pub fn display(&self) -> String {
        match self.namespace {
            Some(ns) => format!("{} {ns}/{}", self.kind, self.name),
            None => format!("{} {}", self.kind, self.name),
        }
    }
    pub fn is_cluster_scoped(&self) -> bool {
        let g = self.group();
        CLUSTER_SCOPED
            .iter()
            .any(|(cg, ck)| *cg == g && *ck == self.kind)
            || (self.namespace.is_none() && !is_known_namespaced(g, self.kind))
    }
    pub fn is_rbac(&self) -> bool {
        self.group() == RBAC_GROUP
    }
}

fn is_known_namespaced(group: &str, kind: &str) -> bool {
    matches!(
        (group, kind),
        (
            "",
            "ConfigMap"
                | "Secret"
                | "Service"
                | "ServiceAccount"
                | "Pod"
                | "PersistentVolumeClaim"
                | "Event"
        ) | ("apps", _)
            | ("batch", _)
            | ("networking.k8s.io", "Ingress" | "NetworkPolicy")
            | ("lockstep.dev", "SealedSecret")
    )
}

/// Signature requirements of a policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Signatures {
    pub required: bool,
    /// Allowed signer keys (OpenPGP fingerprints or SSH public keys).
    pub signers: Vec<String>,
}

/// One Policy object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    pub name: String,
    /// The file it was read from.
    pub file: PathBuf,
    pub namespaces: Option<Vec<String>>,
    pub allow_kinds: Vec<String>,
    pub deny_kinds: Vec<String>,
    pub sealed_secret_scopes: Option<Vec<Scope>>,
    pub vault_paths: Option<Vec<String>>,
    /// `spec.vaultReferences.outsideSecrets`: `Some(true)` grants resolving `ref+vault://`
    /// references outside a Secret's data (a ConfigMap, an env value); `Some(false)`
    /// forbids it whatever other policies grant; `None` has no opinion. See
    /// [`PolicySet::vault_refs_outside_secrets`].
    pub vault_refs_outside_secrets: Option<bool>,
    /// `spec.vaultAddresses`: globs of the Vault origins (`scheme://host[:port]`) bound
    /// Applications may name in `spec.vault.address`; `None` has no opinion. See
    /// [`cluster::check_vault_address`].
    pub vault_addresses: Option<Vec<String>>,
    pub signatures: Signatures,
    /// Namespace globs of the Applications this policy binds; `None` binds every one.
    pub applications: Option<Vec<String>>,
    /// Allowed Git source URL globs; `None` leaves sources to other policies (local
    /// sources stay refused unless allowed, see [`cluster::check_source`]).
    pub sources: Option<Vec<String>>,
    /// Allowed service accounts per namespace pattern; `None` has no opinion.
    pub service_accounts: Option<Vec<ServiceAccountRule>>,
}

/// A rule an object broke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub file: PathBuf,
    pub object: String,
    pub policy: String,
    pub rule: String,
    pub message: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {}: denied by policy {:?} ({}): {}",
            self.file.display(),
            self.object,
            self.policy,
            self.rule,
            self.message
        )
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{file}: policy {policy}: {message}")]
pub struct PolicyError {
    pub file: String,
    pub policy: String,
    pub message: String,
}

/// `*` matches any run of characters, `?` one character; everything else literally.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    // Iterative matcher with backtracking on the last `*`: linear in practice.
    let (mut pi, mut ti, mut star, mut mark) = (0usize, 0usize, None::<usize>, 0usize);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// A kind pattern: `Kind`, `group/Kind` (core group is empty: `/ConfigMap`), with globs.
pub fn kind_matches(pattern: &str, group: &str, kind: &str) -> bool {
    match pattern.rsplit_once('/') {
        Some((g, k)) => glob_match(g, group) && glob_match(k, kind),
        None => glob_match(pattern, kind),
    }
}

fn strings(
    node: Option<&Node>,
    policy: &str,
    file: &str,
    field: &str,
) -> Result<Option<Vec<String>>, PolicyError> {
    match node {
        None | Some(Node::Scalar(Scalar::Null)) => Ok(None),
        Some(Node::List(items)) => items
            .iter()
            .filter(|i| !matches!(i, Node::Comment(_)))
            .map(|i| {
                i.as_str().map(str::to_owned).ok_or_else(|| PolicyError {
                    file: file.to_owned(),
                    policy: policy.to_owned(),
                    message: format!("{field} must be a list of strings"),
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(PolicyError {
            file: file.to_owned(),
            policy: policy.to_owned(),
            message: format!("{field} must be a list of strings"),
        }),
    }
}

/// Whether a document is a Policy.
pub fn is_policy(doc: &Node) -> bool {
    doc.get("apiVersion").and_then(Node::as_str) == Some(API_VERSION)
        && doc.get("kind").and_then(Node::as_str) == Some(KIND)
}

impl Policy {
    /// Reads a Policy document.
    pub fn from_node(doc: &Node, file: &Path) -> Result<Policy, PolicyError> {
        let fname = file.display().to_string();
        let name = doc
            .get("metadata")
            .and_then(|m| m.get("name"))
            .and_then(Node::as_str)
            .unwrap_or("")
            .to_owned();
        let err = |message: String| PolicyError {
            file: fname.clone(),
            policy: if name.is_empty() {
                "<no name>".into()
            } else {
                name.clone()
            },
            message,
        };
        if name.is_empty() {
            return Err(err("metadata.name is required".into()));
        }
        let spec = doc
            .get("spec")
            .ok_or_else(|| err("spec is required".into()))?;
        if let Some(items) = spec.as_map() {
            for item in items {
                if let MapItem::Entry(k, _) = item
                    && ![
                        "namespaces",
                        "kinds",
                        "sealedSecretScopes",
                        "vaultPaths",
                        "vaultReferences",
                        "vaultAddresses",
                        "signatures",
                        "applications",
                        "sources",
                        "serviceAccounts",
                    ]
                    .contains(&k.as_str())
                {
                    return Err(err(format!("unknown field spec.{k}")));
                }
            }
        } else {
            return Err(err("spec must be a map".into()));
        }
        let kinds = spec.get("kinds");
        let scopes = strings(
            spec.get("sealedSecretScopes"),
            &name,
            &fname,
            "spec.sealedSecretScopes",
        )?
        .map(|v| {
            v.iter()
                .map(|s| {
                    Scope::parse(s).ok_or_else(|| {
                        err(format!(
                            "unknown sealed-secret scope {s:?} in spec.sealedSecretScopes"
                        ))
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
        let sig = spec.get("signatures");
        let signatures = Signatures {
            required: matches!(
                sig.and_then(|s| s.get("required")),
                Some(Node::Scalar(Scalar::Bool(true)))
            ),
            signers: strings(
                sig.and_then(|s| s.get("signers")),
                &name,
                &fname,
                "spec.signatures.signers",
            )?
            .unwrap_or_default(),
        };
        if signatures.required && signatures.signers.is_empty() {
            return Err(err(
                "spec.signatures.required is true but no signers are listed".into(),
            ));
        }
        let vault_refs_outside_secrets = match spec.get("vaultReferences") {
            None | Some(Node::Scalar(Scalar::Null)) => None,
            Some(Node::Map(items)) => {
                let mut out = None;
                for item in items {
                    let MapItem::Entry(k, v) = item else {
                        continue;
                    };
                    match (k.as_str(), v) {
                        ("outsideSecrets", Node::Scalar(Scalar::Bool(b))) => out = Some(*b),
                        ("outsideSecrets", Node::Scalar(Scalar::Null)) => {}
                        ("outsideSecrets", _) => {
                            return Err(err(
                                "spec.vaultReferences.outsideSecrets must be true or false".into(),
                            ));
                        }
                        (k, _) => {
                            return Err(err(format!("unknown field spec.vaultReferences.{k}")));
                        }
                    }
                }
                out
            }
            Some(_) => return Err(err("spec.vaultReferences must be a map".into())),
        };
        let ext = cluster::parse_file_extensions(spec, &name, &fname)?;
        Ok(Policy {
            applications: ext.applications,
            sources: ext.sources,
            service_accounts: ext.service_accounts,
            name: name.clone(),
            file: file.to_path_buf(),
            namespaces: strings(spec.get("namespaces"), &name, &fname, "spec.namespaces")?,
            allow_kinds: strings(
                kinds.and_then(|k| k.get("allow")),
                &name,
                &fname,
                "spec.kinds.allow",
            )?
            .unwrap_or_default(),
            deny_kinds: strings(
                kinds.and_then(|k| k.get("deny")),
                &name,
                &fname,
                "spec.kinds.deny",
            )?
            .unwrap_or_default(),
            sealed_secret_scopes: scopes,
            vault_paths: strings(spec.get("vaultPaths"), &name, &fname, "spec.vaultPaths")?,
            vault_refs_outside_secrets,
            vault_addresses: strings(
                spec.get("vaultAddresses"),
                &name,
                &fname,
                "spec.vaultAddresses",
            )?,
            signatures,
        })
    }

    fn allows_kind_explicitly(&self, group: &str, kind: &str) -> Option<&str> {
        self.allow_kinds
            .iter()
            .find(|p| kind_matches(p, group, kind))
            .map(String::as_str)
    }

    /// Checks one object against this policy.
    pub fn check(&self, obj: &Subject<'_>) -> Vec<Violation> {
        let mut out = Vec::new();
        let mut deny = |rule: &str, message: String| {
            out.push(Violation {
                file: obj.file.to_path_buf(),
                object: obj.display(),
                policy: self.name.clone(),
                rule: rule.to_owned(),
                message,
            })
        };
        let (group, kind) = (obj.group(), obj.kind);
        if let Some(p) = self
            .deny_kinds
            .iter()
            .find(|p| kind_matches(p, group, kind))
        {
            deny(
                "kinds.deny",
                format!("kind {} matches {p:?}", gk(group, kind)),
            );
        } else if !self.allow_kinds.is_empty() && self.allows_kind_explicitly(group, kind).is_none()
        {
            deny(
                "kinds.allow",
                format!("kind {} is not in the allowed kinds", gk(group, kind)),
            );
        }
        if obj.is_cluster_scoped() && self.allows_kind_explicitly(group, kind).is_none() {
            deny(
                "cluster-scoped kinds",
                format!(
                    "{} is cluster-scoped; list it in spec.kinds.allow to permit it",
                    gk(group, kind)
                ),
            );
        } else if obj.is_rbac() && self.allows_kind_explicitly(group, kind).is_none() {
            deny(
                "RBAC kinds",
                format!(
                    "{} is an RBAC kind; list it in spec.kinds.allow to permit it",
                    gk(group, kind)
                ),
            );
        }
        if let (Some(allowed), Some(ns)) = (&self.namespaces, obj.namespace)
            && !allowed.iter().any(|g| glob_match(g, ns))
        {
            deny(
                "namespaces",
                format!("namespace {ns:?} is not one of {allowed:?}"),
            );
        }
        if kind == "Namespace"
            && group.is_empty()
            && let Some(allowed) = &self.namespaces
            && !allowed.iter().any(|g| glob_match(g, obj.name))
        {
            deny(
                "namespaces",
                format!("namespace {:?} is not one of {allowed:?}", obj.name),
            );
        }
        if let (Some(scopes), Some(scope)) = (&self.sealed_secret_scopes, obj.sealed_scope)
            && !scopes.contains(&scope)
        {
            deny(
                "sealedSecretScopes",
                format!(
                    "sealed with scope {}, accepted: {}",
                    scope.as_str(),
                    scopes
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
        if let Some(prefixes) = &self.vault_paths {
            for p in &obj.vault_paths {
                if !crate::vault::path_allowed(p, prefixes) {
                    deny(
                        "vaultPaths",
                        format!("Vault path {p:?} is outside the allowed prefixes {prefixes:?}"),
                    );
                }
            }
        }
        out
    }
}

fn gk(group: &str, kind: &str) -> String {
    if group.is_empty() {
        kind.to_owned()
    } else {
        format!("{group}/{kind}")
    }
}

/// A set of policies that all bind an application.
#[derive(Debug, Clone, Default)]
pub struct PolicySet {
    pub policies: Vec<Policy>,
}

impl PolicySet {
    /// Loads every Policy document from the manifest files under `paths`.
    pub fn load(paths: &[PathBuf]) -> Result<PolicySet, PolicyError> {
        let files = crate::manifest::manifest_files(paths).map_err(|e| PolicyError {
            file: paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            policy: String::new(),
            message: e.to_string(),
        })?;
        let mut policies = Vec::new();
        for f in files {
            let bytes = std::fs::read(&f).map_err(|e| PolicyError {
                file: f.display().to_string(),
                policy: String::new(),
                message: e.to_string(),
            })?;
            let docs = crate::manifest::load_documents(&bytes).map_err(|e| PolicyError {
                file: f.display().to_string(),
                policy: String::new(),
                message: e,
            })?;
            for d in docs.iter().filter(|d| is_policy(d)) {
                policies.push(Policy::from_node(d, &f)?);
            }
        }
        Ok(PolicySet { policies })
    }

    /// Every violation of every policy by one object.
    pub fn check(&self, obj: &Subject<'_>) -> Vec<Violation> {
        self.policies.iter().flat_map(|p| p.check(obj)).collect()
    }

    /// Whether `ref+vault://` references outside a Secret's data may be resolved in an
    /// object of this kind. Policies restrict, and this field grants, so the rule is
    /// stricter than for the others: refused unless at least one policy says
    /// `outsideSecrets: true` and lets this kind through its own `kinds` rules, and none says
    /// `outsideSecrets: false`. An empty set (no policy) refuses. The error says why and
    /// which field would change it.
    pub fn vault_refs_outside_secrets(&self, group: &str, kind: &str) -> Result<(), String> {
        if let Some(p) = self
            .policies
            .iter()
            .find(|p| p.vault_refs_outside_secrets == Some(false))
        {
            return Err(format!(
                "policy {:?} forbids Vault references outside a Secret's data or stringData \
                 (spec.vaultReferences.outsideSecrets: false)",
                p.name
            ));
        }
        let grants = self.policies.iter().any(|p| {
            p.vault_refs_outside_secrets == Some(true)
                && !p.deny_kinds.iter().any(|d| kind_matches(d, group, kind))
                && (p.allow_kinds.is_empty() || p.allows_kind_explicitly(group, kind).is_some())
        });
        if grants {
            return Ok(());
        }
        Err(format!(
            "Vault references are resolved only in a Secret's data or stringData (or its \
             lockstep.dev/vault-path annotation) unless a binding policy that allows kind {} \
             sets spec.vaultReferences.outsideSecrets: true",
            gk(group, kind)
        ))
    }

    /// Signers any of the policies requires (empty when none requires signatures).
    pub fn required_signers(&self) -> Option<Vec<String>> {
        let req: Vec<&Policy> = self
            .policies
            .iter()
            .filter(|p| p.signatures.required)
            .collect();
        if req.is_empty() {
            return None;
        }
        let mut s: Vec<String> = req
            .iter()
            .flat_map(|p| p.signatures.signers.clone())
            .collect();
        s.sort();
        s.dedup();
        Some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(yaml: &str) -> Policy {
        let docs = crate::manifest::load_documents(yaml.as_bytes()).unwrap();
        Policy::from_node(&docs[0], Path::new("policies/p.yaml")).unwrap()
    }

    fn subject<'a>(api: &'a str, kind: &'a str, ns: Option<&'a str>) -> Subject<'a> {
        Subject {
            api_version: api,
            kind,
            name: "x",
            namespace: ns,
            file: Path::new("apps/a/x.yaml"),
            sealed_scope: None,
            vault_paths: vec![],
        }
    }

    const TENANT: &str = "apiVersion: lockstep.dev/v1alpha1\nkind: Policy\nmetadata: {name: tenant}\nspec:\n  namespaces: ['team-*']\n  kinds:\n    deny: ['Pod']\n  sealedSecretScopes: [strict]\n  vaultPaths: ['secret/data/team-a/']\n";

    #[test]
    fn globs() {
        assert!(glob_match("team-*", "team-a"));
        assert!(glob_match("*", ""));
        assert!(glob_match("a*b*c", "axxbyyc"));
        assert!(!glob_match("team-?", "team-ab"));
        assert!(!glob_match("team-*", "other"));
        assert!(kind_matches("apps/*", "apps", "Deployment"));
        assert!(kind_matches("/ConfigMap", "", "ConfigMap"));
        assert!(!kind_matches("/ConfigMap", "x.io", "ConfigMap"));
        assert!(kind_matches("ConfigMap", "x.io", "ConfigMap"));
    }

    #[test]
    fn namespaces_kinds_scopes_and_vault_paths() {
        let p = policy(TENANT);
        assert!(
            p.check(&subject("v1", "ConfigMap", Some("team-a")))
                .is_empty()
        );
        let v = p.check(&subject("v1", "ConfigMap", Some("kube-system")));
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].rule, "namespaces");
        assert!(
            v[0].to_string().contains(
                "apps/a/x.yaml: ConfigMap kube-system/x: denied by policy \"tenant\" (namespaces)"
            ),
            "{}",
            v[0]
        );
        assert_eq!(
            p.check(&subject("v1", "Pod", Some("team-a")))[0].rule,
            "kinds.deny"
        );
        let mut s = subject("v1", "Secret", Some("team-a"));
        s.sealed_scope = Some(Scope::ClusterWide);
        s.vault_paths = vec!["secret/data/team-b/db".into()];
        let rules: Vec<String> = p.check(&s).into_iter().map(|v| v.rule).collect();
        assert_eq!(rules, ["sealedSecretScopes", "vaultPaths"]);
    }

    #[test]
    fn cluster_scoped_and_rbac_kinds_need_an_explicit_allow() {
        let p = policy(TENANT);
        assert_eq!(
            p.check(&subject("v1", "Namespace", None))[0].rule,
            "cluster-scoped kinds"
        );
        let rb = p.check(&subject(
            "rbac.authorization.k8s.io/v1",
            "RoleBinding",
            Some("team-a"),
        ));
        assert_eq!(rb[0].rule, "RBAC kinds");
        let crb = p.check(&subject(
            "rbac.authorization.k8s.io/v1",
            "ClusterRoleBinding",
            None,
        ));
        assert_eq!(crb[0].rule, "cluster-scoped kinds");
        let open = policy(
            "apiVersion: lockstep.dev/v1alpha1\nkind: Policy\nmetadata: {name: platform}\nspec:\n  kinds:\n    allow: ['rbac.authorization.k8s.io/*', 'Namespace', 'apps/*', 'ConfigMap']\n",
        );
        assert!(
            open.check(&subject(
                "rbac.authorization.k8s.io/v1",
                "RoleBinding",
                Some("team-a")
            ))
            .is_empty()
        );
        assert!(open.check(&subject("v1", "Namespace", None)).is_empty());
        assert_eq!(
            open.check(&subject("v1", "Service", Some("a")))[0].rule,
            "kinds.allow"
        );
    }

    #[test]
    fn bad_policies_are_rejected_with_the_file_and_name() {
        let docs = crate::manifest::load_documents(b"apiVersion: lockstep.dev/v1alpha1\nkind: Policy\nmetadata: {name: p}\nspec:\n  sealedSecretScopes: [loose]\n").unwrap();
        let e = Policy::from_node(&docs[0], Path::new("policies/p.yaml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("policies/p.yaml: policy p") && e.contains("loose"),
            "{e}"
        );
        let docs = crate::manifest::load_documents(b"apiVersion: lockstep.dev/v1alpha1\nkind: Policy\nmetadata: {name: p}\nspec:\n  namespace: [a]\n").unwrap();
        assert!(
            Policy::from_node(&docs[0], Path::new("p.yaml"))
                .unwrap_err()
                .to_string()
                .contains("unknown field spec.namespace")
        );
        let docs = crate::manifest::load_documents(b"apiVersion: lockstep.dev/v1alpha1\nkind: Policy\nmetadata: {name: p}\nspec:\n  signatures: {required: true}\n").unwrap();
        assert!(Policy::from_node(&docs[0], Path::new("p.yaml")).is_err());
        for (spec, want) in [
            (
                "vaultReferences: {outsideSecrets: 'yes'}",
                "must be true or false",
            ),
            (
                "vaultReferences: {outside: true}",
                "unknown field spec.vaultReferences.outside",
            ),
            (
                "vaultReferences: true",
                "spec.vaultReferences must be a map",
            ),
        ] {
            let yaml = format!(
                "apiVersion: lockstep.dev/v1alpha1\nkind: Policy\nmetadata: {{name: p}}\nspec:\n  {spec}\n"
            );
            let docs = crate::manifest::load_documents(yaml.as_bytes()).unwrap();
            let e = Policy::from_node(&docs[0], Path::new("p.yaml"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{spec}: {e}");
        }
    }
}

#[cfg(test)]
mod shipped_policies {
    use super::*;

    /// The example policies shipped in `policies/` parse and mean what their comments say.
    #[test]
    fn baseline_policies_load_and_behave() {
        let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/policies"));
        let set = PolicySet::load(&[dir.join("tenant-baseline.yaml")]).unwrap();
        assert_eq!(set.policies.len(), 1);
        let s = |api: &'static str, kind: &'static str, ns: Option<&'static str>| Subject {
            api_version: api,
            kind,
            name: "x",
            namespace: ns,
            file: Path::new("apps/x.yaml"),
            sealed_scope: None,
            vault_paths: vec![],
        };
        assert!(
            set.check(&s("apps/v1", "Deployment", Some("team-a")))
                .is_empty()
        );
        assert!(set.check(&s("v1", "ConfigMap", Some("team-a"))).is_empty());
        assert!(!set.check(&s("v1", "ConfigMap", Some("default"))).is_empty());
        assert!(!set.check(&s("v1", "Pod", Some("team-a"))).is_empty());
        assert!(!set.check(&s("v1", "Namespace", None)).is_empty());
        assert!(
            !set.check(&s(
                "rbac.authorization.k8s.io/v1",
                "RoleBinding",
                Some("team-a")
            ))
            .is_empty()
        );
        let all = PolicySet::load(&[dir]).unwrap();
        assert_eq!(all.policies.len(), 2);
        assert_eq!(all.required_signers(), None);
    }
}
