//! The authentication and authorization seam of the request pipeline: bearer tokens (the admin
//! token, tokens added by tests, service-account JWTs minted by TokenRequest) through
//! [`TokenAuthority`], impersonation, RBAC over the stored Roles and bindings (bootstrap policy
//! included), escalation prevention for RBAC writes, and the review APIs.
//!
//! The RBAC [`Policy`] is rebuilt lazily: the authenticator follows the store's change feed and
//! rebuilds on the next authorization after any Role/ClusterRole/RoleBinding/ClusterRoleBinding
//! write. The feed is sent under the store lock, so a request that starts after a write has
//! returned always sees it.

use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use axum::http::HeaderMap;
use serde_json::{Value, json};
use tokio::sync::broadcast::{self, error::TryRecvError};

pub use crate::auth::UserInfo;
use crate::auth::{self, AuthResult, TokenAuthority, TokenRequestError};
use crate::lifecycle::{self, meta_str};
use crate::rbac::{self, Policy, RBAC_GROUP};
pub use crate::rbac::{Attributes, Decision};
use crate::resources::Registry;
use crate::status::{ApiError, FieldError};
use crate::store::{Change, Key, Notice, Store, unix_seconds};

/// kube-apiserver's default service-account issuer (and so the default API audience).
pub const DEFAULT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

const RBAC_KINDS: [(&str, &str); 4] = [
    ("Role", "roles"),
    ("ClusterRole", "clusterroles"),
    ("RoleBinding", "rolebindings"),
    ("ClusterRoleBinding", "clusterrolebindings"),
];

struct PolicyCache {
    policy: Arc<Policy>,
    changes: broadcast::Receiver<Notice>,
}

/// Authentication and authorization state of one server.
pub struct Authenticator {
    authority: RwLock<TokenAuthority>,
    anonymous: bool,
    store: Arc<Store>,
    registry: Arc<Registry>,
    /// Storage names of the four RBAC kinds, in [`RBAC_KINDS`] order.
    rbac_storage: Vec<String>,
    sa_storage: String,
    cache: Mutex<PolicyCache>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("anonymous", &self.anonymous)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

fn storage_of(registry: &Registry, group: &str, plural: &str) -> String {
    registry
        .find(group, "v1", plural)
        .map(|d| d.storage.clone())
        .unwrap_or_else(|| format!("{group}/{plural}"))
}

/// An `ApiError` carrying exactly the given `Status` body (message, reason, details, code).
fn from_status(status: &Value) -> ApiError {
    let code = status
        .get("code")
        .and_then(Value::as_u64)
        .and_then(|c| u16::try_from(c).ok())
        .unwrap_or(403);
    let reason = match status.get("reason").and_then(Value::as_str) {
        Some("BadRequest") => "BadRequest",
        Some("Unauthorized") => "Unauthorized",
        _ => "Forbidden",
    };
    let message = status
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let e = ApiError::new(code, reason, message);
    match status.get("details") {
        Some(d) if !d.is_null() => e.with_details(d.clone()),
        _ => e,
    }
}

/// The 403 for a denied request, exactly as kube-apiserver words it.
pub fn forbidden(a: &Attributes, reason: &str) -> ApiError {
    from_status(&rbac::forbidden_status(a, reason))
}

impl Authenticator {
    /// The admin token maps to `admin` in `system:masters`. Creates the bootstrap ClusterRoles
    /// and ClusterRoleBindings in `store` (left alone when they already exist).
    pub fn new(
        admin_token: &str,
        store: Arc<Store>,
        registry: Arc<Registry>,
        anonymous: bool,
    ) -> Authenticator {
        let mut authority = TokenAuthority::new(DEFAULT_ISSUER);
        authority.add_static_token(
            admin_token,
            UserInfo {
                name: "admin".into(),
                uid: "admin".into(),
                groups: vec!["system:masters".into()],
                ..Default::default()
            },
        );
        let rbac_storage = RBAC_KINDS
            .iter()
            .map(|(_, plural)| storage_of(&registry, RBAC_GROUP, plural))
            .collect();
        let sa_storage = storage_of(&registry, "", "serviceaccounts");
        seed_bootstrap_policy(&store, &registry);
        // Subscribe before the first build so no write falls between the two.
        let changes = store.subscribe();
        let a = Authenticator {
            authority: RwLock::new(authority),
            anonymous,
            store,
            registry,
            rbac_storage,
            sa_storage,
            cache: Mutex::new(PolicyCache {
                policy: Arc::new(Policy::default()),
                changes,
            }),
        };
        let p = a.build_policy();
        lock(&a.cache).policy = p;
        a
    }

    fn authority(&self) -> std::sync::RwLockReadGuard<'_, TokenAuthority> {
        match self.authority.read() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Let `token` authenticate as `user` (in `groups`, plus `system:authenticated`).
    pub fn add_user_token(&self, token: &str, user: &str, groups: &[&str]) {
        let mut g = match self.authority.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        g.add_static_token(
            token,
            UserInfo {
                name: user.into(),
                groups: groups.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            },
        );
    }

    /// The uid of the live object a token names (its service account, or the Pod, Secret or
    /// Node it is bound to): tokens die with these objects. One that has been terminating for
    /// longer than the grace counts as gone, as in kube-apiserver.
    fn live_uid(&self, kind: &str, ns: &str, name: &str) -> Option<String> {
        let storage = match kind {
            "ServiceAccount" => self.sa_storage.clone(),
            "Pod" | "Secret" | "Node" => {
                let plural = format!("{}s", kind.to_ascii_lowercase());
                self.registry.find("", "v1", &plural)?.storage.clone()
            }
            _ => return None,
        };
        let obj = self.store.get(&Key::new(&storage, ns, name))?;
        let deleting_since = obj
            .pointer("/metadata/deletionTimestamp")
            .and_then(Value::as_str)
            .and_then(crate::store::parse_rfc3339);
        if deleting_since.is_some_and(|t| t < unix_seconds() - auth::DELETION_GRACE) {
            return None;
        }
        Some(meta_str(&obj, "uid").to_owned())
    }

    /// Bearer token to user, then impersonation. No credentials: `system:anonymous` when
    /// anonymous access is on, else 401, like any token that does not authenticate.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<UserInfo, ApiError> {
        let header = headers.get("authorization").and_then(|v| v.to_str().ok());
        let result = self
            .authority()
            .authenticate(header, unix_seconds(), &|k, ns, n| self.live_uid(k, ns, n));
        let user = match result {
            AuthResult::Authenticated(u) => u,
            AuthResult::Anonymous if self.anonymous => UserInfo::anonymous(),
            AuthResult::Anonymous | AuthResult::Unauthorized(_) => {
                return Err(ApiError::unauthorized());
            }
        };
        let imp: Vec<(String, String)> = headers
            .iter()
            .filter(|(k, _)| k.as_str().starts_with("impersonate-"))
            .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect();
        if imp.is_empty() {
            return Ok(user);
        }
        let policy = self.policy();
        match auth::impersonate(&user, &imp, &|_, a| policy.authorize(a)) {
            Ok(Some(u)) => Ok(u),
            Ok(None) => Ok(user),
            Err(e) => Err(from_status(&e.status())),
        }
    }

    /// The current RBAC policy, rebuilt if an RBAC object changed since the last call.
    /// Never call this while holding the store lock (inside a `Store::mutate` closure).
    pub fn policy(&self) -> Arc<Policy> {
        let mut c = lock(&self.cache);
        let mut dirty = false;
        loop {
            match c.changes.try_recv() {
                Ok(Notice::Event(ev)) => {
                    if self.rbac_storage.contains(&ev.key.storage) {
                        dirty = true;
                    }
                }
                Ok(Notice::Compacted) => {}
                Err(TryRecvError::Lagged(_)) => dirty = true,
                Err(TryRecvError::Empty) | Err(TryRecvError::Closed) => break,
            }
        }
        if dirty {
            c.policy = self.build_policy();
        }
        c.policy.clone()
    }

    /// Index the stored RBAC objects; also stores the rules of aggregated ClusterRoles, as
    /// the aggregation controller does (those writes come back as no-op rebuilds).
    fn build_policy(&self) -> Arc<Policy> {
        let lists: Vec<Vec<Value>> = self
            .rbac_storage
            .iter()
            .map(|st| {
                let (items, _) = self.store.list(st, None);
                items.iter().map(|v| Value::clone(v)).collect()
            })
            .collect();
        let policy = Policy::from_objects(&lists[0], &lists[1], &lists[2], &lists[3]);
        for cr in &lists[1] {
            if cr.get("aggregationRule").is_none_or(Value::is_null) {
                continue;
            }
            let name = meta_str(cr, "name");
            let Some(rules) = policy.aggregated_cluster_role_rules(name) else {
                continue;
            };
            if cr.get("rules") == Some(&json!(rules)) {
                continue;
            }
            let key = Key::new(&self.rbac_storage[1], "", name);
            let _ = self.store.mutate(&key, false, |old| match old {
                Some(o) => {
                    let mut n = o.clone();
                    n["rules"] = json!(rules);
                    Ok(Change::Put(n))
                }
                None => Err(ApiError::internal("gone")),
            });
        }
        Arc::new(policy)
    }

    /// Allow or the exact 403.
    pub fn authorize(&self, a: &Attributes) -> Result<(), ApiError> {
        if a.user.groups.iter().any(|g| g == "system:masters") {
            return Ok(());
        }
        match self.policy().authorize(a) {
            Decision::Allow => Ok(()),
            Decision::Deny(reason) => Err(forbidden(a, &reason)),
            Decision::NoOpinion => Err(forbidden(a, "")),
        }
    }

    /// A check for writes of RBAC objects (no-op for other kinds): the requester must hold
    /// what the object grants, or `escalate`/`bind`. Take it before `Store::mutate` and run
    /// it inside on the object about to be stored.
    pub fn escalation_guard(
        &self,
        kind: &str,
        user: &UserInfo,
    ) -> impl Fn(&Value) -> Result<(), ApiError> + use<> {
        let policy = RBAC_KINDS
            .iter()
            .find(|(k, _)| *k == kind)
            .filter(|_| !user.groups.iter().any(|g| g == "system:masters"))
            .map(|(_, plural)| (self.policy(), *plural));
        let user = user.clone();
        move |obj: &Value| {
            let Some((policy, plural)) = &policy else {
                return Ok(());
            };
            policy
                .check_escalation(&user, meta_str(obj, "namespace"), obj)
                .map_err(|msg| {
                    ApiError::new(403, "Forbidden", msg).with_details(json!({
                        "name": meta_str(obj, "name"), "group": RBAC_GROUP, "kind": plural
                    }))
                })
        }
    }

    /// The review kinds (201 body). `namespace` is the URL's, for LocalSubjectAccessReview.
    pub fn review(
        &self,
        kind: &str,
        namespace: Option<&str>,
        review: &Value,
        user: &UserInfo,
    ) -> Result<Value, ApiError> {
        validate_access_review(kind, review)?;
        let out = match kind {
            "TokenReview" => self
                .authority()
                .token_review(review, unix_seconds(), &|k, ns, n| self.live_uid(k, ns, n))
                .map_err(ApiError::bad_request)?,
            "SelfSubjectReview" => auth::self_subject_review(user),
            "SubjectAccessReview" => rbac::subject_access_review(&self.policy(), review),
            "LocalSubjectAccessReview" => {
                let ns = namespace.unwrap_or("");
                let spec_ns = review
                    .pointer("/spec/resourceAttributes/namespace")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                if !spec_ns.is_empty() && spec_ns != ns {
                    return Err(ApiError::bad_request(format!(
                        "spec.resourceAttributes.namespace must match namespace: {ns}"
                    )));
                }
                rbac::local_subject_access_review(&self.policy(), ns, review)
            }
            "SelfSubjectAccessReview" => {
                rbac::self_subject_access_review(&self.policy(), user, review)
            }
            "SelfSubjectRulesReview" => {
                rbac::self_subject_rules_review(&self.policy(), user, review)
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "{other} is not a review kind"
                )));
            }
        };
        Ok(out)
    }

    /// `POST serviceaccounts/{name}/token`: mint a JWT for an existing service account.
    pub fn token_request(&self, ns: &str, name: &str, request: &Value) -> Result<Value, ApiError> {
        let sa = self
            .store
            .get(&Key::new(&self.sa_storage, ns, name))
            .ok_or_else(|| ApiError::not_found("", "serviceaccounts", name))?;
        let mut request = request.clone();
        // A bound object must exist (with the given uid); its uid goes into the token.
        if let Some(b) = request
            .pointer("/spec/boundObjectRef")
            .filter(|b| b.is_object())
            .cloned()
        {
            let f = |k: &str| b.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
            let (kind, bname, buid) = (f("kind"), f("name"), f("uid"));
            let plural = match kind.as_str() {
                "Pod" => Some("pods"),
                "Secret" => Some("secrets"),
                "Node" => Some("nodes"),
                _ => None,
            };
            if let Some(plural) = plural.filter(|_| f("apiVersion") == "v1")
                && let Some(def) = self.registry.find("", "v1", plural)
            {
                let obj_ns = if def.namespaced { ns } else { "" };
                let obj = self
                    .store
                    .get(&Key::new(&def.storage, obj_ns, &bname))
                    .ok_or_else(|| ApiError::not_found("", plural, &bname))?;
                let actual = meta_str(&obj, "uid").to_owned();
                if !buid.is_empty() && buid != actual {
                    return Err(ApiError::conflict(
                        "authentication.k8s.io",
                        "tokenrequests",
                        name,
                        &format!(
                            "the UID in the bound object reference ({buid}) does not match the UID in record. The object might have been deleted and then recreated"
                        ),
                    ));
                }
                request["spec"]["boundObjectRef"]["uid"] = json!(actual);
            }
        }
        self.authority()
            .token_request_response(ns, name, meta_str(&sa, "uid"), &request, unix_seconds())
            .map_err(|e| {
                let code = e.code();
                let details =
                    json!({"name": name, "group": "authentication.k8s.io", "kind": "TokenRequest"});
                match e {
                    TokenRequestError::Invalid(m) => {
                        ApiError::new(code, "Invalid", m).with_details(details)
                    }
                    TokenRequestError::BadRequest(m) => ApiError::bad_request(m),
                }
            })
    }

    /// A one-hour token for the service account, as `kubectl create token` would get.
    pub fn service_account_token(&self, ns: &str, name: &str) -> Result<String, ApiError> {
        let out = self.token_request(ns, name, &json!({"spec": {}}))?;
        out.pointer("/status/token")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| ApiError::internal("no token minted"))
    }

    /// `/.well-known/openid-configuration`.
    pub fn openid_configuration(&self) -> Value {
        self.authority().openid_configuration()
    }

    /// `/openid/v1/jwks`.
    pub fn jwks(&self) -> Value {
        self.authority().jwks()
    }
}

/// kube-apiserver's validation of the access review kinds: a 422 before any evaluation.
fn validate_access_review(kind: &str, review: &Value) -> Result<(), ApiError> {
    if !matches!(
        kind,
        "SubjectAccessReview" | "LocalSubjectAccessReview" | "SelfSubjectAccessReview"
    ) {
        return Ok(());
    }
    let spec = review.get("spec").unwrap_or(&Value::Null);
    let ra = spec.get("resourceAttributes").filter(|v| v.is_object());
    let na = spec.get("nonResourceAttributes").filter(|v| v.is_object());
    // Go prints the struct with %#v.
    let na_text = |na: &Value| {
        let f = |k: &str| na.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        format!(
            "authorization.NonResourceAttributes{{Path:{:?}, Verb:{:?}}}",
            f("path"),
            f("verb")
        )
    };
    let raw_invalid = |field: &str, value: String, detail: &str| FieldError {
        reason: "FieldValueInvalid",
        field: field.to_string(),
        message: format!("Invalid value: {value}: {detail}"),
    };
    let mut errs = Vec::new();
    if let (Some(_), Some(na)) = (ra, na) {
        errs.push(raw_invalid(
            "spec.nonResourceAttributes",
            na_text(na),
            "cannot be specified in combination with resourceAttributes",
        ));
    }
    if ra.is_none() && na.is_none() {
        errs.push(raw_invalid(
            "spec.resourceAttributes",
            "\"null\"".into(),
            "exactly one of nonResourceAttributes or resourceAttributes must be specified",
        ));
    }
    if kind != "SelfSubjectAccessReview" {
        let user = spec.get("user").and_then(Value::as_str).unwrap_or("");
        let no_groups = spec
            .get("groups")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty);
        if user.is_empty() && no_groups {
            errs.push(FieldError::invalid(
                "spec.user",
                "",
                "at least one of user or group must be specified",
            ));
        }
    }
    if kind == "LocalSubjectAccessReview"
        && let Some(na) = na
    {
        errs.push(raw_invalid(
            "spec.nonResourceAttributes",
            na_text(na),
            "disallowed on this kind of request",
        ));
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid("authorization.k8s.io", kind, "", errs))
    }
}

/// Create the bootstrap ClusterRoles and ClusterRoleBindings that are not there yet.
pub fn seed_bootstrap_policy(store: &Store, registry: &Registry) {
    for obj in rbac::bootstrap_objects() {
        let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
        let Some(def) = RBAC_KINDS
            .iter()
            .find(|(k, _)| *k == kind)
            .and_then(|(_, plural)| registry.find(RBAC_GROUP, "v1", plural))
        else {
            continue;
        };
        let mut obj = obj;
        lifecycle::prepare_create(&def, &mut obj);
        let key = Key::new(&def.storage, "", meta_str(&obj, "name"));
        let _ = store.mutate(&key, false, |old| match old {
            Some(o) => Ok(Change::Keep(o.clone())),
            None => Ok(Change::Put(obj)),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authn() -> Authenticator {
        Authenticator::new(
            "tok",
            Arc::new(Store::new(1000)),
            Arc::new(Registry::new()),
            false,
        )
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            if let Ok(v) = v.parse() {
                h.append(*k, v);
            }
        }
        h
    }

    #[test]
    fn bearer_tokens_map_to_users() {
        let a = authn();
        assert_eq!(
            a.authenticate(&headers(&[])).err().map(|e| e.code),
            Some(401)
        );
        let bad = headers(&[("authorization", "Bearer nope")]);
        assert_eq!(a.authenticate(&bad).err().map(|e| e.code), Some(401));
        let ok = headers(&[("authorization", "Bearer tok")]);
        let u = a.authenticate(&ok).ok();
        assert!(u.is_some_and(
            |u| u.name == "admin" && u.groups.contains(&"system:authenticated".to_string())
        ));
    }

    #[test]
    fn bootstrap_policy_and_impersonation() {
        let a = authn();
        a.add_user_token("alice-token", "alice", &[]);
        let alice = headers(&[("authorization", "Bearer alice-token")]);
        let u = a.authenticate(&alice).ok().unwrap_or_default();
        assert_eq!(u.name, "alice");
        assert!(
            a.authorize(&Attributes::non_resource(&u, "get", "/version"))
                .is_ok()
        );
        let e = a
            .authorize(&Attributes::resource(
                &u,
                "list",
                "",
                "configmaps",
                "",
                "team-a",
                "",
            ))
            .err();
        assert_eq!(
            e.map(|e| e.message),
            Some("configmaps is forbidden: User \"alice\" cannot list resource \"configmaps\" in API group \"\" in the namespace \"team-a\"".to_string())
        );
        let imp = headers(&[
            ("authorization", "Bearer alice-token"),
            ("impersonate-user", "bob"),
        ]);
        let e = a.authenticate(&imp).err();
        assert_eq!(e.as_ref().map(|e| e.code), Some(403));
        assert_eq!(
            e.map(|e| e.message),
            Some("users \"bob\" is forbidden: User \"alice\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope".to_string())
        );
        let admin_as_sa = headers(&[
            ("authorization", "Bearer tok"),
            ("impersonate-user", "system:serviceaccount:team-a:deployer"),
        ]);
        let u = a.authenticate(&admin_as_sa).ok().unwrap_or_default();
        assert_eq!(
            u.groups,
            [
                "system:serviceaccounts",
                "system:serviceaccounts:team-a",
                "system:authenticated"
            ]
        );
    }
}
