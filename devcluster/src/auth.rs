//! Authentication for the emulated apiserver: static bearer tokens, service-account JWTs minted
//! by TokenRequest, TokenReview, impersonation, and the protobuf envelope kubectl uses for the
//! review and token kinds.
//!
//! # API (wired in by the server)
//!
//! ```text
//! pub struct UserInfo { name, uid: String, groups: Vec<String>, extra: BTreeMap<String, Vec<String>> }
//!   UserInfo::anonymous() -> UserInfo            system:anonymous in [system:unauthenticated]
//!   UserInfo::to_json(&self) -> Value            authentication.k8s.io/v1 UserInfo (SelfSubjectReview, TokenReview)
//! pub struct BoundObject { kind, api_version, name, uid: String }   Pod, Secret or Node
//! pub enum AuthResult { Authenticated(UserInfo), Anonymous, Unauthorized(String) }
//!   Anonymous: no bearer credential at all; the server uses UserInfo::anonymous() or answers 401
//!   when anonymous access is off. Unauthorized: a bearer token that does not authenticate -> 401.
//! pub struct TokenAuthority                      ES256 key made at construction, issuer, static tokens
//!   TokenAuthority::new(issuer) -> Self          API audiences default to [issuer]
//!   set_api_audiences(&mut self, Vec<String>);  api_audiences(&self) -> &[String];  issuer(&self) -> &str
//!   add_static_token(&mut self, token, UserInfo)
//!   mint_service_account_token(&self, ns, sa, sa_uid, audiences, expiration_seconds, bound: Option<BoundObject>, now) -> (String, i64)
//!   authenticate(&self, authorization_header: Option<&str>, now, live_uid: LiveUid) -> AuthResult
//!   token_review(&self, review: &Value, now, live_uid) -> Result<Value, String>   Err = 400 BadRequest message
//! pub type LiveUid = &dyn Fn(kind, namespace, name) -> Option<String>
//!   the uid of the live ServiceAccount, Pod, Secret or Node a token names; None when it is
//!   gone (or has been terminating for longer than the grace kube-apiserver allows)
//!   token_request_response(&self, ns, sa, sa_uid, request: &Value, now) -> Result<Value, TokenRequestError>
//!   jwks(&self) -> Value;  openid_configuration(&self) -> Value
//! pub fn self_subject_review(user: &UserInfo) -> Value
//! pub fn impersonate(requester, headers: &[(String, String)], authorize: &dyn Fn(&UserInfo, &Attributes) -> Decision)
//!     -> Result<Option<UserInfo>, ImpersonationError>
//!   Ok(None): no impersonation headers. ImpersonationError::{code(), message(), status()} give the reply.
//! pub fn decode_k8s_protobuf(body: &[u8]) -> Result<Value, ProtobufError>
//!   SelfSubjectAccessReview, SelfSubjectRulesReview, SelfSubjectReview, TokenRequest,
//!   SubjectAccessReview, LocalSubjectAccessReview, TokenReview -> the equivalent JSON object.
//! ```
//!
//! `now` is Unix seconds everywhere, so tests and the server's frozen clock control expiry.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair};
use serde_json::{Map, Value, json};

use crate::rbac::{self, Attributes, Decision};

const SA_PREFIX: &str = "system:serviceaccount:";
const AUTHENTICATED: &str = "system:authenticated";
const UNAUTHENTICATED: &str = "system:unauthenticated";
const ANONYMOUS: &str = "system:anonymous";
/// go-jose's wording when no key verifies the signature.
const BAD_SIGNATURE: &str = "go-jose/go-jose: error in cryptographic primitive";
/// go-jose's default clock skew allowance, which the SA token validator inherits.
const LEEWAY: i64 = 60;
/// How long a token outlives the start of its bound object's deletion (kube-apiserver's
/// `invalidIfDeletedBefore`).
pub const DELETION_GRACE: i64 = 60;

/// Looks up a live object a token depends on by (kind, namespace, name): its uid, or None when
/// it no longer exists. Kinds asked for: ServiceAccount, Secret, Pod, Node (namespace "").
pub type LiveUid<'a> = &'a dyn Fn(&str, &str, &str) -> Option<String>;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    pub fn anonymous() -> UserInfo {
        UserInfo {
            name: ANONYMOUS.into(),
            groups: vec![UNAUTHENTICATED.into()],
            ..Default::default()
        }
    }

    /// authentication.k8s.io/v1 UserInfo; empty fields are omitted as the apiserver does.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        if !self.name.is_empty() {
            m.insert("username".into(), json!(self.name));
        }
        if !self.uid.is_empty() {
            m.insert("uid".into(), json!(self.uid));
        }
        if !self.groups.is_empty() {
            m.insert("groups".into(), json!(self.groups));
        }
        if !self.extra.is_empty() {
            m.insert("extra".into(), json!(self.extra));
        }
        Value::Object(m)
    }

    /// The authenticated-group adder: append system:authenticated unless either marker group
    /// is already present.
    fn with_authenticated(mut self) -> UserInfo {
        if !self
            .groups
            .iter()
            .any(|g| g == AUTHENTICATED || g == UNAUTHENTICATED)
        {
            self.groups.push(AUTHENTICATED.into());
        }
        self
    }
}

fn service_account_groups(namespace: &str) -> Vec<String> {
    vec![
        "system:serviceaccounts".into(),
        format!("system:serviceaccounts:{namespace}"),
    ]
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BoundObject {
    pub kind: String,
    pub api_version: String,
    pub name: String,
    pub uid: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthResult {
    Authenticated(UserInfo),
    Anonymous,
    Unauthorized(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenRequestError {
    /// 422 Invalid.
    #[error("{0}")]
    Invalid(String),
    /// 400 BadRequest.
    #[error("{0}")]
    BadRequest(String),
}

impl TokenRequestError {
    pub fn code(&self) -> u16 {
        match self {
            TokenRequestError::Invalid(_) => 422,
            TokenRequestError::BadRequest(_) => 400,
        }
    }
}

/// Outcome of checking one bearer token with one authenticator.
enum TokenCheck {
    /// Authenticated; the audiences the token is good for (intersection with the requested).
    Ok(UserInfo, Vec<String>),
    /// Not this authenticator's token: no opinion, no error.
    NotMine,
    /// This authenticator's token, but invalid.
    Invalid(String),
}

pub struct TokenAuthority {
    issuer: String,
    api_audiences: Vec<String>,
    key: EcdsaKeyPair,
    kid: String,
    static_tokens: BTreeMap<String, UserInfo>,
    rng: SystemRandom,
}

impl std::fmt::Debug for TokenAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenAuthority")
            .field("issuer", &self.issuer)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

fn b64(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

impl TokenAuthority {
    /// A fresh per-emulator ES256 key (RS256 needs RSA key generation, which ring lacks;
    /// kube-apiserver accepts EC service-account keys too).
    pub fn new(issuer: &str) -> Self {
        let rng = SystemRandom::new();
        let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        // Only the OS random source can fail here; there is nothing to recover with.
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).expect("system random source");
        let key =
            EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).expect("freshly generated key");
        let digest = ring::digest::digest(&ring::digest::SHA256, key.public_key().as_ref());
        TokenAuthority {
            issuer: issuer.to_owned(),
            api_audiences: vec![issuer.to_owned()],
            kid: b64(digest.as_ref()),
            key,
            static_tokens: BTreeMap::new(),
            rng,
        }
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn api_audiences(&self) -> &[String] {
        &self.api_audiences
    }

    pub fn set_api_audiences(&mut self, audiences: Vec<String>) {
        self.api_audiences = audiences;
    }

    pub fn add_static_token(&mut self, token: &str, user: UserInfo) {
        self.static_tokens.insert(token.to_owned(), user);
    }

    /// `/openid/v1/jwks`.
    pub fn jwks(&self) -> Value {
        let point = self.key.public_key().as_ref();
        // Uncompressed point: 0x04 || x(32) || y(32).
        let (x, y) = if point.len() == 65 {
            (b64(&point[1..33]), b64(&point[33..65]))
        } else {
            (String::new(), String::new())
        };
        json!({"keys": [{"use": "sig", "kty": "EC", "kid": self.kid, "crv": "P-256", "alg": "ES256", "x": x, "y": y}]})
    }

    /// `/.well-known/openid-configuration`.
    pub fn openid_configuration(&self) -> Value {
        json!({
            "issuer": self.issuer,
            "jwks_uri": format!("{}/openid/v1/jwks", self.issuer.trim_end_matches('/')),
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"]
        })
    }

    fn uuid(&self) -> String {
        crate::store::new_uid()
    }

    // The argument list is the server's wiring contract.
    #[allow(clippy::too_many_arguments)]
    pub fn mint_service_account_token(
        &self,
        namespace: &str,
        sa: &str,
        sa_uid: &str,
        audiences: &[String],
        expiration_seconds: i64,
        bound: Option<BoundObject>,
        now: i64,
    ) -> (String, i64) {
        let exp = now + expiration_seconds;
        let mut k8s = Map::new();
        k8s.insert("namespace".into(), json!(namespace));
        if let Some(b) = &bound {
            let key = b.kind.to_ascii_lowercase();
            k8s.insert(key, json!({"name": b.name, "uid": b.uid}));
        }
        k8s.insert("serviceaccount".into(), json!({"name": sa, "uid": sa_uid}));
        let claims = json!({
            "aud": audiences,
            "exp": exp,
            "iat": now,
            "iss": self.issuer,
            "jti": self.uuid(),
            "kubernetes.io": k8s,
            "nbf": now,
            "sub": format!("{SA_PREFIX}{namespace}:{sa}"),
        });
        let header = json!({"alg": "ES256", "kid": self.kid});
        let signing_input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let sig = match self.key.sign(&self.rng, signing_input.as_bytes()) {
            Ok(s) => b64(s.as_ref()),
            // Signing fails only if the random source does; such a token simply won't verify.
            Err(_) => String::new(),
        };
        (format!("{signing_input}.{sig}"), exp)
    }

    /// Check a JWT against `requested` audiences (the API audiences for plain requests).
    fn check_jwt(
        &self,
        token: &str,
        requested: &[String],
        now: i64,
        live_uid: LiveUid,
    ) -> TokenCheck {
        let parts: Vec<&str> = token.split('.').collect();
        if parts.len() != 3 {
            return TokenCheck::NotMine;
        }
        let decode = |s: &str| -> Option<Value> {
            let bytes = URL_SAFE_NO_PAD.decode(s).ok()?;
            serde_json::from_slice(&bytes).ok()
        };
        let (Some(header), Some(claims)) = (decode(parts[0]), decode(parts[1])) else {
            return TokenCheck::NotMine;
        };
        // Tokens of other issuers belong to other authenticators.
        if claims.get("iss").and_then(Value::as_str) != Some(self.issuer.as_str()) {
            return TokenCheck::NotMine;
        }
        let sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap_or_default();
        let public = signature::UnparsedPublicKey::new(
            &signature::ECDSA_P256_SHA256_FIXED,
            self.key.public_key().as_ref(),
        );
        let signing_input = &token[..parts[0].len() + 1 + parts[1].len()];
        if header.get("alg").and_then(Value::as_str) != Some("ES256")
            || public.verify(signing_input.as_bytes(), &sig).is_err()
        {
            return TokenCheck::Invalid(BAD_SIGNATURE.into());
        }

        let mut token_auds: Vec<String> = match claims.get("aud") {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            _ => Vec::new(),
        };
        if token_auds.is_empty() {
            // Legacy tokens without audience are good for the apiserver only.
            token_auds = self.api_audiences.clone();
        }
        let auds: Vec<String> = token_auds
            .iter()
            .filter(|a| requested.contains(a))
            .cloned()
            .collect();
        if auds.is_empty() && !self.api_audiences.is_empty() {
            return TokenCheck::Invalid(format!(
                "token audiences {} is invalid for the target audiences {}",
                rbac::go_quote_list(&token_auds),
                rbac::go_quote_list(requested)
            ));
        }

        let num = |k: &str| claims.get(k).and_then(Value::as_i64);
        if num("exp").is_some_and(|exp| now > exp + LEEWAY) {
            return TokenCheck::Invalid("service account token has expired".into());
        }
        if num("nbf").is_some_and(|nbf| now + LEEWAY < nbf) {
            return TokenCheck::Invalid(
                "service account token could not be validated due to unexpected validation error"
                    .into(),
            );
        }
        let k8s = claims.get("kubernetes.io").cloned().unwrap_or(Value::Null);
        let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        let namespace = s(&k8s, "namespace");
        let sa = k8s.get("serviceaccount").cloned().unwrap_or(Value::Null);
        let (name, uid) = (s(&sa, "name"), s(&sa, "uid"));
        if namespace.is_empty() {
            return TokenCheck::Invalid(
                "service account token claims are missing namespace".into(),
            );
        }
        if name.is_empty() || uid.is_empty() {
            return TokenCheck::Invalid(
                "service account token claims are missing serviceaccount".into(),
            );
        }
        match live_uid("ServiceAccount", &namespace, &name) {
            None => {
                return TokenCheck::Invalid(format!(
                    "serviceaccount {} not found",
                    rbac::go_quote(&name)
                ));
            }
            Some(live) if live != uid => {
                return TokenCheck::Invalid(format!(
                    "service account UID ({live}) does not match claim ({uid})"
                ));
            }
            Some(_) => {}
        }
        // A token bound to an object dies with it, and with its uid: a new object of the same
        // name is not the one the token was issued for.
        for (claim, kind) in [("secret", "Secret"), ("pod", "Pod"), ("node", "Node")] {
            let Some(bound) = k8s.get(claim) else {
                continue;
            };
            let bound_ns = if kind == "Node" {
                ""
            } else {
                namespace.as_str()
            };
            let bound_uid = s(bound, "uid");
            match live_uid(kind, bound_ns, &s(bound, "name")) {
                None => {
                    return TokenCheck::Invalid(
                        "service account token has been invalidated".into(),
                    );
                }
                Some(live) if live != bound_uid => {
                    return TokenCheck::Invalid(format!(
                        "{claim} UID ({live}) does not match service account {claim} ref claim ({bound_uid})"
                    ));
                }
                Some(_) => {}
            }
        }
        let mut extra = BTreeMap::new();
        if let Some(jti) = claims.get("jti").and_then(Value::as_str) {
            extra.insert(
                "authentication.kubernetes.io/credential-id".to_owned(),
                vec![format!("JTI={jti}")],
            );
        }
        for kind in ["pod", "node"] {
            if let Some(obj) = k8s.get(kind) {
                extra.insert(
                    format!("authentication.kubernetes.io/{kind}-name"),
                    vec![s(obj, "name")],
                );
                extra.insert(
                    format!("authentication.kubernetes.io/{kind}-uid"),
                    vec![s(obj, "uid")],
                );
            }
        }
        let user = UserInfo {
            name: format!("{SA_PREFIX}{namespace}:{name}"),
            uid,
            groups: service_account_groups(&namespace),
            extra,
        };
        TokenCheck::Ok(user, auds)
    }

    /// All token authenticators in order: static tokens (audience-agnostic), then SA JWTs.
    fn check_token(
        &self,
        token: &str,
        requested: &[String],
        now: i64,
        live_uid: LiveUid,
    ) -> TokenCheck {
        if let Some(user) = self.static_tokens.get(token) {
            // Audience-agnostic authenticators are good for the API audiences only.
            let auds: Vec<String> = self
                .api_audiences
                .iter()
                .filter(|a| requested.contains(a))
                .cloned()
                .collect();
            if auds.is_empty() && !requested.is_empty() {
                return TokenCheck::NotMine;
            }
            return TokenCheck::Ok(user.clone(), auds);
        }
        self.check_jwt(token, requested, now, live_uid)
    }

    pub fn authenticate(
        &self,
        authorization_header: Option<&str>,
        now: i64,
        live_uid: LiveUid,
    ) -> AuthResult {
        let header = authorization_header.unwrap_or("").trim();
        let mut parts = header.splitn(3, ' ');
        let scheme = parts.next().unwrap_or("");
        let token = parts.next().unwrap_or("");
        // Non-bearer or empty credentials are not an error: the request continues anonymously.
        if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
            return AuthResult::Anonymous;
        }
        match self.check_token(token, &self.api_audiences, now, live_uid) {
            TokenCheck::Ok(user, _) => AuthResult::Authenticated(user.with_authenticated()),
            TokenCheck::NotMine => AuthResult::Unauthorized("invalid bearer token".into()),
            TokenCheck::Invalid(e) => AuthResult::Unauthorized(e),
        }
    }

    /// POST authentication.k8s.io/v1 tokenreviews (201). Err is a 400 BadRequest message.
    pub fn token_review(
        &self,
        review: &Value,
        now: i64,
        live_uid: LiveUid,
    ) -> Result<Value, String> {
        let spec = review.get("spec").cloned().unwrap_or(Value::Null);
        let token = spec.get("token").and_then(Value::as_str).unwrap_or("");
        if token.is_empty() {
            return Err("token is required for TokenReview in authentication".into());
        }
        let spec_auds: Vec<String> = spec
            .get("audiences")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let requested = if spec_auds.is_empty() {
            self.api_audiences.clone()
        } else {
            spec_auds
        };
        let mut status = Map::new();
        match self.check_token(token, &requested, now, live_uid) {
            TokenCheck::Ok(user, auds) => {
                status.insert("authenticated".into(), json!(true));
                status.insert("user".into(), user.with_authenticated().to_json());
                if !auds.is_empty() {
                    status.insert("audiences".into(), json!(auds));
                }
            }
            TokenCheck::NotMine => {
                status.insert("user".into(), json!({}));
            }
            TokenCheck::Invalid(e) => {
                status.insert("user".into(), json!({}));
                status.insert("error".into(), json!(e));
            }
        }
        let mut out = review.as_object().cloned().unwrap_or_default();
        out.insert("kind".into(), json!("TokenReview"));
        out.insert("apiVersion".into(), json!("authentication.k8s.io/v1"));
        if !out.get("metadata").is_some_and(Value::is_object) {
            out.insert("metadata".into(), json!({}));
        }
        out.insert("status".into(), Value::Object(status));
        Ok(Value::Object(out))
    }

    /// POST /api/v1/namespaces/{ns}/serviceaccounts/{sa}/token (201). The caller has checked
    /// that the SA exists (404 otherwise) and, for a bound object, that it exists too.
    pub fn token_request_response(
        &self,
        namespace: &str,
        sa: &str,
        sa_uid: &str,
        request: &Value,
        now: i64,
    ) -> Result<Value, TokenRequestError> {
        let spec = request.get("spec").cloned().unwrap_or(Value::Null);
        let expiration = match spec.get("expirationSeconds") {
            None | Some(Value::Null) => 3600,
            Some(v) => v.as_i64().ok_or_else(|| {
                TokenRequestError::BadRequest("expirationSeconds must be an integer".into())
            })?,
        };
        let invalid = |detail: String| {
            TokenRequestError::Invalid(format!(
                "TokenRequest.authentication.k8s.io {} is invalid: spec.expirationSeconds: Invalid value: {expiration}: {detail}",
                rbac::go_quote(sa)
            ))
        };
        if expiration < 600 {
            return Err(invalid(
                "may not specify a duration less than 10 minutes".into(),
            ));
        }
        if expiration > 1 << 32 {
            return Err(invalid(
                "may not specify a duration larger than 2^32 seconds".into(),
            ));
        }
        let mut audiences: Vec<String> = spec
            .get("audiences")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        if audiences.is_empty() {
            audiences = self.api_audiences.clone();
        }
        let bound = match spec.get("boundObjectRef").filter(|b| !b.is_null()) {
            None => None,
            Some(b) => {
                let g = |k: &str| b.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
                let obj = BoundObject {
                    kind: g("kind"),
                    api_version: g("apiVersion"),
                    name: g("name"),
                    uid: g("uid"),
                };
                let gvk = if obj.api_version.is_empty() {
                    obj.kind.clone()
                } else {
                    format!("{}, Kind={}", obj.api_version, obj.kind)
                };
                if !(obj.api_version == "v1"
                    && matches!(obj.kind.as_str(), "Pod" | "Secret" | "Node"))
                {
                    return Err(TokenRequestError::BadRequest(format!(
                        "cannot bind token to object of type {gvk}"
                    )));
                }
                Some(obj)
            }
        };
        let bound_json = bound
            .as_ref()
            .map(|b| json!({"kind": b.kind, "apiVersion": b.api_version, "name": b.name, "uid": b.uid}))
            .unwrap_or(Value::Null);
        let (token, exp) = self
            .mint_service_account_token(namespace, sa, sa_uid, &audiences, expiration, bound, now);
        Ok(json!({
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": sa, "namespace": namespace, "creationTimestamp": rfc3339(now)},
            "spec": {"audiences": audiences, "expirationSeconds": expiration, "boundObjectRef": bound_json},
            "status": {"token": token, "expirationTimestamp": rfc3339(exp)}
        }))
    }
}

/// POST authentication.k8s.io/v1 selfsubjectreviews (201): who the request runs as.
pub fn self_subject_review(user: &UserInfo) -> Value {
    json!({
        "kind": "SelfSubjectReview",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {},
        "status": {"userInfo": user.to_json()}
    })
}

/// Unix seconds as `2006-01-02T15:04:05Z`.
pub fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil-from-days (proleptic Gregorian), era-based.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

// ---------------------------------------------------------------------------------------------
// Impersonation

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ImpersonationError {
    /// Malformed request (group/extra/uid without a user). The spec asks for 400.
    #[error("{0}")]
    BadRequest(String),
    /// The requester may not impersonate something: the standard 403 for those attributes.
    #[error("{message}")]
    Forbidden { message: String, status: Value },
}

impl ImpersonationError {
    pub fn code(&self) -> u16 {
        match self {
            ImpersonationError::BadRequest(_) => 400,
            ImpersonationError::Forbidden { .. } => 403,
        }
    }

    pub fn message(&self) -> String {
        self.to_string()
    }

    /// The `Status` body to send.
    pub fn status(&self) -> Value {
        match self {
            ImpersonationError::BadRequest(m) => json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": m, "reason": "BadRequest", "code": 400
            }),
            ImpersonationError::Forbidden { status, .. } => status.clone(),
        }
    }
}

/// One requested impersonation item, as the filter's ObjectReference.
struct ImpRequest {
    kind: &'static str,
    namespace: String,
    name: String,
    api_version: &'static str,
    field_path: String,
}

impl ImpRequest {
    /// Go's `%v` of a v1.ObjectReference value (7 fields, space separated).
    fn go_debug(&self) -> String {
        format!(
            "{{{} {} {}  {}  {}}}",
            self.kind, self.namespace, self.name, self.api_version, self.field_path
        )
    }
}

fn is_dns1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

/// `system:serviceaccount:<ns>:<name>` with valid names, else None.
pub fn split_service_account_username(username: &str) -> Option<(String, String)> {
    let rest = username.strip_prefix(SA_PREFIX)?;
    let parts: Vec<&str> = rest.split(':').collect();
    if parts.len() != 2 || !is_dns1123_label(parts[0]) || !is_dns1123_subdomain(parts[1]) {
        return None;
    }
    Some((parts[0].to_owned(), parts[1].to_owned()))
}

fn percent_unescape(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The impersonation filter. Every requested item is authorized for `requester` with verb
/// `impersonate`; the first refusal is a 403. Returns the identity to continue with.
pub fn impersonate(
    requester: &UserInfo,
    headers: &[(String, String)],
    authorize: &dyn Fn(&UserInfo, &Attributes) -> Decision,
) -> Result<Option<UserInfo>, ImpersonationError> {
    let header = |name: &'static str| {
        headers
            .iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let mut requests = Vec::new();
    let requested_user = header("Impersonate-User").next().unwrap_or("");
    if !requested_user.is_empty() {
        match split_service_account_username(requested_user) {
            Some((ns, name)) => requests.push(ImpRequest {
                kind: "ServiceAccount",
                namespace: ns,
                name,
                api_version: "",
                field_path: String::new(),
            }),
            None => requests.push(ImpRequest {
                kind: "User",
                namespace: String::new(),
                name: requested_user.into(),
                api_version: "",
                field_path: String::new(),
            }),
        }
    }
    let groups_specified = header("Impersonate-Group").next().is_some();
    for g in header("Impersonate-Group") {
        requests.push(ImpRequest {
            kind: "Group",
            namespace: String::new(),
            name: g.into(),
            api_version: "",
            field_path: String::new(),
        });
    }
    // Extra keys: lower-cased, then %-unescaped (kept raw if the escape is malformed).
    let mut extras: BTreeMap<String, Vec<String>> = BTreeMap::new();
    const EXTRA_PREFIX: &str = "impersonate-extra-";
    for (k, v) in headers {
        let lower = k.to_ascii_lowercase();
        if let Some(key) = lower.strip_prefix(EXTRA_PREFIX) {
            let key = percent_unescape(key).unwrap_or_else(|| key.to_owned());
            extras.entry(key).or_default().push(v.clone());
        }
    }
    let has_extra = !extras.is_empty();
    for (key, values) in &extras {
        for v in values {
            requests.push(ImpRequest {
                kind: "UserExtra",
                namespace: String::new(),
                name: v.clone(),
                api_version: "authentication.k8s.io/v1",
                field_path: key.clone(),
            });
        }
    }
    let requested_uid = header("Impersonate-Uid").next().unwrap_or("");
    if !requested_uid.is_empty() {
        requests.push(ImpRequest {
            kind: "UID",
            namespace: String::new(),
            name: requested_uid.into(),
            api_version: "authentication.k8s.io/v1",
            field_path: String::new(),
        });
    }
    if (groups_specified || has_extra || !requested_uid.is_empty()) && requested_user.is_empty() {
        let list: Vec<String> = requests.iter().map(ImpRequest::go_debug).collect();
        return Err(ImpersonationError::BadRequest(format!(
            "requested [{}] without impersonating a user",
            list.join(" ")
        )));
    }
    if requests.is_empty() {
        return Ok(None);
    }

    let mut username = String::new();
    let mut groups: Vec<String> = Vec::new();
    let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut uid = String::new();
    for r in &requests {
        let mut attrs = Attributes {
            user: requester.clone(),
            verb: "impersonate".into(),
            namespace: r.namespace.clone(),
            name: r.name.clone(),
            resource_request: true,
            ..Default::default()
        };
        match r.kind {
            "ServiceAccount" => {
                attrs.resource = "serviceaccounts".into();
                username = format!("{SA_PREFIX}{}:{}", r.namespace, r.name);
                if !groups_specified {
                    groups = service_account_groups(&r.namespace);
                }
            }
            "User" => {
                attrs.resource = "users".into();
                username = r.name.clone();
            }
            "Group" => {
                attrs.resource = "groups".into();
                groups.push(r.name.clone());
            }
            "UserExtra" => {
                attrs.api_group = "authentication.k8s.io".into();
                attrs.resource = "userextras".into();
                attrs.subresource = r.field_path.clone();
                extra
                    .entry(r.field_path.clone())
                    .or_default()
                    .push(r.name.clone());
            }
            _ => {
                attrs.api_group = "authentication.k8s.io".into();
                attrs.resource = "uids".into();
                uid = r.name.clone();
            }
        }
        let reason = match authorize(requester, &attrs) {
            Decision::Allow => continue,
            Decision::Deny(reason) => reason,
            Decision::NoOpinion => String::new(),
        };
        return Err(ImpersonationError::Forbidden {
            message: rbac::forbidden_message(&attrs, &reason),
            status: rbac::forbidden_status(&attrs, &reason),
        });
    }

    if username != ANONYMOUS {
        if !groups
            .iter()
            .any(|g| g == AUTHENTICATED || g == UNAUTHENTICATED)
        {
            groups.push(AUTHENTICATED.into());
        }
    } else if !groups.iter().any(|g| g == UNAUTHENTICATED) {
        groups.push(UNAUTHENTICATED.into());
    }
    Ok(Some(UserInfo {
        name: username,
        uid,
        groups,
        extra,
    }))
}

// ---------------------------------------------------------------------------------------------
// Protobuf envelope

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtobufError {
    #[error("protobuf body does not start with the k8s\\0 magic")]
    BadMagic,
    #[error("truncated or malformed protobuf message")]
    Malformed,
    #[error("unsupported protobuf kind {0:?}")]
    UnsupportedKind(String),
}

enum Wire<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

/// Top-level fields of one message, in wire order.
fn fields(mut buf: &[u8]) -> Result<Vec<(u64, Wire<'_>)>, ProtobufError> {
    fn varint(buf: &mut &[u8]) -> Result<u64, ProtobufError> {
        let mut out = 0u64;
        for shift in (0..64).step_by(7) {
            let (&b, rest) = buf.split_first().ok_or(ProtobufError::Malformed)?;
            *buf = rest;
            out |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(out);
            }
        }
        Err(ProtobufError::Malformed)
    }
    let mut out = Vec::new();
    while !buf.is_empty() {
        let key = varint(&mut buf)?;
        let wire = match key & 7 {
            0 => Wire::Varint(varint(&mut buf)?),
            2 => {
                let len =
                    usize::try_from(varint(&mut buf)?).map_err(|_| ProtobufError::Malformed)?;
                if len > buf.len() {
                    return Err(ProtobufError::Malformed);
                }
                let (data, rest) = buf.split_at(len);
                buf = rest;
                Wire::Bytes(data)
            }
            1 | 5 => {
                let n = if key & 7 == 1 { 8 } else { 4 };
                if n > buf.len() {
                    return Err(ProtobufError::Malformed);
                }
                buf = &buf[n..];
                Wire::Fixed
            }
            _ => return Err(ProtobufError::Malformed),
        };
        out.push((key >> 3, wire));
    }
    Ok(out)
}

fn pb_str(data: &[u8]) -> Result<String, ProtobufError> {
    String::from_utf8(data.to_vec()).map_err(|_| ProtobufError::Malformed)
}

/// Decode a message whose fields are all strings (or repeated strings), by field number.
/// `repeated` lists the field numbers that become arrays. Empty strings are omitted like the
/// JSON `omitempty` tags of these types.
fn pb_strings(
    data: &[u8],
    names: &[(u64, &str)],
    repeated: &[u64],
) -> Result<Map<String, Value>, ProtobufError> {
    let mut out = Map::new();
    for (num, w) in fields(data)? {
        let (Some((_, name)), Wire::Bytes(b)) = (names.iter().find(|(n, _)| *n == num), w) else {
            continue;
        };
        let s = pb_str(b)?;
        if repeated.contains(&num) {
            if let Some(Value::Array(a)) = out.get_mut(*name) {
                a.push(json!(s));
            } else {
                out.insert((*name).into(), json!([s]));
            }
        } else if !s.is_empty() {
            out.insert((*name).into(), json!(s));
        }
    }
    Ok(out)
}

fn pb_string_map(entries: &[&[u8]]) -> Result<Map<String, Value>, ProtobufError> {
    let mut out = Map::new();
    for e in entries {
        let kv = pb_strings(e, &[(1, "k"), (2, "v")], &[])?;
        let k = kv.get("k").and_then(Value::as_str).unwrap_or("").to_owned();
        out.insert(k, kv.get("v").cloned().unwrap_or(json!("")));
    }
    Ok(out)
}

fn pb_object_meta(data: &[u8]) -> Result<Value, ProtobufError> {
    let mut m = pb_strings(
        data,
        &[
            (1, "name"),
            (2, "generateName"),
            (3, "namespace"),
            (5, "uid"),
            (6, "resourceVersion"),
        ],
        &[],
    )?;
    let mut labels = Vec::new();
    let mut annotations = Vec::new();
    for (num, w) in fields(data)? {
        if let Wire::Bytes(b) = w {
            match num {
                11 => labels.push(b),
                12 => annotations.push(b),
                _ => {}
            }
        }
    }
    if !labels.is_empty() {
        m.insert("labels".into(), Value::Object(pb_string_map(&labels)?));
    }
    if !annotations.is_empty() {
        m.insert(
            "annotations".into(),
            Value::Object(pb_string_map(&annotations)?),
        );
    }
    Ok(Value::Object(m))
}

fn pb_access_attrs(spec: &mut Map<String, Value>, num: u64, b: &[u8]) -> Result<(), ProtobufError> {
    match num {
        1 => {
            let ra = pb_strings(
                b,
                &[
                    (1, "namespace"),
                    (2, "verb"),
                    (3, "group"),
                    (4, "version"),
                    (5, "resource"),
                    (6, "subresource"),
                    (7, "name"),
                ],
                &[],
            )?;
            spec.insert("resourceAttributes".into(), Value::Object(ra));
        }
        2 => {
            let na = pb_strings(b, &[(1, "path"), (2, "verb")], &[])?;
            spec.insert("nonResourceAttributes".into(), Value::Object(na));
        }
        _ => {}
    }
    Ok(())
}

fn pb_spec(kind: &str, data: &[u8]) -> Result<Value, ProtobufError> {
    let mut spec = Map::new();
    match kind {
        "SelfSubjectAccessReview" => {
            for (num, w) in fields(data)? {
                if let Wire::Bytes(b) = w {
                    pb_access_attrs(&mut spec, num, b)?;
                }
            }
        }
        "SubjectAccessReview" | "LocalSubjectAccessReview" => {
            let mut extra = Map::new();
            for (num, w) in fields(data)? {
                let Wire::Bytes(b) = w else { continue };
                match num {
                    1 | 2 => pb_access_attrs(&mut spec, num, b)?,
                    5 => {
                        let mut key = String::new();
                        let mut items = Vec::new();
                        for (n, w) in fields(b)? {
                            match (n, w) {
                                (1, Wire::Bytes(k)) => key = pb_str(k)?,
                                (2, Wire::Bytes(v)) => {
                                    for (_, w) in fields(v)? {
                                        if let Wire::Bytes(item) = w {
                                            items.push(json!(pb_str(item)?));
                                        }
                                    }
                                }
                                _ => {}
                            }
                        }
                        extra.insert(key, Value::Array(items));
                    }
                    _ => {}
                }
            }
            spec.extend(pb_strings(
                data,
                &[(3, "user"), (4, "groups"), (6, "uid")],
                &[4],
            )?);
            if !extra.is_empty() {
                spec.insert("extra".into(), Value::Object(extra));
            }
        }
        "SelfSubjectRulesReview" => spec = pb_strings(data, &[(1, "namespace")], &[])?,
        "TokenReview" => spec = pb_strings(data, &[(1, "token"), (2, "audiences")], &[2])?,
        "TokenRequest" => {
            spec = pb_strings(data, &[(1, "audiences")], &[1])?;
            for (num, w) in fields(data)? {
                match (num, w) {
                    (3, Wire::Bytes(b)) => {
                        let r = pb_strings(
                            b,
                            &[(1, "kind"), (2, "apiVersion"), (3, "name"), (4, "uid")],
                            &[],
                        )?;
                        spec.insert("boundObjectRef".into(), Value::Object(r));
                    }
                    // int64 on the wire as a two's-complement varint.
                    (4, Wire::Varint(v)) => {
                        spec.insert("expirationSeconds".into(), json!(v as i64));
                    }
                    _ => {}
                }
            }
        }
        _ => {}
    }
    Ok(Value::Object(spec))
}

const PROTOBUF_KINDS: [(&str, &str); 7] = [
    ("authorization.k8s.io", "SelfSubjectAccessReview"),
    ("authorization.k8s.io", "SelfSubjectRulesReview"),
    ("authorization.k8s.io", "SubjectAccessReview"),
    ("authorization.k8s.io", "LocalSubjectAccessReview"),
    ("authentication.k8s.io", "SelfSubjectReview"),
    ("authentication.k8s.io", "TokenReview"),
    ("authentication.k8s.io", "TokenRequest"),
];

/// Decode an `application/vnd.kubernetes.protobuf` body of the kinds kubectl sends that way
/// into the JSON object the same request would carry. Status fields are dropped.
pub fn decode_k8s_protobuf(body: &[u8]) -> Result<Value, ProtobufError> {
    let envelope = body.strip_prefix(b"k8s\0").ok_or(ProtobufError::BadMagic)?;
    let mut api_version = String::new();
    let mut kind = String::new();
    let mut raw: &[u8] = &[];
    for (num, w) in fields(envelope)? {
        match (num, w) {
            (1, Wire::Bytes(tm)) => {
                let t = pb_strings(tm, &[(1, "apiVersion"), (2, "kind")], &[])?;
                api_version = t
                    .get("apiVersion")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned();
                kind = t
                    .get("kind")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned();
            }
            (2, Wire::Bytes(r)) => raw = r,
            _ => {}
        }
    }
    let group = api_version.split('/').next().unwrap_or("");
    if !PROTOBUF_KINDS
        .iter()
        .any(|(g, k)| *g == group && *k == kind)
    {
        return Err(ProtobufError::UnsupportedKind(format!(
            "{api_version}/{kind}"
        )));
    }
    let mut out = Map::new();
    out.insert("apiVersion".into(), json!(api_version));
    out.insert("kind".into(), json!(kind));
    out.insert("metadata".into(), json!({}));
    for (num, w) in fields(raw)? {
        match (num, w) {
            (1, Wire::Bytes(m)) => {
                out.insert("metadata".into(), pb_object_meta(m)?);
            }
            (2, Wire::Bytes(s)) if kind != "SelfSubjectReview" => {
                out.insert("spec".into(), pb_spec(&kind, s)?);
            }
            _ => {}
        }
    }
    if kind != "SelfSubjectReview" && !out.contains_key("spec") {
        out.insert("spec".into(), json!({}));
    }
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rbac::{Policy, bootstrap_objects};

    const ISS: &str = "https://kubernetes.default.svc.cluster.local";
    const NOW: i64 = 1_800_000_000;

    /// The live objects of the unit tests: SA team-a/deployer and Pod team-a/web-0.
    fn exists(kind: &str, ns: &str, name: &str) -> Option<String> {
        match (kind, ns, name) {
            ("ServiceAccount", "team-a", "deployer") => Some("uid-1".into()),
            ("Pod", "team-a", "web-0") => Some("pod-uid".into()),
            _ => None,
        }
    }

    fn authority() -> TokenAuthority {
        let mut a = TokenAuthority::new(ISS);
        a.add_static_token(
            "admin-token",
            UserInfo {
                name: "admin".into(),
                groups: vec!["system:masters".into()],
                ..Default::default()
            },
        );
        a
    }

    fn mint(a: &TokenAuthority, auds: &[&str], exp: i64) -> String {
        let auds: Vec<String> = auds.iter().map(|s| s.to_string()).collect();
        a.mint_service_account_token("team-a", "deployer", "uid-1", &auds, exp, None, NOW)
            .0
    }

    fn claims(jwt: &str) -> Value {
        let part = jwt.split('.').nth(1).unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    }

    #[test]
    fn jwt_round_trip() {
        let a = authority();
        let (jwt, exp) = a.mint_service_account_token(
            "team-a",
            "deployer",
            "uid-1",
            &[ISS.to_string()],
            3600,
            None,
            NOW,
        );
        assert_eq!(exp, NOW + 3600);
        let c = claims(&jwt);
        assert_eq!(c["sub"], "system:serviceaccount:team-a:deployer");
        assert_eq!(c["iss"], ISS);
        assert_eq!(c["aud"], json!([ISS]));
        assert_eq!(
            c["kubernetes.io"],
            json!({"namespace":"team-a","serviceaccount":{"name":"deployer","uid":"uid-1"}})
        );
        assert_eq!(c["jti"].as_str().unwrap().len(), 36);
        let header: Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(jwt.split('.').next().unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(header["alg"], "ES256");
        assert_eq!(header["kid"], a.jwks()["keys"][0]["kid"]);
        let AuthResult::Authenticated(u) =
            a.authenticate(Some(&format!("Bearer {jwt}")), NOW + 10, &exists)
        else {
            panic!("not authenticated")
        };
        assert_eq!(u.name, "system:serviceaccount:team-a:deployer");
        assert_eq!(u.uid, "uid-1");
        assert_eq!(
            u.groups,
            vec![
                "system:serviceaccounts",
                "system:serviceaccounts:team-a",
                "system:authenticated"
            ]
        );
        assert_eq!(
            u.extra["authentication.kubernetes.io/credential-id"],
            vec![format!("JTI={}", c["jti"].as_str().unwrap())]
        );
    }

    #[test]
    fn expiry_with_leeway() {
        let a = authority();
        let jwt = mint(&a, &[ISS], 600);
        let h = format!("Bearer {jwt}");
        assert!(matches!(
            a.authenticate(Some(&h), NOW + 600, &exists),
            AuthResult::Authenticated(_)
        ));
        assert!(matches!(
            a.authenticate(Some(&h), NOW + 650, &exists),
            AuthResult::Authenticated(_)
        ));
        assert_eq!(
            a.authenticate(Some(&h), NOW + 661, &exists),
            AuthResult::Unauthorized("service account token has expired".into())
        );
    }

    #[test]
    fn wrong_signature_is_rejected() {
        let a = authority();
        let other = TokenAuthority::new(ISS);
        let forged = mint(&other, &[ISS], 3600);
        assert_eq!(
            a.authenticate(Some(&format!("Bearer {forged}")), NOW, &exists),
            AuthResult::Unauthorized(BAD_SIGNATURE.into())
        );
        // Tampered claims with the original signature.
        let jwt = mint(&a, &[ISS], 3600);
        let mut parts: Vec<String> = jwt.split('.').map(str::to_owned).collect();
        let mut c = claims(&jwt);
        c["kubernetes.io"]["namespace"] = json!("kube-system");
        parts[1] = b64(c.to_string().as_bytes());
        assert_eq!(
            a.authenticate(Some(&format!("Bearer {}", parts.join("."))), NOW, &exists),
            AuthResult::Unauthorized(BAD_SIGNATURE.into())
        );
        // Another issuer's token is not ours at all.
        let foreign = mint(&TokenAuthority::new("https://elsewhere"), &[ISS], 3600);
        assert_eq!(
            a.authenticate(Some(&format!("Bearer {foreign}")), NOW, &exists),
            AuthResult::Unauthorized("invalid bearer token".into())
        );
    }

    #[test]
    fn audience_handling() {
        let a = authority();
        let vault = mint(&a, &["vault"], 3600);
        assert_eq!(
            a.authenticate(Some(&format!("Bearer {vault}")), NOW, &exists),
            AuthResult::Unauthorized(format!(
                r#"token audiences ["vault"] is invalid for the target audiences ["{ISS}"]"#
            ))
        );
        let review = |token: &str, auds: Value| {
            a.token_review(&json!({"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":token,"audiences":auds}}), NOW, &exists).unwrap()
        };
        let ok = review(&vault, json!(["vault", "other"]));
        assert_eq!(ok["status"]["authenticated"], true);
        assert_eq!(ok["status"]["audiences"], json!(["vault"]));
        let bad = review(&vault, json!(["other"]));
        assert_eq!(
            bad["status"]["error"],
            r#"token audiences ["vault"] is invalid for the target audiences ["other"]"#
        );
        assert!(bad["status"].get("authenticated").is_none());
        // No spec.audiences: the API audiences are required.
        let api = review(&mint(&a, &[ISS, "vault"], 3600), json!(null));
        assert_eq!(api["status"]["audiences"], json!([ISS]));
        // Static tokens are audience-agnostic: fine for API audiences only.
        assert_eq!(
            review("admin-token", json!(null))["status"]["authenticated"],
            true
        );
        assert_eq!(
            review("admin-token", json!(["vault"]))["status"],
            json!({"user":{}})
        );
    }

    #[test]
    fn deleted_service_account_invalidates_token() {
        let a = authority();
        let jwt = mint(&a, &[ISS], 3600);
        let gone = |_: &str, _: &str, _: &str| None;
        assert_eq!(
            a.authenticate(Some(&format!("Bearer {jwt}")), NOW, &gone),
            AuthResult::Unauthorized(r#"serviceaccount "deployer" not found"#.into())
        );
        // Recreated with another uid.
        let recreated =
            |kind: &str, ns: &str, name: &str| exists(kind, ns, name).map(|_| "uid-2".to_string());
        assert!(matches!(
            a.authenticate(Some(&format!("Bearer {jwt}")), NOW, &recreated),
            AuthResult::Unauthorized(_)
        ));
        let r = a
            .token_review(&json!({"spec":{"token":jwt}}), NOW, &gone)
            .unwrap();
        assert_eq!(
            r["status"],
            json!({"user":{},"error":"serviceaccount \"deployer\" not found"})
        );
    }

    #[test]
    fn token_review_shape() {
        let a = authority();
        let jwt = mint(&a, &["vault"], 3600);
        let req = json!({"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":jwt,"audiences":["vault"]}});
        let r = a.token_review(&req, NOW, &exists).unwrap();
        assert_eq!(r["kind"], "TokenReview");
        assert_eq!(r["apiVersion"], "authentication.k8s.io/v1");
        assert_eq!(r["spec"], req["spec"]);
        let st = &r["status"];
        assert_eq!(st["authenticated"], true);
        assert_eq!(
            st["user"]["username"],
            "system:serviceaccount:team-a:deployer"
        );
        assert_eq!(st["user"]["uid"], "uid-1");
        assert_eq!(
            st["user"]["groups"],
            json!([
                "system:serviceaccounts",
                "system:serviceaccounts:team-a",
                "system:authenticated"
            ])
        );
        let jti = claims(&jwt)["jti"].as_str().unwrap().to_owned();
        assert_eq!(
            st["user"]["extra"],
            json!({"authentication.kubernetes.io/credential-id": [format!("JTI={jti}")]})
        );
        assert_eq!(st["audiences"], json!(["vault"]));
        assert!(st.get("error").is_none());
        // Garbage: unauthenticated, no error, but status and user are always there.
        let r = a
            .token_review(&json!({"spec":{"token":"garbage"}}), NOW, &exists)
            .unwrap();
        assert_eq!(r["status"], json!({"user":{}}));
        assert_eq!(
            a.token_review(&json!({"spec":{}}), NOW, &exists),
            Err("token is required for TokenReview in authentication".into())
        );
        let r = a
            .token_review(&json!({"spec":{"token":"admin-token"}}), NOW, &exists)
            .unwrap();
        assert_eq!(
            r["status"]["user"],
            json!({"username":"admin","groups":["system:masters","system:authenticated"]})
        );
    }

    #[test]
    fn authorization_header_forms() {
        let a = authority();
        assert_eq!(a.authenticate(None, NOW, &exists), AuthResult::Anonymous);
        assert_eq!(
            a.authenticate(Some(""), NOW, &exists),
            AuthResult::Anonymous
        );
        assert_eq!(
            a.authenticate(Some("Basic YWRtaW46eA=="), NOW, &exists),
            AuthResult::Anonymous
        );
        assert_eq!(
            a.authenticate(Some("Bearer nope"), NOW, &exists),
            AuthResult::Unauthorized("invalid bearer token".into())
        );
        let AuthResult::Authenticated(u) = a.authenticate(Some("bearer admin-token"), NOW, &exists)
        else {
            panic!()
        };
        assert_eq!(u.name, "admin");
        assert_eq!(u.groups, vec!["system:masters", "system:authenticated"]);
    }

    #[test]
    fn token_request_response_and_validation() {
        let a = authority();
        let r = a
            .token_request_response("team-a", "deployer", "uid-1", &json!({"spec":{}}), NOW)
            .unwrap();
        assert_eq!(r["kind"], "TokenRequest");
        assert_eq!(r["metadata"]["name"], "deployer");
        assert_eq!(
            r["spec"],
            json!({"audiences":[ISS],"expirationSeconds":3600,"boundObjectRef":null})
        );
        assert_eq!(r["status"]["expirationTimestamp"], rfc3339(NOW + 3600));
        let token = r["status"]["token"].as_str().unwrap();
        assert!(matches!(
            a.authenticate(Some(&format!("Bearer {token}")), NOW, &exists),
            AuthResult::Authenticated(_)
        ));

        let e = a
            .token_request_response(
                "team-a",
                "deployer",
                "uid-1",
                &json!({"spec":{"expirationSeconds":599}}),
                NOW,
            )
            .unwrap_err();
        assert_eq!(e.code(), 422);
        assert_eq!(
            e.to_string(),
            r#"TokenRequest.authentication.k8s.io "deployer" is invalid: spec.expirationSeconds: Invalid value: 599: may not specify a duration less than 10 minutes"#
        );
        let e = a
            .token_request_response("team-a", "deployer", "uid-1", &json!({"spec":{"boundObjectRef":{"kind":"ConfigMap","apiVersion":"v1","name":"x"}}}), NOW)
            .unwrap_err();
        assert_eq!(
            e,
            TokenRequestError::BadRequest(
                "cannot bind token to object of type v1, Kind=ConfigMap".into()
            )
        );

        // Pod-bound token: claims and extra carry the pod.
        let req = json!({"spec":{"audiences":["vault"],"expirationSeconds":600,"boundObjectRef":{"kind":"Pod","apiVersion":"v1","name":"web-0","uid":"pod-uid"}}});
        let r = a
            .token_request_response("team-a", "deployer", "uid-1", &req, NOW)
            .unwrap();
        let token = r["status"]["token"].as_str().unwrap();
        assert_eq!(
            claims(token)["kubernetes.io"]["pod"],
            json!({"name":"web-0","uid":"pod-uid"})
        );
        let tr = a
            .token_review(
                &json!({"spec":{"token":token,"audiences":["vault"]}}),
                NOW,
                &exists,
            )
            .unwrap();
        assert_eq!(
            tr["status"]["user"]["extra"]["authentication.kubernetes.io/pod-name"],
            json!(["web-0"])
        );
    }

    #[test]
    fn bound_tokens_die_with_their_object_and_its_uid() {
        let a = authority();
        for (kind, claim) in [("Pod", "pod"), ("Secret", "secret")] {
            let req = json!({"spec":{"boundObjectRef":{"kind":kind,"apiVersion":"v1","name":"b","uid":"b-uid"}}});
            let r = a
                .token_request_response("team-a", "deployer", "uid-1", &req, NOW)
                .unwrap();
            let bearer = format!("Bearer {}", r["status"]["token"].as_str().unwrap());
            let with_bound = |uid: Option<&'static str>| {
                move |k: &str, ns: &str, n: &str| {
                    if (k, ns, n) == (kind, "team-a", "b") {
                        uid.map(str::to_string)
                    } else {
                        exists(k, ns, n)
                    }
                }
            };
            let live = with_bound(Some("b-uid"));
            assert!(
                matches!(
                    a.authenticate(Some(&bearer), NOW, &live),
                    AuthResult::Authenticated(_)
                ),
                "{kind}"
            );
            let deleted = with_bound(None);
            assert_eq!(
                a.authenticate(Some(&bearer), NOW, &deleted),
                AuthResult::Unauthorized("service account token has been invalidated".into())
            );
            let review = a
                .token_review(&json!({"spec":{"token":bearer[7..]}}), NOW, &deleted)
                .unwrap();
            assert_eq!(review["status"]["authenticated"], Value::Null);
            assert_eq!(
                review["status"]["error"],
                "service account token has been invalidated"
            );
            let recreated = with_bound(Some("new-uid"));
            assert_eq!(
                a.authenticate(Some(&bearer), NOW, &recreated),
                AuthResult::Unauthorized(format!(
                    "{claim} UID (new-uid) does not match service account {claim} ref claim (b-uid)"
                ))
            );
        }
    }

    #[test]
    fn rfc3339_formatting() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_800_000_000), "2027-01-15T08:00:00Z");
    }

    #[test]
    fn jwks_and_discovery_documents() {
        let a = authority();
        let k = &a.jwks()["keys"][0];
        assert_eq!(k["kty"], "EC");
        assert_eq!(
            URL_SAFE_NO_PAD
                .decode(k["x"].as_str().unwrap())
                .unwrap()
                .len(),
            32
        );
        assert_eq!(
            a.openid_configuration()["jwks_uri"],
            format!("{ISS}/openid/v1/jwks")
        );
        assert_eq!(
            self_subject_review(&UserInfo::anonymous())["status"]["userInfo"],
            json!({"username":"system:anonymous","groups":["system:unauthenticated"]})
        );
    }

    // ------------------------------------------------------------------ impersonation

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn engine() -> UserInfo {
        UserInfo {
            name: "gitops-engine".into(),
            groups: vec!["system:authenticated".into()],
            ..Default::default()
        }
    }

    /// Bootstrap policy plus: the engine may impersonate SA team-a/deployer, users alice, group devs.
    fn imp_policy() -> Policy {
        let mut crs: Vec<Value> = bootstrap_objects()
            .into_iter()
            .filter(|o| o["kind"] == "ClusterRole")
            .collect();
        let mut crbs: Vec<Value> = bootstrap_objects()
            .into_iter()
            .filter(|o| o["kind"] == "ClusterRoleBinding")
            .collect();
        crs.push(json!({"kind":"ClusterRole","metadata":{"name":"imp"},"rules":[
            {"apiGroups":[""],"resources":["users"],"verbs":["impersonate"],"resourceNames":["alice","system:anonymous"]},
            {"apiGroups":[""],"resources":["groups"],"verbs":["impersonate"],"resourceNames":["devs"]},
            {"apiGroups":["authentication.k8s.io"],"resources":["uids"],"verbs":["impersonate"]},
            {"apiGroups":["authentication.k8s.io"],"resources":["userextras/scopes"],"verbs":["impersonate"]}]}));
        crbs.push(json!({"kind":"ClusterRoleBinding","metadata":{"name":"imp"},"roleRef":{"kind":"ClusterRole","name":"imp"},
            "subjects":[{"kind":"User","name":"gitops-engine"}]}));
        let roles = vec![
            json!({"kind":"Role","metadata":{"name":"imp-sa","namespace":"team-a"},"rules":[
            {"apiGroups":[""],"resources":["serviceaccounts"],"verbs":["impersonate"],"resourceNames":["deployer"]}]}),
        ];
        let rbs = vec![
            json!({"kind":"RoleBinding","metadata":{"name":"imp-sa","namespace":"team-a"},"roleRef":{"kind":"Role","name":"imp-sa"},
            "subjects":[{"kind":"User","name":"gitops-engine"}]}),
        ];
        Policy::from_objects(&roles, &crs, &rbs, &crbs)
    }

    fn run(headers: &[(&str, &str)]) -> Result<Option<UserInfo>, ImpersonationError> {
        let p = imp_policy();
        impersonate(&engine(), &h(headers), &|_, a| p.authorize(a))
    }

    #[test]
    fn impersonating_a_service_account() {
        let u = run(&[("Impersonate-User", "system:serviceaccount:team-a:deployer")])
            .unwrap()
            .unwrap();
        assert_eq!(u.name, "system:serviceaccount:team-a:deployer");
        assert_eq!(
            u.groups,
            vec![
                "system:serviceaccounts",
                "system:serviceaccounts:team-a",
                "system:authenticated"
            ]
        );
        assert_eq!(u.uid, "");
        // Explicit groups replace the SA groups.
        let u = run(&[
            ("impersonate-user", "system:serviceaccount:team-a:deployer"),
            ("impersonate-group", "devs"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(u.groups, vec!["devs", "system:authenticated"]);
        // No headers: nothing to do.
        assert_eq!(run(&[("Accept", "application/json")]), Ok(None));
    }

    #[test]
    fn impersonation_denied_with_exact_message() {
        let e = run(&[("Impersonate-User", "system:serviceaccount:team-a:other")]).unwrap_err();
        assert_eq!(e.code(), 403);
        assert_eq!(
            e.message(),
            r#"serviceaccounts "other" is forbidden: User "gitops-engine" cannot impersonate resource "serviceaccounts" in API group "" in the namespace "team-a""#
        );
        assert_eq!(
            e.status()["details"],
            json!({"name":"other","kind":"serviceaccounts"})
        );
        let e = run(&[("Impersonate-User", "bob")]).unwrap_err();
        assert_eq!(
            e.message(),
            r#"users "bob" is forbidden: User "gitops-engine" cannot impersonate resource "users" in API group "" at the cluster scope"#
        );
        let e = run(&[
            ("Impersonate-User", "alice"),
            ("Impersonate-Group", "devs"),
            ("Impersonate-Group", "admins"),
        ])
        .unwrap_err();
        assert_eq!(
            e.message(),
            r#"groups "admins" is forbidden: User "gitops-engine" cannot impersonate resource "groups" in API group "" at the cluster scope"#
        );
        let e = run(&[
            ("Impersonate-User", "alice"),
            ("Impersonate-Extra-Reason", "x"),
        ])
        .unwrap_err();
        assert_eq!(
            e.message(),
            r#"userextras.authentication.k8s.io "x" is forbidden: User "gitops-engine" cannot impersonate resource "userextras/reason" in API group "authentication.k8s.io" at the cluster scope"#
        );
        // Nobody may impersonate without a grant.
        let p = imp_policy();
        let nobody = UserInfo {
            name: "nobody".into(),
            groups: vec!["system:authenticated".into()],
            ..Default::default()
        };
        let e = impersonate(&nobody, &h(&[("Impersonate-User", "alice")]), &|_, a| {
            p.authorize(a)
        })
        .unwrap_err();
        assert!(
            e.message()
                .starts_with(r#"users "alice" is forbidden: User "nobody""#)
        );
    }

    #[test]
    fn impersonation_users_groups_extra_uid() {
        let u = run(&[
            ("Impersonate-User", "alice"),
            ("Impersonate-Group", "devs"),
            ("Impersonate-Uid", "u123"),
            ("Impersonate-Extra-Scopes", "a"),
            ("Impersonate-Extra-Scopes", "b"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(
            u,
            UserInfo {
                name: "alice".into(),
                uid: "u123".into(),
                groups: vec!["devs".into(), "system:authenticated".into()],
                extra: BTreeMap::from([(
                    "scopes".to_string(),
                    vec!["a".to_string(), "b".to_string()]
                )]),
            }
        );
        let u = run(&[("Impersonate-User", "alice")]).unwrap().unwrap();
        assert_eq!(u.groups, vec!["system:authenticated"]);
        let u = run(&[("Impersonate-User", "system:anonymous")])
            .unwrap()
            .unwrap();
        assert_eq!(u.groups, vec!["system:unauthenticated"]);
        // Extra keys are %-unescaped.
        let p = imp_policy();
        let seen = std::cell::RefCell::new(Vec::new());
        let _ = impersonate(
            &engine(),
            &h(&[
                ("Impersonate-User", "alice"),
                ("Impersonate-Extra-Example.com%2fteam", "t"),
            ]),
            &|_, a| {
                seen.borrow_mut().push(a.subresource.clone());
                p.authorize(a)
            },
        );
        assert!(seen.borrow().contains(&"example.com/team".to_string()));
    }

    #[test]
    fn impersonation_without_user_is_bad_request() {
        let e = run(&[("Impersonate-Group", "devs")]).unwrap_err();
        assert_eq!(e.code(), 400);
        assert_eq!(
            e.message(),
            "requested [{Group  devs    }] without impersonating a user"
        );
        let e = run(&[("Impersonate-Uid", "u1")]).unwrap_err();
        assert_eq!(
            e.message(),
            "requested [{UID  u1  authentication.k8s.io/v1  }] without impersonating a user"
        );
        assert_eq!(e.status()["reason"], "BadRequest");
    }

    #[test]
    fn service_account_username_parsing() {
        assert_eq!(
            split_service_account_username("system:serviceaccount:ns:sa"),
            Some(("ns".into(), "sa".into()))
        );
        assert_eq!(
            split_service_account_username("system:serviceaccount:ns:sa:x"),
            None
        );
        assert_eq!(
            split_service_account_username("system:serviceaccount:NS:sa"),
            None
        );
        assert_eq!(split_service_account_username("alice"), None);
    }

    // ------------------------------------------------------------------ protobuf

    fn ld(field: u64, data: &[u8]) -> Vec<u8> {
        let mut out = varint((field << 3) | 2);
        out.extend(varint(data.len() as u64));
        out.extend_from_slice(data);
        out
    }

    fn vi(field: u64, v: u64) -> Vec<u8> {
        let mut out = varint(field << 3);
        out.extend(varint(v));
        out
    }

    fn varint(mut v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return out;
            }
            out.push(b | 0x80);
        }
    }

    fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
        let tm = [ld(1, api_version.as_bytes()), ld(2, kind.as_bytes())].concat();
        let mut out = b"k8s\0".to_vec();
        out.extend([ld(1, &tm), ld(2, raw), ld(3, b""), ld(4, b"")].concat());
        out
    }

    /// kubectl fills every ObjectMeta string with an empty value.
    fn empty_meta() -> Vec<u8> {
        [
            ld(1, b""),
            ld(2, b""),
            ld(3, b""),
            ld(4, b""),
            ld(5, b""),
            ld(6, b""),
            vi(7, 0),
            ld(8, b""),
        ]
        .concat()
    }

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn protobuf_recorded_token_request() {
        // Recorded `kubectl create token deployer --audience vault --duration 10m` body.
        let body = unhex(
            "6b3873000a280a1861757468656e7469636174696f6e2e6b38732e696f2f7631120c546f6b656e5265717565737412240a100a0012001a0022002a00320038004200120a0a057661756c7420d8041a040a0012001a002200",
        );
        let v = decode_k8s_protobuf(&body).unwrap();
        assert_eq!(
            v,
            json!({"apiVersion":"authentication.k8s.io/v1","kind":"TokenRequest","metadata":{},"spec":{"audiences":["vault"],"expirationSeconds":600}})
        );
    }

    #[test]
    fn protobuf_self_subject_access_review() {
        let ra = [
            ld(1, b"team-a"),
            ld(2, b"create"),
            ld(3, b"apps"),
            ld(4, b""),
            ld(5, b"deployments"),
            ld(6, b""),
            ld(7, b""),
        ]
        .concat();
        let spec = ld(1, &ra);
        let status = [vi(1, 0), ld(2, b""), ld(3, b""), vi(4, 0)].concat();
        let raw = [ld(1, &empty_meta()), ld(2, &spec), ld(3, &status)].concat();
        let v = decode_k8s_protobuf(&envelope(
            "authorization.k8s.io/v1",
            "SelfSubjectAccessReview",
            &raw,
        ))
        .unwrap();
        assert_eq!(
            v,
            json!({"apiVersion":"authorization.k8s.io/v1","kind":"SelfSubjectAccessReview","metadata":{},
                   "spec":{"resourceAttributes":{"namespace":"team-a","verb":"create","group":"apps","resource":"deployments"}}})
        );
        let na = [ld(1, b"/healthz"), ld(2, b"get")].concat();
        let raw = [ld(1, &empty_meta()), ld(2, &ld(2, &na))].concat();
        let v = decode_k8s_protobuf(&envelope(
            "authorization.k8s.io/v1",
            "SelfSubjectAccessReview",
            &raw,
        ))
        .unwrap();
        assert_eq!(
            v["spec"],
            json!({"nonResourceAttributes":{"path":"/healthz","verb":"get"}})
        );
        // The decoded review evaluates like the JSON one.
        let p = Policy::from_objects(
            &[],
            &bootstrap_objects()
                .into_iter()
                .filter(|o| o["kind"] == "ClusterRole")
                .collect::<Vec<_>>(),
            &[],
            &bootstrap_objects()
                .into_iter()
                .filter(|o| o["kind"] == "ClusterRoleBinding")
                .collect::<Vec<_>>(),
        );
        let out = crate::rbac::self_subject_access_review(&p, &UserInfo::anonymous(), &v);
        assert_eq!(out["status"]["allowed"], true);
    }

    #[test]
    fn protobuf_rules_review_self_review_and_others() {
        let raw = [
            ld(1, &empty_meta()),
            ld(2, &ld(1, b"team-a")),
            ld(3, &[vi(3, 0), ld(4, b"")].concat()),
        ]
        .concat();
        let v = decode_k8s_protobuf(&envelope(
            "authorization.k8s.io/v1",
            "SelfSubjectRulesReview",
            &raw,
        ))
        .unwrap();
        assert_eq!(v["spec"], json!({"namespace":"team-a"}));
        let raw = [
            ld(1, &empty_meta()),
            ld(2, &[ld(1, b""), ld(2, b"")].concat()),
        ]
        .concat();
        let v = decode_k8s_protobuf(&envelope(
            "authentication.k8s.io/v1",
            "SelfSubjectReview",
            &raw,
        ))
        .unwrap();
        assert_eq!(
            v,
            json!({"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview","metadata":{}})
        );
        // TokenRequest with a bound object and metadata labels.
        let bound = [
            ld(1, b"Pod"),
            ld(2, b"v1"),
            ld(3, b"web-0"),
            ld(4, b"pod-uid"),
        ]
        .concat();
        let spec = [ld(1, b"vault"), ld(1, b"api"), ld(3, &bound), vi(4, 3600)].concat();
        let meta = [
            ld(1, b"deployer"),
            ld(11, &[ld(1, b"app"), ld(2, b"web")].concat()),
        ]
        .concat();
        let v = decode_k8s_protobuf(&envelope(
            "authentication.k8s.io/v1",
            "TokenRequest",
            &[ld(1, &meta), ld(2, &spec)].concat(),
        ))
        .unwrap();
        assert_eq!(
            v["metadata"],
            json!({"name":"deployer","labels":{"app":"web"}})
        );
        assert_eq!(
            v["spec"],
            json!({"audiences":["vault","api"],"boundObjectRef":{"kind":"Pod","apiVersion":"v1","name":"web-0","uid":"pod-uid"},"expirationSeconds":3600})
        );
        // SubjectAccessReview with user, groups and extra.
        let extra = [
            ld(1, b"scopes"),
            ld(2, &[ld(1, b"a"), ld(1, b"b")].concat()),
        ]
        .concat();
        let spec = [
            ld(2, &[ld(1, b"/api"), ld(2, b"get")].concat()),
            ld(3, b"bob"),
            ld(4, b"g1"),
            ld(4, b"g2"),
            ld(5, &extra),
            ld(6, b"u1"),
        ]
        .concat();
        let v = decode_k8s_protobuf(&envelope(
            "authorization.k8s.io/v1",
            "SubjectAccessReview",
            &ld(2, &spec),
        ))
        .unwrap();
        assert_eq!(
            v["spec"],
            json!({"nonResourceAttributes":{"path":"/api","verb":"get"},"user":"bob","groups":["g1","g2"],"uid":"u1","extra":{"scopes":["a","b"]}})
        );
    }

    #[test]
    fn protobuf_errors() {
        assert_eq!(
            decode_k8s_protobuf(b"{\"kind\":1}"),
            Err(ProtobufError::BadMagic)
        );
        let body = envelope("v1", "ConfigMap", &[]);
        assert_eq!(
            decode_k8s_protobuf(&body),
            Err(ProtobufError::UnsupportedKind("v1/ConfigMap".into()))
        );
        let mut body = envelope(
            "authentication.k8s.io/v1",
            "TokenRequest",
            &ld(2, &ld(1, b"vault")),
        );
        body.truncate(body.len() - 8);
        assert_eq!(decode_k8s_protobuf(&body), Err(ProtobufError::Malformed));
        assert_eq!(
            decode_k8s_protobuf(b"k8s\0\x0a\xff"),
            Err(ProtobufError::Malformed)
        );
    }
}
