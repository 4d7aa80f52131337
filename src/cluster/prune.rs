//! Fail-closed prune: which objects of the previous inventory to delete ([`plan`], pure),
//! and deleting them through the Application's own client ([`execute`]).
//!
//! The plan starts from the previous inventory only, never from a label query. It refuses
//! when any earlier stage failed, when the render is empty (unless `allowEmpty`), and when the
//! prune is larger than the deletion [`Budget`]: then it names the exact prune by a digest,
//! and only `lockstep.dev/approve-prune: <digest>` on the Application lets that prune, and no
//! other, go ahead. Namespaces, PVCs and CRDs are kept unless the app opts in.
//!
//! # The next inventory
//! The caller keeps status honest around a prune, so that a crash in the middle leaves every
//! object it may still own in the inventory:
//! - [`PruneDecision::Refused`]: nothing was deleted, so every previous entry stays, plus what
//!   was applied: `inventory::union(previous, applied)`.
//! - [`PruneDecision::Nothing`]: the desired set.
//! - [`PruneDecision::Delete`]: before [`execute`], write `inventory::union(desired, delete)`;
//!   after it, [`next_inventory`]`(desired, &report)`: the desired set plus the deletes that
//!   failed ([`PruneReport::remaining`]), which the next reconcile plans again.
//!
//! Entries kept by the plan (prune off, protected kinds, `prune: disabled`) and entries
//! [`execute`] skipped (prune disabled, taken over by a human or another Application, already
//! gone) leave the inventory: they stay in the cluster untracked, so an unchanged reconcile
//! makes no requests for them. Objects kept by the plan still carry the Application
//! annotation, so another Application cannot adopt one until someone hands it over.
//!
//! An approval annotation can stay on the Application after its prune ran: it names that
//! exact set and approves nothing else.

use std::collections::BTreeSet;
use std::fmt;

use kube::api::{DeleteParams, Preconditions};

use crate::cluster::inventory::{
    self, ApiLookup, InventoryEntry, Ownership, describe, error_code, error_text, normalize,
};

/// How much one reconcile may delete without approval. Over budget when the prune deletes
/// more than `max_objects`, or more than `percent` % of the previous inventory when that
/// inventory holds more than `min_inventory` objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub percent: u32,
    pub min_inventory: usize,
    pub max_objects: usize,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            percent: 25,
            min_inventory: 5,
            max_objects: 50,
        }
    }
}

impl Budget {
    /// True when deleting `count` of an `inventory` of objects needs approval.
    pub fn exceeded(&self, count: usize, inventory: usize) -> bool {
        if count > self.max_objects {
            return true;
        }
        // count/inventory > percent/100, in integers.
        inventory > self.min_inventory
            && (count as u128) * 100 > (self.percent as u128) * (inventory as u128)
    }
}

/// Kinds that are kept unless the Application opts in to pruning them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OptIns {
    pub namespaces: bool,
    pub persistent_volume_claims: bool,
    pub custom_resource_definitions: bool,
}

/// The outcome of the stages before prune; all must be true for any deletion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StagesOk {
    pub fetch: bool,
    pub render: bool,
    pub decrypt: bool,
    pub policy: bool,
    pub apply: bool,
}

impl StagesOk {
    /// Every stage succeeded.
    pub const ALL: StagesOk = StagesOk {
        fetch: true,
        render: true,
        decrypt: true,
        policy: true,
        apply: true,
    };

    /// The first failed stage in pipeline order, if any.
    pub fn first_failed(&self) -> Option<&'static str> {
        [
            (self.fetch, "fetch"),
            (self.render, "render"),
            (self.decrypt, "decryption"),
            (self.policy, "policy"),
            (self.apply, "apply"),
        ]
        .into_iter()
        .find_map(|(ok, name)| (!ok).then_some(name))
    }
}

/// Everything [`plan`] decides from.
#[derive(Debug, Clone)]
pub struct PruneInput<'a> {
    /// The inventory in status before this reconcile.
    pub previous: &'a [InventoryEntry],
    /// What this reconcile rendered (and applied).
    pub desired: &'a [InventoryEntry],
    pub stages: StagesOk,
    /// `spec.prune`.
    pub prune_enabled: bool,
    /// `spec.allowEmpty`.
    pub allow_empty: bool,
    pub opt_ins: OptIns,
    pub budget: Budget,
    /// The value of `lockstep.dev/approve-prune` on the Application.
    pub approval: Option<&'a str>,
}

/// Why an object due for prune is left in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeptReason {
    /// `spec.prune` is false.
    PruneOff,
    /// A Namespace, PersistentVolumeClaim or CustomResourceDefinition without the opt-in.
    ProtectedKind(&'static str),
    /// The live object carries `lockstep.dev/prune: disabled`.
    PruneDisabled,
}

impl fmt::Display for KeptReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeptReason::PruneOff => f.write_str("prune is disabled for the Application"),
            KeptReason::ProtectedKind(kind) => {
                write!(
                    f,
                    "{kind} objects are not pruned unless the Application opts in"
                )
            }
            KeptReason::PruneDisabled => write!(
                f,
                "the object is annotated {}: {}",
                inventory::PRUNE_ANNOTATION,
                inventory::PRUNE_DISABLED
            ),
        }
    }
}

/// What [`plan`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PruneDecision {
    /// Nothing left the desired set.
    Nothing,
    /// Delete these (sorted; may be empty when everything due is kept) and leave the rest.
    Delete {
        delete: Vec<InventoryEntry>,
        kept: Vec<(InventoryEntry, KeptReason)>,
    },
    /// Delete nothing this reconcile.
    Refused(PruneRefusal),
}

/// Why nothing is pruned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PruneRefusal {
    /// An earlier stage failed (`fetch`, `render`, `decryption`, `policy` or `apply`).
    #[error("nothing was pruned because the {0} stage failed")]
    StageFailed(&'static str),
    /// The render produced no objects and `spec.allowEmpty` is false.
    #[error(
        "the render produced no objects; nothing was pruned of the {previous} objects in the \
         inventory (set spec.allowEmpty: true to let an empty render prune everything)"
    )]
    EmptyRender { previous: usize },
    /// The prune is larger than the budget and not approved.
    #[error(
        "pruning {count} of the {inventory} objects in the inventory exceeds the deletion budget; \
         to approve exactly this prune, annotate the Application with {annotation}={digest}",
        annotation = inventory::APPROVE_PRUNE_ANNOTATION
    )]
    OverBudget {
        count: usize,
        inventory: usize,
        digest: String,
    },
}

impl PruneRefusal {
    /// A condition reason for status.
    pub fn reason(&self) -> &'static str {
        match self {
            PruneRefusal::StageFailed(_) => "PruneSkipped",
            PruneRefusal::EmptyRender { .. } => "EmptyRender",
            PruneRefusal::OverBudget { .. } => "PruneBudgetExceeded",
        }
    }

    /// True when the Application must be marked Stalled until someone acts (approves the
    /// prune or allows the empty render); retrying alone would decide the same.
    pub fn stalls(&self) -> bool {
        matches!(
            self,
            PruneRefusal::OverBudget { .. } | PruneRefusal::EmptyRender { .. }
        )
    }
}

/// Decides what to prune. Pure. Live `prune: disabled` annotations are not known here; see
/// [`plan_with_protected`] when the caller has them (e.g. from a watch cache); [`execute`]
/// checks them again on the live object either way.
pub fn plan(input: &PruneInput<'_>) -> PruneDecision {
    plan_with_protected(input, &[])
}

/// [`plan`], with the entries whose live object is annotated `lockstep.dev/prune: disabled`.
/// Protected entries are kept and do not count toward the budget.
pub fn plan_with_protected(input: &PruneInput<'_>, protected: &[InventoryEntry]) -> PruneDecision {
    if let Some(stage) = input.stages.first_failed() {
        return PruneDecision::Refused(PruneRefusal::StageFailed(stage));
    }
    let mut previous = input.previous.to_vec();
    normalize(&mut previous);
    // One entry per object: an object recorded under two versions counts once.
    previous.dedup_by(|a, b| inventory::same_object(a, b));
    let stale = inventory::difference(&previous, input.desired);
    if stale.is_empty() {
        return PruneDecision::Nothing;
    }
    if input.desired.is_empty() && !input.allow_empty {
        return PruneDecision::Refused(PruneRefusal::EmptyRender {
            previous: previous.len(),
        });
    }
    if !input.prune_enabled {
        let kept = stale
            .into_iter()
            .map(|e| (e, KeptReason::PruneOff))
            .collect();
        return PruneDecision::Delete {
            delete: Vec::new(),
            kept,
        };
    }
    let protected: BTreeSet<&InventoryEntry> = protected.iter().collect();
    let mut delete = Vec::new();
    let mut kept = Vec::new();
    for entry in stale {
        if let Some(kind) = protected_kind(&entry, &input.opt_ins) {
            kept.push((entry, KeptReason::ProtectedKind(kind)));
        } else if protected.contains(&entry) {
            kept.push((entry, KeptReason::PruneDisabled));
        } else {
            delete.push(entry);
        }
    }
    if !delete.is_empty() && input.budget.exceeded(delete.len(), previous.len()) {
        let digest = digest(&delete);
        let approved = input.approval.map(str::trim) == Some(digest.as_str());
        if !approved {
            return PruneDecision::Refused(PruneRefusal::OverBudget {
                count: delete.len(),
                inventory: previous.len(),
                digest,
            });
        }
    }
    PruneDecision::Delete { delete, kept }
}

/// The kind's name when it is protected and the app has not opted in.
fn protected_kind(entry: &InventoryEntry, opt_ins: &OptIns) -> Option<&'static str> {
    match (entry.group.as_str(), entry.kind.as_str()) {
        ("", "Namespace") if !opt_ins.namespaces => Some("Namespace"),
        ("", "PersistentVolumeClaim") if !opt_ins.persistent_volume_claims => {
            Some("PersistentVolumeClaim")
        }
        ("apiextensions.k8s.io", "CustomResourceDefinition")
            if !opt_ins.custom_resource_definitions =>
        {
            Some("CustomResourceDefinition")
        }
        _ => None,
    }
}

/// The digest that names an exact prune set: SHA-256 over a length-prefixed encoding of the
/// sorted entries, hex, first 32 characters. Order and duplicates in `entries` do not matter.
pub fn digest(entries: &[InventoryEntry]) -> String {
    let mut sorted = entries.to_vec();
    normalize(&mut sorted);
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(b"lockstep-prune-v1\0");
    let mut field = |s: &str| {
        ctx.update(&(s.len() as u64).to_be_bytes());
        ctx.update(s.as_bytes());
    };
    for e in &sorted {
        field(&e.group);
        field(&e.version);
        field(&e.kind);
        // A leading marker keeps "no namespace" apart from an empty one.
        match &e.namespace {
            Some(ns) => field(&format!("+{ns}")),
            None => field("-"),
        }
        field(&e.name);
    }
    let d = ctx.finish();
    d.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Why [`execute`] did not delete an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// The live object carries `lockstep.dev/prune: disabled`.
    PruneDisabled,
    /// The live object no longer carries this Application's annotation (a human took it over).
    NotOwned,
    /// Another Application (`NS/NAME`) manages the live object now.
    OwnedByOther(String),
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::PruneDisabled => write!(
                f,
                "annotated {}: {}",
                inventory::PRUNE_ANNOTATION,
                inventory::PRUNE_DISABLED
            ),
            SkipReason::NotOwned => write!(
                f,
                "no longer annotated {} for this Application",
                inventory::APPLICATION_ANNOTATION
            ),
            SkipReason::OwnedByOther(app) => write!(f, "managed by Application {app}"),
        }
    }
}

/// A delete that failed; retried next reconcile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PruneFailure {
    pub entry: InventoryEntry,
    /// HTTP status when the server answered.
    pub code: Option<u16>,
    /// Names the object; for Secrets the server's message is left out.
    pub message: String,
}

/// What [`execute`] did, entry by entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Deleted now (background propagation: dependents go after).
    pub deleted: Vec<InventoryEntry>,
    /// Not there any more (NotFound on read or delete).
    pub already_gone: Vec<InventoryEntry>,
    /// Left in place on purpose after looking at the live object.
    pub skipped: Vec<(InventoryEntry, SkipReason)>,
    /// Could not be read or deleted.
    pub failed: Vec<PruneFailure>,
}

impl PruneReport {
    /// Entries that must stay in the inventory so a later reconcile retries them: the failed
    /// deletes. Skipped entries are left out on purpose (see the module docs).
    pub fn remaining(&self) -> Vec<InventoryEntry> {
        let mut out: Vec<InventoryEntry> = self.failed.iter().map(|f| f.entry.clone()).collect();
        normalize(&mut out);
        out
    }

    /// True when every delete succeeded or the object was already gone or skipped.
    pub fn is_complete(&self) -> bool {
        self.failed.is_empty()
    }
}

/// The inventory to write after a [`PruneDecision::Delete`] was executed: the desired set
/// plus the deletes that failed.
pub fn next_inventory(desired: &[InventoryEntry], report: &PruneReport) -> Vec<InventoryEntry> {
    inventory::union(desired, &report.remaining())
}

/// How often a delete is retried when the object changed between the check and the delete.
const CHANGED_RETRIES: usize = 3;

/// Deletes `delete` through the given (impersonated) client. Just before each delete it reads
/// the live object's metadata and skips it unless it still carries this Application's
/// annotation and is not annotated `lockstep.dev/prune: disabled`; the delete itself carries
/// the uid and resourceVersion it checked as preconditions, so a change in between cannot
/// slip through. Namespaced objects go first, Namespaces and CRDs last. Never fails as a whole:
/// each entry's outcome is in the report.
pub async fn execute<L: ApiLookup + Sync>(
    client: &kube::Client,
    lookup: &L,
    delete: &[InventoryEntry],
    app_namespace: &str,
    app_name: &str,
) -> PruneReport {
    let mut order = delete.to_vec();
    normalize(&mut order);
    order.sort_by_key(delete_rank);
    let mut report = PruneReport::default();
    for entry in order {
        delete_one(client, lookup, entry, app_namespace, app_name, &mut report).await;
    }
    report
}

/// Namespaced objects, then cluster-scoped ones, then CRDs, then Namespaces (a Namespace's
/// deletion takes its content with it; a CRD's takes its custom resources).
fn delete_rank(e: &InventoryEntry) -> u8 {
    match (e.group.as_str(), e.kind.as_str(), &e.namespace) {
        ("", "Namespace", _) => 3,
        ("apiextensions.k8s.io", "CustomResourceDefinition", _) => 2,
        (_, _, None) => 1,
        _ => 0,
    }
}

async fn delete_one<L: ApiLookup + Sync>(
    client: &kube::Client,
    lookup: &L,
    entry: InventoryEntry,
    app_namespace: &str,
    app_name: &str,
    report: &mut PruneReport,
) {
    let fail = |entry: InventoryEntry, e: &kube::Error, what: &str| PruneFailure {
        code: error_code(e),
        message: format!(
            "cannot {what} {}: {}",
            describe(&entry),
            error_text(&entry, e)
        ),
        entry,
    };
    let api = match lookup.api_for(client, &entry).await {
        Ok(api) => api,
        Err(e) => {
            report.failed.push(fail(entry, &e, "find the API of"));
            return;
        }
    };
    for attempt in 1..=CHANGED_RETRIES {
        let live = match api.get_metadata_opt(&entry.name).await {
            Ok(Some(live)) => live,
            Ok(None) => {
                report.already_gone.push(entry);
                return;
            }
            Err(e) => {
                report.failed.push(fail(entry, &e, "read"));
                return;
            }
        };
        let meta = inventory::annotations_value(&live.metadata);
        match inventory::ownership(&meta, app_namespace, app_name) {
            Ownership::Owned => {}
            Ownership::Unowned => {
                report.skipped.push((entry, SkipReason::NotOwned));
                return;
            }
            Ownership::OwnedByOther(app) => {
                report.skipped.push((entry, SkipReason::OwnedByOther(app)));
                return;
            }
        }
        if inventory::prune_disabled(&meta) {
            report.skipped.push((entry, SkipReason::PruneDisabled));
            return;
        }
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: live.metadata.uid.clone(),
                resource_version: live.metadata.resource_version.clone(),
            }),
            ..DeleteParams::background()
        };
        match api.delete(&entry.name, &params).await {
            Ok(_) => {
                report.deleted.push(entry);
                return;
            }
            Err(kube::Error::Api(s)) if s.is_not_found() => {
                report.already_gone.push(entry);
                return;
            }
            // Changed since the check (or replaced by a new object of the same name): look
            // again rather than delete what we did not check.
            Err(kube::Error::Api(s)) if s.is_conflict() && attempt < CHANGED_RETRIES => continue,
            Err(e) => {
                report.failed.push(fail(entry, &e, "delete"));
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cm(name: &str) -> InventoryEntry {
        InventoryEntry {
            group: String::new(),
            kind: "ConfigMap".into(),
            namespace: Some("app".into()),
            name: name.into(),
            version: "v1".into(),
        }
    }

    fn cluster(group: &str, kind: &str, name: &str) -> InventoryEntry {
        InventoryEntry {
            group: group.into(),
            kind: kind.into(),
            namespace: None,
            name: name.into(),
            version: "v1".into(),
        }
    }

    fn cms(range: std::ops::Range<usize>) -> Vec<InventoryEntry> {
        range.map(|i| cm(&format!("c{i:03}"))).collect()
    }

    fn input<'a>(previous: &'a [InventoryEntry], desired: &'a [InventoryEntry]) -> PruneInput<'a> {
        PruneInput {
            previous,
            desired,
            stages: StagesOk::ALL,
            prune_enabled: true,
            allow_empty: false,
            opt_ins: OptIns::default(),
            budget: Budget::default(),
            approval: None,
        }
    }

    fn deletes(d: &PruneDecision) -> Vec<InventoryEntry> {
        match d {
            PruneDecision::Delete { delete, .. } => delete.clone(),
            _ => Vec::new(),
        }
    }

    #[test]
    fn deletes_only_what_left_the_desired_set() {
        let prev = cms(0..10);
        let desired = cms(0..8);
        let d = plan(&input(&prev, &desired));
        assert_eq!(
            d,
            PruneDecision::Delete {
                delete: cms(8..10),
                kept: vec![]
            }
        );
        assert_eq!(plan(&input(&prev, &prev)), PruneDecision::Nothing);
        // New objects alone prune nothing.
        assert_eq!(plan(&input(&cms(0..2), &cms(0..5))), PruneDecision::Nothing);
        // Nothing in a previous inventory of zero.
        assert_eq!(plan(&input(&[], &cms(0..5))), PruneDecision::Nothing);
    }

    #[test]
    fn a_version_change_is_not_a_prune() {
        let prev = vec![cm("a"), cm("b")];
        let mut v2 = cm("a");
        v2.version = "v2".into();
        // Same group, kind, namespace and name: the object applied under its new version.
        assert_eq!(
            plan(&input(&prev, &[v2.clone(), cm("b")])),
            PruneDecision::Nothing
        );
        // Another group is another object.
        let other_group = InventoryEntry {
            group: "example.com".into(),
            ..cm("a")
        };
        assert_eq!(
            deletes(&plan(&input(&prev, &[other_group, cm("b")]))),
            vec![cm("a")]
        );
    }

    #[test]
    fn any_failed_stage_refuses() {
        let prev = cms(0..3);
        let desired = cms(0..1);
        for (i, name) in ["fetch", "render", "decryption", "policy", "apply"]
            .into_iter()
            .enumerate()
        {
            let mut inp = input(&prev, &desired);
            let flags = [
                &mut inp.stages.fetch,
                &mut inp.stages.render,
                &mut inp.stages.decrypt,
                &mut inp.stages.policy,
                &mut inp.stages.apply,
            ];
            *flags.into_iter().nth(i).unwrap() = false;
            inp.approval = Some("anything");
            inp.allow_empty = true;
            assert_eq!(
                plan(&inp),
                PruneDecision::Refused(PruneRefusal::StageFailed(name))
            );
        }
        // Even with nothing to prune, a failed stage says so.
        let mut inp = input(&prev, &prev);
        inp.stages.apply = false;
        assert!(matches!(plan(&inp), PruneDecision::Refused(_)));
    }

    #[test]
    fn empty_render_refused_unless_allowed() {
        let prev = cms(0..3);
        let d = plan(&input(&prev, &[]));
        assert_eq!(
            d,
            PruneDecision::Refused(PruneRefusal::EmptyRender { previous: 3 })
        );
        if let PruneDecision::Refused(r) = &d {
            assert!(r.stalls());
            assert!(r.to_string().contains("allowEmpty"));
        }
        // Refused even with prune off: an empty render is a mistake to report.
        let mut inp = input(&prev, &[]);
        inp.prune_enabled = false;
        assert!(matches!(
            plan(&inp),
            PruneDecision::Refused(PruneRefusal::EmptyRender { .. })
        ));
        // allowEmpty: all 3 go (inventory of 3 is under the percent rule's threshold).
        let mut inp = input(&prev, &[]);
        inp.allow_empty = true;
        assert_eq!(deletes(&plan(&inp)), prev);
        // allowEmpty does not lift the budget.
        let prev10 = cms(0..10);
        let mut inp = input(&prev10, &[]);
        inp.allow_empty = true;
        assert!(matches!(
            plan(&inp),
            PruneDecision::Refused(PruneRefusal::OverBudget {
                count: 10,
                inventory: 10,
                ..
            })
        ));
        // An empty render of an empty inventory is nothing to do.
        assert_eq!(plan(&input(&[], &[])), PruneDecision::Nothing);
    }

    #[test]
    fn prune_off_keeps_everything_and_says_so() {
        let prev = cms(0..4);
        let mut inp = input(&prev, &prev[..1]);
        inp.prune_enabled = false;
        assert_eq!(
            plan(&inp),
            PruneDecision::Delete {
                delete: vec![],
                kept: prev[1..]
                    .iter()
                    .map(|e| (e.clone(), KeptReason::PruneOff))
                    .collect()
            }
        );
    }

    #[test]
    fn protected_kinds_need_opt_in() {
        let ns = cluster("", "Namespace", "team");
        let pvc = InventoryEntry {
            kind: "PersistentVolumeClaim".into(),
            ..cm("data")
        };
        let crd = cluster(
            "apiextensions.k8s.io",
            "CustomResourceDefinition",
            "x.example.com",
        );
        // Same kind name in another group is not protected.
        let fake_ns = cluster("example.com", "Namespace", "team");
        let prev = vec![
            ns.clone(),
            pvc.clone(),
            crd.clone(),
            fake_ns.clone(),
            cm("keep"),
        ];
        let desired = vec![cm("keep")];
        let mut inp = input(&prev, &desired);
        inp.budget.max_objects = 100;
        inp.budget.percent = 100;
        let PruneDecision::Delete { delete, kept } = plan(&inp) else {
            panic!("expected a delete plan");
        };
        assert_eq!(delete, vec![fake_ns.clone()]);
        let mut kept_names: Vec<_> = kept
            .iter()
            .map(|(e, r)| (e.kind.clone(), r.clone()))
            .collect();
        kept_names.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            kept_names,
            vec![
                (
                    "CustomResourceDefinition".into(),
                    KeptReason::ProtectedKind("CustomResourceDefinition")
                ),
                ("Namespace".into(), KeptReason::ProtectedKind("Namespace")),
                (
                    "PersistentVolumeClaim".into(),
                    KeptReason::ProtectedKind("PersistentVolumeClaim")
                ),
            ]
        );
        inp.opt_ins = OptIns {
            namespaces: true,
            persistent_volume_claims: true,
            custom_resource_definitions: true,
        };
        let mut all = vec![ns, pvc, crd, fake_ns];
        all.sort();
        assert_eq!(deletes(&plan(&inp)), all);
    }

    #[test]
    fn prune_disabled_objects_are_kept_and_not_counted() {
        let prev = cms(0..10);
        let desired = cms(0..7);
        // 3 of 10 is over 25%; with one protected, 2 of 10 is within.
        assert!(matches!(
            plan(&input(&prev, &desired)),
            PruneDecision::Refused(PruneRefusal::OverBudget {
                count: 3,
                inventory: 10,
                ..
            })
        ));
        let d = plan_with_protected(&input(&prev, &desired), &[cm("c009")]);
        assert_eq!(
            d,
            PruneDecision::Delete {
                delete: cms(7..9),
                kept: vec![(cm("c009"), KeptReason::PruneDisabled)]
            }
        );
    }

    #[test]
    fn budget_edges() {
        let b = Budget::default();
        // Inventories of 5 or fewer: only the absolute cap applies.
        assert!(!b.exceeded(5, 5));
        // 25% of 8 is 2: 2 is fine, 3 is not.
        assert!(!b.exceeded(2, 8));
        assert!(b.exceeded(3, 8));
        // Exactly 25% is not more than 25%.
        assert!(!b.exceeded(25, 100));
        assert!(b.exceeded(26, 100));
        // The absolute cap: 50 of 1000 is fine, 51 is not.
        assert!(!b.exceeded(50, 1000));
        assert!(b.exceeded(51, 1000));
        // Huge numbers do not overflow.
        assert!(b.exceeded(usize::MAX, usize::MAX));
    }

    #[test]
    fn over_budget_needs_approval_of_that_exact_prune() {
        let prev = cms(0..20);
        let desired = cms(0..10);
        let PruneDecision::Refused(refusal) = plan(&input(&prev, &desired)) else {
            panic!("10 of 20 is over budget");
        };
        let PruneRefusal::OverBudget {
            count,
            inventory,
            digest: d,
        } = &refusal
        else {
            panic!("wrong refusal {refusal:?}");
        };
        assert_eq!((*count, *inventory), (10, 20));
        assert_eq!(d, &digest(&cms(10..20)));
        assert!(refusal.stalls());
        assert_eq!(refusal.reason(), "PruneBudgetExceeded");
        let msg = refusal.to_string();
        assert!(
            msg.contains(&format!("lockstep.dev/approve-prune={d}")),
            "{msg}"
        );

        let mut inp = input(&prev, &desired);
        inp.approval = Some(d);
        assert_eq!(deletes(&plan(&inp)), cms(10..20));
        // Surrounding whitespace from a hand-written annotation is fine.
        let padded = format!(" {d}\n");
        inp.approval = Some(&padded);
        assert_eq!(deletes(&plan(&inp)), cms(10..20));

        // The approval does not carry over to a different prune set.
        let desired2 = cms(0..9);
        let mut inp = input(&prev, &desired2);
        inp.approval = Some(d);
        assert!(matches!(
            plan(&inp),
            PruneDecision::Refused(PruneRefusal::OverBudget { count: 11, .. })
        ));
        // Nor does a wrong or empty one.
        for wrong in ["", "0000", &d.to_uppercase()] {
            let mut inp = input(&prev, &desired);
            inp.approval = Some(wrong);
            assert!(matches!(plan(&inp), PruneDecision::Refused(_)), "{wrong}");
        }
    }

    #[test]
    fn absolute_cap_applies_to_large_inventories() {
        let prev = cms(0..400);
        let desired = cms(0..340);
        // 60 of 400 is 15%, under the percent rule but over 50.
        assert!(matches!(
            plan(&input(&prev, &desired)),
            PruneDecision::Refused(PruneRefusal::OverBudget {
                count: 60,
                inventory: 400,
                ..
            })
        ));
        let desired = cms(0..350);
        assert_eq!(deletes(&plan(&input(&prev, &desired))).len(), 50);
    }

    #[test]
    fn digest_names_the_set_not_its_order() {
        let a = cms(0..3);
        let mut b = a.clone();
        b.reverse();
        b.push(a[0].clone());
        assert_eq!(digest(&a), digest(&b));
        assert_eq!(digest(&a).len(), 32);
        assert!(
            digest(&a)
                .bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_ne!(digest(&a), digest(&a[..2]));
        // Field boundaries count: these two differ only in where the text is split.
        let x = InventoryEntry {
            name: "b-c".into(),
            namespace: Some("a".into()),
            ..cm("")
        };
        let y = InventoryEntry {
            name: "c".into(),
            namespace: Some("a-b".into()),
            ..cm("")
        };
        assert_ne!(digest(&[x]), digest(&[y]));
        // A cluster-scoped object differs from one in the namespace "".
        let no_ns = InventoryEntry {
            namespace: None,
            ..cm("z")
        };
        let empty_ns = InventoryEntry {
            namespace: Some(String::new()),
            ..cm("z")
        };
        assert_ne!(digest(&[no_ns]), digest(&[empty_ns]));
    }

    #[test]
    fn previous_inventory_duplicates_do_not_skew_the_budget() {
        let mut prev = cms(0..8);
        prev.extend(cms(0..8));
        // The same object recorded under another version is one object too.
        prev.extend(cms(0..8).into_iter().map(|mut e| {
            e.version = "v2".into();
            e
        }));
        // 2 of 8 (not of 16).
        assert_eq!(deletes(&plan(&input(&prev, &cms(0..6)))).len(), 2);
        assert!(matches!(
            plan(&input(&prev, &cms(0..5))),
            PruneDecision::Refused(PruneRefusal::OverBudget { inventory: 8, .. })
        ));
    }

    #[test]
    fn next_inventory_keeps_failed_deletes_only() {
        let report = PruneReport {
            deleted: vec![cm("d")],
            already_gone: vec![cm("g")],
            skipped: vec![(cm("s"), SkipReason::PruneDisabled)],
            failed: vec![PruneFailure {
                entry: cm("f"),
                code: Some(500),
                message: "x".into(),
            }],
        };
        assert!(!report.is_complete());
        assert_eq!(
            next_inventory(&[cm("b"), cm("a")], &report),
            vec![cm("a"), cm("b"), cm("f")]
        );
    }

    #[test]
    fn delete_order_puts_namespaces_and_crds_last() {
        let mut v = [
            cluster("", "Namespace", "a"),
            cluster("apiextensions.k8s.io", "CustomResourceDefinition", "a"),
            cluster("rbac.authorization.k8s.io", "ClusterRole", "a"),
            cm("z"),
        ];
        v.sort_by_key(delete_rank);
        let kinds: Vec<&str> = v.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "ConfigMap",
                "ClusterRole",
                "CustomResourceDefinition",
                "Namespace"
            ]
        );
    }

    fn arb_entry() -> impl Strategy<Value = InventoryEntry> {
        (
            prop_oneof![Just(""), Just("apps"), Just("apiextensions.k8s.io")],
            prop_oneof![
                Just("ConfigMap"),
                Just("Namespace"),
                Just("PersistentVolumeClaim"),
                Just("CustomResourceDefinition"),
                Just("Deployment")
            ],
            prop::option::of(prop_oneof![Just("a"), Just("b")]),
            0u8..40,
        )
            .prop_map(|(g, k, ns, n)| InventoryEntry {
                group: g.into(),
                kind: k.into(),
                namespace: ns.map(Into::into),
                name: format!("o{n}"),
                version: "v1".into(),
            })
    }

    fn arb_stages() -> impl Strategy<Value = StagesOk> {
        prop_oneof![
            3 => Just(StagesOk::ALL),
            1 => any::<[bool; 5]>().prop_map(|f| StagesOk {
                fetch: f[0],
                render: f[1],
                decrypt: f[2],
                policy: f[3],
                apply: f[4],
            }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn plan_invariants(
            previous in prop::collection::vec(arb_entry(), 0..80),
            desired in prop::collection::vec(arb_entry(), 0..40),
            stages in arb_stages(),
            prune_enabled in any::<bool>(),
            allow_empty in any::<bool>(),
            opt in any::<[bool; 3]>(),
            percent in 0u32..120,
            min_inventory in 0usize..20,
            max_objects in 0usize..60,
            approve_right in any::<bool>(),
            protected in prop::collection::vec(arb_entry(), 0..10),
        ) {
            let budget = Budget { percent, min_inventory, max_objects };
            let mut inp = PruneInput {
                previous: &previous,
                desired: &desired,
                stages,
                prune_enabled,
                allow_empty,
                opt_ins: OptIns {
                    namespaces: opt[0],
                    persistent_volume_claims: opt[1],
                    custom_resource_definitions: opt[2],
                },
                budget,
                approval: None,
            };
            let unapproved = plan_with_protected(&inp, &protected);
            // With approval of whatever digest the refusal named (if any).
            let named = match &unapproved {
                PruneDecision::Refused(PruneRefusal::OverBudget { digest, .. }) => Some(digest.clone()),
                _ => None,
            };
            if approve_right {
                inp.approval = named.as_deref();
            }
            let decision = plan_with_protected(&inp, &protected);
            let del = deletes(&decision);
            let mut prev_set = previous.clone();
            normalize(&mut prev_set);

            // Only previous-inventory entries, never one still desired, never a protected one.
            for e in &del {
                prop_assert!(prev_set.binary_search(e).is_ok());
                prop_assert!(!desired.iter().any(|d| inventory::same_object(d, e)));
                prop_assert!(!protected.contains(e));
                prop_assert!(protected_kind(e, &inp.opt_ins).is_none());
            }
            // Never anything when a stage failed, prune is off, or the render is empty without allowEmpty.
            if stages.first_failed().is_some() || !prune_enabled || (desired.is_empty() && !allow_empty) {
                prop_assert!(del.is_empty());
            }
            // Over budget only with the matching approval.
            if budget.exceeded(del.len(), prev_set.len()) && !del.is_empty() {
                let d = digest(&del);
                prop_assert_eq!(inp.approval, Some(d.as_str()));
            }
            // Without any approval, the unapproved plan never exceeds the budget.
            let d0 = deletes(&unapproved);
            prop_assert!(d0.is_empty() || !budget.exceeded(d0.len(), prev_set.len()));
            // Sorted, without duplicates, and disjoint from kept.
            prop_assert!(del.windows(2).all(|w| w[0] < w[1]));
            if let PruneDecision::Delete { kept, .. } = &decision {
                for (k, _) in kept {
                    prop_assert!(!del.contains(k));
                    prop_assert!(!desired.iter().any(|d| inventory::same_object(d, k)));
                }
            }
        }
    }
}
