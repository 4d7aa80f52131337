//! Unknown-field detection for `fieldValidation` (spec §2.2, §2.5, §2.8).
//!
//! kube-apiserver decodes built-in kinds into typed structs, so any field the type does not
//! declare is "unknown". This emulator has no typed structs; instead it keeps a conservative
//! list of the declared fields at the top level and directly under `spec` for the kinds an
//! engine commonly writes. Kinds (and levels) that are not listed here are never flagged, so a
//! valid manifest is never rejected because the list is incomplete. Custom resources are not
//! checked here: `schema` prunes them to their CRD's schema.
//!
//! Covered: `metadata` of every built-in; top level of ConfigMap, Secret, ServiceAccount,
//! Namespace, Service, Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob,
//! Lease, Role, ClusterRole, RoleBinding, ClusterRoleBinding, CustomResourceDefinition; `spec`
//! of Namespace, Service, Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob, Lease
//! and CustomResourceDefinition. Deeper levels (pod templates, containers, ...) are not checked.

use serde_json::Value;

use crate::resources::ResourceDef;

const COMMON_TOP: &[&str] = &["apiVersion", "kind", "metadata"];

const META: &[&str] = &[
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
];

/// Whether `name` is a field of ObjectMeta (custom resources prune their `metadata` to these).
pub fn is_object_meta_field(name: &str) -> bool {
    META.contains(&name)
}

const SPEC_STATUS: &[&str] = &["spec", "status"];

/// Declared top-level fields (besides apiVersion/kind/metadata) of a built-in kind.
fn top_fields(group: &str, kind: &str) -> Option<&'static [&'static str]> {
    Some(match (group, kind) {
        ("", "ConfigMap") => &["data", "binaryData", "immutable"],
        ("", "Secret") => &["data", "stringData", "type", "immutable"],
        ("", "ServiceAccount") => &[
            "secrets",
            "imagePullSecrets",
            "automountServiceAccountToken",
        ],
        ("", "Namespace" | "Service" | "Pod") => SPEC_STATUS,
        ("apps", "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet") => SPEC_STATUS,
        ("batch", "Job" | "CronJob") => SPEC_STATUS,
        ("coordination.k8s.io", "Lease") => &["spec"],
        ("rbac.authorization.k8s.io", "Role") => &["rules"],
        ("rbac.authorization.k8s.io", "ClusterRole") => &["rules", "aggregationRule"],
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => {
            &["subjects", "roleRef"]
        }
        ("apiextensions.k8s.io", "CustomResourceDefinition") => SPEC_STATUS,
        _ => return None,
    })
}

/// Declared `spec` fields of a built-in kind.
fn spec_fields(group: &str, kind: &str) -> Option<&'static [&'static str]> {
    Some(match (group, kind) {
        ("", "Namespace") => &["finalizers"],
        ("", "Service") => &[
            "ports",
            "selector",
            "clusterIP",
            "clusterIPs",
            "type",
            "externalIPs",
            "sessionAffinity",
            "loadBalancerIP",
            "loadBalancerSourceRanges",
            "externalName",
            "externalTrafficPolicy",
            "healthCheckNodePort",
            "publishNotReadyAddresses",
            "sessionAffinityConfig",
            "ipFamilies",
            "ipFamilyPolicy",
            "allocateLoadBalancerNodePorts",
            "loadBalancerClass",
            "internalTrafficPolicy",
            "trafficDistribution",
        ],
        ("apps", "Deployment") => &[
            "replicas",
            "selector",
            "template",
            "strategy",
            "minReadySeconds",
            "revisionHistoryLimit",
            "paused",
            "progressDeadlineSeconds",
        ],
        ("apps", "StatefulSet") => &[
            "replicas",
            "selector",
            "template",
            "volumeClaimTemplates",
            "serviceName",
            "podManagementPolicy",
            "updateStrategy",
            "revisionHistoryLimit",
            "minReadySeconds",
            "persistentVolumeClaimRetentionPolicy",
            "ordinals",
        ],
        ("apps", "DaemonSet") => &[
            "selector",
            "template",
            "updateStrategy",
            "minReadySeconds",
            "revisionHistoryLimit",
        ],
        ("apps", "ReplicaSet") => &["replicas", "minReadySeconds", "selector", "template"],
        ("batch", "Job") => &[
            "parallelism",
            "completions",
            "activeDeadlineSeconds",
            "podFailurePolicy",
            "successPolicy",
            "backoffLimit",
            "backoffLimitPerIndex",
            "maxFailedIndexes",
            "selector",
            "manualSelector",
            "template",
            "ttlSecondsAfterFinished",
            "completionMode",
            "suspend",
            "podReplacementPolicy",
            "managedBy",
        ],
        ("batch", "CronJob") => &[
            "schedule",
            "timeZone",
            "startingDeadlineSeconds",
            "concurrencyPolicy",
            "suspend",
            "jobTemplate",
            "successfulJobsHistoryLimit",
            "failedJobsHistoryLimit",
        ],
        ("coordination.k8s.io", "Lease") => &[
            "holderIdentity",
            "leaseDurationSeconds",
            "acquireTime",
            "renewTime",
            "leaseTransitions",
            "strategy",
            "preferredHolder",
        ],
        ("apiextensions.k8s.io", "CustomResourceDefinition") => &[
            "group",
            "names",
            "scope",
            "versions",
            "conversion",
            "preserveUnknownFields",
        ],
        _ => return None,
    })
}

fn unknown_in(obj: &Value, prefix: &str, known: &[&[&str]], out: &mut Vec<String>) {
    let Some(m) = obj.as_object() else {
        return;
    };
    for k in m.keys() {
        if !known.iter().any(|list| list.contains(&k.as_str())) {
            out.push(format!("{prefix}{k}"));
        }
    }
}

/// Dotted paths (`spec.foo`, `metadata.bar`, `foo`) of fields the kind does not declare, in
/// document order. Always empty for custom resources and unlisted kinds.
pub fn unknown_fields(def: &ResourceDef, obj: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if def.is_custom() {
        return out;
    }
    if let Some(top) = top_fields(&def.group, &def.kind) {
        unknown_in(obj, "", &[COMMON_TOP, top], &mut out);
    }
    if let Some(meta) = obj.get("metadata") {
        unknown_in(meta, "metadata.", &[META], &mut out);
    }
    if let (Some(spec), Some(known)) = (obj.get("spec"), spec_fields(&def.group, &def.kind)) {
        unknown_in(spec, "spec.", &[known], &mut out);
    }
    out
}

/// Remove the fields `unknown_fields` reported, as kube-apiserver's typed decoding drops
/// undeclared fields when the request does not ask for strict validation.
pub fn drop_unknown(obj: &mut Value, paths: &[String]) {
    for path in paths {
        let (parent, field) = match path.split_once('.') {
            Some((p, f)) => (obj.get_mut(p), f),
            None => (Some(&mut *obj), path.as_str()),
        };
        if let Some(Value::Object(m)) = parent {
            m.remove(field);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::Registry;
    use serde_json::json;

    #[test]
    fn flags_only_undeclared_fields() {
        let reg = Registry::new();
        let Some(dep) = reg.find("apps", "v1", "deployments") else {
            panic!("deployments registered");
        };
        let ok = json!({"apiVersion":"apps/v1","kind":"Deployment",
            "metadata":{"name":"web","labels":{"a":"b"}},
            "spec":{"replicas":1,"selector":{},"template":{"spec":{"whatever":1}}}});
        assert!(unknown_fields(&dep, &ok).is_empty());
        let bad = json!({"apiVersion":"apps/v1","kind":"Deployment","extra":1,
            "metadata":{"name":"web","labelz":{}}, "spec":{"foo":1}});
        let found = unknown_fields(&dep, &bad);
        assert_eq!(found, vec!["extra", "metadata.labelz", "spec.foo"]);
        let mut dropped = bad.clone();
        drop_unknown(&mut dropped, &found);
        assert!(unknown_fields(&dep, &dropped).is_empty());
        assert_eq!(dropped["metadata"]["name"], "web");
    }
}
