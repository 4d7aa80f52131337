//! An Application as a tenant may write it (JSON or YAML, any shape): deserialized, then
//! validated as the first reconcile stage does, then checked against a fixed Policy.
//! Errors are fine; panics, hangs and memory blow-ups are findings, and so is a spec
//! that validates yet names a reference or identity outside its own namespace.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lockstep::controller::application::Application;
use lockstep::controller::{validate, verify};
use lockstep::policy::cluster::{ClusterPolicy, policies_binding};

thread_local! {
    static POLICIES: Vec<lockstep::policy::Policy> = {
        let p: ClusterPolicy = serde_json::from_str(r#"{
            "apiVersion": "lockstep.dev/v1alpha1", "kind": "Policy",
            "metadata": {"name": "fuzz"},
            "spec": {"applications": {"namespaces": ["team-*"]},
                     "sources": {"allow": ["https://git.example.com/*", "file:///srv/git/*"]},
                     "serviceAccounts": [{"namespaces": ["*"], "names": ["deployer"]}]}
        }"#).expect("policy");
        vec![p.to_policy().expect("valid policy")]
    };
}

fuzz_target!(|data: &[u8]| {
    let app: Application = match serde_json::from_slice(data) {
        Ok(a) => a,
        Err(_) => match std::str::from_utf8(data).ok().and_then(|t| serde_saphyr::from_str(t).ok()) {
            Some(a) => a,
            None => return,
        },
    };
    let Ok(valid) = validate::validate(&app) else {
        return;
    };
    let ns = app.metadata.namespace.clone().unwrap_or_default();
    assert_eq!(valid.namespace, ns);
    assert!(!valid.destination_namespace.is_empty());
    assert!(
        valid
            .impersonated_user()
            .starts_with(&format!("system:serviceaccount:{ns}:"))
    );
    assert!(!valid.service_account.contains(':'));
    assert!(!valid.path.split('/').any(|p| p == ".." || p == "."));
    POLICIES.with(|policies| {
        let bound = policies_binding(&valid.namespace, policies);
        let _ = validate::policy_denials(&valid, &bound);
    });
    let _ = verify::verification(valid.verify.as_ref(), None, None);
});
