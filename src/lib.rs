//! lockstep: a secrets-aware GitOps engine for Kubernetes.
//!
//! This crate is both the library behind the reconciler and the `lockstep` CLI. The
//! CLI stays thin; every operation lives here.

pub mod check;
pub mod cluster;
pub mod controller;
pub mod crypto;
pub mod kustomize;
pub mod manifest;
pub mod policy;
pub mod quickstart;
pub mod render;
pub mod sealed;
pub mod server;
pub mod sops;
pub mod source;
pub mod vault;
