//! Access to the cluster: clients that act as an Application's service account over one
//! shared connection pool, discovery and REST mapping, and ordered server-side apply.

pub mod apply;
pub mod client;
pub mod discovery;
