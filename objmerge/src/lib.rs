//! Kubernetes object mechanics shared by devcluster (the API server emulator) and lockstep
//! (kustomize builds): merge-key schemas and JSON / merge / strategic merge patches. Pure
//! functions on `serde_json::Value`; no I/O.

pub mod patch;
pub mod schema;
