//! Name references: when an object is renamed (prefix, suffix, hash), every field that names
//! it follows. The table mirrors kustomize v5.8.1's built-in one, entry for entry, checked
//! against `kubectl kustomize` by the `refs` corpus case; custom kinds add their own
//! entries through the kustomization's `crds` field.

use serde_json::Value;

use super::{Res, is_cluster_scoped};

/// One referring field: objects of `referrer` (and `referrer_group`, when set) name an
/// object of `target` at `path`. A string is rewritten, and so is each string of a list
/// (RBAC `resourceNames`). With `sibling`, only where the parent map's `kind` says so.
#[derive(Debug, Clone)]
pub(crate) struct RefSpec {
    pub target: String,
    /// Only objects of this version (an entry from `crds` may name one).
    pub target_version: Option<String>,
    pub referrer: String,
    pub referrer_group: Option<String>,
    pub path: Vec<String>,
    pub sibling: Option<String>,
}

impl RefSpec {
    fn new(target: &str, referrer: &str, group: Option<&str>, path: &[&str]) -> Self {
        RefSpec {
            target: target.to_owned(),
            target_version: None,
            referrer: referrer.to_owned(),
            referrer_group: group.map(str::to_owned),
            path: path.iter().map(|s| (*s).to_owned()).collect(),
            sibling: None,
        }
    }
}

/// Where the pod spec sits in each kind that holds one.
fn pod_spec_at(kind: &str) -> &'static [&'static str] {
    match kind {
        "Pod" => &["spec"],
        "PodTemplate" => &["template", "spec"],
        "CronJob" => &["spec", "jobTemplate", "spec", "template", "spec"],
        _ => &["spec", "template", "spec"],
    }
}

/// kustomize lists different workload kinds for different targets: ConfigMaps and Secrets
/// are followed in ReplicaSets and PodTemplates but not in ReplicationControllers, the
/// other pod-spec references the other way round.
const CONFIG_HOLDERS: [&str; 8] = [
    "Pod",
    "PodTemplate",
    "Deployment",
    "ReplicaSet",
    "DaemonSet",
    "StatefulSet",
    "Job",
    "CronJob",
];
const POD_HOLDERS: [&str; 7] = [
    "Pod",
    "StatefulSet",
    "Deployment",
    "ReplicationController",
    "CronJob",
    "Job",
    "DaemonSet",
];

/// kustomize's built-in name-reference table.
pub(crate) fn builtin_table() -> Vec<RefSpec> {
    let mut t = Vec::new();
    for target in [
        "Deployment",
        "ReplicationController",
        "ReplicaSet",
        "StatefulSet",
    ] {
        let mut s = RefSpec::new(
            target,
            "HorizontalPodAutoscaler",
            None,
            &["spec", "scaleTargetRef", "name"],
        );
        s.sibling = Some(target.to_owned());
        t.push(s);
    }
    let pod = |t: &mut Vec<RefSpec>, target: &str, holders: &[&str], inner: &[&[&str]]| {
        for h in holders {
            for p in inner {
                let mut full = pod_spec_at(h).to_vec();
                full.extend_from_slice(p);
                t.push(RefSpec::new(target, h, None, &full));
            }
        }
    };
    pod(
        &mut t,
        "ConfigMap",
        &CONFIG_HOLDERS,
        &[
            &["volumes", "configMap", "name"],
            &["containers", "env", "valueFrom", "configMapKeyRef", "name"],
            &[
                "initContainers",
                "env",
                "valueFrom",
                "configMapKeyRef",
                "name",
            ],
            &["containers", "envFrom", "configMapRef", "name"],
            &["initContainers", "envFrom", "configMapRef", "name"],
            &["volumes", "projected", "sources", "configMap", "name"],
        ],
    );
    t.push(RefSpec::new(
        "ConfigMap",
        "Node",
        None,
        &["spec", "configSource", "configMap"],
    ));
    for target in ["ConfigMap", "Secret"] {
        for role in ["Role", "ClusterRole"] {
            t.push(RefSpec::new(
                target,
                role,
                None,
                &["rules", "resourceNames"],
            ));
        }
    }
    t.push(RefSpec::new(
        "ConfigMap",
        "Ingress",
        None,
        &[
            "metadata",
            "annotations",
            "nginx.ingress.kubernetes.io/fastcgi-params-configmap",
        ],
    ));
    pod(
        &mut t,
        "Secret",
        &CONFIG_HOLDERS,
        &[
            &["volumes", "secret", "secretName"],
            &["containers", "env", "valueFrom", "secretKeyRef", "name"],
            &["initContainers", "env", "valueFrom", "secretKeyRef", "name"],
            &["containers", "envFrom", "secretRef", "name"],
            &["initContainers", "envFrom", "secretRef", "name"],
            &["imagePullSecrets", "name"],
            &["volumes", "projected", "sources", "secret", "name"],
        ],
    );
    for p in [
        &["spec", "tls", "secretName"][..],
        &[
            "metadata",
            "annotations",
            "ingress.kubernetes.io/auth-secret",
        ],
        &[
            "metadata",
            "annotations",
            "nginx.ingress.kubernetes.io/auth-secret",
        ],
        &[
            "metadata",
            "annotations",
            "nginx.ingress.kubernetes.io/auth-tls-secret",
        ],
    ] {
        t.push(RefSpec::new("Secret", "Ingress", None, p));
    }
    t.push(RefSpec::new(
        "Secret",
        "ServiceAccount",
        None,
        &["imagePullSecrets", "name"],
    ));
    for key in [
        "secretName",
        "adminSecretName",
        "userSecretName",
        "secretRef",
    ] {
        t.push(RefSpec::new(
            "Secret",
            "StorageClass",
            None,
            &["parameters", key],
        ));
    }
    t.push(RefSpec::new(
        "Secret",
        "Service",
        Some("serving.knative.dev"),
        &[
            "spec",
            "template",
            "spec",
            "containers",
            "env",
            "valueFrom",
            "secretKeyRef",
            "name",
        ],
    ));
    t.push(RefSpec::new(
        "Secret",
        "PersistentVolume",
        None,
        &["spec", "azureFile", "secretName"],
    ));
    t.push(RefSpec::new(
        "Service",
        "StatefulSet",
        Some("apps"),
        &["spec", "serviceName"],
    ));
    for p in [
        &["spec", "rules", "http", "paths", "backend", "serviceName"][..],
        &["spec", "backend", "serviceName"],
        &[
            "spec", "rules", "http", "paths", "backend", "service", "name",
        ],
        &["spec", "defaultBackend", "service", "name"],
    ] {
        t.push(RefSpec::new("Service", "Ingress", None, p));
    }
    t.push(RefSpec::new(
        "Service",
        "APIService",
        Some("apiregistration.k8s.io"),
        &["spec", "service", "name"],
    ));
    // Newer kustomize releases follow Services from Gateway API HTTPRoutes; v5.8.1 does
    // not (the corpus checks it).
    let mut rb = RefSpec::new(
        "Role",
        "RoleBinding",
        Some("rbac.authorization.k8s.io"),
        &["roleRef", "name"],
    );
    rb.sibling = Some("Role".into());
    t.push(rb);
    for binding in ["RoleBinding", "ClusterRoleBinding"] {
        let mut s = RefSpec::new(
            "ClusterRole",
            binding,
            Some("rbac.authorization.k8s.io"),
            &["roleRef", "name"],
        );
        s.sibling = Some("ClusterRole".into());
        t.push(s);
    }
    pod(
        &mut t,
        "ServiceAccount",
        &POD_HOLDERS,
        &[&["serviceAccountName"]],
    );
    pod(
        &mut t,
        "PersistentVolumeClaim",
        &POD_HOLDERS,
        &[&["volumes", "persistentVolumeClaim", "claimName"]],
    );
    t.push(RefSpec::new(
        "PersistentVolume",
        "PersistentVolumeClaim",
        None,
        &["spec", "volumeName"],
    ));
    t.push(RefSpec::new(
        "PersistentVolume",
        "ClusterRole",
        None,
        &["rules", "resourceNames"],
    ));
    for (referrer, p) in [
        ("PersistentVolume", &["spec", "storageClassName"][..]),
        ("PersistentVolumeClaim", &["spec", "storageClassName"]),
        (
            "StatefulSet",
            &["spec", "volumeClaimTemplates", "spec", "storageClassName"],
        ),
    ] {
        t.push(RefSpec::new("StorageClass", referrer, None, p));
    }
    pod(
        &mut t,
        "PriorityClass",
        &POD_HOLDERS,
        &[&["priorityClassName"]],
    );
    // kustomize's table also names IngressClass (Ingress spec.ingressClassName), but with
    // the group written as "networking.k8s.io/v1", which matches nothing: kustomize
    // v5.8.1 leaves ingressClassName alone, and so does lockstep (the corpus checks it).
    t
}

/// A renamed object.
struct Renamed {
    kind: String,
    version: String,
    namespace: Option<String>,
    cluster_scoped: bool,
    old: Vec<String>,
    new: String,
}

/// The namespace a reference is looked up in: a cluster-scoped referrer may name an
/// object in any namespace (kustomize lets every candidate through).
#[derive(Clone, Copy)]
enum Scope<'a> {
    Any,
    Ns(Option<&'a str>),
}

/// Rewrites every reference to a renamed object, with the built-in table plus `extra`
/// (from `crds`).
pub(super) fn fix_references(rs: &mut [Res], extra: &[RefSpec]) {
    fix_map_refs(rs, &SUBJECTS);
    fix_map_refs(rs, &WEBHOOK_SERVICES);
    let renamed: Vec<Renamed> = rs
        .iter()
        .filter(|r| !r.prev_names.is_empty())
        .map(|r| Renamed {
            kind: r.kind().to_owned(),
            version: r.version().to_owned(),
            namespace: r.namespace().map(str::to_owned),
            cluster_scoped: is_cluster_scoped(r.group(), r.kind()),
            old: r.prev_names.clone(),
            new: r.name().to_owned(),
        })
        .collect();
    if renamed.is_empty() {
        return;
    }
    let mut table = builtin_table();
    table.extend_from_slice(extra);
    table.retain(|s| renamed.iter().any(|x| x.kind == s.target));
    // Current names per kind and namespace: a value that already names an object stays.
    let current: Vec<(String, Option<String>, bool, String)> = rs
        .iter()
        .map(|r| {
            (
                r.kind().to_owned(),
                r.namespace().map(str::to_owned),
                is_cluster_scoped(r.group(), r.kind()),
                r.name().to_owned(),
            )
        })
        .collect();
    for r in rs.iter_mut() {
        let rkind = r.kind().to_owned();
        let rgroup = r.group().to_owned();
        let rns = r.namespace().map(str::to_owned);
        let scope = if is_cluster_scoped(&rgroup, &rkind) {
            Scope::Any
        } else {
            Scope::Ns(rns.as_deref())
        };
        for spec in &table {
            if spec.referrer != rkind || spec.referrer_group.as_ref().is_some_and(|g| *g != rgroup)
            {
                continue;
            }
            let target = spec.target.as_str();
            let in_scope = |ns: &Option<String>, cluster: bool| match scope {
                Scope::Any => true,
                Scope::Ns(want) => cluster || ns.as_deref() == want,
            };
            let mut resolve = |value: &str| -> Option<String> {
                let names_current = current
                    .iter()
                    .any(|(k, n, c, name)| k == target && name == value && in_scope(n, *c));
                let renamed_to_itself = renamed.iter().any(|x| {
                    x.kind == target
                        && x.new == value
                        && x.old.iter().any(|o| o == value)
                        && in_scope(&x.namespace, x.cluster_scoped)
                });
                if names_current && !renamed_to_itself {
                    return None;
                }
                renamed
                    .iter()
                    .find(|x| {
                        x.kind == target
                            && spec.target_version.as_ref().is_none_or(|v| *v == x.version)
                            && in_scope(&x.namespace, x.cluster_scoped)
                            && x.old.iter().any(|o| o == value)
                    })
                    .map(|x| x.new.clone())
            };
            let path: Vec<&str> = spec.path.iter().map(String::as_str).collect();
            rewrite(&mut r.obj, &path, spec.sibling.as_deref(), &mut resolve);
        }
    }
}

/// Rewrites the string (or each string of the list) at `path`, lists along the way
/// entered element by element; with `sibling`, only where the parent map's `kind` is that.
fn rewrite(
    v: &mut Value,
    path: &[&str],
    sibling: Option<&str>,
    f: &mut dyn FnMut(&str) -> Option<String>,
) {
    match v {
        Value::Array(a) => a.iter_mut().for_each(|x| rewrite(x, path, sibling, f)),
        Value::Object(m) => {
            let Some((first, rest)) = path.split_first() else {
                return;
            };
            if rest.is_empty() {
                if let Some(s) = sibling
                    && m.get("kind").and_then(Value::as_str) != Some(s)
                {
                    return;
                }
                match m.get_mut(*first) {
                    Some(Value::String(cur)) => {
                        if let Some(new) = f(cur) {
                            *cur = new;
                        }
                    }
                    Some(Value::Array(items)) => {
                        for item in items {
                            if let Value::String(cur) = item
                                && let Some(new) = f(cur)
                            {
                                *cur = new;
                            }
                        }
                    }
                    _ => {}
                }
                return;
            }
            if let Some(next) = m.get_mut(*first) {
                rewrite(next, rest, sibling, f);
            }
        }
        _ => {}
    }
}

/// References written as a map with `name` and `namespace`: RBAC subjects naming a
/// ServiceAccount, webhook configurations naming a Service.
struct MapRef {
    referrer_group: &'static str,
    referrers: &'static [&'static str],
    path: &'static [&'static str],
    /// Only maps whose `kind` is this (subjects name Users and Groups too).
    kind: Option<&'static str>,
    target_group: &'static str,
    target: &'static str,
}

const SUBJECTS: MapRef = MapRef {
    referrer_group: "rbac.authorization.k8s.io",
    referrers: &["RoleBinding", "ClusterRoleBinding"],
    path: &["subjects"],
    // kustomize v5.8.1 matches subjects by name and namespace whatever their kind: a User
    // or Group named like a ServiceAccount of the build follows it too (the corpus checks
    // it). lockstep builds what kustomize builds.
    kind: None,
    target_group: "",
    target: "ServiceAccount",
};

const WEBHOOK_SERVICES: MapRef = MapRef {
    referrer_group: "admissionregistration.k8s.io",
    referrers: &[
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    ],
    path: &["webhooks", "clientConfig", "service"],
    kind: None,
    target_group: "",
    target: "Service",
};

/// kustomize reads an unset namespace and `default` as the same one here.
fn same_ns(a: Option<&str>, b: Option<&str>) -> bool {
    a.unwrap_or("default") == b.unwrap_or("default")
}

/// A map reference follows the object it names to its new name and, when that object
/// has a namespace, to its namespace. The map's own namespace (or the referrer's) says
/// where the object was; a map naming nothing in the build stays as written.
fn fix_map_refs(rs: &mut [Res], spec: &MapRef) {
    type Target = (Vec<String>, Vec<Option<String>>, String, Option<String>);
    let targets: Vec<Target> = rs
        .iter()
        .filter(|r| r.group() == spec.target_group && r.kind() == spec.target)
        .map(|r| {
            let mut names = r.prev_names.clone();
            names.push(r.name().to_owned());
            let mut nss = r.prev_namespaces.clone();
            nss.push(r.namespace().map(str::to_owned));
            (
                names,
                nss,
                r.name().to_owned(),
                r.namespace().map(str::to_owned),
            )
        })
        .collect();
    if targets.is_empty() {
        return;
    }
    for r in rs.iter_mut() {
        if r.group() != spec.referrer_group || !spec.referrers.contains(&r.kind()) {
            continue;
        }
        let rns = r.namespace().map(str::to_owned);
        super::transform::at_path(&mut r.obj, spec.path, false, &mut |m| {
            let Value::Object(m) = m else { return };
            if spec.kind.is_some() && m.get("kind").and_then(Value::as_str) != spec.kind {
                return;
            }
            let Some(name) = m.get("name").and_then(Value::as_str).map(str::to_owned) else {
                return;
            };
            let ns = m
                .get("namespace")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .or_else(|| rns.clone());
            let found = targets.iter().find(|(names, nss, cur, cur_ns)| {
                (cur == &name && same_ns(cur_ns.as_deref(), ns.as_deref()))
                    || (names.contains(&name)
                        && nss.iter().any(|n| same_ns(n.as_deref(), ns.as_deref())))
            });
            if let Some((_, _, cur, cur_ns)) = found {
                m.insert("name".into(), Value::String(cur.clone()));
                if let Some(n) = cur_ns {
                    m.insert("namespace".into(), Value::String(n.clone()));
                }
            }
        });
    }
}
