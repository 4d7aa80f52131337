//! The CustomResourceDefinitions of lockstep's kinds, generated from the Rust types so
//! that the schema the API server enforces is the one the reconciler reads.
//! `deploy/crds/` holds their YAML; `tests/crds.rs` fails when it is stale and says how
//! to regenerate it (`LOCKSTEP_UPDATE_CRDS=1 cargo test --test crds deploy_crds`).

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

use super::application::Application;
use crate::policy::cluster::ClusterPolicy;

/// Every CRD, with the file name it has under `deploy/crds/`.
pub fn all() -> Vec<(&'static str, CustomResourceDefinition)> {
    vec![
        ("applications.lockstep.dev.yaml", Application::crd()),
        ("policies.lockstep.dev.yaml", ClusterPolicy::crd()),
    ]
}

/// A CRD as the YAML document written to `deploy/crds/`.
pub fn to_yaml(crd: &CustomResourceDefinition) -> Result<String, serde_saphyr::SerializeError> {
    let body = serde_saphyr::to_string(crd)?;
    Ok(format!(
        "# Generated from the Rust types in src/ by lockstep::controller::crds; do not edit.\n# Regenerate: LOCKSTEP_UPDATE_CRDS=1 cargo test --test crds deploy_crds\n{body}"
    ))
}
