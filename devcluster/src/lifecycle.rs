//! Object lifecycle: create/update preparation (uid, timestamps, generation, status
//! subresource rules), deletion with finalizers and propagation, the namespace and
//! garbage-collection controller, and CRD registration.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::defaults;
use crate::resources::{CustomInfo, Registry, ResourceDef, Subresource};
use crate::status::{ApiError, FieldError};
use crate::store::{Change, Key, Notice, Outcome, Store, new_uid, now_rfc3339};

pub const IMMORTAL_NAMESPACES: &[&str] =
    &["default", "kube-system", "kube-public", "kube-node-lease"];
const CRD_STORAGE: &str = "apiextensions.k8s.io/customresourcedefinitions";
const CRD_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";
const NS_STORAGE: &str = "/namespaces";

const SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1035_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";

pub fn is_dns1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

pub fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

fn is_dns1035_label(s: &str) -> bool {
    is_dns1123_label(s) && s.starts_with(|c: char| c.is_ascii_lowercase())
}

fn meta(obj: &Value) -> Option<&Map<String, Value>> {
    obj.get("metadata").and_then(Value::as_object)
}

pub fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.is_object() {
        *obj = json!({});
    }
    let Value::Object(o) = obj else {
        unreachable!("just made an object")
    };
    let m = o.entry("metadata").or_insert_with(|| json!({}));
    if !m.is_object() {
        *m = json!({});
    }
    match m {
        Value::Object(m) => m,
        _ => unreachable!("just made an object"),
    }
}

pub fn meta_str<'a>(obj: &'a Value, field: &str) -> &'a str {
    meta(obj)
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// The strings of a JSON array (other items skipped); empty when absent or not an array.
pub fn string_list(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn finalizers(obj: &Value) -> Vec<String> {
    string_list(meta(obj).and_then(|m| m.get("finalizers")))
}

fn set_finalizers(obj: &mut Value, f: &[String]) {
    let m = meta_mut(obj);
    if f.is_empty() {
        m.remove("finalizers");
    } else {
        m.insert("finalizers".into(), json!(f));
    }
}

pub fn is_deleting(obj: &Value) -> bool {
    meta(obj).is_some_and(|m| m.contains_key("deletionTimestamp"))
}

/// Name validation on create, as each kind's strategy does it.
pub fn validate_name(def: &ResourceDef, name: &str) -> Result<(), ApiError> {
    let ok_msg = match def.kind.as_str() {
        "Namespace" => (is_dns1123_label(name), LABEL_MSG),
        "Service" => (is_dns1035_label(name), DNS1035_MSG),
        // RBAC names are path segments ("system:controller:x" is valid).
        "Role" | "ClusterRole" | "RoleBinding" | "ClusterRoleBinding" => (
            !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '%']),
            "may not contain '/' or '%'",
        ),
        _ => (is_dns1123_subdomain(name), SUBDOMAIN_MSG),
    };
    if ok_msg.0 {
        return Ok(());
    }
    Err(ApiError::invalid(
        &def.group,
        &def.kind,
        name,
        vec![FieldError::invalid("metadata.name", name, ok_msg.1)],
    ))
}

/// Go's layout for `metav1.MicroTime`, which the real decoder parses with no leniency.
const MICRO_TIME_LAYOUT: &str = "2006-01-02T15:04:05.000000Z07:00";

/// Where a MicroTime string stops matching the layout: None when it parses, else the
/// unparsed rest of the value and the layout element it failed against (Go's error pieces).
fn micro_time_error(v: &str) -> Option<(String, &'static str)> {
    let b = v.as_bytes();
    let digits = |r: std::ops::Range<usize>| {
        b.get(r.clone())
            .is_some_and(|x| x.iter().all(u8::is_ascii_digit))
    };
    let seps = [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')];
    let date_ok = digits(0..4)
        && digits(5..7)
        && digits(8..10)
        && digits(11..13)
        && digits(14..16)
        && digits(17..19)
        && seps.iter().all(|&(i, c)| b.get(i) == Some(&c));
    if !date_ok {
        return Some((v.to_string(), "2006"));
    }
    let rest = &v[19..];
    let frac_ok = rest.len() >= 7
        && rest.as_bytes()[0] == b'.'
        && rest.as_bytes()[1..7].iter().all(u8::is_ascii_digit);
    if !frac_ok {
        return Some((rest.to_string(), ".000000"));
    }
    let zone = &rest[7..];
    let zb = zone.as_bytes();
    let offset_ok = zb.len() == 6
        && (zb[0] == b'+' || zb[0] == b'-')
        && zb[1..3].iter().all(u8::is_ascii_digit)
        && zb[3] == b':'
        && zb[4..6].iter().all(u8::is_ascii_digit);
    if zone == "Z" || offset_ok {
        None
    } else {
        Some((zone.to_string(), "Z07:00"))
    }
}

/// MicroTime fields (Lease `spec.acquireTime`/`spec.renewTime`, Event `eventTime` and
/// `series.lastObservedTime`) must have exactly six fractional digits, or the body does not
/// decode: a 400 with the Go time parser's words.
pub fn validate_micro_times(def: &ResourceDef, obj: &Value) -> Result<(), ApiError> {
    let pointers: &[&str] = match (def.group.as_str(), def.kind.as_str()) {
        ("coordination.k8s.io", "Lease") => &["/spec/acquireTime", "/spec/renewTime"],
        ("" | "events.k8s.io", "Event") => &["/eventTime", "/series/lastObservedTime"],
        _ => return Ok(()),
    };
    for p in pointers {
        let Some(Value::String(v)) = obj.pointer(p) else {
            continue;
        };
        if let Some((rest, elem)) = micro_time_error(v) {
            return Err(ApiError::bad_request(format!(
                "{kind} in version \"{ver}\" cannot be handled as a {kind}: parsing time \"{v}\" as \"{MICRO_TIME_LAYOUT}\": cannot parse \"{rest}\" as \"{elem}\"",
                kind = def.kind,
                ver = def.version,
            )));
        }
    }
    Ok(())
}

/// Labels must be qualified names with valid values.
pub fn validate_labels(def: &ResourceDef, obj: &Value) -> Result<(), ApiError> {
    let Some(labels) = meta(obj).and_then(|m| m.get("labels")) else {
        return Ok(());
    };
    let name = meta_str(obj, "name");
    let Some(labels) = labels.as_object() else {
        return Err(ApiError::bad_request("metadata.labels must be an object"));
    };
    let mut errs = Vec::new();
    for (k, v) in labels {
        let Some(v) = v.as_str() else {
            return Err(ApiError::bad_request(format!(
                "{} in version \"{}\" cannot be handled as a {}: json: cannot unmarshal into Go struct field ObjectMeta.metadata.labels of type string",
                def.kind, def.version, def.kind
            )));
        };
        let sel = format!("{k}={v}");
        if crate::selector::LabelSelector::parse(&sel).is_err() || (v.is_empty() && k.is_empty()) {
            errs.push(FieldError::invalid(
                "metadata.labels",
                v,
                "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
            ));
        }
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(&def.group, &def.kind, name, errs))
    }
}

/// Server-set fields on create. `name` and `namespace` are already decided.
pub fn prepare_create(def: &ResourceDef, obj: &mut Value) {
    let m = meta_mut(obj);
    m.remove("resourceVersion");
    m.remove("deletionTimestamp");
    m.remove("deletionGracePeriodSeconds");
    m.remove("selfLink");
    m.insert("uid".into(), json!(new_uid()));
    m.insert("creationTimestamp".into(), json!(now_rfc3339()));
    if def.has_generation {
        m.insert("generation".into(), json!(1));
    } else {
        m.remove("generation");
    }
    let Some(o) = obj.as_object_mut() else {
        return;
    };
    if def.kind == "Namespace" && def.group.is_empty() {
        o.insert("spec".into(), json!({"finalizers":["kubernetes"]}));
        o.insert("status".into(), json!({"phase":"Active"}));
    } else if def.has_status_subresource {
        if def.is_custom() {
            o.remove("status");
        } else {
            let initial = match def.kind.as_str() {
                "Pod" | "PersistentVolumeClaim" => json!({"phase":"Pending"}),
                "Service" => json!({"loadBalancer":{}}),
                _ => json!({}),
            };
            if def.kind != "CustomResourceDefinition" {
                o.insert("status".into(), initial);
            }
        }
    }
    let labels_follow_template = defaults::job_labels_follow_template(def, obj);
    defaults::apply_defaults(def, obj);
    if def.group == "batch" && def.kind == "Job" {
        defaults::generate_job_selector(obj, labels_follow_template);
    }
    if def.group == "apiextensions.k8s.io" && def.kind == "CustomResourceDefinition" {
        let mut f = finalizers(obj);
        if !f.iter().any(|x| x == CRD_FINALIZER) {
            f.push(CRD_FINALIZER.into());
        }
        set_finalizers(obj, &f);
    }
}

fn without(obj: &Value, fields: &[&str]) -> Value {
    let mut v = obj.clone();
    if let Some(o) = v.as_object_mut() {
        for f in fields {
            o.remove(*f);
        }
    }
    v
}

/// Turn a client's new object into the stored one, given the stored `old`.
/// `sub` is the subresource written (`status`), if any.
pub fn prepare_update(
    def: &ResourceDef,
    old: &Value,
    mut new: Value,
    sub: Option<&str>,
) -> Result<Change, ApiError> {
    if sub == Some("status") {
        // Only .status changes through /status.
        let mut out = old.clone();
        if let Some(o) = out.as_object_mut() {
            match new.get("status") {
                Some(s) => {
                    o.insert("status".into(), s.clone());
                }
                None => {
                    o.remove("status");
                }
            }
        }
        return Ok(Change::Put(out));
    }
    let old_meta = meta(old).cloned().unwrap_or_default();
    {
        let m = meta_mut(&mut new);
        for f in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "name",
            "namespace",
        ] {
            match old_meta.get(f) {
                Some(v) => {
                    m.insert(f.into(), v.clone());
                }
                None => {
                    m.remove(f);
                }
            }
        }
        m.remove("selfLink");
    }
    if def.has_status_subresource
        && let Some(o) = new.as_object_mut()
    {
        match old.get("status") {
            Some(s) => {
                o.insert("status".into(), s.clone());
            }
            None => {
                o.remove("status");
            }
        }
    }
    defaults::apply_defaults(def, &mut new);
    if def.kind == "Namespace" && def.group.is_empty() {
        let name = json!(meta_str(old, "name"));
        let m = meta_mut(&mut new);
        let labels = m.entry("labels").or_insert_with(|| json!({}));
        if let Some(l) = labels.as_object_mut() {
            l.insert("kubernetes.io/metadata.name".into(), name);
        }
        if let Some(o) = new.as_object_mut() {
            let spec = old.get("spec").cloned().unwrap_or_else(|| json!({}));
            o.insert("spec".into(), spec);
        }
    }
    if is_deleting(old) {
        let before: HashSet<String> = finalizers(old).into_iter().collect();
        let added: Vec<String> = finalizers(&new)
            .into_iter()
            .filter(|f| !before.contains(f))
            .collect();
        if !added.is_empty() {
            return Err(ApiError::invalid(
                &def.group,
                &def.kind,
                meta_str(old, "name"),
                vec![FieldError::forbidden(
                    "metadata.finalizers",
                    &format!(
                        "no new finalizers can be added if the object is being deleted, found new finalizers {added:?}"
                    ),
                )],
            ));
        }
    }
    if def.has_generation {
        let ignore: &[&str] = if def.has_status_subresource {
            &["metadata", "status"]
        } else {
            &["metadata"]
        };
        if without(old, ignore) != without(&new, ignore) {
            let g = old_meta
                .get("generation")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            meta_mut(&mut new).insert("generation".into(), json!(g + 1));
        }
    }
    if is_deleting(&new) && finalizers(&new).is_empty() && !namespace_spec_finalizers(def, &new) {
        return Ok(Change::Remove(new));
    }
    Ok(Change::Put(new))
}

fn namespace_spec_finalizers(def: &ResourceDef, obj: &Value) -> bool {
    def.kind == "Namespace"
        && def.group.is_empty()
        && obj
            .pointer("/spec/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty())
}

/// DeleteOptions from the body and query.
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    pub propagation: Option<String>,
    pub dry_run: bool,
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
}

/// Decide what a DELETE does to `old`.
pub fn delete_change(
    def: &ResourceDef,
    old: &Value,
    opts: &DeleteOptions,
) -> Result<Change, ApiError> {
    let name = meta_str(old, "name");
    if let Some(u) = &opts.precondition_uid
        && u != meta_str(old, "uid")
    {
        return Err(ApiError::conflict(
            &def.group,
            &def.plural,
            name,
            &format!(
                "Precondition failed: UID in precondition: {u}, UID in object meta: {}",
                meta_str(old, "uid")
            ),
        ));
    }
    if let Some(rv) = &opts.precondition_rv
        && rv != meta_str(old, "resourceVersion")
    {
        return Err(ApiError::conflict(
            &def.group,
            &def.plural,
            name,
            &format!(
                "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                meta_str(old, "resourceVersion")
            ),
        ));
    }
    let is_ns = def.kind == "Namespace" && def.group.is_empty();
    if is_ns && IMMORTAL_NAMESPACES.contains(&name) {
        return Err(ApiError::forbidden(
            "",
            "namespaces",
            name,
            "this namespace may not be deleted",
        ));
    }
    let mut f = finalizers(old);
    let extra = match opts.propagation.as_deref() {
        Some("Foreground") if !is_ns => Some("foregroundDeletion"),
        Some("Orphan") if !is_ns => Some("orphan"),
        _ => None,
    };
    if let Some(x) = extra
        && !f.iter().any(|y| y == x)
    {
        f.push(x.to_string());
    }
    if is_deleting(old) {
        if f == finalizers(old) {
            return Ok(Change::Keep(old.clone()));
        }
        let mut new = old.clone();
        set_finalizers(&mut new, &f);
        return Ok(Change::Put(new));
    }
    if f.is_empty() && !is_ns {
        return Ok(Change::Remove(old.clone()));
    }
    let mut new = old.clone();
    set_finalizers(&mut new, &f);
    let m = meta_mut(&mut new);
    m.insert("deletionTimestamp".into(), json!(now_rfc3339()));
    m.insert("deletionGracePeriodSeconds".into(), json!(0));
    if def.has_generation {
        let g = m.get("generation").and_then(Value::as_i64).unwrap_or(0);
        m.insert("generation".into(), json!(g + 1));
    }
    if is_ns && let Some(o) = new.as_object_mut() {
        o.insert("status".into(), json!({"phase":"Terminating"}));
    }
    Ok(Change::Put(new))
}

/// Delete through the store, keeping the CRD registry in step.
pub fn delete(
    store: &Store,
    registry: &Registry,
    def: &ResourceDef,
    key: &Key,
    opts: &DeleteOptions,
) -> Result<Outcome, ApiError> {
    let out = store.mutate(key, opts.dry_run, |old| match old {
        None => Err(ApiError::not_found(&def.group, &def.plural, &key.name)),
        Some(o) => delete_change(def, o, opts),
    })?;
    if out.removed && out.changed && def.storage == CRD_STORAGE {
        registry.set_custom(&key.name, vec![]);
    }
    Ok(out)
}

fn remove_finalizer(store: &Store, registry: &Registry, def: &ResourceDef, key: &Key, fin: &str) {
    let res = store.mutate(key, false, |old| {
        let Some(old) = old else {
            return Err(ApiError::not_found("", "", ""));
        };
        let mut new = old.clone();
        let f: Vec<String> = finalizers(old).into_iter().filter(|x| x != fin).collect();
        set_finalizers(&mut new, &f);
        if def.kind == "Namespace"
            && def.group.is_empty()
            && fin == "kubernetes"
            && let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut)
        {
            spec.insert("finalizers".into(), json!([]));
        }
        if is_deleting(&new) && f.is_empty() && !namespace_spec_finalizers(def, &new) {
            Ok(Change::Remove(new))
        } else {
            Ok(Change::Put(new))
        }
    });
    if let Ok(o) = res
        && o.removed
        && def.storage == CRD_STORAGE
    {
        registry.set_custom(&key.name, vec![]);
    }
}

fn def_for(registry: &Registry, storage: &str) -> Option<Arc<ResourceDef>> {
    registry.find_by_storage(storage).into_iter().next()
}

/// One pass of the namespace, garbage-collection and CRD-cleanup controllers. Works from the
/// store's indexes (objects being deleted, owner uid -> dependents, objects whose owners are
/// gone), so an idle pass costs nothing however many objects are stored.
pub fn reconcile(store: &Store, registry: &Registry) {
    let background = DeleteOptions {
        propagation: Some("Background".into()),
        ..Default::default()
    };
    for (key, obj) in &store.deleting() {
        let Some(def) = def_for(registry, &key.storage) else {
            continue;
        };
        let uid = meta_str(obj, "uid");
        let fins = finalizers(obj);
        if key.storage == NS_STORAGE {
            let contents = store.keys_in_namespace(&key.name);
            for k in &contents {
                if let Some(d) = def_for(registry, &k.storage) {
                    let _ = delete(store, registry, &d, k, &background);
                }
            }
            if contents.is_empty() && namespace_spec_finalizers(&def, obj) {
                remove_finalizer(store, registry, &def, key, "kubernetes");
            }
        }
        if fins.iter().any(|f| f == "foregroundDeletion") {
            let deps = if uid.is_empty() {
                Vec::new()
            } else {
                store.dependents(uid)
            };
            let fg = DeleteOptions {
                propagation: Some("Foreground".into()),
                ..Default::default()
            };
            for (k, v) in &deps {
                if !is_deleting(v)
                    && let Some(d) = def_for(registry, &k.storage)
                {
                    let _ = delete(store, registry, &d, k, &fg);
                }
            }
            if deps.is_empty() {
                remove_finalizer(store, registry, &def, key, "foregroundDeletion");
            }
        }
        if fins.iter().any(|f| f == "orphan") {
            let deps = if uid.is_empty() {
                Vec::new()
            } else {
                store.dependents(uid)
            };
            for (k, v) in &deps {
                let _ = store.mutate(k, false, |cur| {
                    let Some(cur) = cur else {
                        return Ok(Change::Keep(Value::clone(v)));
                    };
                    let mut n = cur.clone();
                    strip_owner(&mut n, |u| u == uid);
                    Ok(Change::Put(n))
                });
            }
            remove_finalizer(store, registry, &def, key, "orphan");
        }
        if key.storage == CRD_STORAGE && fins.iter().any(|f| f == CRD_FINALIZER) {
            let crs = store.keys(&crd_storage(obj), None);
            for k in &crs {
                if let Some(d) = def_for(registry, &k.storage) {
                    let _ = delete(store, registry, &d, k, &background);
                }
            }
            if crs.is_empty() {
                registry.set_custom(&key.name, vec![]);
                remove_finalizer(store, registry, &def, key, CRD_FINALIZER);
            }
        }
    }
    for orphan in store.orphans() {
        let Some(def) = def_for(registry, &orphan.key.storage) else {
            continue;
        };
        let (key, obj) = (&orphan.key, &orphan.object);
        if orphan.alive == 0 {
            if !is_deleting(obj) {
                let _ = delete(store, registry, &def, key, &background);
            }
        } else {
            let dead = &orphan.dead;
            let _ = store.mutate(key, false, |cur| {
                let Some(cur) = cur else {
                    return Ok(Change::Keep(Value::clone(obj)));
                };
                let mut n = cur.clone();
                strip_owner(&mut n, |u| dead.iter().any(|d| d == u));
                Ok(Change::Put(n))
            });
        }
    }
}

fn strip_owner(obj: &mut Value, drop: impl Fn(&str) -> bool) {
    let m = meta_mut(obj);
    if let Some(refs) = m.get_mut("ownerReferences").and_then(Value::as_array_mut) {
        refs.retain(|r| !r.get("uid").and_then(Value::as_str).is_some_and(&drop));
        if refs.is_empty() {
            m.remove("ownerReferences");
        }
    }
}

/// Background controllers: react to every change, and re-check periodically.
pub async fn run_controllers(store: Arc<Store>, registry: Arc<Registry>) {
    let mut rx = store.subscribe();
    loop {
        reconcile(&store, &registry);
        tokio::select! {
            r = rx.recv() => {
                if let Err(tokio::sync::broadcast::error::RecvError::Closed) = r {
                    return;
                }
                // Coalesce bursts into one pass.
                while let Ok(Notice::Event(_) | Notice::Compacted) = rx.try_recv() {}
            }
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

/// The built-in namespaces every cluster has.
pub fn seed(store: &Store, registry: &Registry) {
    let Some(def) = registry.find("", "v1", "namespaces") else {
        return;
    };
    for ns in IMMORTAL_NAMESPACES {
        let mut obj = json!({"kind":"Namespace","apiVersion":"v1","metadata":{"name":ns}});
        prepare_create(&def, &mut obj);
        let _ = store.mutate(&Key::new(&def.storage, "", ns), false, |_| {
            Ok(Change::Put(obj))
        });
    }
}

fn crd_storage(crd: &Value) -> String {
    let group = crd
        .pointer("/spec/group")
        .and_then(Value::as_str)
        .unwrap_or("");
    let plural = crd
        .pointer("/spec/names/plural")
        .and_then(Value::as_str)
        .unwrap_or("");
    format!("{group}/{plural}")
}

/// Validate a CRD and fill its status (names accepted, established).
pub fn prepare_crd(crd: &mut Value) -> Result<(), ApiError> {
    let name = meta_str(crd, "name").to_string();
    let s = |p: &str| {
        crd.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let (group, plural, kind, scope) = (
        s("/spec/group"),
        s("/spec/names/plural"),
        s("/spec/names/kind"),
        s("/spec/scope"),
    );
    let mut errs = Vec::new();
    if name != format!("{plural}.{group}") {
        errs.push(FieldError::invalid(
            "metadata.name",
            &name,
            "must be spec.names.plural+\".\"+spec.group",
        ));
    }
    if !group.contains('.') {
        errs.push(FieldError::invalid(
            "spec.group",
            &group,
            "should be a domain with at least one dot",
        ));
    }
    if plural.is_empty() || !is_dns1123_label(&plural) {
        errs.push(FieldError::required("spec.names.plural", ""));
    }
    if kind.is_empty() {
        errs.push(FieldError::required("spec.names.kind", ""));
    }
    if scope != "Namespaced" && scope != "Cluster" {
        errs.push(FieldError::invalid(
            "spec.scope",
            &scope,
            "must be Namespaced or Cluster",
        ));
    }
    let versions = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let storage: Vec<&Value> = versions
        .iter()
        .filter(|v| v.get("storage") == Some(&json!(true)))
        .collect();
    if storage.len() != 1 {
        errs.push(FieldError::invalid(
            "spec.versions",
            "",
            "must have exactly one version marked as storage version",
        ));
    }
    for (i, v) in versions.iter().enumerate() {
        if v.pointer("/schema/openAPIV3Schema").is_none() {
            errs.push(FieldError::required(
                &format!("spec.versions[{i}].schema.openAPIV3Schema"),
                "schemas are required",
            ));
        }
    }
    if !errs.is_empty() {
        return Err(ApiError::invalid(
            "apiextensions.k8s.io",
            "CustomResourceDefinition",
            &name,
            errs,
        ));
    }
    let storage_name = storage
        .first()
        .and_then(|v| v.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let mut names = crd
        .pointer("/spec/names")
        .cloned()
        .unwrap_or_else(|| json!({}));
    if let Some(n) = names.as_object_mut() {
        n.entry("singular")
            .or_insert_with(|| json!(kind.to_lowercase()));
        n.entry("listKind")
            .or_insert_with(|| json!(format!("{kind}List")));
    }
    let mut stored: Vec<Value> = crd
        .pointer("/status/storedVersions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if !stored.contains(&json!(storage_name)) {
        stored.push(json!(storage_name));
    }
    let now = now_rfc3339();
    let cond = |t: &str, reason: &str, msg: &str| json!({"type":t,"status":"True","lastTransitionTime":now,"reason":reason,"message":msg});
    if let Some(o) = crd.as_object_mut() {
        o.insert(
            "status".into(),
            json!({
                "conditions":[
                    cond("NamesAccepted","NoConflicts","no conflicts found"),
                    cond("Established","InitialNamesAccepted","the initial names have been accepted"),
                ],
                "acceptedNames": names,
                "storedVersions": stored,
            }),
        );
    }
    Ok(())
}

/// The descriptors a CRD serves (one per served version).
pub fn crd_defs(crd: &Value) -> Vec<ResourceDef> {
    let s = |p: &str| {
        crd.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let strs = |p: &str| string_list(crd.pointer(p));
    let group = s("/spec/group");
    let kind = s("/spec/names/kind");
    let plural = s("/spec/names/plural");
    let mut singular = s("/spec/names/singular");
    if singular.is_empty() {
        singular = kind.to_lowercase();
    }
    let mut list_kind = s("/spec/names/listKind");
    if list_kind.is_empty() {
        list_kind = format!("{kind}List");
    }
    let namespaced = s("/spec/scope") == "Namespaced";
    let versions = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut out = Vec::new();
    // Served versions, storage version first so it is the preferred one.
    let mut ordered: Vec<&Value> = versions
        .iter()
        .filter(|v| v.get("storage") == Some(&json!(true)))
        .collect();
    ordered.extend(
        versions
            .iter()
            .filter(|v| v.get("storage") != Some(&json!(true))),
    );
    for v in ordered {
        if v.get("served") == Some(&json!(false)) {
            continue;
        }
        let version = v
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let mut subresources = Vec::new();
        let has_status = v.pointer("/subresources/status").is_some();
        if has_status {
            subresources.push(Subresource {
                name: "status".into(),
                group: group.clone(),
                version: version.clone(),
                kind: kind.clone(),
                verbs: vec!["get".into(), "patch".into(), "update".into()],
            });
        }
        if v.pointer("/subresources/scale").is_some() {
            subresources.push(Subresource {
                name: "scale".into(),
                group: "autoscaling".into(),
                version: "v1".into(),
                kind: "Scale".into(),
                verbs: vec!["get".into(), "patch".into(), "update".into()],
            });
        }
        out.push(ResourceDef {
            group: group.clone(),
            version,
            kind: kind.clone(),
            plural: plural.clone(),
            singular: singular.clone(),
            namespaced,
            short_names: strs("/spec/names/shortNames"),
            categories: strs("/spec/names/categories"),
            verbs: [
                "delete",
                "deletecollection",
                "get",
                "list",
                "patch",
                "create",
                "update",
                "watch",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            subresources,
            has_generation: true,
            has_status_subresource: has_status,
            returns_deleted_object: false,
            list_kind: list_kind.clone(),
            storage: format!("{group}/{plural}"),
            custom: Some(CustomInfo {
                crd_name: meta_str(crd, "name").to_string(),
                printer_columns: v
                    .get("additionalPrinterColumns")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
                schema: v.pointer("/schema/openAPIV3Schema").cloned(),
            }),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::resources::builtin_def as def;

    #[test]
    fn names_follow_kind_rules() {
        assert_eq!(micro_time_error("2026-11-26T06:32:38.123456Z"), None);
        assert_eq!(micro_time_error("2026-11-26T06:32:38.123456+01:00"), None);
        assert_eq!(
            micro_time_error("2026-11-26T06:32:38Z"),
            Some(("Z".into(), ".000000"))
        );
        assert_eq!(
            micro_time_error("2026-11-26T06:32:38.123Z"),
            Some((".123Z".into(), ".000000"))
        );
        assert_eq!(
            micro_time_error("2026-11-26T06:32:38.1234567Z"),
            Some(("7Z".into(), "Z07:00"))
        );
        assert_eq!(
            micro_time_error("yesterday"),
            Some(("yesterday".into(), "2006"))
        );
        assert!(validate_name(&def("ConfigMap"), "a.b-c").is_ok());
        assert!(validate_name(&def("ConfigMap"), "Bad_Name").is_err());
        assert!(validate_name(&def("Namespace"), "a.b").is_err());
        assert!(validate_name(&def("Service"), "1abc").is_err());
        assert!(validate_name(&def("ClusterRole"), "system:controller:x").is_ok());
    }

    #[test]
    fn generation_moves_on_spec_only() {
        let d = def("Deployment");
        let mut old = json!({"metadata":{"name":"w","generation":1,"uid":"u"},"spec":{"replicas":1},"status":{}});
        prepare_create(&d, &mut old);
        let g = |c: Change| match c {
            Change::Put(v) => v.pointer("/metadata/generation").and_then(Value::as_i64),
            _ => None,
        };
        let labels = json!({"metadata":{"name":"w","labels":{"a":"b"}},"spec":{"replicas":1}});
        assert_eq!(
            prepare_update(&d, &old, labels, None).ok().and_then(g),
            Some(1)
        );
        let spec = json!({"metadata":{"name":"w"},"spec":{"replicas":2}});
        assert_eq!(
            prepare_update(&d, &old, spec, None).ok().and_then(g),
            Some(2)
        );
        let status = json!({"status":{"replicas":3}});
        let st = prepare_update(&d, &old, status, Some("status")).ok();
        assert!(
            matches!(st, Some(Change::Put(ref v)) if v["status"]["replicas"] == 3 && v["metadata"]["generation"] == 1)
        );
    }

    #[test]
    fn finalizers_defer_deletion() {
        let d = def("ConfigMap");
        let obj = json!({"metadata":{"name":"c","finalizers":["x/y"]}});
        let c = delete_change(&d, &obj, &DeleteOptions::default()).ok();
        let Some(Change::Put(marked)) = c else {
            panic!("expected a pending delete")
        };
        assert!(is_deleting(&marked));
        let cleared = json!({"metadata":{"name":"c"}});
        assert!(matches!(
            prepare_update(&d, &marked, cleared, None),
            Ok(Change::Remove(_))
        ));
        let more = json!({"metadata":{"name":"c","finalizers":["x/y","z/w"]}});
        assert!(prepare_update(&d, &marked, more, None).is_err());
    }

    #[test]
    fn crd_is_validated_and_established() {
        let mut crd = json!({"metadata":{"name":"widgets.example.com"},"spec":{"group":"example.com","scope":"Namespaced",
            "names":{"plural":"widgets","kind":"Widget"},
            "versions":[{"name":"v1","served":true,"storage":true,"schema":{"openAPIV3Schema":{"type":"object"}},"subresources":{"status":{}}}]}});
        assert!(prepare_crd(&mut crd).is_ok());
        assert_eq!(crd["status"]["conditions"][1]["type"], "Established");
        let defs = crd_defs(&crd);
        assert_eq!(defs.len(), 1);
        assert!(defs[0].has_status_subresource && defs[0].namespaced);
        let mut bad =
            json!({"metadata":{"name":"x"},"spec":{"group":"nodot","names":{},"versions":[]}});
        assert!(prepare_crd(&mut bad).is_err());
    }
}
