//! Resource descriptors: the built-in kinds and the ones CRDs register at run time.
//! Built-ins and custom resources share every code path through these descriptors.

use std::sync::{Arc, RwLock};

use serde_json::Value;

/// A subresource as discovery lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct Subresource {
    pub name: String,
    /// Group, version and kind of the subresource's payload (Scale, TokenRequest, ...).
    pub group: String,
    pub version: String,
    pub kind: String,
    pub verbs: Vec<String>,
}

/// What the server knows about one resource.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceDef {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub singular: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub verbs: Vec<String>,
    pub subresources: Vec<Subresource>,
    pub has_generation: bool,
    pub has_status_subresource: bool,
    pub returns_deleted_object: bool,
    pub list_kind: String,
    /// Several resources may share one storage (core and events.k8s.io Events).
    pub storage: String,
    /// Set for custom resources: printer columns and the validation schema of this version.
    pub custom: Option<CustomInfo>,
}

/// CRD-specific parts of a descriptor.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CustomInfo {
    /// The owning CRD's name (`<plural>.<group>`).
    pub crd_name: String,
    pub printer_columns: Vec<Value>,
    pub schema: Option<Value>,
}

impl ResourceDef {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub fn has_verb(&self, verb: &str) -> bool {
        self.verbs.iter().any(|v| v == verb)
    }

    pub fn subresource(&self, name: &str) -> Option<&Subresource> {
        self.subresources.iter().find(|s| s.name == name)
    }

    /// Review and token kinds: create-only, never stored.
    pub fn is_virtual(&self) -> bool {
        self.verbs == ["create"]
    }

    pub fn is_custom(&self) -> bool {
        self.custom.is_some()
    }
}

const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Compact builder for the built-in table.
struct B(ResourceDef);

impl B {
    fn new(group: &str, version: &str, kind: &str, plural: &str, namespaced: bool) -> B {
        B(ResourceDef {
            group: group.into(),
            version: version.into(),
            kind: kind.into(),
            plural: plural.into(),
            singular: kind.to_lowercase(),
            namespaced,
            short_names: vec![],
            categories: vec![],
            verbs: strings(ALL_VERBS),
            subresources: vec![],
            has_generation: false,
            has_status_subresource: false,
            returns_deleted_object: false,
            list_kind: format!("{kind}List"),
            storage: format!("{group}/{plural}"),
            custom: None,
        })
    }
    fn short(mut self, s: &[&str]) -> B {
        self.0.short_names = strings(s);
        self
    }
    fn all(mut self) -> B {
        self.0.categories = strings(&["all"]);
        self
    }
    fn generation(mut self) -> B {
        self.0.has_generation = true;
        self
    }
    fn status(mut self) -> B {
        self.0.has_status_subresource = true;
        let (g, v, k) = (
            self.0.group.clone(),
            self.0.version.clone(),
            self.0.kind.clone(),
        );
        self.0.subresources.push(Subresource {
            name: "status".into(),
            group: g,
            version: v,
            kind: k,
            verbs: strings(&["get", "patch", "update"]),
        });
        self
    }
    fn scale(mut self) -> B {
        self.0.subresources.push(Subresource {
            name: "scale".into(),
            group: "autoscaling".into(),
            version: "v1".into(),
            kind: "Scale".into(),
            verbs: strings(&["get", "patch", "update"]),
        });
        self
    }
    fn returns_deleted(mut self) -> B {
        self.0.returns_deleted_object = true;
        self
    }
    fn verbs(mut self, v: &[&str]) -> B {
        self.0.verbs = strings(v);
        self
    }
    fn storage(mut self, s: &str) -> B {
        self.0.storage = s.into();
        self
    }
    fn done(self) -> ResourceDef {
        self.0
    }
}

/// The built-in descriptor of `kind` (tests only).
#[cfg(test)]
pub fn builtin_def(kind: &str) -> ResourceDef {
    builtins()
        .into_iter()
        .find(|d| d.kind == kind)
        .unwrap_or_else(|| panic!("no built-in {kind}"))
}

/// The built-in kinds a typical application uses.
pub fn builtins() -> Vec<ResourceDef> {
    let mut ns = B::new("", "v1", "Namespace", "namespaces", false)
        .short(&["ns"])
        .status()
        .verbs(&[
            "create", "delete", "get", "list", "patch", "update", "watch",
        ]);
    ns.0.subresources.push(Subresource {
        name: "finalize".into(),
        group: String::new(),
        version: "v1".into(),
        kind: "Namespace".into(),
        verbs: strings(&["update"]),
    });
    let mut sa = B::new("", "v1", "ServiceAccount", "serviceaccounts", true)
        .short(&["sa"])
        .returns_deleted();
    sa.0.subresources.push(Subresource {
        name: "token".into(),
        group: "authentication.k8s.io".into(),
        version: "v1".into(),
        kind: "TokenRequest".into(),
        verbs: strings(&["create"]),
    });
    vec![
        ns.done(),
        B::new("", "v1", "ConfigMap", "configmaps", true)
            .short(&["cm"])
            .done(),
        B::new("", "v1", "Secret", "secrets", true).done(),
        sa.done(),
        B::new("", "v1", "Service", "services", true)
            .short(&["svc"])
            .all()
            .status()
            .verbs(&[
                "create",
                "delete",
                "deletecollection",
                "get",
                "list",
                "patch",
                "update",
                "watch",
            ])
            .done(),
        B::new("", "v1", "Pod", "pods", true)
            .short(&["po"])
            .all()
            .status()
            .returns_deleted()
            .done(),
        B::new(
            "",
            "v1",
            "PersistentVolumeClaim",
            "persistentvolumeclaims",
            true,
        )
        .short(&["pvc"])
        .status()
        .done(),
        B::new("", "v1", "Event", "events", true)
            .short(&["ev"])
            .storage("events")
            .done(),
        B::new("apps", "v1", "Deployment", "deployments", true)
            .short(&["deploy"])
            .all()
            .generation()
            .status()
            .scale()
            .done(),
        B::new("apps", "v1", "StatefulSet", "statefulsets", true)
            .short(&["sts"])
            .all()
            .generation()
            .status()
            .scale()
            .done(),
        B::new("apps", "v1", "DaemonSet", "daemonsets", true)
            .short(&["ds"])
            .all()
            .generation()
            .status()
            .done(),
        B::new("apps", "v1", "ReplicaSet", "replicasets", true)
            .short(&["rs"])
            .all()
            .generation()
            .status()
            .scale()
            .done(),
        B::new("batch", "v1", "Job", "jobs", true)
            .all()
            .generation()
            .status()
            .done(),
        B::new("batch", "v1", "CronJob", "cronjobs", true)
            .short(&["cj"])
            .all()
            .generation()
            .status()
            .done(),
        B::new("networking.k8s.io", "v1", "Ingress", "ingresses", true)
            .short(&["ing"])
            .generation()
            .status()
            .done(),
        B::new(
            "networking.k8s.io",
            "v1",
            "NetworkPolicy",
            "networkpolicies",
            true,
        )
        .short(&["netpol"])
        .generation()
        .done(),
        B::new("rbac.authorization.k8s.io", "v1", "Role", "roles", true).done(),
        B::new(
            "rbac.authorization.k8s.io",
            "v1",
            "RoleBinding",
            "rolebindings",
            true,
        )
        .done(),
        B::new(
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRole",
            "clusterroles",
            false,
        )
        .done(),
        B::new(
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRoleBinding",
            "clusterrolebindings",
            false,
        )
        .done(),
        B::new(
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
            "customresourcedefinitions",
            false,
        )
        .short(&["crd", "crds"])
        .generation()
        .status()
        .done(),
        B::new("coordination.k8s.io", "v1", "Lease", "leases", true).done(),
        B::new("events.k8s.io", "v1", "Event", "events", true)
            .short(&["ev"])
            .storage("events")
            .done(),
        B::new(
            "authentication.k8s.io",
            "v1",
            "TokenReview",
            "tokenreviews",
            false,
        )
        .verbs(&["create"])
        .done(),
        B::new(
            "authentication.k8s.io",
            "v1",
            "SelfSubjectReview",
            "selfsubjectreviews",
            false,
        )
        .verbs(&["create"])
        .done(),
        B::new(
            "authorization.k8s.io",
            "v1",
            "SubjectAccessReview",
            "subjectaccessreviews",
            false,
        )
        .verbs(&["create"])
        .done(),
        B::new(
            "authorization.k8s.io",
            "v1",
            "SelfSubjectAccessReview",
            "selfsubjectaccessreviews",
            false,
        )
        .verbs(&["create"])
        .done(),
        B::new(
            "authorization.k8s.io",
            "v1",
            "LocalSubjectAccessReview",
            "localsubjectaccessreviews",
            true,
        )
        .verbs(&["create"])
        .done(),
        B::new(
            "authorization.k8s.io",
            "v1",
            "SelfSubjectRulesReview",
            "selfsubjectrulesreviews",
            false,
        )
        .verbs(&["create"])
        .done(),
    ]
}

/// The live resource table. Readers take a cheap snapshot; CRDs add and remove entries.
#[derive(Debug)]
pub struct Registry {
    defs: RwLock<Arc<Vec<Arc<ResourceDef>>>>,
    /// Bumped on every change so OpenAPI hashes and discovery caches move.
    generation: std::sync::atomic::AtomicU64,
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl Registry {
    pub fn new() -> Registry {
        Registry {
            defs: RwLock::new(Arc::new(builtins().into_iter().map(Arc::new).collect())),
            generation: std::sync::atomic::AtomicU64::new(1),
        }
    }

    pub fn all(&self) -> Arc<Vec<Arc<ResourceDef>>> {
        match self.defs.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceDef>> {
        self.all()
            .iter()
            .find(|d| d.group == group && d.version == version && d.plural == plural)
            .cloned()
    }

    /// Any version of a group/plural (used when a CRD's storage is addressed).
    pub fn find_by_storage(&self, storage: &str) -> Vec<Arc<ResourceDef>> {
        self.all()
            .iter()
            .filter(|d| d.storage == storage)
            .cloned()
            .collect()
    }

    pub fn find_kind(&self, api_version: &str, kind: &str) -> Option<Arc<ResourceDef>> {
        self.all()
            .iter()
            .find(|d| d.api_version() == api_version && d.kind == kind)
            .cloned()
    }

    /// Groups in preference order, each with its versions (first preferred).
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for d in self.all().iter() {
            if d.group.is_empty() {
                continue;
            }
            match out.iter_mut().find(|(g, _)| *g == d.group) {
                Some((_, vs)) => {
                    if !vs.contains(&d.version) {
                        vs.push(d.version.clone());
                    }
                }
                None => out.push((d.group.clone(), vec![d.version.clone()])),
            }
        }
        out
    }

    pub fn in_group_version(&self, group: &str, version: &str) -> Vec<Arc<ResourceDef>> {
        self.all()
            .iter()
            .filter(|d| d.group == group && d.version == version)
            .cloned()
            .collect()
    }

    /// Replace every descriptor owned by the CRD `crd_name` with `defs`.
    pub fn set_custom(&self, crd_name: &str, defs: Vec<ResourceDef>) {
        let mut guard = match self.defs.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let mut next: Vec<Arc<ResourceDef>> = guard
            .iter()
            .filter(|d| d.custom.as_ref().is_none_or(|c| c.crd_name != crd_name))
            .cloned()
            .collect();
        let changed = next.len() != guard.len() || !defs.is_empty();
        next.extend(defs.into_iter().map(Arc::new));
        *guard = Arc::new(next);
        if changed {
            self.generation
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_have_unique_group_version_plural() {
        let defs = builtins();
        for (i, a) in defs.iter().enumerate() {
            for b in &defs[i + 1..] {
                assert!(
                    !(a.group == b.group && a.version == b.version && a.plural == b.plural),
                    "duplicate {}",
                    a.plural
                );
            }
        }
        let r = Registry::new();
        let d = r.find("apps", "v1", "deployments").map(|d| d.kind.clone());
        assert_eq!(d.as_deref(), Some("Deployment"));
        assert!(
            r.find("", "v1", "namespaces")
                .is_some_and(|d| !d.has_verb("deletecollection"))
        );
    }

    #[test]
    fn custom_registration_replaces_and_removes() {
        let r = Registry::new();
        let before = r.generation();
        let mut d = B::new("example.com", "v1", "Widget", "widgets", true).done();
        d.custom = Some(CustomInfo {
            crd_name: "widgets.example.com".into(),
            ..Default::default()
        });
        r.set_custom("widgets.example.com", vec![d]);
        assert!(r.find("example.com", "v1", "widgets").is_some());
        assert!(r.generation() > before);
        r.set_custom("widgets.example.com", vec![]);
        assert!(r.find("example.com", "v1", "widgets").is_none());
    }
}
