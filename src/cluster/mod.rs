//! API access for the reconciler: what an Application owns and how it prunes.
//!
//! - [`inventory`]: inventory entries, the ownership label and annotation, the ownership check.
//! - [`prune`]: the fail-closed prune plan (pure) and its execution through the app's client.

pub mod inventory;
pub mod prune;
