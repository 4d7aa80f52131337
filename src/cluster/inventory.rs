//! What an Application owns: the inventory of applied objects kept in its status, the
//! label and annotation stamped on every object it applies, and the ownership check that
//! refuses an object another Application already manages.
//!
//! Ownership is decided by the annotation [`APPLICATION_ANNOTATION`] alone. The label
//! [`MANAGED_BY_LABEL`] is there for label-filtered watches and for humans; operators copy
//! labels onto objects they create, so a label never makes an object ours, and prune never
//! starts from a label query (it starts from the previous inventory, see
//! [`crate::cluster::prune`]).
//!
//! The inventory entry type is [`InventoryEntry`] from the Application's status. A list of
//! entries is kept sorted and without duplicates ([`normalize`]) so that status does not
//! change when only the render order did.

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use kube::api::{Api, ApiResource, DynamicObject};
use kube::core::GroupVersionKind;
use kube::discovery::{ApiCapabilities, Scope};
use serde_json::Value;

pub use crate::controller::application::InventoryEntry;
use crate::render::RenderedObject;
use crate::sops::tree::{MapItem, Node};

/// The label every applied object carries, with the value [`MANAGED_BY_VALUE`].
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// The value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY_VALUE: &str = "lockstep";
/// The annotation naming the Application that manages an object: `NS/NAME`.
pub const APPLICATION_ANNOTATION: &str = "lockstep.dev/application";
/// `lockstep.dev/prune: disabled` on a live object keeps prune from deleting it.
pub const PRUNE_ANNOTATION: &str = "lockstep.dev/prune";
/// The value of [`PRUNE_ANNOTATION`] that protects an object.
pub const PRUNE_DISABLED: &str = "disabled";
/// On the Application: the digest of the one over-budget prune someone approved.
pub const APPROVE_PRUNE_ANNOTATION: &str = "lockstep.dev/approve-prune";

/// The value of [`APPLICATION_ANNOTATION`] for an Application.
pub fn application_id(app_namespace: &str, app_name: &str) -> String {
    format!("{app_namespace}/{app_name}")
}

/// Adds the managed-by label and the Application annotation to a rendered object's
/// document, creating `metadata`, `labels` and `annotations` when absent. An existing value
/// under either key is replaced: what lockstep applies, it manages.
pub fn stamp(doc: &mut Node, app_namespace: &str, app_name: &str) {
    let Some(root) = doc.as_map_mut() else {
        return;
    };
    let metadata = map_entry(root, "metadata");
    set_str(
        map_entry(metadata, "labels"),
        MANAGED_BY_LABEL,
        MANAGED_BY_VALUE,
    );
    set_str(
        map_entry(metadata, "annotations"),
        APPLICATION_ANNOTATION,
        &application_id(app_namespace, app_name),
    );
}

/// The map under `key`, made (or made a map, when it was `null` or another type) if needed.
fn map_entry<'a>(items: &'a mut Vec<MapItem>, key: &str) -> &'a mut Vec<MapItem> {
    let pos = items
        .iter()
        .position(|i| matches!(i, MapItem::Entry(k, _) if k == key));
    let idx = match pos {
        Some(i) => i,
        None => {
            items.push(MapItem::Entry(key.to_owned(), Node::map()));
            items.len() - 1
        }
    };
    match &mut items[idx] {
        MapItem::Entry(_, node) => {
            if node.as_map().is_none() {
                *node = Node::map();
            }
            match node {
                Node::Map(m) => m,
                // Just made a map above.
                _ => unreachable!("node was replaced by a map"),
            }
        }
        MapItem::Comment(_) => unreachable!("position matched an entry"),
    }
}

fn set_str(items: &mut Vec<MapItem>, key: &str, value: &str) {
    for item in items.iter_mut() {
        if let MapItem::Entry(k, v) = item
            && k == key
        {
            *v = Node::str(value);
            return;
        }
    }
    items.push(MapItem::Entry(key.to_owned(), Node::str(value)));
}

/// The inventory entry of a rendered object, from its apiVersion, kind, namespace and name.
/// The render stage has already put namespaced objects into their namespace.
pub fn entry_of(obj: &RenderedObject) -> InventoryEntry {
    let (group, version) = split_api_version(obj.api_version());
    InventoryEntry {
        group: group.to_owned(),
        kind: obj.kind().to_owned(),
        namespace: obj.namespace().map(str::to_owned),
        name: obj.name().to_owned(),
        version: version.to_owned(),
    }
}

/// An entry's apiVersion: `apps/v1`, or `v1` for the core group (the inverse of
/// [`split_api_version`]).
pub fn api_version_of(entry: &InventoryEntry) -> String {
    if entry.group.is_empty() {
        entry.version.clone()
    } else {
        format!("{}/{}", entry.group, entry.version)
    }
}

/// `apps/v1` -> (`apps`, `v1`); `v1` -> (``, `v1`).
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    }
}

/// How an object reads to humans in errors and status: `Deployment.apps payments/web`,
/// `ConfigMap payments/settings`, `Namespace payments`.
pub fn describe(entry: &InventoryEntry) -> String {
    Described(entry).to_string()
}

struct Described<'a>(&'a InventoryEntry);

impl fmt::Display for Described<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = self.0;
        f.write_str(&e.kind)?;
        if !e.group.is_empty() {
            write!(f, ".{}", e.group)?;
        }
        match &e.namespace {
            Some(ns) => write!(f, " {ns}/{}", e.name),
            None => write!(f, " {}", e.name),
        }
    }
}

/// Sorts and removes duplicates: the stable form kept in status.
pub fn normalize(entries: &mut Vec<InventoryEntry>) {
    entries.sort();
    entries.dedup();
}

/// The identity of an object: group, kind, namespace and name. The version is only how it
/// was written; a manifest moving to a newer apiVersion is the same object.
pub fn same_object(a: &InventoryEntry, b: &InventoryEntry) -> bool {
    identity(a) == identity(b)
}

fn identity(e: &InventoryEntry) -> (&str, &str, Option<&str>, &str) {
    (&e.group, &e.kind, e.namespace.as_deref(), &e.name)
}

/// The entries of `a` whose object is not in `b` (compared by [`same_object`], so a version
/// change is not a removal), sorted, without duplicates.
pub fn difference(a: &[InventoryEntry], b: &[InventoryEntry]) -> Vec<InventoryEntry> {
    let b: BTreeSet<_> = b.iter().map(identity).collect();
    let mut out: Vec<InventoryEntry> = a
        .iter()
        .filter(|e| !b.contains(&identity(e)))
        .cloned()
        .collect();
    normalize(&mut out);
    out
}

/// The entries of `a` and `b`, sorted, without duplicates.
pub fn union(a: &[InventoryEntry], b: &[InventoryEntry]) -> Vec<InventoryEntry> {
    let mut out: Vec<InventoryEntry> = a.iter().chain(b).cloned().collect();
    normalize(&mut out);
    out
}

/// Who manages a live object, from its [`APPLICATION_ANNOTATION`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ownership {
    /// No Application annotation (created by hand, or by someone else).
    Unowned,
    /// Managed by this Application.
    Owned,
    /// Managed by another Application, named `NS/NAME`.
    OwnedByOther(String),
}

/// Who manages a live object. `live_metadata` is the object's `metadata` (a whole object is
/// accepted too). Only the annotation counts; the label alone does not make an object ours.
pub fn ownership(live_metadata: &Value, app_namespace: &str, app_name: &str) -> Ownership {
    let meta = match live_metadata.get("metadata") {
        Some(m) if m.is_object() => m,
        _ => live_metadata,
    };
    match meta
        .get("annotations")
        .and_then(|a| a.get(APPLICATION_ANNOTATION))
        .and_then(Value::as_str)
    {
        None | Some("") => Ownership::Unowned,
        Some(v) if v == application_id(app_namespace, app_name) => Ownership::Owned,
        Some(v) => Ownership::OwnedByOther(v.to_owned()),
    }
}

/// True when a live object carries `lockstep.dev/prune: disabled` (metadata or whole object).
pub fn prune_disabled(live_metadata: &Value) -> bool {
    let meta = match live_metadata.get("metadata") {
        Some(m) if m.is_object() => m,
        _ => live_metadata,
    };
    meta.get("annotations")
        .and_then(|a| a.get(PRUNE_ANNOTATION))
        .and_then(Value::as_str)
        .is_some_and(|v| v.eq_ignore_ascii_case(PRUNE_DISABLED))
}

/// An object this Application would apply is already managed by another one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{object} is managed by Application {other_app}; Application {this_app} will not take it over \
     (remove it from one of the two, or delete the {annotation} annotation on the object to hand it over)",
    annotation = APPLICATION_ANNOTATION
)]
pub struct OwnershipConflict {
    /// The object, as [`describe`] writes it.
    pub object: String,
    /// The Application that manages it (`NS/NAME`).
    pub other_app: String,
    /// The Application that wanted it (`NS/NAME`).
    pub this_app: String,
}

/// Why [`check_ownership`] refused.
#[derive(Debug, thiserror::Error)]
pub enum OwnershipCheckError {
    /// One or more objects are managed by other Applications (sorted by object; never empty).
    #[error("{}", conflicts_text(.0))]
    Conflict(Vec<OwnershipConflict>),
    /// The live object could not be read (fails closed: nothing is applied).
    #[error("cannot read {object} to check who manages it: {message}")]
    Api {
        object: String,
        /// HTTP status when the API server answered.
        code: Option<u16>,
        /// What went wrong; for Secrets only the status code and reason.
        message: String,
    },
}

fn conflicts_text(conflicts: &[OwnershipConflict]) -> String {
    match conflicts {
        [] => "objects are managed by other Applications".to_owned(),
        [one] => one.to_string(),
        [first, rest @ ..] => format!(
            "{first} (and {} more objects managed by other Applications)",
            rest.len()
        ),
    }
}

/// Looks up the live objects of the desired set through the given (impersonated) client and
/// refuses any that another Application manages. One metadata-only GET per object; objects
/// that do not exist yet are fine, as are objects nobody manages (apply adopts them).
///
/// To stay quiet on an unchanged round, pass only the objects new to this Application
/// (`difference(desired, previous_inventory)`): those already in the inventory were checked
/// when they were first applied and carry this Application's annotation since.
pub async fn check_ownership(
    client: &kube::Client,
    objects: &[InventoryEntry],
    app_namespace: &str,
    app_name: &str,
) -> Result<(), OwnershipCheckError> {
    check_ownership_with(
        client,
        &PinnedDiscovery::default(),
        objects,
        app_namespace,
        app_name,
    )
    .await
}

/// [`check_ownership`] with the caller's discovery (e.g. the shared discovery cache).
pub async fn check_ownership_with<L: ApiLookup + Sync>(
    client: &kube::Client,
    lookup: &L,
    objects: &[InventoryEntry],
    app_namespace: &str,
    app_name: &str,
) -> Result<(), OwnershipCheckError> {
    let mut sorted: Vec<InventoryEntry> = objects.to_vec();
    normalize(&mut sorted);
    let mut conflicts = Vec::new();
    for entry in &sorted {
        let api_err = |e: &kube::Error| OwnershipCheckError::Api {
            object: describe(entry),
            code: error_code(e),
            message: error_text(entry, e),
        };
        let api = lookup
            .api_for(client, entry)
            .await
            .map_err(|e| api_err(&e))?;
        let Some(live) = api
            .get_metadata_opt(&entry.name)
            .await
            .map_err(|e| api_err(&e))?
        else {
            continue;
        };
        let meta = annotations_value(&live.metadata);
        if let Ownership::OwnedByOther(other) = ownership(&meta, app_namespace, app_name) {
            conflicts.push(OwnershipConflict {
                object: describe(entry),
                other_app: other,
                this_app: application_id(app_namespace, app_name),
            });
        }
    }
    if conflicts.is_empty() {
        Ok(())
    } else {
        Err(OwnershipCheckError::Conflict(conflicts))
    }
}

/// `{"annotations": {...}}` of a live object: all [`ownership`] and [`prune_disabled`] read,
/// without copying the rest of its metadata (managed fields can be large).
pub(crate) fn annotations_value(meta: &kube::core::ObjectMeta) -> Value {
    let annotations: serde_json::Map<String, Value> = meta
        .annotations
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    let mut out = serde_json::Map::new();
    out.insert("annotations".to_owned(), Value::Object(annotations));
    Value::Object(out)
}

/// Finds the REST endpoint of an inventory entry. The shared discovery cache implements
/// this too; [`PinnedDiscovery`] is the simple one-request-per-kind stand-in.
pub trait ApiLookup {
    /// The dynamic API for the entry's kind, in its namespace when the kind is namespaced.
    fn api_for(
        &self,
        client: &kube::Client,
        entry: &InventoryEntry,
    ) -> impl std::future::Future<Output = Result<Api<DynamicObject>, kube::Error>> + Send;
}

/// Group, version, kind.
type KindKey = (String, String, String);

/// Discovery of one group/version/kind per request ([`kube::discovery::pinned_kind`]),
/// remembered for the lifetime of this value (one prune or one ownership check).
#[derive(Default)]
pub struct PinnedDiscovery {
    seen: tokio::sync::Mutex<HashMap<KindKey, (ApiResource, ApiCapabilities)>>,
}

impl ApiLookup for PinnedDiscovery {
    async fn api_for(
        &self,
        client: &kube::Client,
        entry: &InventoryEntry,
    ) -> Result<Api<DynamicObject>, kube::Error> {
        let key = (
            entry.group.clone(),
            entry.version.clone(),
            entry.kind.clone(),
        );
        let mut seen = self.seen.lock().await;
        let (ar, caps) = match seen.get(&key) {
            Some(found) => found.clone(),
            None => {
                let gvk = GroupVersionKind::gvk(&entry.group, &entry.version, &entry.kind);
                let found = kube::discovery::pinned_kind(client, &gvk).await?;
                seen.insert(key, found.clone());
                found
            }
        };
        drop(seen);
        api_from(client, entry, &ar, &caps)
    }
}

/// The dynamic API for one entry, discovered with one request. Kept small on purpose: the
/// shared discovery cache replaces it.
pub async fn api_for(
    client: &kube::Client,
    entry: &InventoryEntry,
) -> Result<Api<DynamicObject>, kube::Error> {
    let gvk = GroupVersionKind::gvk(&entry.group, &entry.version, &entry.kind);
    let (ar, caps) = kube::discovery::pinned_kind(client, &gvk).await?;
    api_from(client, entry, &ar, &caps)
}

fn api_from(
    client: &kube::Client,
    entry: &InventoryEntry,
    ar: &ApiResource,
    caps: &ApiCapabilities,
) -> Result<Api<DynamicObject>, kube::Error> {
    match (&caps.scope, &entry.namespace) {
        (Scope::Namespaced, Some(ns)) => Ok(Api::namespaced_with(client.clone(), ns, ar)),
        // A namespaced kind without a namespace would address a collection, not the object.
        (Scope::Namespaced, None) => Err(kube::Error::Discovery(
            kube::error::DiscoveryError::MissingResource(format!(
                "{} is namespaced but the inventory entry has no namespace",
                describe(entry)
            )),
        )),
        (Scope::Cluster, _) => Ok(Api::all_with(client.clone(), ar)),
    }
}

/// The HTTP status of an API error, when the server answered.
pub(crate) fn error_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) if s.code != 0 => Some(s.code),
        _ => None,
    }
}

/// An API error as it may be shown in status: for Secrets only the code and reason, since
/// a server's message about a Secret may quote its data.
pub(crate) fn error_text(entry: &InventoryEntry, e: &kube::Error) -> String {
    let secret = entry.group.is_empty() && entry.kind == "Secret";
    match e {
        kube::Error::Api(s) if secret => format!("HTTP {} {}", s.code, s.reason),
        kube::Error::Api(s) => format!("HTTP {} {}: {}", s.code, s.reason, s.message),
        kube::Error::Discovery(d) => format!("discovery: {d}"),
        _ if secret => "request failed".to_owned(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(
        group: &str,
        version: &str,
        kind: &str,
        ns: Option<&str>,
        name: &str,
    ) -> InventoryEntry {
        InventoryEntry {
            group: group.into(),
            kind: kind.into(),
            namespace: ns.map(Into::into),
            name: name.into(),
            version: version.into(),
        }
    }

    fn doc(yaml: &str) -> Node {
        crate::manifest::load_documents(yaml.as_bytes())
            .expect("test manifest parses")
            .remove(0)
    }

    fn labels_and_annotations(d: &Node) -> (String, String) {
        let json: Value =
            serde_json::from_str(&crate::sops::stores::json::emit(d, None)).expect("json");
        (
            json["metadata"]["labels"][MANAGED_BY_LABEL]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            json["metadata"]["annotations"][APPLICATION_ANNOTATION]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        )
    }

    #[test]
    fn stamp_adds_label_and_annotation_keeping_others() {
        let mut d = doc(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  labels: {team: a}\n  annotations: {note: x}\ndata: {k: v}\n",
        );
        stamp(&mut d, "payments", "web");
        assert_eq!(
            labels_and_annotations(&d),
            ("lockstep".into(), "payments/web".into())
        );
        let json: Value = serde_json::from_str(&crate::sops::stores::json::emit(&d, None)).unwrap();
        assert_eq!(json["metadata"]["labels"]["team"], "a");
        assert_eq!(json["metadata"]["annotations"]["note"], "x");
        assert_eq!(json["data"]["k"], "v");
        // Stamping twice changes nothing and adds no duplicate keys.
        let once = d.clone();
        stamp(&mut d, "payments", "web");
        assert_eq!(d, once);
    }

    #[test]
    fn stamp_creates_missing_and_null_maps_and_overrides_foreign_values() {
        let mut d = doc("apiVersion: v1\nkind: ConfigMap\n");
        stamp(&mut d, "ns", "app");
        assert_eq!(
            labels_and_annotations(&d),
            ("lockstep".into(), "ns/app".into())
        );

        let mut d = doc(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  labels: null\n  annotations:\n    lockstep.dev/application: other/app\n",
        );
        stamp(&mut d, "ns", "app");
        assert_eq!(
            labels_and_annotations(&d),
            ("lockstep".into(), "ns/app".into())
        );
    }

    #[test]
    fn entry_of_splits_api_version() {
        let obj = |yaml: &str| RenderedObject {
            doc: doc(yaml),
            origin: crate::render::Origin {
                file: "x.yaml".into(),
                document: 0,
            },
            sealed_scope: None,
            vault_paths: vec![],
            holds_secrets: false,
        };
        assert_eq!(
            entry_of(&obj(
                "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: pay}\n"
            )),
            entry("apps", "v1", "Deployment", Some("pay"), "web")
        );
        assert_eq!(
            entry_of(&obj(
                "apiVersion: v1\nkind: Namespace\nmetadata: {name: pay}\n"
            )),
            entry("", "v1", "Namespace", None, "pay")
        );
    }

    #[test]
    fn ownership_reads_only_the_annotation() {
        let m = json!({"annotations": {APPLICATION_ANNOTATION: "pay/web"}});
        assert_eq!(ownership(&m, "pay", "web"), Ownership::Owned);
        assert_eq!(
            ownership(&m, "pay", "api"),
            Ownership::OwnedByOther("pay/web".into())
        );
        assert_eq!(
            ownership(&m, "other", "web"),
            Ownership::OwnedByOther("pay/web".into())
        );
        // A copied label alone is not ownership.
        let label_only = json!({"labels": {MANAGED_BY_LABEL: "lockstep"}});
        assert_eq!(ownership(&label_only, "pay", "web"), Ownership::Unowned);
        assert_eq!(ownership(&json!({}), "pay", "web"), Ownership::Unowned);
        assert_eq!(ownership(&Value::Null, "pay", "web"), Ownership::Unowned);
        // A whole object works as well as its metadata.
        let whole = json!({"kind": "ConfigMap", "metadata": m});
        assert_eq!(ownership(&whole, "pay", "web"), Ownership::Owned);
    }

    #[test]
    fn live_metadata_annotations_are_what_counts() {
        let mut meta = kube::core::ObjectMeta {
            name: Some("c".into()),
            labels: Some([(MANAGED_BY_LABEL.to_owned(), "lockstep".to_owned())].into()),
            ..Default::default()
        };
        assert_eq!(
            ownership(&annotations_value(&meta), "pay", "web"),
            Ownership::Unowned
        );
        meta.annotations = Some(
            [
                (APPLICATION_ANNOTATION.to_owned(), "pay/web".to_owned()),
                (PRUNE_ANNOTATION.to_owned(), "disabled".to_owned()),
            ]
            .into(),
        );
        let v = annotations_value(&meta);
        assert_eq!(ownership(&v, "pay", "web"), Ownership::Owned);
        assert!(prune_disabled(&v));
    }

    #[test]
    fn prune_disabled_annotation() {
        assert!(prune_disabled(
            &json!({"annotations": {PRUNE_ANNOTATION: "disabled"}})
        ));
        assert!(prune_disabled(
            &json!({"metadata": {"annotations": {PRUNE_ANNOTATION: "Disabled"}}})
        ));
        assert!(!prune_disabled(
            &json!({"annotations": {PRUNE_ANNOTATION: "enabled"}})
        ));
        assert!(!prune_disabled(
            &json!({"labels": {PRUNE_ANNOTATION: "disabled"}})
        ));
    }

    #[test]
    fn conflict_message_names_both_apps_and_the_object() {
        let c = OwnershipConflict {
            object: describe(&entry("apps", "v1", "Deployment", Some("pay"), "web")),
            other_app: "pay/old".into(),
            this_app: "pay/new".into(),
        };
        let text = c.to_string();
        for part in ["Deployment.apps pay/web", "pay/old", "pay/new"] {
            assert!(text.contains(part), "{text}");
        }
        let more = OwnershipCheckError::Conflict(vec![c.clone(), c]).to_string();
        assert!(more.contains("and 1 more"), "{more}");
    }

    #[test]
    fn set_operations_are_sorted_and_deduplicated() {
        let a = entry("", "v1", "ConfigMap", Some("n"), "a");
        let b = entry("", "v1", "ConfigMap", Some("n"), "b");
        let c = entry("apps", "v1", "Deployment", Some("n"), "c");
        let ns = entry("", "v1", "Namespace", None, "n");
        assert_eq!(
            difference(
                &[c.clone(), b.clone(), a.clone(), b.clone()],
                std::slice::from_ref(&a)
            ),
            vec![b.clone(), c.clone()]
        );
        assert_eq!(union(&[c.clone(), a.clone()], &[ns.clone(), a.clone()]), {
            let mut v = vec![a, c, ns];
            v.sort();
            v
        });
        // Serde shape of status: camel-free fields, no namespace for cluster-scoped objects.
        assert_eq!(
            serde_json::to_value(&b).unwrap(),
            json!({"group": "", "kind": "ConfigMap", "namespace": "n", "name": "b", "version": "v1"})
        );
        assert_eq!(describe(&b), "ConfigMap n/b");
        assert_eq!(
            describe(&entry(
                "apiextensions.k8s.io",
                "v1",
                "CustomResourceDefinition",
                None,
                "x.y"
            )),
            "CustomResourceDefinition.apiextensions.k8s.io x.y"
        );
    }

    #[test]
    fn secret_errors_never_carry_the_server_message() {
        let status = kube::core::Status {
            code: 422,
            reason: "Invalid".into(),
            message: "data.password: canary-value-123 is invalid".into(),
            ..Default::default()
        };
        let e = kube::Error::Api(Box::new(status));
        let secret = entry("", "v1", "Secret", Some("n"), "db");
        assert_eq!(error_text(&secret, &e), "HTTP 422 Invalid");
        let cm = entry("", "v1", "ConfigMap", Some("n"), "c");
        assert!(error_text(&cm, &e).contains("canary-value-123"));
        assert_eq!(error_code(&e), Some(422));
    }
}
