//! RBAC authorization as kube-apiserver evaluates it.
//!
//! # API (wired in by the server)
//!
//! ```text
//! pub struct Attributes { user: UserInfo, verb, api_group, resource, subresource, namespace,
//!                         name, resource_request: bool, path }          (all String but user/resource_request)
//!   Attributes::resource(user, verb, group, resource, subresource, namespace, name) -> Attributes
//!   Attributes::non_resource(user, verb, path) -> Attributes
//!   `name` must already carry the `metadata.name` field selector for list/watch, as the
//!   apiserver's request-info filter does, so resourceNames rules can match.
//! pub enum Decision { Allow, Deny(String), NoOpinion }
//!   `Policy::authorize` returns Allow or Deny(reason); the reason (possibly empty) goes after
//!   the standard message, see `forbidden_message`.
//! pub struct Policy
//!   Policy::from_objects(roles, cluster_roles, role_bindings, cluster_role_bindings) -> Policy
//!     rebuild it after any RBAC write; aggregated ClusterRoles are resolved here.
//!   Policy::authorize(&self, &Attributes) -> Decision
//!   Policy::authorize_with_reason(&self, &Attributes) -> (bool, String)
//!     the reason is `RBAC: allowed by ...` on allow, `RBAC: <resolution errors>` or "" on deny.
//!   Policy::rules_for(&self, &UserInfo, namespace) -> (Vec<Value>, Vec<Value>)
//!     (resourceRules, nonResourceRules) in authorization.k8s.io/v1 JSON shape.
//!   Policy::aggregated_cluster_role_rules(&self, name) -> Option<Vec<Value>>
//!     the rules the aggregation controller would store on an aggregated ClusterRole.
//!   Policy::check_escalation(&self, requester, namespace, object) -> Result<(), String>
//!     for writes of Role/ClusterRole/RoleBinding/ClusterRoleBinding; Err is the full 403 message.
//! pub fn bootstrap_objects() -> Vec<Value>   ClusterRoles then ClusterRoleBindings
//! pub fn forbidden_message(&Attributes, reason) -> String      the Status message of a 403
//! pub fn forbidden_status(&Attributes, reason) -> Value        the whole 403 Status object
//! pub fn subject_access_review(&Policy, review) -> Value
//! pub fn self_subject_access_review(&Policy, &UserInfo, review) -> Value
//! pub fn local_subject_access_review(&Policy, namespace, review) -> Value
//! pub fn self_subject_rules_review(&Policy, &UserInfo, review) -> Value
//! ```
//!
//! Reviews return the request object with `status` filled in (HTTP 201).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use crate::auth::UserInfo;
use crate::status::{ApiError, FieldError};

pub const RBAC_GROUP: &str = "rbac.authorization.k8s.io";
const MASTERS: &str = "system:masters";
const SA_PREFIX: &str = "system:serviceaccount:";

/// What a request wants to do, as the authorizer sees it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Attributes {
    pub user: UserInfo,
    pub verb: String,
    pub api_group: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
    pub resource_request: bool,
    pub path: String,
}

impl Attributes {
    pub fn resource(
        user: &UserInfo,
        verb: &str,
        api_group: &str,
        resource: &str,
        subresource: &str,
        namespace: &str,
        name: &str,
    ) -> Self {
        Attributes {
            user: user.clone(),
            verb: verb.into(),
            api_group: api_group.into(),
            resource: resource.into(),
            subresource: subresource.into(),
            namespace: namespace.into(),
            name: name.into(),
            resource_request: true,
            path: String::new(),
        }
    }

    pub fn non_resource(user: &UserInfo, verb: &str, path: &str) -> Self {
        Attributes {
            user: user.clone(),
            verb: verb.into(),
            path: path.into(),
            ..Default::default()
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny(String),
    NoOpinion,
}

/// One PolicyRule, parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Rule {
    verbs: Vec<String>,
    api_groups: Vec<String>,
    resources: Vec<String>,
    resource_names: Vec<String>,
    non_resource_urls: Vec<String>,
}

fn str_list(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn str_field<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn meta_field<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get("metadata").map(|m| str_field(m, key)).unwrap_or("")
}

impl Rule {
    fn from_value(v: &Value) -> Rule {
        Rule {
            verbs: str_list(v, "verbs"),
            api_groups: str_list(v, "apiGroups"),
            resources: str_list(v, "resources"),
            resource_names: str_list(v, "resourceNames"),
            non_resource_urls: str_list(v, "nonResourceURLs"),
        }
    }

    fn to_value(&self) -> Value {
        let mut m = Map::new();
        m.insert("verbs".into(), json!(self.verbs));
        if !self.api_groups.is_empty() {
            m.insert("apiGroups".into(), json!(self.api_groups));
        }
        if !self.resources.is_empty() {
            m.insert("resources".into(), json!(self.resources));
        }
        if !self.resource_names.is_empty() {
            m.insert("resourceNames".into(), json!(self.resource_names));
        }
        if !self.non_resource_urls.is_empty() {
            m.insert("nonResourceURLs".into(), json!(self.non_resource_urls));
        }
        Value::Object(m)
    }

    /// The apiserver's `RuleAllows`.
    fn allows(&self, a: &Attributes) -> bool {
        if a.resource_request {
            let combined = if a.subresource.is_empty() {
                a.resource.clone()
            } else {
                format!("{}/{}", a.resource, a.subresource)
            };
            verb_matches(&self.verbs, &a.verb)
                && has_or_star(&self.api_groups, &a.api_group)
                && resource_matches(&self.resources, &combined, &a.subresource)
                && (self.resource_names.is_empty() || self.resource_names.contains(&a.name))
        } else {
            verb_matches(&self.verbs, &a.verb)
                && non_resource_url_matches(&self.non_resource_urls, &a.path)
        }
    }

    /// `CompactString` of the escalation message, Go `%q` slice formatting included.
    fn compact_string(&self) -> String {
        let mut parts = Vec::new();
        if !self.api_groups.is_empty() {
            parts.push(format!("APIGroups:{}", go_quote_list(&self.api_groups)));
        }
        if !self.resources.is_empty() {
            parts.push(format!("Resources:{}", go_quote_list(&self.resources)));
        }
        if !self.non_resource_urls.is_empty() {
            parts.push(format!(
                "NonResourceURLs:{}",
                go_quote_list(&self.non_resource_urls)
            ));
        }
        if !self.resource_names.is_empty() {
            parts.push(format!(
                "ResourceNames:{}",
                go_quote_list(&self.resource_names)
            ));
        }
        if !self.verbs.is_empty() {
            parts.push(format!("Verbs:{}", go_quote_list(&self.verbs)));
        }
        format!("{{{}}}", parts.join(", "))
    }
}

fn verb_matches(verbs: &[String], verb: &str) -> bool {
    has_or_star(verbs, verb)
}

fn has_or_star(set: &[String], item: &str) -> bool {
    set.iter().any(|s| s == "*" || s == item)
}

fn resource_matches(rule_resources: &[String], combined: &str, subresource: &str) -> bool {
    rule_resources.iter().any(|r| {
        if r == "*" || r == combined {
            return true;
        }
        // "*/scale" matches the scale subresource of every resource.
        !subresource.is_empty()
            && r.len() == subresource.len() + 2
            && r.starts_with("*/")
            && r.ends_with(subresource)
    })
}

fn non_resource_url_matches(urls: &[String], path: &str) -> bool {
    urls.iter().any(|u| {
        u == "*" || u == path || (u.ends_with('*') && path.starts_with(u.trim_end_matches('*')))
    })
}

/// Go's `%q` on a `[]string`: `["a" "b"]`.
pub(crate) fn go_quote_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| go_quote(s)).collect();
    format!("[{}]", quoted.join(" "))
}

/// Go's `%q` on a string (JSON escaping is close enough for printable input).
pub(crate) fn go_quote(s: &str) -> String {
    Value::String(s.to_owned()).to_string()
}

#[derive(Debug, Clone)]
struct Subject {
    kind: String,
    name: String,
    namespace: String,
}

#[derive(Debug, Clone)]
struct Binding {
    name: String,
    namespace: String,
    role_kind: String,
    role_name: String,
    subjects: Vec<Subject>,
}

impl Binding {
    fn from_value(v: &Value) -> Binding {
        let role_ref = v.get("roleRef").cloned().unwrap_or(Value::Null);
        let subjects = v
            .get("subjects")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|s| Subject {
                        kind: str_field(s, "kind").to_owned(),
                        name: str_field(s, "name").to_owned(),
                        namespace: str_field(s, "namespace").to_owned(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Binding {
            name: meta_field(v, "name").to_owned(),
            namespace: meta_field(v, "namespace").to_owned(),
            role_kind: str_field(&role_ref, "kind").to_owned(),
            role_name: str_field(&role_ref, "name").to_owned(),
            subjects,
        }
    }

    /// Index of the first subject that names `user` (the apiserver's `appliesTo`).
    fn applies_to(&self, user: &UserInfo) -> Option<usize> {
        self.subjects.iter().position(|s| match s.kind.as_str() {
            "User" => user.name == s.name,
            "Group" => user.groups.iter().any(|g| g == &s.name),
            "ServiceAccount" => {
                // An SA subject without namespace means the binding's own namespace.
                let ns = if s.namespace.is_empty() {
                    self.namespace.as_str()
                } else {
                    s.namespace.as_str()
                };
                !ns.is_empty() && user.name == format!("{SA_PREFIX}{ns}:{}", s.name)
            }
            _ => false,
        })
    }

    /// The allow reason's source description, as the RBAC authorizer prints it.
    fn describe(&self, subject: usize, cluster: bool) -> String {
        let s = &self.subjects[subject];
        let who = if s.kind == "ServiceAccount" {
            let ns = if s.namespace.is_empty() {
                &self.namespace
            } else {
                &s.namespace
            };
            format!("{} {}", s.kind, go_quote(&format!("{}/{}", s.name, ns)))
        } else {
            format!("{} {}", s.kind, go_quote(&s.name))
        };
        if cluster {
            format!(
                "ClusterRoleBinding {} of {} {} to {}",
                go_quote(&self.name),
                self.role_kind,
                go_quote(&self.role_name),
                who
            )
        } else {
            format!(
                "RoleBinding {} of {} {} to {}",
                go_quote(&format!("{}/{}", self.name, self.namespace)),
                self.role_kind,
                go_quote(&self.role_name),
                who
            )
        }
    }
}

/// Called per rule of each applicable binding (binding, matching subject index, cluster-wide?),
/// or with a resolution error; returns false to stop.
type RuleVisitor<'a> =
    dyn FnMut(Option<(&Binding, usize, bool)>, Option<&Rule>, Option<String>) -> bool + 'a;

/// Indexed RBAC objects. Cheap to rebuild; the server rebuilds it after RBAC writes.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    roles: BTreeMap<(String, String), Vec<Rule>>,
    cluster_roles: BTreeMap<String, Vec<Rule>>,
    aggregated: BTreeSet<String>,
    role_bindings: BTreeMap<String, Vec<Binding>>,
    cluster_role_bindings: Vec<Binding>,
}

/// Where rule resolution happens decides how a missing role is named in errors.
#[derive(Clone, Copy)]
enum Getter {
    /// The authorizer's informer listers: `role.rbac.authorization.k8s.io "x" not found`.
    Lister,
    /// The registry used by escalation checks: `roles.rbac.authorization.k8s.io "x" not found`.
    Registry,
}

fn not_found(kind: &str, name: &str, getter: Getter) -> String {
    let resource = match (kind, getter) {
        ("Role", Getter::Lister) => "role",
        ("ClusterRole", Getter::Lister) => "clusterrole",
        ("Role", Getter::Registry) => "roles",
        _ => "clusterroles",
    };
    format!("{resource}.{RBAC_GROUP} {} not found", go_quote(name))
}

/// utilerrors.NewAggregate(...).Error(): one message as is, several as `[a, b]`, deduplicated.
fn aggregate(errors: &[String]) -> String {
    let mut seen = BTreeSet::new();
    let unique: Vec<&String> = errors.iter().filter(|e| seen.insert(e.as_str())).collect();
    if unique.len() == 1 {
        unique[0].clone()
    } else {
        format!(
            "[{}]",
            unique
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

fn label_selector_matches(selector: &Value, labels: &Map<String, Value>) -> bool {
    if let Some(ml) = selector.get("matchLabels").and_then(Value::as_object) {
        for (k, v) in ml {
            if labels.get(k) != Some(v) {
                return false;
            }
        }
    }
    if let Some(exprs) = selector.get("matchExpressions").and_then(Value::as_array) {
        for e in exprs {
            let key = str_field(e, "key");
            let values = str_list(e, "values");
            let actual = labels.get(key).and_then(Value::as_str);
            let ok = match str_field(e, "operator") {
                "In" => actual.is_some_and(|a| values.iter().any(|v| v == a)),
                "NotIn" => actual.is_none_or(|a| !values.iter().any(|v| v == a)),
                "Exists" => actual.is_some(),
                "DoesNotExist" => actual.is_none(),
                // An invalid operator makes the selector invalid; the controller skips it.
                _ => false,
            };
            if !ok {
                return false;
            }
        }
    }
    true
}

impl Policy {
    pub fn from_objects(
        roles: &[Value],
        cluster_roles: &[Value],
        role_bindings: &[Value],
        cluster_role_bindings: &[Value],
    ) -> Policy {
        let mut p = Policy::default();
        for r in roles {
            let rules = rules_of(r);
            p.roles.insert(
                (
                    meta_field(r, "namespace").to_owned(),
                    meta_field(r, "name").to_owned(),
                ),
                rules,
            );
        }
        // Aggregation: resolve each aggregated ClusterRole to the union the controller would
        // store, following aggregated roles selected by other aggregated roles (edit -> admin).
        let by_name: BTreeMap<String, &Value> = cluster_roles
            .iter()
            .map(|c| (meta_field(c, "name").to_owned(), c))
            .collect();
        for (name, cr) in &by_name {
            let rules = if cr.get("aggregationRule").is_some_and(|a| !a.is_null()) {
                p.aggregated.insert(name.clone());
                let mut visiting = BTreeSet::new();
                resolve_aggregated(name, &by_name, &mut visiting)
            } else {
                rules_of(cr)
            };
            p.cluster_roles.insert(name.clone(), rules);
        }
        for b in role_bindings {
            let b = Binding::from_value(b);
            p.role_bindings
                .entry(b.namespace.clone())
                .or_default()
                .push(b);
        }
        for list in p.role_bindings.values_mut() {
            list.sort_by(|a, b| a.name.cmp(&b.name));
        }
        p.cluster_role_bindings = cluster_role_bindings
            .iter()
            .map(Binding::from_value)
            .collect();
        p.cluster_role_bindings.sort_by(|a, b| a.name.cmp(&b.name));
        p
    }

    pub fn aggregated_cluster_role_rules(&self, name: &str) -> Option<Vec<Value>> {
        if !self.aggregated.contains(name) {
            return None;
        }
        self.cluster_roles
            .get(name)
            .map(|rules| rules.iter().map(Rule::to_value).collect())
    }

    fn role_rules(
        &self,
        kind: &str,
        name: &str,
        namespace: &str,
        getter: Getter,
    ) -> Result<&[Rule], String> {
        let found = match kind {
            "Role" => self.roles.get(&(namespace.to_owned(), name.to_owned())),
            "ClusterRole" => self.cluster_roles.get(name),
            _ => None,
        };
        match found {
            Some(r) => Ok(r),
            None if kind == "Role" || kind == "ClusterRole" => Err(not_found(kind, name, getter)),
            None => Err(format!(
                "unsupported role reference kind: {}",
                go_quote(kind)
            )),
        }
    }

    /// Visit the rules of every binding that applies to `user`: ClusterRoleBindings first, then
    /// RoleBindings of `namespace`. The visitor returns false to stop.
    fn visit(
        &self,
        user: &UserInfo,
        namespace: &str,
        getter: Getter,
        visitor: &mut RuleVisitor<'_>,
    ) {
        for b in &self.cluster_role_bindings {
            let Some(idx) = b.applies_to(user) else {
                continue;
            };
            // A ClusterRoleBinding can only reference ClusterRoles.
            let kind = if b.role_kind == "ClusterRole" {
                "ClusterRole"
            } else {
                b.role_kind.as_str()
            };
            match self.role_rules(kind, &b.role_name, "", getter) {
                Ok(rules) => {
                    for r in rules {
                        if !visitor(Some((b, idx, true)), Some(r), None) {
                            return;
                        }
                    }
                }
                Err(e) => {
                    if !visitor(None, None, Some(e)) {
                        return;
                    }
                }
            }
        }
        if namespace.is_empty() {
            return;
        }
        for b in self.role_bindings.get(namespace).into_iter().flatten() {
            let Some(idx) = b.applies_to(user) else {
                continue;
            };
            match self.role_rules(&b.role_kind, &b.role_name, namespace, getter) {
                Ok(rules) => {
                    for r in rules {
                        if !visitor(Some((b, idx, false)), Some(r), None) {
                            return;
                        }
                    }
                }
                Err(e) => {
                    if !visitor(None, None, Some(e)) {
                        return;
                    }
                }
            }
        }
    }

    pub fn authorize(&self, a: &Attributes) -> Decision {
        match self.authorize_with_reason(a) {
            (true, _) => Decision::Allow,
            (false, reason) => Decision::Deny(reason),
        }
    }

    /// `(allowed, reason)` as SubjectAccessReview reports them.
    pub fn authorize_with_reason(&self, a: &Attributes) -> (bool, String) {
        // The privileged-group authorizer runs before RBAC and gives no reason.
        if a.user.groups.iter().any(|g| g == MASTERS) {
            return (true, String::new());
        }
        let mut allowed_by = None;
        let mut errors = Vec::new();
        self.visit(
            &a.user,
            &a.namespace,
            Getter::Lister,
            &mut |src, rule, err| {
                if let (Some((b, idx, cluster)), Some(rule)) = (src, rule)
                    && rule.allows(a)
                {
                    allowed_by = Some(b.describe(idx, cluster));
                    return false;
                }
                if let Some(e) = err {
                    errors.push(e);
                }
                true
            },
        );
        match allowed_by {
            Some(src) => (true, format!("RBAC: allowed by {src}")),
            None if errors.is_empty() => (false, String::new()),
            None => (false, format!("RBAC: {}", aggregate(&errors))),
        }
    }

    /// All rules that apply to `user` in `namespace` (cluster-wide ones included), plus the
    /// resolution errors met on the way.
    fn collect_rules(
        &self,
        user: &UserInfo,
        namespace: &str,
        getter: Getter,
    ) -> (Vec<Rule>, Vec<String>) {
        let mut rules = Vec::new();
        let mut errors = Vec::new();
        self.visit(user, namespace, getter, &mut |_, rule, err| {
            if let Some(r) = rule {
                rules.push(r.clone());
            }
            if let Some(e) = err {
                errors.push(e);
            }
            true
        });
        (rules, errors)
    }

    pub fn rules_for(&self, user: &UserInfo, namespace: &str) -> (Vec<Value>, Vec<Value>) {
        let (r, n, _) = self.rules_review(user, namespace);
        (r, n)
    }

    /// Rules plus the evaluation error text, for SelfSubjectRulesReview.
    fn rules_review(&self, user: &UserInfo, namespace: &str) -> (Vec<Value>, Vec<Value>, String) {
        let mut resource_rules = Vec::new();
        let mut non_resource_rules = Vec::new();
        // The privileged-group authorizer contributes its own full rules first.
        if user.groups.iter().any(|g| g == MASTERS) {
            resource_rules.push(json!({"verbs":["*"],"apiGroups":["*"],"resources":["*"]}));
            non_resource_rules.push(json!({"verbs":["*"],"nonResourceURLs":["*"]}));
        }
        let (rules, errors) = self.collect_rules(user, namespace, Getter::Lister);
        for r in &rules {
            if !r.resources.is_empty() {
                let mut m = Map::new();
                m.insert("verbs".into(), json!(r.verbs));
                if !r.api_groups.is_empty() {
                    m.insert("apiGroups".into(), json!(r.api_groups));
                }
                m.insert("resources".into(), json!(r.resources));
                if !r.resource_names.is_empty() {
                    m.insert("resourceNames".into(), json!(r.resource_names));
                }
                resource_rules.push(Value::Object(m));
            }
            if !r.non_resource_urls.is_empty() {
                non_resource_rules
                    .push(json!({"verbs": r.verbs, "nonResourceURLs": r.non_resource_urls}));
            }
        }
        let err = if errors.is_empty() {
            String::new()
        } else {
            aggregate(&errors)
        };
        (resource_rules, non_resource_rules, err)
    }

    /// Escalation prevention for RBAC writes (the apiserver's policy-based RBAC storage).
    pub fn check_escalation(
        &self,
        requester: &UserInfo,
        namespace: &str,
        object: &Value,
    ) -> Result<(), String> {
        if requester.groups.iter().any(|g| g == MASTERS) {
            return Ok(());
        }
        let kind = str_field(object, "kind");
        let name = meta_field(object, "name");
        let (resource, cluster) = match kind {
            "Role" => ("roles", false),
            "ClusterRole" => ("clusterroles", true),
            "RoleBinding" => ("rolebindings", false),
            "ClusterRoleBinding" => ("clusterrolebindings", true),
            _ => return Ok(()),
        };
        let ns = if cluster { "" } else { namespace };
        let forbidden = |msg: String| {
            format!(
                "{resource}.{RBAC_GROUP} {} is forbidden: {msg}",
                go_quote(name)
            )
        };
        match kind {
            "Role" | "ClusterRole" => {
                let escalate =
                    Attributes::resource(requester, "escalate", RBAC_GROUP, resource, "", ns, name);
                if self.authorize_with_reason(&escalate).0 {
                    return Ok(());
                }
                self.confirm_no_escalation(requester, ns, &rules_of(object))
                    .map_err(&forbidden)?;
                if kind == "ClusterRole"
                    && object.get("aggregationRule").is_some_and(|a| !a.is_null())
                {
                    let full = [
                        Rule {
                            verbs: vec!["*".into()],
                            api_groups: vec!["*".into()],
                            resources: vec!["*".into()],
                            ..Default::default()
                        },
                        Rule {
                            verbs: vec!["*".into()],
                            non_resource_urls: vec!["*".into()],
                            ..Default::default()
                        },
                    ];
                    if self.confirm_no_escalation(requester, ns, &full).is_err() {
                        return Err(forbidden(
                            "must have cluster-admin privileges to use the aggregationRule".into(),
                        ));
                    }
                }
                Ok(())
            }
            _ => {
                let role_ref = object.get("roleRef").cloned().unwrap_or(Value::Null);
                let ref_kind = str_field(&role_ref, "kind");
                let ref_name = str_field(&role_ref, "name");
                let bind_resource = match ref_kind {
                    "Role" => Some("roles"),
                    "ClusterRole" => Some("clusterroles"),
                    _ => None,
                };
                // An empty apiGroup is defaulted before kube-apiserver gets here.
                let ref_group = match str_field(&role_ref, "apiGroup") {
                    "" => RBAC_GROUP,
                    g => g,
                };
                if let Some(res) = bind_resource {
                    let bind =
                        Attributes::resource(requester, "bind", ref_group, res, "", ns, ref_name);
                    if self.authorize_with_reason(&bind).0 {
                        return Ok(());
                    }
                }
                let rules = self
                    .role_rules(ref_kind, ref_name, ns, Getter::Registry)
                    .map_err(&forbidden)?
                    .to_vec();
                self.confirm_no_escalation(requester, ns, &rules)
                    .map_err(&forbidden)
            }
        }
    }

    /// `ConfirmNoEscalation`: every atomic permission in `rules` must be covered by the
    /// requester's own rules in `namespace`.
    fn confirm_no_escalation(
        &self,
        user: &UserInfo,
        namespace: &str,
        rules: &[Rule],
    ) -> Result<(), String> {
        let (owner, errors) = self.collect_rules(user, namespace, Getter::Registry);
        let missing: Vec<Rule> = rules
            .iter()
            .flat_map(breakdown)
            .filter(|sub| !owner.iter().any(|o| covers(o, sub)))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let descriptions: BTreeSet<String> =
            compact(missing).iter().map(Rule::compact_string).collect();
        let mut msg = format!(
            "user {} (groups={}) is attempting to grant RBAC permissions not currently held:\n{}",
            go_quote(&user.name),
            go_quote_list(&user.groups),
            descriptions.into_iter().collect::<Vec<_>>().join("\n")
        );
        if !errors.is_empty() {
            msg.push_str(&format!("; resolution errors: [{}]", aggregate(&errors)));
        }
        Err(msg)
    }
}

/// kube-apiserver's validation of a RoleBinding's or ClusterRoleBinding's `roleRef` (422):
/// only roles of the RBAC group can be bound, so a `bind` grant on any other group's
/// "clusterroles" cannot reach `cluster-admin`.
pub fn validate_role_ref(kind: &str, object: &Value) -> Result<(), ApiError> {
    let supported_kinds: &[&str] = match kind {
        "RoleBinding" => &["Role", "ClusterRole"],
        "ClusterRoleBinding" => &["ClusterRole"],
        _ => return Ok(()),
    };
    let role_ref = object.get("roleRef").cloned().unwrap_or(Value::Null);
    let mut errs = Vec::new();
    let group = str_field(&role_ref, "apiGroup");
    if group != RBAC_GROUP {
        errs.push(FieldError::not_supported(
            "roleRef.apiGroup",
            group,
            &[RBAC_GROUP],
        ));
    }
    let ref_kind = str_field(&role_ref, "kind");
    if !supported_kinds.contains(&ref_kind) {
        errs.push(FieldError::not_supported(
            "roleRef.kind",
            ref_kind,
            supported_kinds,
        ));
    }
    if str_field(&role_ref, "name").is_empty() {
        errs.push(FieldError::required("roleRef.name", ""));
    }
    if errs.is_empty() {
        return Ok(());
    }
    Err(ApiError::invalid(
        RBAC_GROUP,
        kind,
        meta_field(object, "name"),
        errs,
    ))
}

/// A binding's roleRef is immutable (422 on update, with Go's `%#v` of the new value): a
/// binding to another role is a new binding.
pub fn validate_role_ref_unchanged(kind: &str, old: &Value, new: &Value) -> Result<(), ApiError> {
    if !matches!(kind, "RoleBinding" | "ClusterRoleBinding") {
        return Ok(());
    }
    let part = |v: &Value, k: &str| {
        v.get("roleRef")
            .map(|r| str_field(r, k).to_owned())
            .unwrap_or_default()
    };
    let fields = ["apiGroup", "kind", "name"];
    if fields.iter().all(|k| part(old, k) == part(new, k)) {
        return Ok(());
    }
    let rendered = format!(
        "rbac.RoleRef{{APIGroup:{}, Kind:{}, Name:{}}}",
        go_quote(&part(new, "apiGroup")),
        go_quote(&part(new, "kind")),
        go_quote(&part(new, "name"))
    );
    Err(ApiError::invalid(
        RBAC_GROUP,
        kind,
        meta_field(new, "name"),
        vec![FieldError::invalid_rendered(
            "roleRef",
            &rendered,
            "cannot change roleRef",
        )],
    ))
}

fn rules_of(obj: &Value) -> Vec<Rule> {
    obj.get("rules")
        .and_then(Value::as_array)
        .map(|a| a.iter().map(Rule::from_value).collect())
        .unwrap_or_default()
}

fn resolve_aggregated(
    name: &str,
    by_name: &BTreeMap<String, &Value>,
    visiting: &mut BTreeSet<String>,
) -> Vec<Rule> {
    let Some(cr) = by_name.get(name) else {
        return Vec::new();
    };
    let Some(agg) = cr.get("aggregationRule").filter(|a| !a.is_null()) else {
        return rules_of(cr);
    };
    if !visiting.insert(name.to_owned()) {
        // A cycle: use what is stored, as the controller would at that moment.
        return rules_of(cr);
    }
    let mut out: Vec<Rule> = Vec::new();
    let empty = Map::new();
    for selector in agg
        .get("clusterRoleSelectors")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        // by_name is a BTreeMap, so candidates come sorted by name like the controller's.
        for (other, obj) in by_name {
            if other == name {
                continue;
            }
            let labels = obj
                .get("metadata")
                .and_then(|m| m.get("labels"))
                .and_then(Value::as_object)
                .unwrap_or(&empty);
            if !label_selector_matches(selector, labels) {
                continue;
            }
            for r in resolve_aggregated(other, by_name, visiting) {
                if !out.contains(&r) {
                    out.push(r);
                }
            }
        }
    }
    visiting.remove(name);
    out
}

/// `BreakdownRule`: one rule per (group, resource, verb[, name]) and per (url, verb).
fn breakdown(rule: &Rule) -> Vec<Rule> {
    let mut out = Vec::new();
    for g in &rule.api_groups {
        for r in &rule.resources {
            for v in &rule.verbs {
                let base = Rule {
                    verbs: vec![v.clone()],
                    api_groups: vec![g.clone()],
                    resources: vec![r.clone()],
                    ..Default::default()
                };
                if rule.resource_names.is_empty() {
                    out.push(base);
                } else {
                    for n in &rule.resource_names {
                        out.push(Rule {
                            resource_names: vec![n.clone()],
                            ..base.clone()
                        });
                    }
                }
            }
        }
    }
    for u in &rule.non_resource_urls {
        for v in &rule.verbs {
            out.push(Rule {
                verbs: vec![v.clone()],
                non_resource_urls: vec![u.clone()],
                ..Default::default()
            });
        }
    }
    out
}

fn has_all(set: &[String], items: &[String]) -> bool {
    items.iter().all(|i| set.contains(i))
}

/// `ruleCovers` of the escalation check.
fn covers(owner: &Rule, sub: &Rule) -> bool {
    let verbs = owner.verbs.iter().any(|v| v == "*") || has_all(&owner.verbs, &sub.verbs);
    let groups =
        owner.api_groups.iter().any(|v| v == "*") || has_all(&owner.api_groups, &sub.api_groups);
    let resources = owner.resources.iter().any(|r| r == "*")
        || has_all(&owner.resources, &sub.resources)
        || sub.resources.iter().all(|path| {
            owner.resources.contains(path)
                || path
                    .split_once('/')
                    .is_some_and(|(_, s)| owner.resources.contains(&format!("*/{s}")))
        });
    let urls = has_all(&owner.non_resource_urls, &sub.non_resource_urls)
        || owner.non_resource_urls.iter().any(|u| u == "*")
        || sub.non_resource_urls.iter().all(|p| {
            owner
                .non_resource_urls
                .iter()
                .any(|u| u == p || (u.ends_with('*') && p.starts_with(u.trim_end_matches('*'))))
        });
    let names = if sub.resource_names.is_empty() {
        owner.resource_names.is_empty()
    } else {
        owner.resource_names.is_empty() || has_all(&owner.resource_names, &sub.resource_names)
    };
    verbs && groups && resources && names && urls
}

/// `CompactRules`: merge verbs of simple (one group, one resource, at most one name) rules.
fn compact(rules: Vec<Rule>) -> Vec<Rule> {
    let mut out = Vec::new();
    let mut simple: BTreeMap<(String, String, Option<String>), Rule> = BTreeMap::new();
    for r in rules {
        let is_simple = r.resource_names.len() <= 1
            && r.non_resource_urls.is_empty()
            && r.api_groups.len() == 1
            && r.resources.len() == 1;
        if !is_simple {
            out.push(r);
            continue;
        }
        let key = (
            r.api_groups[0].clone(),
            r.resources[0].clone(),
            r.resource_names.first().cloned(),
        );
        match simple.get_mut(&key) {
            Some(existing) => {
                for v in r.verbs {
                    if !existing.verbs.contains(&v) {
                        existing.verbs.push(v);
                    }
                }
            }
            None => {
                simple.insert(key, r);
            }
        }
    }
    out.extend(simple.into_values());
    out
}

// ---------------------------------------------------------------------------------------------
// 403 messages

/// The message of kube-apiserver's 403 Status for a denied request.
pub fn forbidden_message(a: &Attributes, reason: &str) -> String {
    let user = &a.user.name;
    let mut msg = if !a.resource_request {
        format!(
            "User {} cannot {} path {}",
            go_quote(user),
            a.verb,
            go_quote(&a.path)
        )
    } else {
        let resource = if a.subresource.is_empty() {
            a.resource.clone()
        } else {
            format!("{}/{}", a.resource, a.subresource)
        };
        if a.namespace.is_empty() {
            format!(
                "User {} cannot {} resource {} in API group {} at the cluster scope",
                go_quote(user),
                a.verb,
                go_quote(&resource),
                go_quote(&a.api_group)
            )
        } else {
            format!(
                "User {} cannot {} resource {} in API group {} in the namespace {}",
                go_quote(user),
                a.verb,
                go_quote(&resource),
                go_quote(&a.api_group),
                go_quote(&a.namespace)
            )
        }
    };
    if !reason.is_empty() {
        msg.push_str(": ");
        msg.push_str(reason);
    }
    if !a.resource_request {
        return format!("forbidden: {msg}");
    }
    let qualified = qualified_resource(&a.api_group, &a.resource);
    if a.name.is_empty() {
        format!("{qualified} is forbidden: {msg}")
    } else {
        format!("{qualified} {} is forbidden: {msg}", go_quote(&a.name))
    }
}

fn qualified_resource(group: &str, resource: &str) -> String {
    if group.is_empty() {
        resource.to_owned()
    } else {
        format!("{resource}.{group}")
    }
}

/// The full 403 `Status` object for a denied request.
pub fn forbidden_status(a: &Attributes, reason: &str) -> Value {
    let mut details = Map::new();
    if a.resource_request {
        if !a.name.is_empty() {
            details.insert("name".into(), json!(a.name));
        }
        if !a.api_group.is_empty() {
            details.insert("group".into(), json!(a.api_group));
        }
        details.insert("kind".into(), json!(a.resource));
    }
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": forbidden_message(a, reason),
        "reason": "Forbidden",
        "details": details,
        "code": 403
    })
}

// ---------------------------------------------------------------------------------------------
// Bootstrap policy

const READ: [&str; 3] = ["get", "list", "watch"];
const WRITE: [&str; 5] = ["create", "update", "patch", "delete", "deletecollection"];

fn rule(verbs: &[&str], groups: &[&str], resources: &[&str]) -> Value {
    json!({"verbs": verbs, "apiGroups": groups, "resources": resources})
}

fn url_rule(verbs: &[&str], urls: &[&str]) -> Value {
    json!({"verbs": verbs, "nonResourceURLs": urls})
}

fn bootstrap_meta(name: &str, extra_labels: &[(&str, &str)]) -> Value {
    let mut labels = Map::new();
    labels.insert("kubernetes.io/bootstrapping".into(), json!("rbac-defaults"));
    for (k, v) in extra_labels {
        labels.insert((*k).into(), json!(v));
    }
    json!({
        "name": name,
        "labels": labels,
        "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}
    })
}

fn cluster_role(name: &str, labels: &[(&str, &str)], rules: Vec<Value>) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": bootstrap_meta(name, labels),
        "rules": rules
    })
}

fn aggregated_role(name: &str, labels: &[(&str, &str)], selector_label: &str) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": bootstrap_meta(name, labels),
        "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {selector_label: "true"}}]},
        "rules": []
    })
}

fn cluster_role_binding(name: &str, role: &str, groups: &[&str]) -> Value {
    let subjects: Vec<Value> = groups
        .iter()
        .map(|g| json!({"apiGroup": RBAC_GROUP, "kind": "Group", "name": g}))
        .collect();
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": bootstrap_meta(name, &[]),
        "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": role},
        "subjects": subjects
    })
}

/// The default ClusterRoles and ClusterRoleBindings a fresh cluster has (the subset that
/// matters here). `admin`/`edit`/`view` are aggregated from `system:aggregate-to-*` roles like
/// on a real cluster; the aggregate-to rule lists are a close approximation of upstream's.
pub fn bootstrap_objects() -> Vec<Value> {
    let rw: Vec<&str> = READ.iter().chain(WRITE.iter()).copied().collect();
    let health = ["/healthz", "/livez", "/readyz", "/version", "/version/"];
    let agg_admin = ("rbac.authorization.k8s.io/aggregate-to-admin", "true");
    let agg_edit = ("rbac.authorization.k8s.io/aggregate-to-edit", "true");
    let agg_view = ("rbac.authorization.k8s.io/aggregate-to-view", "true");
    vec![
        cluster_role(
            "cluster-admin",
            &[],
            vec![rule(&["*"], &["*"], &["*"]), url_rule(&["*"], &["*"])],
        ),
        cluster_role(
            "system:discovery",
            &[],
            vec![url_rule(
                &["get"],
                &[
                    "/api",
                    "/api/*",
                    "/apis",
                    "/apis/*",
                    "/healthz",
                    "/livez",
                    "/openapi",
                    "/openapi/*",
                    "/readyz",
                    "/version",
                    "/version/",
                ],
            )],
        ),
        cluster_role(
            "system:basic-user",
            &[],
            vec![
                rule(
                    &["create"],
                    &["authorization.k8s.io"],
                    &["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                ),
                rule(
                    &["create"],
                    &["authentication.k8s.io"],
                    &["selfsubjectreviews"],
                ),
            ],
        ),
        cluster_role(
            "system:public-info-viewer",
            &[],
            vec![url_rule(&["get"], &health)],
        ),
        cluster_role(
            "system:service-account-issuer-discovery",
            &[],
            vec![url_rule(
                &["get"],
                &[
                    "/.well-known/openid-configuration",
                    "/.well-known/openid-configuration/",
                    "/openid/v1/jwks",
                    "/openid/v1/jwks/",
                ],
            )],
        ),
        cluster_role(
            "system:auth-delegator",
            &[],
            vec![
                rule(&["create"], &["authentication.k8s.io"], &["tokenreviews"]),
                rule(
                    &["create"],
                    &["authorization.k8s.io"],
                    &["subjectaccessreviews"],
                ),
            ],
        ),
        aggregated_role("admin", &[], agg_admin.0),
        aggregated_role("edit", &[agg_admin], agg_edit.0),
        aggregated_role("view", &[agg_edit], agg_view.0),
        cluster_role(
            "system:aggregate-to-admin",
            &[agg_admin],
            vec![
                rule(
                    &["create"],
                    &["authorization.k8s.io"],
                    &["localsubjectaccessreviews"],
                ),
                rule(&rw, &[RBAC_GROUP], &["rolebindings", "roles"]),
            ],
        ),
        cluster_role(
            "system:aggregate-to-edit",
            &[agg_edit],
            vec![
                rule(
                    &READ,
                    &[""],
                    &[
                        "pods/attach",
                        "pods/exec",
                        "pods/portforward",
                        "pods/proxy",
                        "secrets",
                        "services/proxy",
                    ],
                ),
                rule(&["impersonate"], &[""], &["serviceaccounts"]),
                rule(
                    &WRITE,
                    &[""],
                    &[
                        "pods",
                        "pods/attach",
                        "pods/exec",
                        "pods/portforward",
                        "pods/proxy",
                    ],
                ),
                rule(&["create"], &[""], &["pods/eviction"]),
                rule(
                    &WRITE,
                    &[""],
                    &[
                        "configmaps",
                        "events",
                        "persistentvolumeclaims",
                        "replicationcontrollers",
                        "replicationcontrollers/scale",
                        "secrets",
                        "serviceaccounts",
                        "services",
                        "services/proxy",
                    ],
                ),
                rule(&["create"], &[""], &["serviceaccounts/token"]),
                rule(
                    &WRITE,
                    &["apps"],
                    &[
                        "daemonsets",
                        "deployments",
                        "deployments/rollback",
                        "deployments/scale",
                        "replicasets",
                        "replicasets/scale",
                        "statefulsets",
                        "statefulsets/scale",
                    ],
                ),
                rule(&WRITE, &["autoscaling"], &["horizontalpodautoscalers"]),
                rule(&WRITE, &["batch"], &["cronjobs", "jobs"]),
                rule(&WRITE, &["policy"], &["poddisruptionbudgets"]),
                rule(
                    &WRITE,
                    &["networking.k8s.io"],
                    &["ingresses", "networkpolicies"],
                ),
            ],
        ),
        cluster_role(
            "system:aggregate-to-view",
            &[agg_view],
            vec![
                rule(
                    &READ,
                    &[""],
                    &[
                        "configmaps",
                        "endpoints",
                        "persistentvolumeclaims",
                        "persistentvolumeclaims/status",
                        "pods",
                        "replicationcontrollers",
                        "replicationcontrollers/scale",
                        "serviceaccounts",
                        "services",
                        "services/status",
                    ],
                ),
                rule(
                    &READ,
                    &[""],
                    &[
                        "bindings",
                        "events",
                        "limitranges",
                        "namespaces/status",
                        "pods/log",
                        "pods/status",
                        "replicationcontrollers/status",
                        "resourcequotas",
                        "resourcequotas/status",
                    ],
                ),
                rule(&READ, &[""], &["namespaces"]),
                rule(&READ, &["discovery.k8s.io"], &["endpointslices"]),
                rule(
                    &READ,
                    &["apps"],
                    &[
                        "controllerrevisions",
                        "daemonsets",
                        "daemonsets/status",
                        "deployments",
                        "deployments/scale",
                        "deployments/status",
                        "replicasets",
                        "replicasets/scale",
                        "replicasets/status",
                        "statefulsets",
                        "statefulsets/scale",
                        "statefulsets/status",
                    ],
                ),
                rule(
                    &READ,
                    &["autoscaling"],
                    &[
                        "horizontalpodautoscalers",
                        "horizontalpodautoscalers/status",
                    ],
                ),
                rule(
                    &READ,
                    &["batch"],
                    &["cronjobs", "cronjobs/status", "jobs", "jobs/status"],
                ),
                rule(
                    &READ,
                    &["policy"],
                    &["poddisruptionbudgets", "poddisruptionbudgets/status"],
                ),
                rule(
                    &READ,
                    &["networking.k8s.io"],
                    &["ingresses", "ingresses/status", "networkpolicies"],
                ),
            ],
        ),
        cluster_role_binding("cluster-admin", "cluster-admin", &[MASTERS]),
        cluster_role_binding(
            "system:discovery",
            "system:discovery",
            &["system:authenticated"],
        ),
        cluster_role_binding(
            "system:basic-user",
            "system:basic-user",
            &["system:authenticated"],
        ),
        cluster_role_binding(
            "system:public-info-viewer",
            "system:public-info-viewer",
            &["system:authenticated", "system:unauthenticated"],
        ),
        cluster_role_binding(
            "system:service-account-issuer-discovery",
            "system:service-account-issuer-discovery",
            &["system:serviceaccounts"],
        ),
    ]
}

// ---------------------------------------------------------------------------------------------
// Review APIs

fn with_status(review: &Value, kind: &str, api_version: &str, status: Value) -> Value {
    let mut out = match review {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    out.insert("kind".into(), json!(kind));
    out.insert("apiVersion".into(), json!(api_version));
    if !out.get("metadata").is_some_and(Value::is_object) {
        out.insert("metadata".into(), json!({}));
    }
    out.insert("status".into(), status);
    Value::Object(out)
}

fn access_status(allowed: bool, reason: &str, evaluation_error: &str) -> Value {
    let mut s = Map::new();
    s.insert("allowed".into(), json!(allowed));
    if !reason.is_empty() {
        s.insert("reason".into(), json!(reason));
    }
    if !evaluation_error.is_empty() {
        s.insert("evaluationError".into(), json!(evaluation_error));
    }
    Value::Object(s)
}

/// Attributes from a review `spec` (resourceAttributes or nonResourceAttributes).
fn spec_attributes(
    user: &UserInfo,
    spec: &Value,
    force_namespace: Option<&str>,
) -> Option<Attributes> {
    if let Some(ra) = spec.get("resourceAttributes").filter(|v| v.is_object()) {
        let ns = force_namespace.unwrap_or_else(|| str_field(ra, "namespace"));
        return Some(Attributes::resource(
            user,
            str_field(ra, "verb"),
            str_field(ra, "group"),
            str_field(ra, "resource"),
            str_field(ra, "subresource"),
            ns,
            str_field(ra, "name"),
        ));
    }
    spec.get("nonResourceAttributes")
        .filter(|v| v.is_object())
        .map(|na| Attributes::non_resource(user, str_field(na, "verb"), str_field(na, "path")))
}

fn evaluate_review(
    policy: &Policy,
    user: &UserInfo,
    review: &Value,
    kind: &str,
    ns: Option<&str>,
) -> Value {
    let spec = review.get("spec").cloned().unwrap_or(Value::Null);
    let status = match spec_attributes(user, &spec, ns) {
        Some(a) => {
            let (allowed, reason) = policy.authorize_with_reason(&a);
            access_status(allowed, &reason, "")
        }
        None => access_status(
            false,
            "",
            "exactly one of nonResourceAttributes or resourceAttributes must be specified",
        ),
    };
    with_status(review, kind, "authorization.k8s.io/v1", status)
}

/// The user a SubjectAccessReview spec names.
fn spec_user(spec: &Value) -> UserInfo {
    let extra = spec
        .get("extra")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let vals = v
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(Value::as_str)
                                .map(str::to_owned)
                                .collect()
                        })
                        .unwrap_or_default();
                    (k.clone(), vals)
                })
                .collect()
        })
        .unwrap_or_default();
    UserInfo {
        name: str_field(spec, "user").to_owned(),
        uid: str_field(spec, "uid").to_owned(),
        groups: str_list(spec, "groups"),
        extra,
    }
}

/// POST authorization.k8s.io/v1 subjectaccessreviews: evaluates the user named in the spec
/// (groups are taken as given; nothing is added).
pub fn subject_access_review(policy: &Policy, review: &Value) -> Value {
    let spec = review.get("spec").cloned().unwrap_or(Value::Null);
    evaluate_review(
        policy,
        &spec_user(&spec),
        review,
        "SubjectAccessReview",
        None,
    )
}

/// POST namespaces/{ns}/localsubjectaccessreviews: like SubjectAccessReview, in `namespace`.
pub fn local_subject_access_review(policy: &Policy, namespace: &str, review: &Value) -> Value {
    let spec = review.get("spec").cloned().unwrap_or(Value::Null);
    evaluate_review(
        policy,
        &spec_user(&spec),
        review,
        "LocalSubjectAccessReview",
        Some(namespace),
    )
}

/// POST selfsubjectaccessreviews: evaluates the requesting (possibly impersonated) user.
pub fn self_subject_access_review(policy: &Policy, user: &UserInfo, review: &Value) -> Value {
    evaluate_review(policy, user, review, "SelfSubjectAccessReview", None)
}

/// POST selfsubjectrulesreviews: the rules the requesting user holds in `spec.namespace`.
pub fn self_subject_rules_review(policy: &Policy, user: &UserInfo, review: &Value) -> Value {
    let ns = review
        .get("spec")
        .map(|s| str_field(s, "namespace"))
        .unwrap_or("");
    let (resource_rules, non_resource_rules, err) = policy.rules_review(user, ns);
    let mut status = Map::new();
    status.insert("resourceRules".into(), json!(resource_rules));
    status.insert("nonResourceRules".into(), json!(non_resource_rules));
    status.insert("incomplete".into(), json!(false));
    if !err.is_empty() {
        status.insert("evaluationError".into(), json!(err));
    }
    with_status(
        review,
        "SelfSubjectRulesReview",
        "authorization.k8s.io/v1",
        Value::Object(status),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, groups: &[&str]) -> UserInfo {
        UserInfo {
            name: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..Default::default()
        }
    }

    fn sa_user(ns: &str, name: &str) -> UserInfo {
        user(
            &format!("system:serviceaccount:{ns}:{name}"),
            &[
                "system:serviceaccounts",
                &format!("system:serviceaccounts:{ns}"),
                "system:authenticated",
            ],
        )
    }

    fn role(ns: &str, name: &str, rules: Value) -> Value {
        json!({"apiVersion":"rbac.authorization.k8s.io/v1","kind":"Role","metadata":{"name":name,"namespace":ns},"rules":rules})
    }

    fn crole(name: &str, rules: Value) -> Value {
        json!({"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRole","metadata":{"name":name},"rules":rules})
    }

    fn rb(ns: &str, name: &str, kind: &str, role: &str, subjects: Value) -> Value {
        json!({"apiVersion":"rbac.authorization.k8s.io/v1","kind":"RoleBinding","metadata":{"name":name,"namespace":ns},
               "roleRef":{"apiGroup":RBAC_GROUP,"kind":kind,"name":role},"subjects":subjects})
    }

    fn crb(name: &str, role: &str, subjects: Value) -> Value {
        json!({"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRoleBinding","metadata":{"name":name},
               "roleRef":{"apiGroup":RBAC_GROUP,"kind":"ClusterRole","name":role},"subjects":subjects})
    }

    /// Bootstrap objects plus extra ones, split by kind.
    fn policy(extra: Vec<Value>) -> Policy {
        let mut all = bootstrap_objects();
        all.extend(extra);
        let of = |k: &str| {
            all.iter()
                .filter(|o| o["kind"] == k)
                .cloned()
                .collect::<Vec<_>>()
        };
        Policy::from_objects(
            &of("Role"),
            &of("ClusterRole"),
            &of("RoleBinding"),
            &of("ClusterRoleBinding"),
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn can(
        p: &Policy,
        u: &UserInfo,
        verb: &str,
        group: &str,
        res: &str,
        sub: &str,
        ns: &str,
        name: &str,
    ) -> bool {
        p.authorize(&Attributes::resource(u, verb, group, res, sub, ns, name)) == Decision::Allow
    }

    fn can_path(p: &Policy, u: &UserInfo, verb: &str, path: &str) -> bool {
        p.authorize(&Attributes::non_resource(u, verb, path)) == Decision::Allow
    }

    #[test]
    fn role_ref_must_name_an_rbac_role() {
        let binding = |kind: &str, role_ref: Value| json!({"kind": kind, "metadata": {"name": "b"}, "roleRef": role_ref});
        let ok = json!({"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": "view"});
        assert!(validate_role_ref("RoleBinding", &binding("RoleBinding", ok.clone())).is_ok());
        assert!(
            validate_role_ref("ClusterRoleBinding", &binding("ClusterRoleBinding", ok)).is_ok()
        );
        let foreign = json!({"apiGroup": "foo", "kind": "ClusterRole", "name": "cluster-admin"});
        let e = validate_role_ref(
            "ClusterRoleBinding",
            &binding("ClusterRoleBinding", foreign),
        )
        .unwrap_err();
        assert_eq!(e.code, 422);
        assert_eq!(
            e.message,
            r#"ClusterRoleBinding.rbac.authorization.k8s.io "b" is invalid: roleRef.apiGroup: Unsupported value: "foo": supported values: "rbac.authorization.k8s.io""#
        );
        let role = json!({"apiGroup": RBAC_GROUP, "kind": "Role", "name": "r"});
        let e = validate_role_ref("ClusterRoleBinding", &binding("ClusterRoleBinding", role))
            .unwrap_err();
        assert!(
            e.message.ends_with(
                r#"roleRef.kind: Unsupported value: "Role": supported values: "ClusterRole""#
            ),
            "{}",
            e.message
        );
        let e = validate_role_ref(
            "RoleBinding",
            &binding("RoleBinding", json!({"kind": "User"})),
        )
        .unwrap_err();
        assert_eq!(
            e.message,
            r#"RoleBinding.rbac.authorization.k8s.io "b" is invalid: [roleRef.apiGroup: Unsupported value: "": supported values: "rbac.authorization.k8s.io", roleRef.kind: Unsupported value: "User": supported values: "Role", "ClusterRole", roleRef.name: Required value]"#
        );
        // Immutable on update.
        let view = binding(
            "RoleBinding",
            json!({"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": "view"}),
        );
        let admin = binding(
            "RoleBinding",
            json!({"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": "admin"}),
        );
        assert!(validate_role_ref_unchanged("RoleBinding", &view, &view).is_ok());
        let e = validate_role_ref_unchanged("RoleBinding", &view, &admin).unwrap_err();
        assert_eq!(
            e.message,
            r#"RoleBinding.rbac.authorization.k8s.io "b" is invalid: roleRef: Invalid value: rbac.RoleRef{APIGroup:"rbac.authorization.k8s.io", Kind:"ClusterRole", Name:"admin"}: cannot change roleRef"#
        );
    }

    #[test]
    fn wildcards_in_verbs_groups_resources() {
        let u = user("alice", &["system:authenticated"]);
        let p = policy(vec![
            crole(
                "all-apps",
                json!([{"apiGroups":["apps"],"resources":["*"],"verbs":["*"]}]),
            ),
            crole(
                "get-any",
                json!([{"apiGroups":["*"],"resources":["configmaps"],"verbs":["get"]}]),
            ),
            crb(
                "a",
                "all-apps",
                json!([{"kind":"User","apiGroup":RBAC_GROUP,"name":"alice"}]),
            ),
            crb(
                "b",
                "get-any",
                json!([{"kind":"User","apiGroup":RBAC_GROUP,"name":"alice"}]),
            ),
        ]);
        assert!(can(&p, &u, "delete", "apps", "deployments", "", "ns", "x"));
        assert!(
            can(&p, &u, "patch", "apps", "deployments", "scale", "ns", "x"),
            "* covers subresources"
        );
        assert!(!can(&p, &u, "delete", "batch", "jobs", "", "ns", "x"));
        assert!(can(&p, &u, "get", "", "configmaps", "", "ns", "x"));
        assert!(can(
            &p,
            &u,
            "get",
            "weird.example.com",
            "configmaps",
            "",
            "",
            "x"
        ));
        assert!(!can(&p, &u, "list", "", "configmaps", "", "ns", ""));
    }

    #[test]
    fn resource_names_restrict_named_requests_only() {
        let u = user("bob", &[]);
        let p = policy(vec![
            role(
                "team-a",
                "one-cm",
                json!([{"apiGroups":[""],"resources":["configmaps"],"resourceNames":["cm1"],"verbs":["get","list","watch","update"]}]),
            ),
            rb(
                "team-a",
                "bob",
                "Role",
                "one-cm",
                json!([{"kind":"User","apiGroup":RBAC_GROUP,"name":"bob"}]),
            ),
        ]);
        assert!(can(&p, &u, "get", "", "configmaps", "", "team-a", "cm1"));
        assert!(can(&p, &u, "update", "", "configmaps", "", "team-a", "cm1"));
        assert!(!can(&p, &u, "get", "", "configmaps", "", "team-a", "cm2"));
        assert!(
            !can(&p, &u, "list", "", "configmaps", "", "team-a", ""),
            "collection requests have no name"
        );
        // list with fieldSelector=metadata.name=cm1 arrives with name set by request info.
        assert!(can(&p, &u, "list", "", "configmaps", "", "team-a", "cm1"));
        assert!(!can(&p, &u, "create", "", "configmaps", "", "team-a", ""));
    }

    #[test]
    fn subresource_matching() {
        let u = user("carol", &[]);
        let p = policy(vec![
            crole(
                "sub",
                json!([
                    {"apiGroups":["apps"],"resources":["deployments/scale"],"verbs":["update"]},
                    {"apiGroups":["*"],"resources":["*/status"],"verbs":["patch"]},
                    {"apiGroups":[""],"resources":["pods"],"verbs":["get"]}
                ]),
            ),
            crb(
                "c",
                "sub",
                json!([{"kind":"User","apiGroup":RBAC_GROUP,"name":"carol"}]),
            ),
        ]);
        assert!(can(
            &p,
            &u,
            "update",
            "apps",
            "deployments",
            "scale",
            "ns",
            "web"
        ));
        assert!(!can(
            &p,
            &u,
            "update",
            "apps",
            "deployments",
            "",
            "ns",
            "web"
        ));
        assert!(can(
            &p,
            &u,
            "patch",
            "example.com",
            "widgets",
            "status",
            "ns",
            "w"
        ));
        assert!(!can(
            &p,
            &u,
            "patch",
            "example.com",
            "widgets",
            "",
            "ns",
            "w"
        ));
        assert!(can(&p, &u, "get", "", "pods", "", "ns", "p"));
        assert!(
            !can(&p, &u, "get", "", "pods", "log", "ns", "p"),
            "pods does not cover pods/log"
        );
    }

    #[test]
    fn non_resource_urls() {
        let u = user("dave", &[]);
        let p = policy(vec![
            crole(
                "urls",
                json!([{"nonResourceURLs":["/metrics","/logs/*"],"verbs":["get"]}]),
            ),
            crb(
                "d",
                "urls",
                json!([{"kind":"User","apiGroup":RBAC_GROUP,"name":"dave"}]),
            ),
        ]);
        assert!(can_path(&p, &u, "get", "/metrics"));
        assert!(!can_path(&p, &u, "post", "/metrics"));
        assert!(can_path(&p, &u, "get", "/logs/kube.log"));
        assert!(can_path(&p, &u, "get", "/logs/"));
        assert!(!can_path(&p, &u, "get", "/logs"));
        assert!(
            !can_path(&p, &u, "get", "/api"),
            "dave is not authenticated here"
        );
    }

    #[test]
    fn rolebinding_to_clusterrole_is_namespace_scoped() {
        let u = sa_user("team-a", "deployer");
        let p = policy(vec![rb(
            "team-a",
            "deployer-edit",
            "ClusterRole",
            "edit",
            json!([{"kind":"ServiceAccount","name":"deployer","namespace":"team-a"}]),
        )]);
        assert!(can(
            &p,
            &u,
            "create",
            "apps",
            "deployments",
            "",
            "team-a",
            ""
        ));
        assert!(can(&p, &u, "patch", "", "configmaps", "", "team-a", "cm1"));
        assert!(!can(
            &p,
            &u,
            "create",
            "apps",
            "deployments",
            "",
            "team-b",
            ""
        ));
        assert!(
            !can(&p, &u, "list", "", "configmaps", "", "", ""),
            "not at cluster scope"
        );
        assert!(!can(&p, &u, "list", "", "namespaces", "", "", ""));
    }

    #[test]
    fn service_account_subjects_and_groups() {
        let p = policy(vec![
            role(
                "team-a",
                "cm-reader",
                json!([{"apiGroups":[""],"resources":["configmaps"],"verbs":["get"]}]),
            ),
            // Namespace omitted: defaults to the binding's namespace.
            rb(
                "team-a",
                "by-sa",
                "Role",
                "cm-reader",
                json!([{"kind":"ServiceAccount","name":"reader"}]),
            ),
            role(
                "team-b",
                "secret-reader",
                json!([{"apiGroups":[""],"resources":["secrets"],"verbs":["list"]}]),
            ),
            rb(
                "team-b",
                "by-group",
                "Role",
                "secret-reader",
                json!([{"kind":"Group","apiGroup":RBAC_GROUP,"name":"system:serviceaccounts:team-b"}]),
            ),
        ]);
        assert!(can(
            &p,
            &sa_user("team-a", "reader"),
            "get",
            "",
            "configmaps",
            "",
            "team-a",
            "x"
        ));
        assert!(!can(
            &p,
            &sa_user("team-c", "reader"),
            "get",
            "",
            "configmaps",
            "",
            "team-a",
            "x"
        ));
        // A plain user named like the SA but without SA groups still matches by name, as upstream.
        assert!(can(
            &p,
            &user("system:serviceaccount:team-a:reader", &[]),
            "get",
            "",
            "configmaps",
            "",
            "team-a",
            "x"
        ));
        assert!(can(
            &p,
            &sa_user("team-b", "anything"),
            "list",
            "",
            "secrets",
            "",
            "team-b",
            ""
        ));
        assert!(!can(
            &p,
            &sa_user("team-a", "anything"),
            "list",
            "",
            "secrets",
            "",
            "team-b",
            ""
        ));
    }

    #[test]
    fn aggregated_admin_edit_view() {
        let u = sa_user("apps", "ci");
        let bind = |role: &str| {
            policy(vec![rb(
                "apps",
                "ci",
                "ClusterRole",
                role,
                json!([{"kind":"ServiceAccount","name":"ci","namespace":"apps"}]),
            )])
        };
        let view = bind("view");
        assert!(can(
            &view,
            &u,
            "get",
            "apps",
            "deployments",
            "",
            "apps",
            "web"
        ));
        assert!(can(&view, &u, "list", "", "pods", "", "apps", ""));
        assert!(
            !can(&view, &u, "get", "", "secrets", "", "apps", "s"),
            "view excludes secrets"
        );
        assert!(!can(&view, &u, "create", "", "configmaps", "", "apps", ""));
        let edit = bind("edit");
        assert!(can(
            &edit,
            &u,
            "create",
            "apps",
            "deployments",
            "",
            "apps",
            ""
        ));
        assert!(can(&edit, &u, "get", "", "secrets", "", "apps", "s"));
        assert!(
            can(&edit, &u, "list", "", "pods", "", "apps", ""),
            "edit includes view"
        );
        assert!(can(
            &edit,
            &u,
            "create",
            "",
            "serviceaccounts",
            "token",
            "apps",
            "x"
        ));
        assert!(!can(
            &edit, &u, "create", RBAC_GROUP, "roles", "", "apps", ""
        ));
        let admin = bind("admin");
        assert!(can(
            &admin,
            &u,
            "create",
            RBAC_GROUP,
            "rolebindings",
            "",
            "apps",
            ""
        ));
        assert!(
            can(
                &admin,
                &u,
                "delete",
                "apps",
                "deployments",
                "",
                "apps",
                "web"
            ),
            "admin includes edit"
        );
        assert!(
            can(&admin, &u, "watch", "batch", "jobs", "", "apps", ""),
            "admin includes view via edit"
        );
        assert!(!can(&admin, &u, "create", "", "namespaces", "", "", ""));
        let rules = admin
            .aggregated_cluster_role_rules("admin")
            .unwrap_or_default();
        assert!(rules.len() > 10);
        assert!(
            admin
                .aggregated_cluster_role_rules("cluster-admin")
                .is_none()
        );
    }

    #[test]
    fn custom_role_joins_aggregation_by_label() {
        let widget_view = json!({"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRole",
            "metadata":{"name":"widgets-view","labels":{"rbac.authorization.k8s.io/aggregate-to-view":"true"}},
            "rules":[{"apiGroups":["example.com"],"resources":["widgets"],"verbs":["get","list","watch"]}]});
        let sel = json!({"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRole","metadata":{"name":"sel"},
            "aggregationRule":{"clusterRoleSelectors":[{"matchExpressions":[{"key":"team","operator":"In","values":["x","y"]}]}]}});
        let team = json!({"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRole","metadata":{"name":"t","labels":{"team":"y"}},
            "rules":[{"apiGroups":[""],"resources":["events"],"verbs":["create"]}]});
        let p = policy(vec![
            widget_view,
            sel,
            team,
            crb(
                "u-admin",
                "admin",
                json!([{"kind":"User","apiGroup":RBAC_GROUP,"name":"u"}]),
            ),
            crb(
                "v-sel",
                "sel",
                json!([{"kind":"User","apiGroup":RBAC_GROUP,"name":"v"}]),
            ),
        ]);
        assert!(can(
            &p,
            &user("u", &[]),
            "list",
            "example.com",
            "widgets",
            "",
            "",
            ""
        ));
        assert!(can(
            &p,
            &user("v", &[]),
            "create",
            "",
            "events",
            "",
            "ns",
            ""
        ));
        assert!(!can(
            &p,
            &user("v", &[]),
            "list",
            "example.com",
            "widgets",
            "",
            "",
            ""
        ));
    }

    #[test]
    fn bootstrap_behaves_like_a_cluster() {
        let p = policy(vec![]);
        let admin = user("admin", &["system:masters", "system:authenticated"]);
        assert!(can(
            &p,
            &admin,
            "delete",
            "",
            "namespaces",
            "",
            "",
            "kube-system"
        ));
        assert!(can_path(&p, &admin, "get", "/metrics"));
        let anyone = user("jane", &["system:authenticated"]);
        assert!(can_path(&p, &anyone, "get", "/api"));
        assert!(can_path(&p, &anyone, "get", "/apis/apps/v1"));
        assert!(can_path(&p, &anyone, "get", "/openapi/v3"));
        assert!(can_path(&p, &anyone, "get", "/version"));
        assert!(!can_path(&p, &anyone, "get", "/metrics"));
        assert!(can(
            &p,
            &anyone,
            "create",
            "authorization.k8s.io",
            "selfsubjectaccessreviews",
            "",
            "",
            ""
        ));
        assert!(can(
            &p,
            &anyone,
            "create",
            "authorization.k8s.io",
            "selfsubjectrulesreviews",
            "",
            "ns",
            ""
        ));
        assert!(can(
            &p,
            &anyone,
            "create",
            "authentication.k8s.io",
            "selfsubjectreviews",
            "",
            "",
            ""
        ));
        assert!(!can(
            &p,
            &anyone,
            "create",
            "authentication.k8s.io",
            "tokenreviews",
            "",
            "",
            ""
        ));
        assert!(!can(&p, &anyone, "list", "", "pods", "", "default", ""));
        let anon = UserInfo::anonymous();
        assert!(can_path(&p, &anon, "get", "/healthz"));
        assert!(can_path(&p, &anon, "get", "/version"));
        assert!(!can_path(&p, &anon, "get", "/api"));
        // cluster-admin through a binding rather than system:masters.
        let p = policy(vec![crb(
            "root",
            "cluster-admin",
            json!([{"kind":"User","apiGroup":RBAC_GROUP,"name":"root"}]),
        )]);
        assert!(can(
            &p,
            &user("root", &[]),
            "escalate",
            RBAC_GROUP,
            "clusterroles",
            "",
            "",
            "x"
        ));
        // system:auth-delegator grants the reviews Vault's reviewer needs.
        let p = policy(vec![crb(
            "vault",
            "system:auth-delegator",
            json!([{"kind":"ServiceAccount","name":"vault","namespace":"vault"}]),
        )]);
        assert!(can(
            &p,
            &sa_user("vault", "vault"),
            "create",
            "authentication.k8s.io",
            "tokenreviews",
            "",
            "",
            ""
        ));
    }

    #[test]
    fn allow_reasons_and_missing_role_errors() {
        let p = policy(vec![
            rb(
                "team-a",
                "rb1",
                "ClusterRole",
                "view",
                json!([{"kind":"ServiceAccount","name":"deployer"}]),
            ),
            rb(
                "team-a",
                "broken",
                "Role",
                "gone",
                json!([{"kind":"User","apiGroup":RBAC_GROUP,"name":"x"}]),
            ),
            crb(
                "broken2",
                "gone-too",
                json!([{"kind":"User","apiGroup":RBAC_GROUP,"name":"x"}]),
            ),
        ]);
        let (ok, reason) = p.authorize_with_reason(&Attributes::resource(
            &sa_user("team-a", "deployer"),
            "get",
            "",
            "pods",
            "",
            "team-a",
            "p",
        ));
        assert!(ok);
        assert_eq!(
            reason,
            r#"RBAC: allowed by RoleBinding "rb1/team-a" of ClusterRole "view" to ServiceAccount "deployer/team-a""#
        );
        let (ok, reason) = p.authorize_with_reason(&Attributes::non_resource(
            &user("y", &["system:authenticated"]),
            "get",
            "/api",
        ));
        assert!(ok);
        assert_eq!(
            reason,
            r#"RBAC: allowed by ClusterRoleBinding "system:discovery" of ClusterRole "system:discovery" to Group "system:authenticated""#
        );
        let x = user("x", &[]);
        let d = p.authorize(&Attributes::resource(
            &x, "get", "", "pods", "", "team-a", "p",
        ));
        assert_eq!(
            d,
            Decision::Deny(r#"RBAC: [clusterrole.rbac.authorization.k8s.io "gone-too" not found, role.rbac.authorization.k8s.io "gone" not found]"#.into())
        );
        let d = p.authorize(&Attributes::resource(&x, "get", "", "pods", "", "", "p"));
        assert_eq!(
            d,
            Decision::Deny(
                r#"RBAC: clusterrole.rbac.authorization.k8s.io "gone-too" not found"#.into()
            )
        );
        let d = p.authorize(&Attributes::resource(
            &user("z", &[]),
            "get",
            "",
            "pods",
            "",
            "",
            "p",
        ));
        assert_eq!(d, Decision::Deny(String::new()));
    }

    #[test]
    fn forbidden_message_variants() {
        let u = sa_user("team-a", "deployer");
        let a = Attributes::resource(&u, "get", "", "configmaps", "", "team-a", "x");
        assert_eq!(
            forbidden_message(&a, ""),
            r#"configmaps "x" is forbidden: User "system:serviceaccount:team-a:deployer" cannot get resource "configmaps" in API group "" in the namespace "team-a""#
        );
        let a = Attributes::resource(&u, "list", "", "configmaps", "", "team-a", "");
        assert_eq!(
            forbidden_message(&a, ""),
            r#"configmaps is forbidden: User "system:serviceaccount:team-a:deployer" cannot list resource "configmaps" in API group "" in the namespace "team-a""#
        );
        let a = Attributes::resource(&u, "list", "", "namespaces", "", "", "");
        assert_eq!(
            forbidden_message(&a, ""),
            r#"namespaces is forbidden: User "system:serviceaccount:team-a:deployer" cannot list resource "namespaces" in API group "" at the cluster scope"#
        );
        let a = Attributes::resource(&u, "patch", "apps", "deployments", "", "team-a", "web");
        assert_eq!(
            forbidden_message(&a, ""),
            r#"deployments.apps "web" is forbidden: User "system:serviceaccount:team-a:deployer" cannot patch resource "deployments" in API group "apps" in the namespace "team-a""#
        );
        let a = Attributes::resource(
            &u,
            "update",
            "apps",
            "deployments",
            "status",
            "team-a",
            "web",
        );
        assert_eq!(
            forbidden_message(&a, ""),
            r#"deployments.apps "web" is forbidden: User "system:serviceaccount:team-a:deployer" cannot update resource "deployments/status" in API group "apps" in the namespace "team-a""#
        );
        let a = Attributes::non_resource(&UserInfo::anonymous(), "get", "/api");
        assert_eq!(
            forbidden_message(&a, ""),
            r#"forbidden: User "system:anonymous" cannot get path "/api""#
        );
        let a = Attributes::resource(&u, "get", "", "pods", "", "", "p");
        assert_eq!(
            forbidden_message(&a, r#"RBAC: role.rbac.authorization.k8s.io "x" not found"#),
            r#"pods "p" is forbidden: User "system:serviceaccount:team-a:deployer" cannot get resource "pods" in API group "" at the cluster scope: RBAC: role.rbac.authorization.k8s.io "x" not found"#
        );
        let s = forbidden_status(
            &Attributes::resource(&u, "patch", "apps", "deployments", "", "team-a", "web"),
            "",
        );
        assert_eq!(s["code"], 403);
        assert_eq!(s["reason"], "Forbidden");
        assert_eq!(
            s["details"],
            json!({"name":"web","group":"apps","kind":"deployments"})
        );
        let s = forbidden_status(&Attributes::non_resource(&u, "get", "/x"), "");
        assert_eq!(s["details"], json!({}));
    }

    fn engine() -> UserInfo {
        user("gitops-engine", &["system:authenticated"])
    }

    #[test]
    fn escalation_role_with_unheld_verbs_is_denied() {
        let p = policy(vec![
            role(
                "team-a",
                "cm-rw",
                json!([{"apiGroups":[""],"resources":["configmaps"],"verbs":["get","create"]}]),
            ),
            role(
                "team-a",
                "rbac-writer",
                json!([{"apiGroups":[RBAC_GROUP],"resources":["roles","rolebindings"],"verbs":["create","update","patch"]}]),
            ),
            rb(
                "team-a",
                "e1",
                "Role",
                "cm-rw",
                json!([{"kind":"User","apiGroup":RBAC_GROUP,"name":"gitops-engine"}]),
            ),
            rb(
                "team-a",
                "e2",
                "Role",
                "rbac-writer",
                json!([{"kind":"User","apiGroup":RBAC_GROUP,"name":"gitops-engine"}]),
            ),
        ]);
        let held = role(
            "team-a",
            "ok",
            json!([{"apiGroups":[""],"resources":["configmaps"],"verbs":["get"]}]),
        );
        assert_eq!(p.check_escalation(&engine(), "team-a", &held), Ok(()));
        let too_much = role(
            "team-a",
            "kiali",
            json!([{"apiGroups":["authentication.istio.io"],"resources":["meshpolicies"],"verbs":["create","delete","patch"]},
                   {"apiGroups":[""],"resources":["configmaps"],"verbs":["get","delete"]}]),
        );
        assert_eq!(
            p.check_escalation(&engine(), "team-a", &too_much),
            Err(concat!(
                r#"roles.rbac.authorization.k8s.io "kiali" is forbidden: user "gitops-engine" (groups=["system:authenticated"]) is attempting to grant RBAC permissions not currently held:"#,
                "\n",
                r#"{APIGroups:[""], Resources:["configmaps"], Verbs:["delete"]}"#,
                "\n",
                r#"{APIGroups:["authentication.istio.io"], Resources:["meshpolicies"], Verbs:["create" "delete" "patch"]}"#
            )
            .to_string())
        );
        // Held in team-a only: the same role in team-b escalates.
        let other = role(
            "team-b",
            "ok",
            json!([{"apiGroups":[""],"resources":["configmaps"],"verbs":["get"]}]),
        );
        assert!(p.check_escalation(&engine(), "team-b", &other).is_err());
        // system:masters bypasses.
        assert_eq!(
            p.check_escalation(&user("root", &["system:masters"]), "team-a", &too_much),
            Ok(())
        );
    }

    #[test]
    fn escalation_allowed_with_escalate_verb() {
        let p = policy(vec![
            crole(
                "escalator",
                json!([{"apiGroups":[RBAC_GROUP],"resources":["roles"],"verbs":["escalate","create"]}]),
            ),
            rb(
                "team-a",
                "e",
                "ClusterRole",
                "escalator",
                json!([{"kind":"User","apiGroup":RBAC_GROUP,"name":"gitops-engine"}]),
            ),
        ]);
        let r = role(
            "team-a",
            "big",
            json!([{"apiGroups":["*"],"resources":["*"],"verbs":["*"]}]),
        );
        assert_eq!(p.check_escalation(&engine(), "team-a", &r), Ok(()));
        // escalate on roles does not cover clusterroles.
        let cr = crole(
            "big",
            json!([{"apiGroups":[""],"resources":["pods"],"verbs":["get"]}]),
        );
        assert!(p.check_escalation(&engine(), "", &cr).is_err());
    }

    #[test]
    fn escalation_for_bindings_needs_held_rules_or_bind() {
        let p = policy(vec![
            role(
                "team-a",
                "binder",
                json!([{"apiGroups":[RBAC_GROUP],"resources":["rolebindings"],"verbs":["create"]}]),
            ),
            rb(
                "team-a",
                "e",
                "Role",
                "binder",
                json!([{"kind":"User","apiGroup":RBAC_GROUP,"name":"gitops-engine"}]),
            ),
            crole(
                "bind-view",
                json!([{"apiGroups":[RBAC_GROUP],"resources":["clusterroles"],"verbs":["bind"],"resourceNames":["view"]}]),
            ),
            crb(
                "bv",
                "bind-view",
                json!([{"kind":"User","apiGroup":RBAC_GROUP,"name":"binder2"}]),
            ),
        ]);
        let b = rb(
            "team-a",
            "app-edit",
            "ClusterRole",
            "edit",
            json!([{"kind":"ServiceAccount","name":"app"}]),
        );
        let err = p.check_escalation(&engine(), "team-a", &b).unwrap_err();
        assert!(
            err.starts_with(r#"rolebindings.rbac.authorization.k8s.io "app-edit" is forbidden: user "gitops-engine" (groups=["system:authenticated"]) is attempting to grant RBAC permissions not currently held:"#),
            "{err}"
        );
        // bind restricted by resourceNames: view yes, edit no.
        let binder2 = user("binder2", &["system:authenticated"]);
        let v = rb("team-a", "app-view", "ClusterRole", "view", json!([]));
        assert_eq!(p.check_escalation(&binder2, "team-a", &v), Ok(()));
        assert!(p.check_escalation(&binder2, "team-a", &b).is_err());
        // Holding every permission of the role is enough.
        let self_bind = rb("team-a", "again", "Role", "binder", json!([]));
        assert_eq!(p.check_escalation(&engine(), "team-a", &self_bind), Ok(()));
        // A missing role.
        let missing = rb("team-a", "m", "Role", "nope", json!([]));
        assert_eq!(
            p.check_escalation(&engine(), "team-a", &missing),
            Err(r#"rolebindings.rbac.authorization.k8s.io "m" is forbidden: roles.rbac.authorization.k8s.io "nope" not found"#.into())
        );
        // ClusterRoleBinding to cluster-admin by a user holding only namespaced rights.
        let c = crb("x", "cluster-admin", json!([]));
        let err = p.check_escalation(&engine(), "", &c).unwrap_err();
        assert!(
            err.contains(r#"{APIGroups:["*"], Resources:["*"], Verbs:["*"]}"#),
            "{err}"
        );
        assert!(
            err.contains(r#"{NonResourceURLs:["*"], Verbs:["*"]}"#),
            "{err}"
        );
    }

    #[test]
    fn escalation_aggregation_rule_requires_cluster_admin() {
        let p = policy(vec![
            crole(
                "cr-writer",
                json!([{"apiGroups":[RBAC_GROUP],"resources":["clusterroles"],"verbs":["create"]}]),
            ),
            crb(
                "w",
                "cr-writer",
                json!([{"kind":"User","apiGroup":RBAC_GROUP,"name":"gitops-engine"}]),
            ),
        ]);
        let agg = json!({"kind":"ClusterRole","metadata":{"name":"agg"},"aggregationRule":{"clusterRoleSelectors":[{"matchLabels":{"a":"b"}}]},"rules":[]});
        assert_eq!(
            p.check_escalation(&engine(), "", &agg),
            Err(r#"clusterroles.rbac.authorization.k8s.io "agg" is forbidden: must have cluster-admin privileges to use the aggregationRule"#.into())
        );
    }

    #[test]
    fn escalation_coverage_rules() {
        let owner = |v: Value| Rule::from_value(&v);
        let sub = |v: Value| breakdown(&Rule::from_value(&v));
        let all = |o: &Rule, s: Vec<Rule>| s.iter().all(|r| covers(o, r));
        assert!(all(
            &owner(json!({"apiGroups":["*"],"resources":["*"],"verbs":["*"]})),
            sub(json!({"apiGroups":["apps"],"resources":["deployments/scale"],"verbs":["get"]}))
        ));
        assert!(all(
            &owner(json!({"apiGroups":["apps"],"resources":["*/scale"],"verbs":["get"]})),
            sub(json!({"apiGroups":["apps"],"resources":["deployments/scale"],"verbs":["get"]}))
        ));
        assert!(!all(
            &owner(json!({"apiGroups":["apps"],"resources":["deployments"],"verbs":["get"]})),
            sub(json!({"apiGroups":["apps"],"resources":["deployments/scale"],"verbs":["get"]}))
        ));
        assert!(all(
            &owner(json!({"apiGroups":[""],"resources":["cm"],"verbs":["get"]})),
            sub(json!({"apiGroups":[""],"resources":["cm"],"verbs":["get"],"resourceNames":["a"]}))
        ));
        assert!(!all(
            &owner(
                json!({"apiGroups":[""],"resources":["cm"],"verbs":["get"],"resourceNames":["a"]})
            ),
            sub(json!({"apiGroups":[""],"resources":["cm"],"verbs":["get"]}))
        ));
        assert!(all(
            &owner(json!({"nonResourceURLs":["/logs/*"],"verbs":["get"]})),
            sub(json!({"nonResourceURLs":["/logs/a"],"verbs":["get"]}))
        ));
        assert!(!all(
            &owner(json!({"apiGroups":["*"],"resources":["*"],"verbs":["*"]})),
            sub(json!({"nonResourceURLs":["/x"],"verbs":["get"]}))
        ));
    }

    #[test]
    fn reviews() {
        let p = policy(vec![rb(
            "team-a",
            "d",
            "ClusterRole",
            "edit",
            json!([{"kind":"ServiceAccount","name":"deployer"}]),
        )]);
        let u = sa_user("team-a", "deployer");
        let req = json!({"apiVersion":"authorization.k8s.io/v1","kind":"SelfSubjectAccessReview",
            "spec":{"resourceAttributes":{"namespace":"team-a","verb":"create","group":"apps","resource":"deployments"}}});
        let out = self_subject_access_review(&p, &u, &req);
        assert_eq!(out["status"]["allowed"], true);
        assert_eq!(out["spec"], req["spec"]);
        assert_eq!(out["metadata"], json!({}));
        assert!(
            out["status"]["reason"]
                .as_str()
                .unwrap_or("")
                .starts_with("RBAC: allowed by RoleBinding \"d/team-a\"")
        );
        let req = json!({"spec":{"resourceAttributes":{"verb":"list","resource":"namespaces"}}});
        let out = self_subject_access_review(&p, &u, &req);
        assert_eq!(out["status"], json!({"allowed": false}));
        assert_eq!(out["kind"], "SelfSubjectAccessReview");
        let req = json!({"spec":{"nonResourceAttributes":{"verb":"get","path":"/healthz"}}});
        assert_eq!(
            self_subject_access_review(&p, &u, &req)["status"]["allowed"],
            true
        );
        let bad = self_subject_access_review(&p, &u, &json!({"spec":{}}));
        assert_eq!(bad["status"]["allowed"], false);
        assert!(bad["status"]["evaluationError"].is_string());

        let sar = json!({"apiVersion":"authorization.k8s.io/v1","kind":"SubjectAccessReview","spec":{
            "user":"system:serviceaccount:team-a:deployer","groups":["system:serviceaccounts"],
            "resourceAttributes":{"namespace":"team-a","verb":"get","resource":"secrets","name":"s"}}});
        assert_eq!(subject_access_review(&p, &sar)["status"]["allowed"], true);
        let sar = json!({"spec":{"user":"nobody","resourceAttributes":{"namespace":"team-a","verb":"get","resource":"secrets"}}});
        assert_eq!(subject_access_review(&p, &sar)["status"]["allowed"], false);
        let lsar = json!({"spec":{"user":"system:serviceaccount:team-a:deployer","resourceAttributes":{"namespace":"elsewhere","verb":"get","resource":"pods"}}});
        assert_eq!(
            local_subject_access_review(&p, "team-a", &lsar)["status"]["allowed"],
            true
        );

        let ssrr = self_subject_rules_review(
            &p,
            &u,
            &json!({"apiVersion":"authorization.k8s.io/v1","kind":"SelfSubjectRulesReview","spec":{"namespace":"team-a"}}),
        );
        let st = &ssrr["status"];
        assert_eq!(st["incomplete"], false);
        let rr = st["resourceRules"].as_array().cloned().unwrap_or_default();
        assert!(rr.iter().any(|r| {
            r["resources"]
                .as_array()
                .is_some_and(|a| a.contains(&json!("deployments")))
        }));
        assert!(
            rr.iter().any(|r| r["resources"]
                == json!(["selfsubjectaccessreviews", "selfsubjectrulesreviews"]))
        );
        let nr = st["nonResourceRules"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(nr.iter().any(|r| {
            r["nonResourceURLs"]
                .as_array()
                .is_some_and(|a| a.contains(&json!("/api")))
        }));
        let (r2, _) = p.rules_for(&u, "team-b");
        assert!(r2.len() < rr.len(), "edit is bound in team-a only");
        let (m, n) = p.rules_for(&user("root", &["system:masters"]), "x");
        assert_eq!(
            m[0],
            json!({"verbs":["*"],"apiGroups":["*"],"resources":["*"]})
        );
        assert_eq!(n[0], json!({"verbs":["*"],"nonResourceURLs":["*"]}));
    }
}
