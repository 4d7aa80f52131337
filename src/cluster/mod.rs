//! Access to the cluster, as each Application's own service account.
//!
//! - [`client`]: clients that act as an Application's service account over one shared
//!   connection pool.
//! - [`discovery`]: discovery and REST mapping (namespaced or not, plural, version).
//! - [`apply`]: ordered server-side apply, dry run first.
//! - [`inventory`]: inventory entries, the ownership label and annotation, the ownership check.
//! - [`prune`]: the fail-closed prune plan (pure) and its execution through the app's client.
//! - [`health`]: kstatus rules and a waiter over an inventory.
//! - [`watch`]: drift watches, metadata-only, shared per identity, namespace and kind.

pub mod apply;
pub mod client;
pub mod discovery;
pub mod health;
pub mod inventory;
pub mod prune;
pub mod watch;
