//! Access to the cluster: clients that act as an Application's service account over one
//! shared connection pool, discovery and REST mapping, and ordered server-side apply.
//!
//! How the reconcile pipeline uses it:
//! ```text
//! let clients = Clients::new(config)?;                    // once per process
//! let discovery = Discovery::new();                       // once per process
//! let client = clients.for_service_account(ns, sa);       // per app, cached
//! apply_all(&client, &discovery, &objects, &ApplyOptions { mode: ApplyMode::DryRun, .. }).await?;
//! let applied = apply_all(&client, &discovery, &objects, &ApplyOptions::default()).await?;
//! ```
//! The dry run proves every object would be accepted before the first write, so an app
//! is not half-applied because of RBAC, validation or a field conflict.

pub mod apply;
pub mod client;
pub mod discovery;
