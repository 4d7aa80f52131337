//! The controller side of lockstep: the Application kind, its status conventions and the
//! checks a reconcile makes before it touches the cluster.
//!
//! - [`application`]: the `Application` CRD types (spec and status).
//! - [`validate`]: spec validation, the first stage of every reconcile (pure).
//! - [`conditions`]: Ready / Reconciling / Stalled and the history, kstatus style.
//! - [`verify`]: which signatures a fetch checks (Application and Policies).
//! - [`duration`]: Go-style durations (`1m`, `30s`).
//! - [`crds`]: the CustomResourceDefinitions in `deploy/crds/`, generated from the types.
//! - [`queue`]: the work queue that schedules reconciles (dedup, concurrency, backoff).
//! - [`reconcile`]: one reconcile of one Application, stage by stage.
//! - [`run`]: the controller process: watches, queue, drift, status.
//! - [`events`]: Events about Applications, one per occurrence.

pub mod access;
pub mod application;
pub mod conditions;
pub mod crds;
pub mod duration;
pub mod events;
pub mod queue;
pub mod reconcile;
pub mod run;
pub mod validate;
pub mod verify;

pub use application::{Application, ApplicationSpec, ApplicationStatus};
pub use validate::{InvalidSpec, SpecError, ValidSpec, validate};
