//! The authentication and authorization seam of the request pipeline. Static bearer tokens
//! for now; the authentication and RBAC modules plug in behind these two functions.

use std::collections::HashMap;
use std::sync::RwLock;

use axum::http::HeaderMap;

use crate::status::ApiError;

/// Who is making a request.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UserInfo {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: HashMap<String, Vec<String>>,
}

/// What a request does, in RBAC terms.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Attributes {
    pub verb: String,
    pub resource_request: bool,
    pub group: String,
    pub version: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
    /// For non-resource requests (`/version`, `/apis`, ...).
    pub path: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Allow,
    Deny(String),
    NoOpinion,
}

/// Bearer tokens known to the server.
#[derive(Debug, Default)]
pub struct Authenticator {
    tokens: RwLock<HashMap<String, UserInfo>>,
}

impl Authenticator {
    pub fn new(admin_token: &str) -> Authenticator {
        let a = Authenticator::default();
        a.add_token(
            admin_token,
            UserInfo {
                name: "admin".into(),
                uid: "admin".into(),
                groups: vec!["system:masters".into()],
                extra: HashMap::new(),
            },
        );
        a
    }

    pub fn add_token(&self, token: &str, user: UserInfo) {
        let mut g = match self.tokens.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        g.insert(token.to_string(), user);
    }

    pub fn lookup(&self, token: &str) -> Option<UserInfo> {
        let g = match self.tokens.read() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        g.get(token).cloned()
    }

    /// Bearer token to user; every authenticated user is in `system:authenticated`.
    /// No or unknown credentials: 401 (anonymous access is off).
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<UserInfo, ApiError> {
        let token = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .ok_or_else(ApiError::unauthorized)?;
        let mut user = self.lookup(token).ok_or_else(ApiError::unauthorized)?;
        if !user.groups.iter().any(|g| g == "system:authenticated") {
            user.groups.push("system:authenticated".into());
        }
        Ok(user)
    }
}

/// Authorization decision for a request. `system:masters` always passes; until RBAC is
/// wired in, every other authenticated user does too.
pub fn authorize(user: &UserInfo, _attrs: &Attributes) -> Decision {
    if user.groups.iter().any(|g| g == "system:masters") {
        return Decision::Allow;
    }
    Decision::Allow
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_map_to_users() {
        let a = Authenticator::new("tok");
        let mut h = HeaderMap::new();
        assert!(a.authenticate(&h).is_err());
        h.insert(
            "authorization",
            "Bearer nope".parse().unwrap_or_else(|_| unreachable!()),
        );
        assert_eq!(a.authenticate(&h).err().map(|e| e.code), Some(401));
        h.insert(
            "authorization",
            "Bearer tok".parse().unwrap_or_else(|_| unreachable!()),
        );
        let u = a.authenticate(&h).ok();
        assert!(u.is_some_and(
            |u| u.name == "admin" && u.groups.contains(&"system:authenticated".to_string())
        ));
    }
}
