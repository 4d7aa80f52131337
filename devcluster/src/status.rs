//! `Status` objects: every error the server returns, and the success Status of deletes.

use serde_json::{Map, Value, json};

/// An API error: an HTTP code plus the `Status` body kube-apiserver would send.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code} {reason}: {message}")]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    // Boxed: errors travel through many Results and should stay small.
    pub details: Option<Box<Value>>,
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(Box::new(details));
        self
    }

    /// The `Status` body.
    pub fn to_status(&self) -> Value {
        let mut m = Map::new();
        m.insert("kind".into(), json!("Status"));
        m.insert("apiVersion".into(), json!("v1"));
        m.insert("metadata".into(), json!({}));
        m.insert("status".into(), json!("Failure"));
        m.insert("message".into(), json!(self.message));
        // A few upstream errors (e.g. typed-apply failures, 500) carry no reason at all.
        if !self.reason.is_empty() {
            m.insert("reason".into(), json!(self.reason));
        }
        if let Some(d) = &self.details {
            m.insert("details".into(), (**d).clone());
        } else if self.code == 404 || self.code == 401 {
            // kube-apiserver sends empty details for "no such resource type".
            m.insert("details".into(), json!({}));
        }
        m.insert("code".into(), json!(self.code));
        Value::Object(m)
    }

    /// Unknown path or resource type: empty details, the exact upstream message.
    pub fn path_not_found() -> Self {
        ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    }

    pub fn not_found(group: &str, plural: &str, name: &str) -> Self {
        ApiError::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", qualified(group, plural)),
        )
        .with_details(details(group, plural, name))
    }

    pub fn already_exists(group: &str, plural: &str, name: &str) -> Self {
        ApiError::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", qualified(group, plural)),
        )
        .with_details(details(group, plural, name))
    }

    pub fn conflict(group: &str, plural: &str, name: &str, why: &str) -> Self {
        ApiError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": {why}",
                qualified(group, plural)
            ),
        )
        .with_details(details(group, plural, name))
    }

    pub fn stale(group: &str, plural: &str, name: &str) -> Self {
        Self::conflict(
            group,
            plural,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(400, "BadRequest", message)
    }

    pub fn forbidden(group: &str, plural: &str, name: &str, why: &str) -> Self {
        let what = if name.is_empty() {
            qualified(group, plural)
        } else {
            format!("{} \"{name}\"", qualified(group, plural))
        };
        ApiError::new(403, "Forbidden", format!("{what} is forbidden: {why}"))
            .with_details(details(group, plural, name))
    }

    /// 422 Invalid with one cause per field error; `details.kind` is the Kind here and the
    /// message names the group-qualified kind (`Deployment.apps "web" is invalid: ...`), as
    /// kube-apiserver's GroupKind prints. kubectl rebuilds its own text from the details.
    pub fn invalid(group: &str, kind: &str, name: &str, causes: Vec<FieldError>) -> Self {
        let text: Vec<String> = causes.iter().map(FieldError::text).collect();
        let qualified = if group.is_empty() {
            kind.to_string()
        } else {
            format!("{kind}.{group}")
        };
        let message = if text.len() == 1 {
            format!("{qualified} \"{name}\" is invalid: {}", text[0])
        } else {
            format!("{qualified} \"{name}\" is invalid: [{}]", text.join(", "))
        };
        let mut d = Map::new();
        d.insert("name".into(), json!(name));
        if !group.is_empty() {
            d.insert("group".into(), json!(group));
        }
        d.insert("kind".into(), json!(kind));
        d.insert(
            "causes".into(),
            Value::Array(causes.iter().map(FieldError::cause).collect()),
        );
        ApiError::new(422, "Invalid", message).with_details(Value::Object(d))
    }

    pub fn unsupported_media(message: impl Into<String>) -> Self {
        ApiError::new(415, "UnsupportedMediaType", message)
    }

    pub fn method_not_allowed() -> Self {
        ApiError::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )
    }

    pub fn expired(message: impl Into<String>) -> Self {
        ApiError::new(410, "Expired", message)
    }

    pub fn too_large(limit: usize) -> Self {
        ApiError::new(
            413,
            "RequestEntityTooLarge",
            format!("Request entity too large: limit is {limit}"),
        )
    }

    pub fn unauthorized() -> Self {
        ApiError::new(401, "Unauthorized", "Unauthorized")
    }

    pub fn internal(message: impl Into<String>) -> Self {
        ApiError::new(500, "InternalError", message)
    }
}

/// One field error of an Invalid status.
#[derive(Debug, Clone)]
pub struct FieldError {
    pub reason: &'static str,
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn invalid(field: &str, value: &str, detail: &str) -> Self {
        FieldError {
            reason: "FieldValueInvalid",
            field: field.to_string(),
            message: format!("Invalid value: \"{value}\": {detail}"),
        }
    }

    /// An invalid value that is not a string, already rendered as Go's `%v`/`%#v` shows it
    /// (`30080`, `[]string{"10.96.0.10"}`).
    pub fn invalid_rendered(field: &str, rendered: &str, detail: &str) -> Self {
        FieldError {
            reason: "FieldValueInvalid",
            field: field.to_string(),
            message: format!("Invalid value: {rendered}: {detail}"),
        }
    }

    pub fn required(field: &str, detail: &str) -> Self {
        FieldError {
            reason: "FieldValueRequired",
            field: field.to_string(),
            message: if detail.is_empty() {
                "Required value".to_string()
            } else {
                format!("Required value: {detail}")
            },
        }
    }

    /// A value outside a closed set: `Unsupported value: "foo": supported values: "a", "b"`.
    pub fn not_supported(field: &str, value: &str, supported: &[&str]) -> Self {
        let list: Vec<String> = supported.iter().map(|v| format!("\"{v}\"")).collect();
        FieldError {
            reason: "FieldValueNotSupported",
            field: field.to_string(),
            message: format!(
                "Unsupported value: \"{value}\": supported values: {}",
                list.join(", ")
            ),
        }
    }

    pub fn forbidden(field: &str, detail: &str) -> Self {
        FieldError {
            reason: "FieldValueForbidden",
            field: field.to_string(),
            message: format!("Forbidden: {detail}"),
        }
    }

    fn text(&self) -> String {
        format!("{}: {}", self.field, self.message)
    }

    fn cause(&self) -> Value {
        json!({"reason": self.reason, "message": self.message, "field": self.field})
    }
}

/// `configmaps` for core, `deployments.apps` for groups: the resource as errors name it.
pub fn qualified(group: &str, plural: &str) -> String {
    if group.is_empty() {
        plural.to_string()
    } else {
        format!("{plural}.{group}")
    }
}

fn details(group: &str, plural: &str, name: &str) -> Value {
    let mut d = Map::new();
    if !name.is_empty() {
        d.insert("name".into(), json!(name));
    }
    if !group.is_empty() {
        d.insert("group".into(), json!(group));
    }
    d.insert("kind".into(), json!(plural));
    Value::Object(d)
}

/// The success Status of an immediate delete.
pub fn delete_success(group: &str, plural: &str, name: &str, uid: &str) -> Value {
    let mut d = Map::new();
    d.insert("name".into(), json!(name));
    d.insert("group".into(), json!(group));
    d.insert("kind".into(), json!(plural));
    d.insert("uid".into(), json!(uid));
    json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Success","details":Value::Object(d)})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_names_group_and_plural() {
        let s = ApiError::not_found("apps", "deployments", "web").to_status();
        assert_eq!(s["message"], "deployments.apps \"web\" not found");
        assert_eq!(s["details"]["kind"], "deployments");
        assert_eq!(s["code"], 404);
    }

    #[test]
    fn invalid_uses_kind_and_causes() {
        let e = ApiError::invalid(
            "",
            "ConfigMap",
            "Bad_Name",
            vec![FieldError::invalid("metadata.name", "Bad_Name", "bad")],
        );
        let s = e.to_status();
        assert_eq!(
            s["message"],
            "ConfigMap \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\": bad"
        );
        assert_eq!(s["details"]["kind"], "ConfigMap");
        assert_eq!(s["details"]["causes"][0]["reason"], "FieldValueInvalid");
        let s = ApiError::invalid(
            "apps",
            "Deployment",
            "web",
            vec![FieldError::required("spec.selector", "")],
        )
        .to_status();
        assert_eq!(
            s["message"],
            "Deployment.apps \"web\" is invalid: spec.selector: Required value"
        );
        assert_eq!(s["details"]["kind"], "Deployment");
        assert_eq!(s["details"]["group"], "apps");
    }

    #[test]
    fn unknown_path_has_empty_details() {
        let s = ApiError::path_not_found().to_status();
        assert_eq!(s["details"], json!({}));
    }
}
