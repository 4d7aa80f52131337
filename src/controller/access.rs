//! Why an Application's requests are forbidden, when the reason is the reconciler's own
//! right to act as the Application's service account rather than that account's RBAC.
//!
//! `deploy/` grants `impersonate` on service accounts per namespace (a RoleBinding to
//! `lockstep-impersonate`), so a namespace that has not opted in answers every request
//! of its Applications with 403. One SelfSubjectAccessReview, made only after a 403,
//! turns that into a reason that names the missing binding.

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use kube::Api;
use kube::api::PostParams;

/// The ClusterRole a tenant namespace binds to let the reconciler act as its accounts.
pub const IMPERSONATE_ROLE: &str = "lockstep-impersonate";

/// `Some(message)` when the reconciler (as `controller`) may not impersonate the service
/// account `namespace/name`; `None` when it may, or when the check itself fails.
pub async fn impersonation_denied(
    controller: &kube::Client,
    namespace: &str,
    name: &str,
) -> Option<String> {
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                verb: Some("impersonate".into()),
                resource: Some("serviceaccounts".into()),
                namespace: Some(namespace.into()),
                name: Some(name.into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let api: Api<SelfSubjectAccessReview> = Api::all(controller.clone());
    let answer = api.create(&PostParams::default(), &review).await.ok()?;
    let allowed = answer.status.is_some_and(|s| s.allowed);
    (!allowed).then(|| {
        format!(
            "the reconciler may not act as system:serviceaccount:{namespace}:{name}: namespace {namespace} has no RoleBinding to ClusterRole {IMPERSONATE_ROLE} for system:serviceaccount:lockstep-system:lockstep (see examples/cluster/)"
        )
    })
}
