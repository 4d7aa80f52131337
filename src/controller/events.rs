//! Events about Applications (`events.k8s.io/v1`), one object per occurrence.
//!
//! kube's recorder folds repeated events of one reason into a series and keeps the first
//! note, which would show the first apply's objects on every later apply. lockstep
//! emits an Event only when something happened (apply, prune, drift correction, a new
//! failure), so each gets its own object with its own note.

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Resource, ResourceExt};

use super::application::Application;

/// The longest note kept (the API server refuses notes over 1 kB).
const NOTE_LIMIT: usize = 1000;

/// Normal or Warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Normal,
    Warning,
}

/// Publishes Events as the reconciler.
#[derive(Clone)]
pub struct Events {
    client: kube::Client,
    controller: String,
    instance: String,
}

impl Events {
    pub fn new(client: kube::Client, controller: &str) -> Events {
        let instance = std::env::var("POD_NAME").unwrap_or_else(|_| controller.to_owned());
        Events {
            client,
            controller: controller.to_owned(),
            instance,
        }
    }

    /// Records one Event about `app`. A failure to record is logged, never fatal.
    pub async fn publish(
        &self,
        app: &Application,
        severity: Severity,
        reason: &str,
        action: &str,
        note: &str,
    ) {
        let ns = app.namespace().unwrap_or_default();
        let regarding: ObjectReference = app.object_ref(&());
        let event = Event {
            metadata: ObjectMeta {
                generate_name: Some(format!("{}.", app.name_any())),
                namespace: Some(ns.clone()),
                ..Default::default()
            },
            event_time: Some(MicroTime(k8s_openapi::jiff::Timestamp::now())),
            type_: Some(
                match severity {
                    Severity::Normal => "Normal",
                    Severity::Warning => "Warning",
                }
                .to_owned(),
            ),
            reason: Some(reason.to_owned()),
            action: Some(action.to_owned()),
            note: Some(clip(note)),
            regarding: Some(regarding),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            ..Default::default()
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
        if let Err(e) = api.create(&PostParams::default(), &event).await {
            tracing::warn!(
                app = %format!("{ns}/{}", app.name_any()),
                error = %super::reconcile::api_error_text(&e),
                "cannot record an event"
            );
        }
    }
}

fn clip(note: &str) -> String {
    if note.len() <= NOTE_LIMIT {
        return note.to_owned();
    }
    let mut end = NOTE_LIMIT;
    while !note.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &note[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_notes_are_clipped_on_a_character_boundary() {
        let note = "é".repeat(600);
        let c = clip(&note);
        assert!(c.len() <= NOTE_LIMIT + '…'.len_utf8());
        assert!(c.ends_with('…'));
        assert_eq!(clip("short"), "short");
    }
}
