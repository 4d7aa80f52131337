//! Name references: when an object is renamed (prefix, suffix, hash), every field that names
//! it follows. The table is kustomize's built-in one for the core kinds.

use serde_json::Value;

use super::{Res, is_cluster_scoped};

/// Where a pod spec sits in each workload kind.
fn pod_spec_paths(kind: &str) -> &'static [&'static str] {
    match kind {
        "Pod" => &["spec"],
        "Deployment"
        | "ReplicaSet"
        | "DaemonSet"
        | "StatefulSet"
        | "Job"
        | "ReplicationController" => &["spec", "template", "spec"],
        "CronJob" => &["spec", "jobTemplate", "spec", "template", "spec"],
        _ => &[],
    }
}

const CONTAINER_LISTS: [&str; 3] = ["containers", "initContainers", "ephemeralContainers"];

/// Paths (inside a pod spec) that name an object of `kind`.
fn pod_spec_refs(kind: &str) -> Vec<Vec<&'static str>> {
    let mut out: Vec<Vec<&'static str>> = Vec::new();
    match kind {
        "ConfigMap" => {
            out.push(vec!["volumes", "configMap", "name"]);
            out.push(vec!["volumes", "projected", "sources", "configMap", "name"]);
            for c in CONTAINER_LISTS {
                out.push(vec![c, "env", "valueFrom", "configMapKeyRef", "name"]);
                out.push(vec![c, "envFrom", "configMapRef", "name"]);
            }
        }
        "Secret" => {
            out.push(vec!["volumes", "secret", "secretName"]);
            out.push(vec!["volumes", "projected", "sources", "secret", "name"]);
            out.push(vec!["imagePullSecrets", "name"]);
            for c in CONTAINER_LISTS {
                out.push(vec![c, "env", "valueFrom", "secretKeyRef", "name"]);
                out.push(vec![c, "envFrom", "secretRef", "name"]);
            }
        }
        "ServiceAccount" => {
            out.push(vec!["serviceAccountName"]);
            out.push(vec!["serviceAccount"]);
        }
        "PersistentVolumeClaim" => out.push(vec!["volumes", "persistentVolumeClaim", "claimName"]),
        "PriorityClass" => out.push(vec!["priorityClassName"]),
        _ => {}
    }
    out
}

/// Other referrers: (referrer kind, path, required sibling `kind` value at the parent).
fn other_refs(kind: &str) -> Vec<(&'static str, Vec<&'static str>, Option<&'static str>)> {
    let mut out = Vec::new();
    match kind {
        "Secret" => {
            out.push(("ServiceAccount", vec!["imagePullSecrets", "name"], None));
            out.push(("ServiceAccount", vec!["secrets", "name"], None));
            out.push(("Ingress", vec!["spec", "tls", "secretName"], None));
        }
        "Service" => {
            out.push((
                "Ingress",
                vec![
                    "spec", "rules", "http", "paths", "backend", "service", "name",
                ],
                None,
            ));
            out.push((
                "Ingress",
                vec!["spec", "defaultBackend", "service", "name"],
                None,
            ));
            out.push((
                "Ingress",
                vec!["spec", "rules", "http", "paths", "backend", "serviceName"],
                None,
            ));
            out.push(("Ingress", vec!["spec", "backend", "serviceName"], None));
            out.push(("StatefulSet", vec!["spec", "serviceName"], None));
        }
        "ServiceAccount" => {
            out.push((
                "RoleBinding",
                vec!["subjects", "name"],
                Some("ServiceAccount"),
            ));
            out.push((
                "ClusterRoleBinding",
                vec!["subjects", "name"],
                Some("ServiceAccount"),
            ));
        }
        "Role" => out.push(("RoleBinding", vec!["roleRef", "name"], Some("Role"))),
        "ClusterRole" => {
            out.push(("RoleBinding", vec!["roleRef", "name"], Some("ClusterRole")));
            out.push((
                "ClusterRoleBinding",
                vec!["roleRef", "name"],
                Some("ClusterRole"),
            ));
        }
        "Deployment" | "StatefulSet" | "ReplicaSet" | "ReplicationController" => {
            out.push((
                "HorizontalPodAutoscaler",
                vec!["spec", "scaleTargetRef", "name"],
                Some(kind_static(kind)),
            ));
        }
        "PersistentVolume" => out.push(("PersistentVolumeClaim", vec!["spec", "volumeName"], None)),
        "StorageClass" => {
            out.push((
                "PersistentVolumeClaim",
                vec!["spec", "storageClassName"],
                None,
            ));
            out.push(("PersistentVolume", vec!["spec", "storageClassName"], None));
            out.push((
                "StatefulSet",
                vec!["spec", "volumeClaimTemplates", "spec", "storageClassName"],
                None,
            ));
        }
        "IngressClass" => out.push(("Ingress", vec!["spec", "ingressClassName"], None)),
        _ => {}
    }
    out
}

fn kind_static(kind: &str) -> &'static str {
    match kind {
        "Deployment" => "Deployment",
        "StatefulSet" => "StatefulSet",
        "ReplicaSet" => "ReplicaSet",
        _ => "ReplicationController",
    }
}

/// A renamed object.
struct Renamed {
    kind: String,
    namespace: Option<String>,
    cluster_scoped: bool,
    old: Vec<String>,
    new: String,
}

/// Rewrites every reference to a renamed object.
pub(super) fn fix_references(rs: &mut [Res]) {
    fix_subjects(rs);
    let renamed: Vec<Renamed> = rs
        .iter()
        .filter(|r| !r.prev_names.is_empty())
        .map(|r| Renamed {
            kind: r.kind().to_owned(),
            namespace: r.namespace().map(str::to_owned),
            cluster_scoped: is_cluster_scoped(r.group(), r.kind()),
            old: r.prev_names.clone(),
            new: r.name().to_owned(),
        })
        .collect();
    if renamed.is_empty() {
        return;
    }
    // Current names per kind and namespace: a value that already names an object stays.
    let current: Vec<(String, Option<String>, String)> = rs
        .iter()
        .map(|r| {
            (
                r.kind().to_owned(),
                r.namespace().map(str::to_owned),
                r.name().to_owned(),
            )
        })
        .collect();
    for r in rs.iter_mut() {
        let rkind = r.kind().to_owned();
        let rns = r.namespace().map(str::to_owned);
        for target_kind in [
            "ConfigMap",
            "Secret",
            "ServiceAccount",
            "PersistentVolumeClaim",
            "PriorityClass",
            "Service",
            "Role",
            "ClusterRole",
            "Deployment",
            "StatefulSet",
            "ReplicaSet",
            "ReplicationController",
            "PersistentVolume",
            "StorageClass",
            "IngressClass",
        ] {
            if !renamed.iter().any(|x| x.kind == target_kind) {
                continue;
            }
            let resolve = |value: &str, ns: Option<&str>| -> Option<String> {
                let same_ns = |x: &Option<String>, cluster: bool| cluster || x.as_deref() == ns;
                if current.iter().any(|(k, n, name)| {
                    k == target_kind
                        && name == value
                        && (is_cluster_scoped("", k) || n.as_deref() == ns)
                }) && !renamed.iter().any(|x| {
                    x.kind == target_kind
                        && x.old.iter().any(|o| o == value)
                        && same_ns(&x.namespace, x.cluster_scoped)
                        && x.new == value
                }) {
                    return None;
                }
                renamed
                    .iter()
                    .find(|x| {
                        x.kind == target_kind
                            && same_ns(&x.namespace, x.cluster_scoped)
                            && x.old.iter().any(|o| o == value)
                    })
                    .map(|x| x.new.clone())
            };
            for base in [pod_spec_paths(&rkind)] {
                if base.is_empty() {
                    continue;
                }
                for p in pod_spec_refs(target_kind) {
                    let mut full: Vec<&str> = base.to_vec();
                    full.extend(p);
                    rewrite(&mut r.obj, &full, None, &mut |v| resolve(v, rns.as_deref()));
                }
            }
            for (referrer, path, sibling) in other_refs(target_kind) {
                if referrer != rkind {
                    continue;
                }
                let subject_ns = path.first() == Some(&"subjects");
                if subject_ns {
                    // RBAC subjects name their own namespace.
                    if let Some(Value::Array(subjects)) = r.obj.get_mut("subjects") {
                        for s in subjects.iter_mut() {
                            if s.get("kind").and_then(Value::as_str) != sibling {
                                continue;
                            }
                            let sns = s
                                .get("namespace")
                                .and_then(Value::as_str)
                                .map(str::to_owned)
                                .or_else(|| rns.clone());
                            let mut fixed = false;
                            if let Some(Value::String(name)) = s.get_mut("name")
                                && let Some(new) = resolve(name, sns.as_deref())
                            {
                                *name = new;
                                fixed = true;
                            }
                            // A subject that follows a renamed ServiceAccount names its
                            // namespace too, as kustomize writes it.
                            if fixed
                                && let (Value::Object(s), Some(ns)) = (s, sns)
                                && !s.contains_key("namespace")
                            {
                                s.insert("namespace".into(), Value::String(ns));
                            }
                        }
                    }
                    continue;
                }
                rewrite(&mut r.obj, &path, sibling, &mut |v| {
                    resolve(v, rns.as_deref())
                });
            }
        }
    }
}

/// Rewrites the string at `path` (lists entered element by element); with `sibling`, only
/// where the parent map's `kind` is that value.
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
                if let Some(Value::String(cur)) = m.get_mut(*first)
                    && let Some(new) = f(cur)
                {
                    *cur = new;
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

/// RBAC subjects naming a ServiceAccount follow it: to its new name and, when it moved, to
/// its new namespace (the subject's namespace, or the binding's, names where it was).
fn fix_subjects(rs: &mut [Res]) {
    type Sa = (Vec<String>, Vec<Option<String>>, String, Option<String>);
    let sas: Vec<Sa> = rs
        .iter()
        .filter(|r| r.group().is_empty() && r.kind() == "ServiceAccount")
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
    if sas.is_empty() {
        return;
    }
    for r in rs.iter_mut() {
        if r.group() != "rbac.authorization.k8s.io"
            || !matches!(r.kind(), "RoleBinding" | "ClusterRoleBinding")
        {
            continue;
        }
        let rns = r.namespace().map(str::to_owned);
        let Some(Value::Array(subjects)) = r.obj.get_mut("subjects") else {
            continue;
        };
        for s in subjects.iter_mut() {
            let Value::Object(s) = s else { continue };
            if s.get("kind").and_then(Value::as_str) != Some("ServiceAccount") {
                continue;
            }
            let name = s
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            let sns = s
                .get("namespace")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .or_else(|| rns.clone());
            let found = sas.iter().find(|(names, nss, cur, cur_ns)| {
                (cur == &name && cur_ns == &sns) || (names.contains(&name) && nss.contains(&sns))
            });
            if let Some((_, _, cur, cur_ns)) = found {
                s.insert("name".into(), Value::String(cur.clone()));
                if let Some(ns) = cur_ns {
                    s.insert("namespace".into(), Value::String(ns.clone()));
                }
            }
        }
    }
}
