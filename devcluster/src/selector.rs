//! Label and field selectors as list, watch and deletecollection accept them.

use serde_json::Value;

use crate::status::ApiError;

#[derive(Debug, Clone, PartialEq)]
enum Op {
    Eq(String),
    Ne(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    NotExists,
    Gt(i64),
    Lt(i64),
}

#[derive(Debug, Clone, PartialEq)]
struct Requirement {
    key: String,
    op: Op,
}

/// A parsed label selector; empty matches everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelSelector(Vec<Requirement>);

fn split_top(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn valid_key(k: &str) -> bool {
    let (prefix, name) = match k.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    if let Some(p) = prefix
        && (p.is_empty() || !crate::lifecycle::is_dns1123_subdomain(p))
    {
        return false;
    }
    valid_value(name) && !name.is_empty()
}

fn valid_value(v: &str) -> bool {
    v.len() <= 63
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        && v.chars().next().is_none_or(|c| c.is_ascii_alphanumeric())
        && v.chars().last().is_none_or(|c| c.is_ascii_alphanumeric())
}

impl LabelSelector {
    pub fn parse(s: &str) -> Result<LabelSelector, ApiError> {
        let bad = |why: &str| ApiError::bad_request(format!("unable to parse requirement: {why}"));
        let mut reqs = Vec::new();
        if s.trim().is_empty() {
            return Ok(LabelSelector(reqs));
        }
        for part in split_top(s) {
            let p = part.trim();
            if p.is_empty() {
                return Err(bad("found '', expected: identifier"));
            }
            let req = if let Some(k) = p.strip_prefix('!') {
                Requirement {
                    key: k.trim().into(),
                    op: Op::NotExists,
                }
            } else if let Some((k, rest)) = split_set_op(p, " notin ") {
                Requirement {
                    key: k,
                    op: Op::NotIn(parse_set(&rest).ok_or_else(|| bad(p))?),
                }
            } else if let Some((k, rest)) = split_set_op(p, " in ") {
                Requirement {
                    key: k,
                    op: Op::In(parse_set(&rest).ok_or_else(|| bad(p))?),
                }
            } else if let Some((k, v)) = p.split_once("!=") {
                Requirement {
                    key: k.trim().into(),
                    op: Op::Ne(v.trim().into()),
                }
            } else if let Some((k, v)) = p.split_once("==") {
                Requirement {
                    key: k.trim().into(),
                    op: Op::Eq(v.trim().into()),
                }
            } else if let Some((k, v)) = p.split_once('=') {
                Requirement {
                    key: k.trim().into(),
                    op: Op::Eq(v.trim().into()),
                }
            } else if let Some((k, v)) = p.split_once('>') {
                Requirement {
                    key: k.trim().into(),
                    op: Op::Gt(v.trim().parse().map_err(|_| bad(p))?),
                }
            } else if let Some((k, v)) = p.split_once('<') {
                Requirement {
                    key: k.trim().into(),
                    op: Op::Lt(v.trim().parse().map_err(|_| bad(p))?),
                }
            } else {
                Requirement {
                    key: p.into(),
                    op: Op::Exists,
                }
            };
            if !valid_key(&req.key) {
                return Err(bad(&format!("invalid label key \"{}\"", req.key)));
            }
            let values_ok = match &req.op {
                Op::Eq(v) | Op::Ne(v) => valid_value(v),
                Op::In(vs) | Op::NotIn(vs) => vs.iter().all(|v| valid_value(v)),
                _ => true,
            };
            if !values_ok {
                return Err(bad(&format!("invalid label value in \"{p}\"")));
            }
            reqs.push(req);
        }
        Ok(LabelSelector(reqs))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn matches(&self, obj: &Value) -> bool {
        let labels = obj.pointer("/metadata/labels").and_then(Value::as_object);
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.0.iter().all(|r| match &r.op {
            Op::Eq(v) => get(&r.key) == Some(v.as_str()),
            Op::Ne(v) => get(&r.key) != Some(v.as_str()),
            Op::In(vs) => get(&r.key).is_some_and(|x| vs.iter().any(|v| v == x)),
            Op::NotIn(vs) => get(&r.key).is_none_or(|x| !vs.iter().any(|v| v == x)),
            Op::Exists => get(&r.key).is_some(),
            Op::NotExists => get(&r.key).is_none(),
            Op::Gt(n) => get(&r.key)
                .and_then(|x| x.parse::<i64>().ok())
                .is_some_and(|x| x > *n),
            Op::Lt(n) => get(&r.key)
                .and_then(|x| x.parse::<i64>().ok())
                .is_some_and(|x| x < *n),
        })
    }
}

fn split_set_op(p: &str, op: &str) -> Option<(String, String)> {
    let (k, rest) = p.split_once(op)?;
    Some((k.trim().to_string(), rest.trim().to_string()))
}

fn parse_set(s: &str) -> Option<Vec<String>> {
    let inner = s.strip_prefix('(')?.strip_suffix(')')?;
    Some(
        inner
            .split(',')
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect(),
    )
}

/// A parsed field selector: conjunction of `path=value` / `path!=value`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldSelector(Vec<(String, bool, String)>);

/// Kind-specific selectable fields beyond metadata.name and metadata.namespace.
fn allowed_fields(kind: &str) -> &'static [&'static str] {
    match kind {
        "Pod" => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        "Event" => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        "Secret" => &["type"],
        "Namespace" => &["status.phase"],
        "Job" => &["status.successful"],
        "ReplicaSet" => &["status.replicas"],
        _ => &[],
    }
}

/// events.k8s.io/v1 field labels and the core v1 labels they select on: both versions share
/// one storage, kept in the core form, and kube-apiserver converts the labels the same way.
const EVENTS_API_LABELS: &[(&str, &str)] = &[
    ("reason", "reason"),
    ("regarding.kind", "involvedObject.kind"),
    ("regarding.namespace", "involvedObject.namespace"),
    ("regarding.name", "involvedObject.name"),
    ("regarding.uid", "involvedObject.uid"),
    ("regarding.apiVersion", "involvedObject.apiVersion"),
    (
        "regarding.resourceVersion",
        "involvedObject.resourceVersion",
    ),
    ("regarding.fieldPath", "involvedObject.fieldPath"),
    ("reportingController", "reportingComponent"),
    ("source", "source"),
    ("type", "type"),
    ("metadata.namespace", "metadata.namespace"),
    ("metadata.name", "metadata.name"),
];

impl FieldSelector {
    /// A field selector for a URL of `group`: labels are checked against the kind's
    /// selectable fields (kube-apiserver's "field label not supported" otherwise).
    pub fn parse_for(s: &str, group: &str, kind: &str) -> Result<FieldSelector, ApiError> {
        let mut sel = FieldSelector::parse(
            s,
            if group == "events.k8s.io" && kind == "Event" {
                "events.k8s.io/Event"
            } else {
                kind
            },
        )?;
        if group == "events.k8s.io" && kind == "Event" {
            for (path, _, _) in &mut sel.0 {
                if let Some((_, core)) = EVENTS_API_LABELS.iter().find(|(l, _)| l == path) {
                    *path = core.to_string();
                }
            }
        }
        Ok(sel)
    }

    pub fn parse(s: &str, kind: &str) -> Result<FieldSelector, ApiError> {
        let mut out = Vec::new();
        if s.trim().is_empty() {
            return Ok(FieldSelector(out));
        }
        for part in s.split(',') {
            let part = part.trim();
            let (path, eq, value) = if let Some((k, v)) = part.split_once("!=") {
                (k, false, v)
            } else if let Some((k, v)) = part.split_once("==") {
                (k, true, v)
            } else if let Some((k, v)) = part.split_once('=') {
                (k, true, v)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid selector: '{s}'; can't understand '{part}'"
                )));
            };
            let path = path.trim();
            let allowed = if kind == "events.k8s.io/Event" {
                EVENTS_API_LABELS.iter().any(|(l, _)| *l == path)
            } else {
                path == "metadata.name"
                    || path == "metadata.namespace"
                    || allowed_fields(kind).contains(&path)
            };
            if !allowed {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {path}"
                )));
            }
            out.push((path.to_string(), eq, value.trim().to_string()));
        }
        Ok(FieldSelector(out))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The name a `metadata.name=X` selector pins (an authorization attribute).
    pub fn pinned_name(&self) -> Option<&str> {
        self.0
            .iter()
            .find(|(p, eq, _)| p == "metadata.name" && *eq)
            .map(|(_, _, v)| v.as_str())
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.0.iter().all(|(path, eq, want)| {
            let ptr = format!("/{}", path.replace('.', "/"));
            let have = match obj.pointer(&ptr) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(v) => v.to_string(),
            };
            (have == *want) == *eq
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_selector_operators() {
        let o = json!({"metadata":{"labels":{"app":"web","tier":"fe"}}});
        let m = |s: &str| LabelSelector::parse(s).map(|l| l.matches(&o));
        assert_eq!(m("app=web").ok(), Some(true));
        assert_eq!(m("app==web,tier!=be").ok(), Some(true));
        assert_eq!(m("app in (a, web)").ok(), Some(true));
        assert_eq!(m("app notin (web)").ok(), Some(false));
        assert_eq!(m("tier,!missing").ok(), Some(true));
        assert_eq!(m("missing").ok(), Some(false));
        assert!(LabelSelector::parse("app=we b!").is_err());
        assert!(LabelSelector::parse("a,,b").is_err());
    }

    #[test]
    fn field_selector_support_and_errors() {
        let o = json!({"metadata":{"name":"a","namespace":"ns"},"type":"Opaque"});
        let f = FieldSelector::parse("metadata.name=a,metadata.namespace!=x", "ConfigMap");
        assert!(f.as_ref().is_ok_and(|f| f.matches(&o)));
        assert_eq!(
            f.ok()
                .and_then(|f| f.pinned_name().map(str::to_string))
                .as_deref(),
            Some("a")
        );
        let e = FieldSelector::parse("spec.foo=1", "ConfigMap").err();
        assert_eq!(
            e.map(|e| e.message),
            Some("field label not supported: spec.foo".into())
        );
        assert!(FieldSelector::parse("type=Opaque", "Secret").is_ok_and(|f| f.matches(&o)));
        // events.k8s.io labels select on the stored core fields; core labels are refused there.
        let ev = json!({"involvedObject":{"kind":"Pod","name":"p"},"reportingComponent":"ctl"});
        let f = FieldSelector::parse_for(
            "regarding.kind=Pod,regarding.name=p,reportingController=ctl",
            "events.k8s.io",
            "Event",
        );
        assert!(f.is_ok_and(|f| f.matches(&ev)));
        assert!(
            FieldSelector::parse_for("involvedObject.kind=Pod", "events.k8s.io", "Event").is_err()
        );
        assert!(FieldSelector::parse_for("regarding.kind=Pod", "", "Event").is_err());
        assert!(
            FieldSelector::parse_for("involvedObject.kind=Pod", "", "Event")
                .is_ok_and(|f| f.matches(&ev))
        );
    }
}
