//! Status conditions and history of an Application, with kstatus semantics so that
//! `kubectl wait --for=condition=Ready` and tools that read Flux objects understand them.
//!
//! - `Ready=True`: the last revision is applied and healthy; `Reconciling` and
//!   `Stalled` are removed.
//! - A retried failure: `Ready=False` with the stage's reason, `Reconciling=True`
//!   (`ProgressingWithRetry`).
//! - A failure that needs a human (invalid spec, blocked prune): `Ready=False` and
//!   `Stalled=True` with the same reason; no retry until the spec changes.
//!
//! `lastTransitionTime` moves only when a condition's status changes, never for a new
//! reason or message, as the Kubernetes API conventions require.

use std::time::Duration;

use super::application::{ApplicationStatus, Condition, HistoryEntry};
use super::duration::format_duration;

pub const READY: &str = "Ready";
pub const RECONCILING: &str = "Reconciling";
pub const STALLED: &str = "Stalled";

/// Condition reasons (Flux's vocabulary where it fits).
pub mod reason {
    pub const SUCCEEDED: &str = "ReconciliationSucceeded";
    pub const FAILED: &str = "ReconciliationFailed";
    pub const ARTIFACT_FAILED: &str = "ArtifactFailed";
    pub const BUILD_FAILED: &str = "BuildFailed";
    pub const HEALTH_CHECK_FAILED: &str = "HealthCheckFailed";
    pub const DEPENDENCY_NOT_READY: &str = "DependencyNotReady";
    pub const PRUNE_FAILED: &str = "PruneFailed";
    pub const PRUNE_BLOCKED: &str = "PruneBlocked";
    pub const PROGRESSING: &str = "Progressing";
    pub const PROGRESSING_WITH_RETRY: &str = "ProgressingWithRetry";
    pub const SUSPENDED: &str = "Suspended";
    /// A rendered object or the Application itself was refused by a Policy.
    pub const POLICY_DENIED: &str = "PolicyDenied";
    /// The spec cannot be reconciled as written (see [`crate::controller::validate`]).
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// `spec.serviceAccountName` is missing: no identity to act as.
    pub const SERVICE_ACCOUNT_MISSING: &str = "ServiceAccountNameMissing";
    /// A reference points outside the Application's namespace.
    pub const CROSS_NAMESPACE_REFERENCE: &str = "CrossNamespaceReference";
    /// The reconciler may not impersonate the Application's service account (the
    /// namespace has no RoleBinding to `lockstep-impersonate`).
    pub const IMPERSONATION_FORBIDDEN: &str = "ImpersonationForbidden";
}

/// Condition status values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    True,
    False,
    Unknown,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::True => "True",
            Status::False => "False",
            Status::Unknown => "Unknown",
        }
    }
}

/// How many reconciles `status.history` keeps.
pub const HISTORY_LIMIT: usize = 5;

/// Longest condition message kept; longer ones are cut, so that one huge error cannot
/// bloat the object.
pub const MESSAGE_LIMIT: usize = 2048;

/// The current time in RFC 3339 (UTC, seconds), as Kubernetes writes timestamps.
pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or_else(|_| time::OffsetDateTime::now_utc());
    now.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn clip(message: &str) -> String {
    if message.len() <= MESSAGE_LIMIT {
        return message.to_owned();
    }
    let mut end = MESSAGE_LIMIT;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &message[..end])
}

impl ApplicationStatus {
    /// The condition of a type, if set.
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }

    /// Whether `Ready` is `True`.
    pub fn is_ready(&self) -> bool {
        self.condition(READY).is_some_and(|c| c.status == "True")
    }

    /// Sets a condition. `lastTransitionTime` becomes `now` only when the condition is
    /// new or its status changed. Returns whether anything changed (so that an unchanged
    /// status needs no write).
    pub fn set_condition(
        &mut self,
        type_: &str,
        status: Status,
        reason: &str,
        message: &str,
        observed_generation: Option<i64>,
        now: &str,
    ) -> bool {
        let message = clip(message);
        match self.conditions.iter_mut().find(|c| c.type_ == type_) {
            Some(c) => {
                let before = c.clone();
                if c.status != status.as_str() {
                    c.status = status.as_str().to_owned();
                    c.last_transition_time = now.to_owned();
                }
                c.reason = reason.to_owned();
                c.message = message;
                c.observed_generation = observed_generation;
                *c != before
            }
            None => {
                self.conditions.push(Condition {
                    type_: type_.to_owned(),
                    status: status.as_str().to_owned(),
                    reason: reason.to_owned(),
                    message,
                    last_transition_time: now.to_owned(),
                    observed_generation,
                });
                true
            }
        }
    }

    /// Removes a condition; returns whether it was there.
    pub fn remove_condition(&mut self, type_: &str) -> bool {
        let n = self.conditions.len();
        self.conditions.retain(|c| c.type_ != type_);
        n != self.conditions.len()
    }

    /// A reconcile of `generation` started or is under way: `Reconciling=True`,
    /// `Ready=Unknown` unless Ready already holds a verdict for this generation.
    pub fn mark_reconciling(&mut self, message: &str, generation: Option<i64>, now: &str) -> bool {
        let mut changed = self.set_condition(
            RECONCILING,
            Status::True,
            reason::PROGRESSING,
            message,
            generation,
            now,
        );
        let settled = self
            .condition(READY)
            .is_some_and(|c| c.observed_generation == generation && c.status != "Unknown");
        if !settled {
            changed |= self.set_condition(
                READY,
                Status::Unknown,
                reason::PROGRESSING,
                message,
                generation,
                now,
            );
        }
        changed
    }

    /// The revision is applied and healthy.
    pub fn mark_ready(&mut self, message: &str, generation: Option<i64>, now: &str) -> bool {
        let mut changed = self.set_condition(
            READY,
            Status::True,
            reason::SUCCEEDED,
            message,
            generation,
            now,
        );
        changed |= self.remove_condition(RECONCILING);
        changed |= self.remove_condition(STALLED);
        changed |= self.set_observed_generation(generation);
        changed
    }

    /// A failure that will be retried after `retryInterval`.
    pub fn mark_failed(
        &mut self,
        reason: &str,
        message: &str,
        generation: Option<i64>,
        now: &str,
    ) -> bool {
        let mut changed =
            self.set_condition(READY, Status::False, reason, message, generation, now);
        changed |= self.set_condition(
            RECONCILING,
            Status::True,
            self::reason::PROGRESSING_WITH_RETRY,
            message,
            generation,
            now,
        );
        changed |= self.remove_condition(STALLED);
        changed
    }

    /// A failure that retrying cannot fix: it waits for a change of the spec (or an
    /// approval annotation).
    pub fn mark_stalled(
        &mut self,
        reason: &str,
        message: &str,
        generation: Option<i64>,
        now: &str,
    ) -> bool {
        let mut changed =
            self.set_condition(READY, Status::False, reason, message, generation, now);
        changed |= self.set_condition(STALLED, Status::True, reason, message, generation, now);
        changed |= self.remove_condition(RECONCILING);
        changed |= self.set_observed_generation(generation);
        changed
    }

    fn set_observed_generation(&mut self, generation: Option<i64>) -> bool {
        if generation.is_some() && self.observed_generation != generation {
            self.observed_generation = generation;
            return true;
        }
        false
    }

    /// Records one reconcile, newest first, keeping the last [`HISTORY_LIMIT`].
    pub fn push_history(&mut self, revision: &str, result: &str, took: Duration, now: &str) {
        self.history.insert(
            0,
            HistoryEntry {
                revision: revision.to_owned(),
                result: result.to_owned(),
                duration: format_duration(took),
                finished_at: Some(now.to_owned()),
            },
        );
        self.history.truncate(HISTORY_LIMIT);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: &str = "2026-01-01T00:00:00Z";
    const T1: &str = "2026-01-01T00:01:00Z";
    const T2: &str = "2026-01-01T00:02:00Z";

    #[test]
    fn transition_time_moves_only_when_the_status_changes() {
        let mut s = ApplicationStatus::default();
        assert!(s.set_condition(READY, Status::False, reason::BUILD_FAILED, "a", Some(1), T0));
        // Same status, new reason and message: no new transition time.
        assert!(s.set_condition(
            READY,
            Status::False,
            reason::ARTIFACT_FAILED,
            "b",
            Some(1),
            T1
        ));
        let c = s.condition(READY).unwrap();
        assert_eq!(
            (
                c.last_transition_time.as_str(),
                c.reason.as_str(),
                c.message.as_str()
            ),
            (T0, "ArtifactFailed", "b")
        );
        // Nothing different at all: reported as unchanged.
        assert!(!s.set_condition(
            READY,
            Status::False,
            reason::ARTIFACT_FAILED,
            "b",
            Some(1),
            T2
        ));
        assert_eq!(s.condition(READY).unwrap().last_transition_time, T0);
        // Status flips: the time moves.
        assert!(s.set_condition(READY, Status::True, reason::SUCCEEDED, "ok", Some(1), T2));
        assert_eq!(s.condition(READY).unwrap().last_transition_time, T2);
        assert_eq!(s.conditions.len(), 1);
    }

    #[test]
    fn kstatus_transitions() {
        let mut s = ApplicationStatus::default();
        s.mark_reconciling("Fetching", Some(2), T0);
        assert_eq!(s.condition(READY).unwrap().status, "Unknown");
        assert_eq!(s.condition(RECONCILING).unwrap().status, "True");

        s.mark_failed(reason::BUILD_FAILED, "apps/x.yaml: bad", Some(2), T1);
        assert_eq!(s.condition(READY).unwrap().reason, "BuildFailed");
        assert_eq!(
            s.condition(RECONCILING).unwrap().reason,
            "ProgressingWithRetry"
        );
        assert!(s.condition(STALLED).is_none());
        assert_eq!(
            s.observed_generation, None,
            "a retried failure is no verdict on the generation"
        );

        // A new attempt of the same generation keeps the failure visible in Ready.
        s.mark_reconciling("Fetching", Some(2), T1);
        assert_eq!(s.condition(READY).unwrap().status, "False");

        s.mark_stalled(
            reason::PRUNE_BLOCKED,
            "would delete 60 objects",
            Some(2),
            T2,
        );
        assert_eq!(s.condition(STALLED).unwrap().status, "True");
        assert!(s.condition(RECONCILING).is_none());
        assert_eq!(s.observed_generation, Some(2));

        assert!(s.mark_ready("Applied revision main@sha1:abc", Some(3), T2));
        assert!(s.is_ready());
        assert!(s.condition(STALLED).is_none() && s.condition(RECONCILING).is_none());
        assert_eq!(s.observed_generation, Some(3));
        assert!(
            !s.mark_ready("Applied revision main@sha1:abc", Some(3), T2),
            "an unchanged status needs no write"
        );
    }

    #[test]
    fn long_messages_are_clipped_on_a_char_boundary() {
        let mut s = ApplicationStatus::default();
        let long = "é".repeat(MESSAGE_LIMIT);
        s.set_condition(READY, Status::False, reason::FAILED, &long, None, T0);
        let m = &s.condition(READY).unwrap().message;
        assert!(m.len() <= MESSAGE_LIMIT + '…'.len_utf8() && m.ends_with('…'));
    }

    #[test]
    fn history_keeps_the_last_five_newest_first() {
        let mut s = ApplicationStatus::default();
        for i in 0..7u64 {
            s.push_history(
                &format!("main@sha1:{i}"),
                reason::SUCCEEDED,
                Duration::from_millis(1500),
                T0,
            );
        }
        assert_eq!(s.history.len(), HISTORY_LIMIT);
        let revs: Vec<&str> = s.history.iter().map(|h| h.revision.as_str()).collect();
        assert_eq!(
            revs,
            [
                "main@sha1:6",
                "main@sha1:5",
                "main@sha1:4",
                "main@sha1:3",
                "main@sha1:2"
            ]
        );
        assert_eq!(s.history[0].duration, "1.5s");
    }

    #[test]
    fn now_is_rfc3339_utc() {
        let n = now_rfc3339();
        assert!(n.ends_with('Z') && n.len() == 20, "{n}");
    }
}
