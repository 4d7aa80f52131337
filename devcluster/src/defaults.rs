//! kube-apiserver's built-in defaults: what the `SetDefaults_*` functions of
//! k8s.io/kubernetes `pkg/apis/*/v1/defaults.go` (and the generated `+default` markers) fill in
//! when a request body is decoded, before managedFields are computed. So a non-apply writer
//! owns what is defaulted here; an applier does not (its set is its applied configuration).
//!
//! Also the Job selector that the Job strategy generates on create, which runs later and is
//! owned by nobody. Admission plugins (ServiceAccount, Priority, DefaultTolerationSeconds,
//! DefaultStorageClass) and Service address allocation (`alloc`) are not defaulting and are
//! not here.
//!
//! Every function keeps explicit values; running them twice changes nothing.

use serde_json::{Map, Value, json};

use crate::resources::ResourceDef;

type Obj = Map<String, Value>;

fn set(o: &mut Obj, k: &str, v: Value) {
    o.entry(k.to_string()).or_insert(v);
}

fn child<'a>(o: &'a mut Obj, k: &str) -> Option<&'a mut Obj> {
    o.get_mut(k).and_then(Value::as_object_mut)
}

fn items<'a>(o: &'a mut Obj, k: &str) -> impl Iterator<Item = &'a mut Obj> {
    o.get_mut(k)
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object_mut)
}

fn is_empty_value(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        Some(Value::Object(m)) => m.is_empty(),
        Some(Value::Number(n)) => n.as_i64() == Some(0),
        Some(Value::Bool(_)) => false,
    }
}

/// A Secret's `stringData` is write-only: decoding merges it into `data` (base64), its
/// keys winning, and it is never stored or served, as kube-apiserver's v1 conversion does.
fn merge_string_data(o: &mut Map<String, Value>) {
    use base64::Engine;
    let Some(Value::Object(sd)) = o.remove("stringData") else {
        return;
    };
    if sd.is_empty() {
        return;
    }
    let data = o.entry("data").or_insert_with(|| json!({}));
    if !data.is_object() {
        *data = json!({});
    }
    if let Some(d) = data.as_object_mut() {
        for (k, v) in sd {
            let text = match v {
                Value::String(s) => s,
                other => other.to_string(),
            };
            d.insert(
                k,
                json!(base64::engine::general_purpose::STANDARD.encode(text.as_bytes())),
            );
        }
    }
}

/// Fills the decode-time defaults of a built-in kind into `obj`.
pub fn apply_defaults(def: &ResourceDef, obj: &mut Value) {
    let Some(o) = obj.as_object_mut() else {
        return;
    };
    match (def.group.as_str(), def.kind.as_str()) {
        ("", "Namespace") => default_namespace(o),
        ("", "Secret") => {
            set(o, "type", json!("Opaque"));
            merge_string_data(o);
        }
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => default_binding(o),
        _ => {}
    }
    let Some(spec) = child(o, "spec") else {
        return;
    };
    match (def.group.as_str(), def.kind.as_str()) {
        ("apps", "Deployment") => {
            set(spec, "replicas", json!(1));
            set(spec, "revisionHistoryLimit", json!(10));
            set(spec, "progressDeadlineSeconds", json!(600));
            default_strategy(
                spec,
                "strategy",
                json!({"maxUnavailable": "25%", "maxSurge": "25%"}),
            );
        }
        ("apps", "StatefulSet") => {
            set(spec, "replicas", json!(1));
            set(spec, "podManagementPolicy", json!("OrderedReady"));
            set(spec, "revisionHistoryLimit", json!(10));
            default_strategy(spec, "updateStrategy", json!({"partition": 0}));
            let policy = spec
                .entry("persistentVolumeClaimRetentionPolicy")
                .or_insert_with(|| json!({}));
            if let Some(p) = policy.as_object_mut() {
                set(p, "whenDeleted", json!("Retain"));
                set(p, "whenScaled", json!("Retain"));
            }
            for claim in items(spec, "volumeClaimTemplates") {
                // The templates are whole PVCs and get a PVC's defaults, status included.
                if let Some(s) = child(claim, "spec") {
                    default_pvc_spec(s);
                }
                let status = claim.entry("status").or_insert_with(|| json!({}));
                if let Some(s) = status.as_object_mut() {
                    set(s, "phase", json!("Pending"));
                }
            }
        }
        ("apps", "DaemonSet") => {
            set(spec, "revisionHistoryLimit", json!(10));
            default_strategy(
                spec,
                "updateStrategy",
                json!({"maxUnavailable": 1, "maxSurge": 0}),
            );
        }
        ("apps", "ReplicaSet") => set(spec, "replicas", json!(1)),
        ("batch", "Job") => default_job_spec(spec),
        ("batch", "CronJob") => {
            // The job template gets the pod defaults only: SetDefaults_Job is not run on it.
            set(spec, "concurrencyPolicy", json!("Allow"));
            set(spec, "suspend", json!(false));
            set(spec, "successfulJobsHistoryLimit", json!(3));
            set(spec, "failedJobsHistoryLimit", json!(1));
        }
        ("", "Service") => default_service(spec),
        ("", "PersistentVolumeClaim") => default_pvc_spec(spec),
        ("networking.k8s.io", "NetworkPolicy") => default_network_policy(spec),
        _ => {}
    }
    let path: &[&str] = match (def.group.as_str(), def.kind.as_str()) {
        ("", "Pod") => &[],
        ("apps", "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet") | ("batch", "Job") => {
            &["template", "spec"]
        }
        ("batch", "CronJob") => &["jobTemplate", "spec", "template", "spec"],
        _ => return,
    };
    let mut node = spec;
    for key in path {
        let Some(next) = child(node, key) else {
            return;
        };
        node = next;
    }
    // Job pods must choose Never or OnFailure; defaulting them to Always would only turn a
    // missing value into kube-apiserver's validation error, which is not emulated.
    default_pod_spec(node, !matches!(def.kind.as_str(), "Job" | "CronJob"));
    if def.kind == "Pod" {
        default_pod_only(node);
    }
    if def.kind == "Job"
        && let Some(labels) = o
            .get("spec")
            .and_then(|s| s.pointer("/template/metadata/labels"))
            .filter(|l| l.is_object())
            .cloned()
    {
        // A Job without labels takes its pod template's.
        let m = o.entry("metadata").or_insert_with(|| json!({}));
        if let Some(m) = m.as_object_mut()
            && is_empty_value(m.get("labels"))
        {
            m.insert("labels".into(), labels);
        }
    }
}

fn default_namespace(o: &mut Obj) {
    let Some(m) = child(o, "metadata") else {
        return;
    };
    // A generateName namespace has no name yet; it gets the label when named.
    let Some(name) = m.get("name").filter(|n| !is_empty_value(Some(n))).cloned() else {
        return;
    };
    let labels = m.entry("labels").or_insert_with(|| json!({}));
    if !labels.is_object() {
        *labels = json!({});
    }
    if let Some(l) = labels.as_object_mut() {
        l.insert("kubernetes.io/metadata.name".into(), name);
    }
}

fn default_binding(o: &mut Obj) {
    const RBAC: &str = "rbac.authorization.k8s.io";
    if let Some(r) = child(o, "roleRef")
        && is_empty_value(r.get("apiGroup"))
    {
        r.insert("apiGroup".into(), json!(RBAC));
    }
    for s in items(o, "subjects") {
        if !is_empty_value(s.get("apiGroup")) {
            continue;
        }
        // ServiceAccount's group is "", which is what absent means.
        if matches!(
            s.get("kind").and_then(Value::as_str),
            Some("User" | "Group")
        ) {
            s.insert("apiGroup".into(), json!(RBAC));
        }
    }
}

/// The apps/v1 rollout strategies: type RollingUpdate with the given rollingUpdate values.
fn default_strategy(spec: &mut Obj, field: &str, rolling: Value) {
    let strategy = spec.entry(field).or_insert_with(|| json!({}));
    let Some(strategy) = strategy.as_object_mut() else {
        return;
    };
    let kind = strategy
        .entry("type")
        .or_insert_with(|| json!("RollingUpdate"));
    if kind.as_str() != Some("RollingUpdate") {
        return;
    }
    let Some(r) = strategy
        .entry("rollingUpdate")
        .or_insert_with(|| json!({}))
        .as_object_mut()
    else {
        return;
    };
    if let Some(defaults) = rolling.as_object() {
        for (k, v) in defaults {
            r.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
}

fn default_job_spec(spec: &mut Obj) {
    if is_empty_value(spec.get("completions")) && is_empty_value(spec.get("parallelism")) {
        spec.insert("completions".into(), json!(1));
        spec.insert("parallelism".into(), json!(1));
    }
    set(spec, "parallelism", json!(1));
    let per_index = spec
        .get("backoffLimitPerIndex")
        .is_some_and(|v| !v.is_null());
    set(
        spec,
        "backoffLimit",
        json!(if per_index { i64::from(i32::MAX) } else { 6 }),
    );
    set(spec, "completionMode", json!("NonIndexed"));
    set(spec, "suspend", json!(false));
    let has_failure_policy = spec.get("podFailurePolicy").is_some_and(Value::is_object);
    set(
        spec,
        "podReplacementPolicy",
        json!(if has_failure_policy {
            "Failed"
        } else {
            "TerminatingOrFailed"
        }),
    );
    set(spec, "manualSelector", json!(false));
    if let Some(policy) = child(spec, "podFailurePolicy") {
        for rule in items(policy, "rules") {
            for pattern in items(rule, "onPodConditions") {
                set(pattern, "status", json!("True"));
            }
        }
    }
}

fn default_service(spec: &mut Obj) {
    set(spec, "type", json!("ClusterIP"));
    set(spec, "sessionAffinity", json!("None"));
    match spec.get("sessionAffinity").and_then(Value::as_str) {
        Some("None") => {
            spec.shift_remove("sessionAffinityConfig");
        }
        Some("ClientIP") => {
            let timeout = spec
                .get("sessionAffinityConfig")
                .and_then(|c| c.pointer("/clientIP/timeoutSeconds"))
                .is_some_and(|t| !t.is_null());
            if !timeout {
                spec.insert(
                    "sessionAffinityConfig".into(),
                    json!({"clientIP": {"timeoutSeconds": 10800}}),
                );
            }
        }
        _ => {}
    }
    for port in items(spec, "ports") {
        set(port, "protocol", json!("TCP"));
        if is_empty_value(port.get("targetPort"))
            && let Some(p) = port.get("port").cloned()
        {
            port.insert("targetPort".into(), p);
        }
    }
    let kind = spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let external_ips = !is_empty_value(spec.get("externalIPs"));
    let externally_accessible = matches!(kind.as_str(), "NodePort" | "LoadBalancer")
        || (kind == "ClusterIP" && external_ips);
    if externally_accessible && is_empty_value(spec.get("externalTrafficPolicy")) {
        spec.insert("externalTrafficPolicy".into(), json!("Cluster"));
    }
    if matches!(kind.as_str(), "ClusterIP" | "NodePort" | "LoadBalancer") {
        set(spec, "internalTrafficPolicy", json!("Cluster"));
    }
    if kind == "LoadBalancer" {
        set(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
}

fn default_pvc_spec(spec: &mut Obj) {
    set(spec, "volumeMode", json!("Filesystem"));
}

fn default_network_policy(spec: &mut Obj) {
    for dir in ["ingress", "egress"] {
        for rule in items(spec, dir) {
            for port in items(rule, "ports") {
                set(port, "protocol", json!("TCP"));
            }
        }
    }
    if is_empty_value(spec.get("policyTypes")) {
        let mut types = vec![json!("Ingress")];
        if !is_empty_value(spec.get("egress")) {
            types.push(json!("Egress"));
        }
        spec.insert("policyTypes".into(), Value::Array(types));
    }
}

const CONTAINER_LISTS: [&str; 3] = ["containers", "initContainers", "ephemeralContainers"];

/// SetDefaults_PodSpec plus the generated defaults of what a PodSpec contains (containers,
/// probes, volumes). Applies to Pods and to every pod template.
fn default_pod_spec(spec: &mut Obj, restart_always: bool) {
    if restart_always {
        set(spec, "restartPolicy", json!("Always"));
    }
    set(spec, "dnsPolicy", json!("ClusterFirst"));
    set(spec, "schedulerName", json!("default-scheduler"));
    set(spec, "securityContext", json!({}));
    set(spec, "terminationGracePeriodSeconds", json!(30));
    for list in CONTAINER_LISTS {
        for c in items(spec, list) {
            default_container(c);
        }
    }
    for v in items(spec, "volumes") {
        default_volume(v);
    }
}

fn default_container(c: &mut Obj) {
    if is_empty_value(c.get("imagePullPolicy")) {
        let image = c.get("image").and_then(Value::as_str).unwrap_or("");
        let policy = if image_tag_is_latest(image) {
            "Always"
        } else {
            "IfNotPresent"
        };
        c.insert("imagePullPolicy".into(), json!(policy));
    }
    set(c, "terminationMessagePath", json!("/dev/termination-log"));
    set(c, "terminationMessagePolicy", json!("File"));
    // Not a default but a non-pointer struct: kube-apiserver always serializes it.
    set(c, "resources", json!({}));
    for port in items(c, "ports") {
        set(port, "protocol", json!("TCP"));
    }
    for env in items(c, "env") {
        if let Some(field_ref) = child(env, "valueFrom").and_then(|v| child(v, "fieldRef")) {
            set(field_ref, "apiVersion", json!("v1"));
        }
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = child(c, probe) {
            set(p, "timeoutSeconds", json!(1));
            set(p, "periodSeconds", json!(10));
            set(p, "successThreshold", json!(1));
            set(p, "failureThreshold", json!(3));
            default_handler(p);
        }
    }
    if let Some(lc) = child(c, "lifecycle") {
        for hook in ["postStart", "preStop"] {
            if let Some(h) = child(lc, hook) {
                default_handler(h);
            }
        }
    }
}

fn default_handler(h: &mut Obj) {
    if let Some(get) = child(h, "httpGet") {
        set(get, "path", json!("/"));
        set(get, "scheme", json!("HTTP"));
    }
    if let Some(grpc) = child(h, "grpc") {
        set(grpc, "service", json!(""));
    }
}

fn default_field_refs(items_owner: &mut Obj) {
    for item in items(items_owner, "items") {
        if let Some(f) = child(item, "fieldRef") {
            set(f, "apiVersion", json!("v1"));
        }
    }
}

fn default_volume(v: &mut Obj) {
    // A volume that names no source is an emptyDir.
    if v.keys().all(|k| k == "name") {
        v.insert("emptyDir".into(), json!({}));
    }
    for source in ["secret", "configMap", "downwardAPI", "projected"] {
        if let Some(s) = child(v, source) {
            set(s, "defaultMode", json!(420));
        }
    }
    if let Some(d) = child(v, "downwardAPI") {
        default_field_refs(d);
    }
    if let Some(p) = child(v, "projected") {
        for src in items(p, "sources") {
            if let Some(d) = child(src, "downwardAPI") {
                default_field_refs(d);
            }
            if let Some(t) = child(src, "serviceAccountToken") {
                set(t, "expirationSeconds", json!(3600));
            }
        }
    }
    if let Some(h) = child(v, "hostPath") {
        set(h, "type", json!(""));
    }
}

/// SetDefaults_Pod: only for Pods, not for pod templates.
fn default_pod_only(spec: &mut Obj) {
    set(spec, "enableServiceLinks", json!(true));
    let host_network = spec.get("hostNetwork").and_then(Value::as_bool) == Some(true);
    for list in ["containers", "initContainers"] {
        for c in items(spec, list) {
            if let Some(res) = child(c, "resources")
                && let Some(limits) = res.get("limits").and_then(Value::as_object).cloned()
            {
                // Requests default to limits.
                let requests = res.entry("requests").or_insert_with(|| json!({}));
                if let Some(r) = requests.as_object_mut() {
                    for (k, v) in limits {
                        r.entry(k).or_insert(v);
                    }
                }
            }
            if host_network {
                for port in items(c, "ports") {
                    if is_empty_value(port.get("hostPort"))
                        && let Some(p) = port.get("containerPort").cloned()
                    {
                        port.insert("hostPort".into(), p);
                    }
                }
            }
        }
    }
}

/// Whether an image reference means the `latest` tag: named so, or with neither tag nor digest.
fn image_tag_is_latest(image: &str) -> bool {
    let (name, digest) = match image.split_once('@') {
        Some((n, _)) => (n, true),
        None => (image, false),
    };
    let last = name.rsplit('/').next().unwrap_or(name);
    match last.split_once(':') {
        Some((_, tag)) => tag == "latest",
        None => !digest,
    }
}

/// Whether a Job's labels will be its template's: decoding copies the template's label map
/// into an unlabelled Job, and the selector generated later is written into that same map.
pub fn job_labels_follow_template(def: &ResourceDef, obj: &Value) -> bool {
    def.group == "batch"
        && def.kind == "Job"
        && is_empty_value(obj.pointer("/metadata/labels"))
        && obj
            .pointer("/spec/template/metadata/labels")
            .is_some_and(Value::is_object)
}

/// The Job strategy's selector on create (unless `manualSelector`): the template gets
/// `controller-uid` and `job-name` labels (legacy and `batch.kubernetes.io/` forms) and the
/// selector matches the prefixed uid label. Needs the uid and name already set.
pub fn generate_job_selector(obj: &mut Value, labels_follow_template: bool) {
    let name = obj
        .pointer("/metadata/name")
        .cloned()
        .unwrap_or(Value::Null);
    let uid = obj.pointer("/metadata/uid").cloned().unwrap_or(Value::Null);
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    if spec.get("manualSelector").and_then(Value::as_bool) == Some(true) {
        return;
    }
    let Some(template) = child(spec, "template") else {
        return;
    };
    let meta = template.entry("metadata").or_insert_with(|| json!({}));
    let Some(meta) = meta.as_object_mut() else {
        return;
    };
    let labels = meta.entry("labels").or_insert_with(|| json!({}));
    if !labels.is_object() {
        *labels = json!({});
    }
    let Some(labels) = labels.as_object_mut() else {
        return;
    };
    // A label the user set is kept; a wrong one fails validation on a real server.
    set(labels, "batch.kubernetes.io/controller-uid", uid.clone());
    set(labels, "batch.kubernetes.io/job-name", name.clone());
    set(labels, "controller-uid", uid.clone());
    set(labels, "job-name", name);
    let template_labels = Value::Object(labels.clone());
    let selector = spec.entry("selector").or_insert_with(|| json!({}));
    if let Some(sel) = selector.as_object_mut() {
        let ml = sel.entry("matchLabels").or_insert_with(|| json!({}));
        if let Some(ml) = ml.as_object_mut() {
            set(ml, "batch.kubernetes.io/controller-uid", uid);
        }
    }
    if labels_follow_template
        && let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut)
    {
        m.insert("labels".into(), template_labels);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::resources::builtin_def as def;

    fn defaulted(kind: &str, obj: Value) -> Value {
        let mut obj = obj;
        apply_defaults(&def(kind), &mut obj);
        obj
    }

    #[test]
    fn latest_tag_detection() {
        assert!(image_tag_is_latest("nginx"));
        assert!(image_tag_is_latest("nginx:latest"));
        assert!(image_tag_is_latest("registry:5000/team/app"));
        assert!(!image_tag_is_latest("registry:5000/team/app:v1"));
        assert!(!image_tag_is_latest("nginx@sha256:abc"));
        assert!(!image_tag_is_latest("nginx:1.25"));
    }

    #[test]
    fn defaults_are_idempotent_and_keep_explicit_values() {
        let d = def("Deployment");
        let mut once = json!({"spec":{"replicas":3,"template":{"spec":{"containers":[{"name":"a","image":"x:1","imagePullPolicy":"Never"}]}}}});
        apply_defaults(&d, &mut once);
        let mut twice = once.clone();
        apply_defaults(&d, &mut twice);
        assert_eq!(once, twice);
        assert_eq!(once["spec"]["replicas"], 3);
        let c = &once["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["imagePullPolicy"], "Never");
        assert_eq!(c["resources"], json!({}));
    }

    #[test]
    fn job_defaults() {
        let job = defaulted(
            "Job",
            json!({"metadata":{"name":"j"},"spec":{"template":{"metadata":{"labels":{"app":"a"}},
                "spec":{"restartPolicy":"Never","containers":[{"name":"c","image":"busybox"}]}}}}),
        );
        let s = &job["spec"];
        assert_eq!(s["completions"], 1);
        assert_eq!(s["parallelism"], 1);
        assert_eq!(s["backoffLimit"], 6);
        assert_eq!(s["completionMode"], "NonIndexed");
        assert_eq!(s["suspend"], false);
        assert_eq!(s["manualSelector"], false);
        assert_eq!(s["podReplacementPolicy"], "TerminatingOrFailed");
        assert_eq!(job["metadata"]["labels"], json!({"app":"a"}));
        assert!(s["template"]["spec"].get("restartPolicy").is_some());
        // Parallel jobs keep completions unset.
        let par = defaulted(
            "Job",
            json!({"spec":{"parallelism":3,"template":{"spec":{}}}}),
        );
        assert!(par["spec"].get("completions").is_none());
        let per_index = defaulted(
            "Job",
            json!({"spec":{"backoffLimitPerIndex":1,"podFailurePolicy":{"rules":[{"action":"Ignore","onPodConditions":[{"type":"DisruptionTarget"}]}]},"template":{"spec":{}}}}),
        );
        assert_eq!(per_index["spec"]["backoffLimit"], 2147483647);
        assert_eq!(per_index["spec"]["podReplacementPolicy"], "Failed");
        assert_eq!(
            per_index["spec"]["podFailurePolicy"]["rules"][0]["onPodConditions"][0]["status"],
            "True"
        );
    }

    #[test]
    fn job_selector_is_generated_into_the_template() {
        let d = def("Job");
        let mut job = json!({"metadata":{"name":"j","uid":"u-1"},"spec":{"template":{"metadata":{"labels":{"app":"a"}},"spec":{}}}});
        let follow = job_labels_follow_template(&d, &job);
        assert!(follow);
        apply_defaults(&d, &mut job);
        generate_job_selector(&mut job, follow);
        let labels = &job["spec"]["template"]["metadata"]["labels"];
        assert_eq!(labels["batch.kubernetes.io/controller-uid"], "u-1");
        assert_eq!(labels["controller-uid"], "u-1");
        assert_eq!(labels["batch.kubernetes.io/job-name"], "j");
        assert_eq!(labels["job-name"], "j");
        assert_eq!(labels["app"], "a");
        assert_eq!(job["metadata"]["labels"], *labels);
        assert_eq!(
            job["spec"]["selector"],
            json!({"matchLabels":{"batch.kubernetes.io/controller-uid":"u-1"}})
        );
        // Labelled Jobs keep their own labels; manual selectors are left alone.
        let mut own = json!({"metadata":{"name":"j","uid":"u","labels":{"team":"t"}},"spec":{"template":{"metadata":{"labels":{"app":"a"}}}}});
        let follow = job_labels_follow_template(&d, &own);
        generate_job_selector(&mut own, follow);
        assert_eq!(own["metadata"]["labels"], json!({"team":"t"}));
        let mut manual = json!({"metadata":{"name":"j","uid":"u"},"spec":{"manualSelector":true,"selector":{"matchLabels":{"x":"y"}},"template":{}}});
        generate_job_selector(&mut manual, false);
        assert_eq!(manual["spec"]["selector"], json!({"matchLabels":{"x":"y"}}));
    }

    #[test]
    fn cronjob_defaults_do_not_include_job_defaults() {
        let cj = defaulted(
            "CronJob",
            json!({"spec":{"schedule":"* * * * *","jobTemplate":{"spec":{"template":{"spec":{"containers":[{"name":"c","image":"busybox:1"}]}}}}}}),
        );
        let s = &cj["spec"];
        assert_eq!(s["concurrencyPolicy"], "Allow");
        assert_eq!(s["suspend"], false);
        assert_eq!(s["successfulJobsHistoryLimit"], 3);
        assert_eq!(s["failedJobsHistoryLimit"], 1);
        assert!(s["jobTemplate"]["spec"].get("backoffLimit").is_none());
        let pod = &s["jobTemplate"]["spec"]["template"]["spec"];
        assert_eq!(pod["dnsPolicy"], "ClusterFirst");
        assert_eq!(pod["containers"][0]["imagePullPolicy"], "IfNotPresent");
    }

    #[test]
    fn workload_defaults() {
        let ds = defaulted("DaemonSet", json!({"spec":{"template":{"spec":{}}}}));
        assert_eq!(ds["spec"]["revisionHistoryLimit"], 10);
        assert_eq!(
            ds["spec"]["updateStrategy"],
            json!({"type":"RollingUpdate","rollingUpdate":{"maxUnavailable":1,"maxSurge":0}})
        );
        let rs = defaulted("ReplicaSet", json!({"spec":{"template":{"spec":{}}}}));
        assert_eq!(rs["spec"]["replicas"], 1);
        let sts = defaulted(
            "StatefulSet",
            json!({"spec":{"volumeClaimTemplates":[{"metadata":{"name":"d"},"spec":{"accessModes":["ReadWriteOnce"]}}],"template":{"spec":{}}}}),
        );
        assert_eq!(
            sts["spec"]["persistentVolumeClaimRetentionPolicy"],
            json!({"whenDeleted":"Retain","whenScaled":"Retain"})
        );
        let claim = &sts["spec"]["volumeClaimTemplates"][0];
        assert_eq!(claim["spec"]["volumeMode"], "Filesystem");
        assert_eq!(claim["status"], json!({"phase":"Pending"}));
    }

    #[test]
    fn service_defaults_by_type() {
        let ip = defaulted(
            "Service",
            json!({"spec":{"ports":[{"port":80,"targetPort":0}]}}),
        );
        let s = &ip["spec"];
        assert_eq!(s["type"], "ClusterIP");
        assert_eq!(s["internalTrafficPolicy"], "Cluster");
        assert!(s.get("externalTrafficPolicy").is_none());
        assert_eq!(s["ports"][0]["targetPort"], 80);
        assert!(s.get("clusterIP").is_none(), "allocation is not defaulting");
        let lb = defaulted(
            "Service",
            json!({"spec":{"type":"LoadBalancer","sessionAffinity":"ClientIP"}}),
        );
        let s = &lb["spec"];
        assert_eq!(s["externalTrafficPolicy"], "Cluster");
        assert_eq!(s["allocateLoadBalancerNodePorts"], true);
        assert_eq!(
            s["sessionAffinityConfig"],
            json!({"clientIP":{"timeoutSeconds":10800}})
        );
        let ext = defaulted(
            "Service",
            json!({"spec":{"type":"ExternalName","externalName":"x.example"}}),
        );
        assert!(ext["spec"].get("internalTrafficPolicy").is_none());
    }

    #[test]
    fn pod_and_volume_defaults() {
        let pod = defaulted(
            "Pod",
            json!({"spec":{"containers":[{"name":"c","image":"nginx:1",
                "resources":{"limits":{"cpu":"1"}},
                "readinessProbe":{"httpGet":{"port":80}},
                "env":[{"name":"N","valueFrom":{"fieldRef":{"fieldPath":"metadata.name"}}}]}],
              "volumes":[{"name":"scratch"},{"name":"cfg","configMap":{"name":"c"}}]}}),
        );
        let s = &pod["spec"];
        assert_eq!(s["enableServiceLinks"], true);
        assert_eq!(s["restartPolicy"], "Always");
        let c = &s["containers"][0];
        assert_eq!(c["resources"]["requests"], json!({"cpu":"1"}));
        assert_eq!(
            c["readinessProbe"],
            json!({"httpGet":{"port":80,"path":"/","scheme":"HTTP"},"timeoutSeconds":1,"periodSeconds":10,"successThreshold":1,"failureThreshold":3})
        );
        assert_eq!(c["env"][0]["valueFrom"]["fieldRef"]["apiVersion"], "v1");
        assert_eq!(s["volumes"][0]["emptyDir"], json!({}));
        assert_eq!(s["volumes"][1]["configMap"]["defaultMode"], 420);
        // Templates do not get the Pod-only defaults.
        let dep = defaulted(
            "Deployment",
            json!({"spec":{"template":{"spec":{"containers":[]}}}}),
        );
        assert!(
            dep["spec"]["template"]["spec"]
                .get("enableServiceLinks")
                .is_none()
        );
    }

    #[test]
    fn small_kinds() {
        let np = defaulted(
            "NetworkPolicy",
            json!({"spec":{"podSelector":{},"egress":[{"ports":[{"port":53}]}]}}),
        );
        assert_eq!(np["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
        assert_eq!(np["spec"]["egress"][0]["ports"][0]["protocol"], "TCP");
        let only_in = defaulted("NetworkPolicy", json!({"spec":{"podSelector":{}}}));
        assert_eq!(only_in["spec"]["policyTypes"], json!(["Ingress"]));
        let pvc = defaulted(
            "PersistentVolumeClaim",
            json!({"spec":{"accessModes":["ReadWriteOnce"]}}),
        );
        assert_eq!(pvc["spec"]["volumeMode"], "Filesystem");
        assert!(pvc.get("status").is_none(), "status is the strategy's");
        let secret = defaulted("Secret", json!({"data":{}}));
        assert_eq!(secret["type"], "Opaque");
        let merged = defaulted(
            "Secret",
            json!({"data":{"a":"eA==","b":"eA=="},"stringData":{"b":"new","c":"plain"}}),
        );
        assert!(
            merged.get("stringData").is_none(),
            "stringData is never stored"
        );
        assert_eq!(
            merged["data"],
            json!({"a":"eA==","b":"bmV3","c":"cGxhaW4="})
        );
        let ns = defaulted("Namespace", json!({"metadata":{"name":"n"}}));
        assert_eq!(ns["metadata"]["labels"]["kubernetes.io/metadata.name"], "n");
        let rb = defaulted(
            "RoleBinding",
            json!({"roleRef":{"kind":"Role","name":"r"},"subjects":[
                {"kind":"User","name":"u"},{"kind":"ServiceAccount","name":"s","namespace":"n"}]}),
        );
        assert_eq!(rb["roleRef"]["apiGroup"], "rbac.authorization.k8s.io");
        assert_eq!(rb["subjects"][0]["apiGroup"], "rbac.authorization.k8s.io");
        assert!(rb["subjects"][1].get("apiGroup").is_none());
    }
}
