//! Access to the cluster: what a reconcile reads from and writes to the API server.
//!
//! - [`health`]: kstatus-style health of applied objects, and waiting until they are healthy.

pub mod health;
