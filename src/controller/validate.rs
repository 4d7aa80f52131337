//! Spec validation: the first thing a reconcile does, before any API call. A pure
//! function from an [`Application`] to either everything the pipeline needs, resolved
//! and defaulted ([`ValidSpec`]), or every reason the spec cannot be reconciled
//! ([`InvalidSpec`]), which maps to a Stalled condition: retrying cannot fix a spec.

use std::fmt;
use std::time::Duration;

use kube::ResourceExt;

use super::application::{Application, ApplicationStatus, LocalRef, VerifyMode};
use super::conditions::reason;
use super::duration::parse_duration;
use crate::policy::{Denial, Policy, check_service_account, check_source, check_vault_address};
use crate::source::GitRef;
use crate::source::url::SourceUrl;

/// The branch used when `source.ref` is absent.
pub const DEFAULT_BRANCH: &str = "main";
/// The shortest `interval` accepted: shorter ones would turn the reconciler into a busy loop.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// Signature requirements from the Application itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifySettings {
    pub mode: VerifyMode,
    /// The Secret (in the Application's namespace) holding allowed signers; when absent,
    /// signers come from the binding Policies only.
    pub secret: Option<String>,
}

/// How to log in to Vault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VaultLogin {
    Kubernetes {
        role: String,
        mount: String,
    },
    AppRole {
        role_id: Option<String>,
        secret: String,
        mount: String,
    },
    Token {
        secret: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultSettings {
    pub address: String,
    pub ca_secret: Option<String>,
    pub vault_namespace: Option<String>,
    pub login: VaultLogin,
}

/// A spec that passed validation, with defaults filled in. Every Secret and service
/// account named here lives in `namespace`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidSpec {
    /// The Application's namespace: where every reference resolves.
    pub namespace: String,
    pub name: String,
    /// Where namespaced objects without a namespace land.
    pub destination_namespace: String,
    /// The service account to impersonate, as `system:serviceaccount:NS:NAME`.
    pub service_account: String,
    /// The source URL; it never embeds a password (refused), so it may be printed.
    pub url: String,
    pub reference: GitRef,
    /// The directory inside the repository, relative, without `.` or `..` parts; empty
    /// for the root.
    pub path: String,
    pub credentials_secret: Option<String>,
    pub verify: Option<VerifySettings>,
    pub interval: Duration,
    pub retry_interval: Duration,
    pub timeout: Duration,
    /// Names of Applications in `namespace` that must be Ready first.
    pub depends_on: Vec<String>,
    pub prune: bool,
    pub allow_empty: bool,
    pub suspend: bool,
    pub decryption_secret: Option<String>,
    pub vault: Option<VaultSettings>,
}

impl ValidSpec {
    /// The user name impersonated for this Application.
    pub fn impersonated_user(&self) -> String {
        format!(
            "system:serviceaccount:{}:{}",
            self.namespace, self.service_account
        )
    }
}

/// One reason a spec is refused. Messages name the field; they never hold a password
/// (URLs are described, not echoed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error(
        "spec.serviceAccountName is required: an Application acts only as a service account of its own namespace, and lockstep has no fallback identity"
    )]
    MissingServiceAccount,
    #[error(
        "{field} refers to namespace {namespace:?}; references must stay in the Application's namespace {own:?}"
    )]
    CrossNamespace {
        field: String,
        namespace: String,
        own: String,
    },
    #[error("{field}: {name:?} is not a valid name ({why})")]
    InvalidName {
        field: String,
        name: String,
        why: &'static str,
    },
    #[error("{field}: {message}")]
    InvalidDuration { field: String, message: String },
    #[error("spec.source.url: {0}")]
    InvalidUrl(String),
    #[error("spec.source.ref: {0}")]
    InvalidRef(String),
    #[error("spec.source.path: {0}")]
    InvalidPath(String),
    #[error("spec.source.verify: {0}")]
    InvalidVerify(String),
    #[error("spec.vault: {0}")]
    InvalidVault(String),
    #[error("spec.dependsOn: the Application cannot depend on itself")]
    SelfDependency,
}

impl SpecError {
    /// The condition reason for this error.
    pub fn reason(&self) -> &'static str {
        match self {
            SpecError::MissingServiceAccount => reason::SERVICE_ACCOUNT_MISSING,
            SpecError::CrossNamespace { .. } => reason::CROSS_NAMESPACE_REFERENCE,
            _ => reason::INVALID_SPEC,
        }
    }
}

/// Every reason a spec was refused (at least one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidSpec {
    pub errors: Vec<SpecError>,
}

impl InvalidSpec {
    /// The reason for the Stalled and Ready conditions: the first error's.
    pub fn reason(&self) -> &'static str {
        self.errors
            .first()
            .map_or(reason::INVALID_SPEC, SpecError::reason)
    }
}

impl InvalidSpec {
    /// Records this refusal in `status`: Ready=False and Stalled=True with
    /// [`InvalidSpec::reason`] and every error in the message. Returns whether the status
    /// changed.
    pub fn mark(&self, status: &mut ApplicationStatus, generation: Option<i64>, now: &str) -> bool {
        status.mark_stalled(self.reason(), &self.to_string(), generation, now)
    }
}

impl fmt::Display for InvalidSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.errors.iter().map(ToString::to_string).collect();
        f.write_str(&parts.join("; "))
    }
}

impl std::error::Error for InvalidSpec {}

/// Why a name is not a DNS-1123 subdomain, if it is not one.
fn name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("empty");
    }
    if name.len() > 253 {
        return Some("longer than 253 characters");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
    {
        return Some("only lowercase letters, digits, '-' and '.' are allowed");
    }
    let edge_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if !edge_ok(name.chars().next()) || !edge_ok(name.chars().last()) {
        return Some("must start and end with a letter or digit");
    }
    None
}

struct Check<'a> {
    own: &'a str,
    errors: Vec<SpecError>,
}

impl Check<'_> {
    fn name(&mut self, field: &str, name: &str) -> String {
        if let Some(why) = name_problem(name) {
            self.errors.push(SpecError::InvalidName {
                field: field.to_owned(),
                name: name.to_owned(),
                why,
            });
        }
        name.to_owned()
    }

    fn namespace(&mut self, field: &str, ns: Option<&str>) {
        if let Some(ns) = ns
            && ns != self.own
        {
            self.errors.push(SpecError::CrossNamespace {
                field: field.to_owned(),
                namespace: ns.to_owned(),
                own: self.own.to_owned(),
            });
        }
    }

    fn local(&mut self, field: &str, r: &LocalRef) -> String {
        self.namespace(&format!("{field}.namespace"), r.namespace.as_deref());
        self.name(&format!("{field}.name"), &r.name)
    }

    fn duration(&mut self, field: &str, text: &str) -> Option<Duration> {
        match parse_duration(text) {
            Ok(d) => Some(d),
            Err(e) => {
                self.errors.push(SpecError::InvalidDuration {
                    field: field.to_owned(),
                    message: e.to_string(),
                });
                None
            }
        }
    }
}

fn git_ref(spec: Option<&super::application::GitRefSpec>) -> Result<GitRef, String> {
    let Some(r) = spec else {
        return Ok(GitRef::Branch(DEFAULT_BRANCH.to_owned()));
    };
    let set: Vec<(&str, &String)> = [
        ("branch", r.branch.as_ref()),
        ("tag", r.tag.as_ref()),
        ("commit", r.commit.as_ref()),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| (k, v)))
    .collect();
    match set.as_slice() {
        [] => Ok(GitRef::Branch(DEFAULT_BRANCH.to_owned())),
        [(kind, value)] => {
            let value = value.trim();
            if value.is_empty() {
                return Err(format!("{kind} is empty"));
            }
            if value.starts_with('-')
                || value.contains("..")
                || value.chars().any(|c| c.is_control() || c == ' ')
            {
                return Err(format!(
                    "{kind} {value:?} is not a valid Git reference name"
                ));
            }
            Ok(match *kind {
                "branch" => GitRef::Branch(value.to_owned()),
                "tag" => GitRef::Tag(value.to_owned()),
                _ => {
                    if !(7..=40).contains(&value.len())
                        || !value.chars().all(|c| c.is_ascii_hexdigit())
                    {
                        return Err(format!(
                            "commit {value:?} is not a commit id (7 to 40 hex digits)"
                        ));
                    }
                    GitRef::Commit(value.to_ascii_lowercase())
                }
            })
        }
        _ => Err(format!(
            "set exactly one of branch, tag, commit (found {})",
            set.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", ")
        )),
    }
}

/// Normalises `source.path` to a relative path without `.`/`..`; refuses anything that
/// could leave the checkout.
fn repo_path(path: Option<&str>) -> Result<String, String> {
    let p = path.unwrap_or("").trim();
    if p.contains('\\') || p.chars().any(char::is_control) {
        return Err(format!(
            "{p:?} must be a plain relative path with '/' separators"
        ));
    }
    if p.starts_with('/') {
        return Err(format!("{p:?} must be relative to the repository root"));
    }
    let mut parts = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(format!("{p:?} must not contain '..'")),
            other => parts.push(other),
        }
    }
    Ok(parts.join("/"))
}

/// Validates an Application's spec and fills in its defaults. Pure: no API calls.
pub fn validate(app: &Application) -> Result<ValidSpec, InvalidSpec> {
    let own = app.namespace().unwrap_or_default();
    let name = app.name_any();
    let spec = &app.spec;
    let mut c = Check {
        own: &own,
        errors: Vec::new(),
    };
    if own.is_empty() {
        // Cannot come from the API server (the kind is namespaced), only from a bad caller.
        c.errors.push(SpecError::InvalidName {
            field: "metadata.namespace".into(),
            name: String::new(),
            why: "an Application must have a namespace",
        });
    }

    let service_account = match spec.service_account_name.as_deref().map(str::trim) {
        None | Some("") => {
            c.errors.push(SpecError::MissingServiceAccount);
            String::new()
        }
        Some(sa) => c.name("spec.serviceAccountName", sa),
    };

    let destination_namespace = match spec
        .destination
        .as_ref()
        .and_then(|d| d.namespace.as_deref())
    {
        None | Some("") => own.clone(),
        Some(ns) => {
            if let Some(why) = name_problem(ns).or_else(|| {
                (ns.len() > 63 || ns.contains('.'))
                    .then_some("a namespace is a DNS label: at most 63 characters, no '.'")
            }) {
                c.errors.push(SpecError::InvalidName {
                    field: "spec.destination.namespace".into(),
                    name: ns.to_owned(),
                    why,
                });
            }
            ns.to_owned()
        }
    };

    let src = &spec.source;
    match SourceUrl::parse(&src.url) {
        Err(e) => c.errors.push(SpecError::InvalidUrl(e)),
        // Anyone who may read the Application would read the password, and the URL is
        // printed in status and events; credentials belong in a Secret.
        Ok(u) if u.embedded_password.is_some() => c.errors.push(SpecError::InvalidUrl(format!(
            "{} carries a password; put credentials in a Secret named by spec.source.secretRef",
            u.redacted
        ))),
        Ok(_) => {}
    }
    let reference = git_ref(src.reference.as_ref()).unwrap_or_else(|e| {
        c.errors.push(SpecError::InvalidRef(e));
        GitRef::Branch(DEFAULT_BRANCH.to_owned())
    });
    let path = repo_path(src.path.as_deref()).unwrap_or_else(|e| {
        c.errors.push(SpecError::InvalidPath(e));
        String::new()
    });
    let credentials_secret = src
        .secret_ref
        .as_ref()
        .map(|r| c.local("spec.source.secretRef", r));
    let verify = src.verify.as_ref().map(|v| {
        if v.mode == VerifyMode::Tag && !matches!(reference, GitRef::Tag(_)) {
            c.errors.push(SpecError::InvalidVerify(
                "mode Tag needs spec.source.ref.tag".into(),
            ));
        }
        VerifySettings {
            mode: v.mode,
            secret: v
                .secret_ref
                .as_ref()
                .map(|r| c.local("spec.source.verify.secretRef", r)),
        }
    });

    let interval = c.duration("spec.interval", &spec.interval);
    if let Some(i) = interval
        && i < MIN_INTERVAL
    {
        c.errors.push(SpecError::InvalidDuration {
            field: "spec.interval".into(),
            message: format!("{:?} is shorter than the minimum of 1s", spec.interval),
        });
    }
    let interval = interval.unwrap_or(MIN_INTERVAL);
    let retry_interval = match &spec.retry_interval {
        Some(t) => c.duration("spec.retryInterval", t).unwrap_or(interval),
        None => interval,
    };
    if retry_interval < MIN_INTERVAL {
        c.errors.push(SpecError::InvalidDuration {
            field: "spec.retryInterval".into(),
            message: "shorter than the minimum of 1s".into(),
        });
    }
    let timeout = match &spec.timeout {
        Some(t) => c.duration("spec.timeout", t).unwrap_or(interval),
        None => interval,
    };
    if timeout.is_zero() {
        c.errors.push(SpecError::InvalidDuration {
            field: "spec.timeout".into(),
            message: "must be longer than 0s".into(),
        });
    }

    let mut depends_on = Vec::new();
    for (i, d) in spec.depends_on.iter().enumerate() {
        c.namespace(
            &format!("spec.dependsOn[{i}].namespace"),
            d.namespace.as_deref(),
        );
        let n = c.name(&format!("spec.dependsOn[{i}].name"), &d.name);
        if n == name {
            c.errors.push(SpecError::SelfDependency);
        }
        if !depends_on.contains(&n) {
            depends_on.push(n);
        }
    }

    let decryption_secret = spec
        .decryption
        .as_ref()
        .map(|d| c.local("spec.decryption.secretRef", &d.secret_ref));

    let vault = spec.vault.as_ref().map(|v| {
        let addr = v.address.trim();
        let lower = addr.to_ascii_lowercase();
        let host = lower
            .strip_prefix("https://")
            .or_else(|| lower.strip_prefix("http://"));
        if host.is_none_or(|h| h.is_empty() || h.starts_with('/')) {
            c.errors.push(SpecError::InvalidVault(
                "address must be an https:// (or http://) URL with a host".into(),
            ));
        }
        if addr.contains('@') {
            c.errors.push(SpecError::InvalidVault(
                "address must not carry credentials; use spec.vault.auth".into(),
            ));
        }
        let ca_secret = v
            .ca_secret_ref
            .as_ref()
            .map(|r| c.local("spec.vault.caSecretRef", r));
        let a = &v.auth;
        let methods = [a.kubernetes.is_some(), a.app_role.is_some(), a.token_secret_ref.is_some()]
            .iter()
            .filter(|x| **x)
            .count();
        if methods != 1 {
            c.errors.push(SpecError::InvalidVault(format!(
                "auth must name exactly one of kubernetes, appRole, tokenSecretRef (found {methods})"
            )));
        }
        let mount = |m: &Option<String>, default: &str| {
            m.as_deref()
                .map(|m| m.trim_matches('/').to_owned())
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| default.to_owned())
        };
        let login = if let Some(k) = &a.kubernetes {
            if k.role.trim().is_empty() {
                c.errors.push(SpecError::InvalidVault("auth.kubernetes.role is empty".into()));
            }
            VaultLogin::Kubernetes {
                role: k.role.trim().to_owned(),
                mount: mount(&k.mount, "kubernetes"),
            }
        } else if let Some(r) = &a.app_role {
            VaultLogin::AppRole {
                role_id: r.role_id.clone(),
                secret: c.local("spec.vault.auth.appRole.secretRef", &r.secret_ref),
                mount: mount(&r.mount, "approle"),
            }
        } else if let Some(t) = &a.token_secret_ref {
            VaultLogin::Token {
                secret: c.local("spec.vault.auth.tokenSecretRef", t),
            }
        } else {
            VaultLogin::Token {
                secret: String::new(),
            }
        };
        VaultSettings {
            address: addr.trim_end_matches('/').to_owned(),
            ca_secret,
            vault_namespace: v.namespace.clone().filter(|n| !n.is_empty()),
            login,
        }
    });

    if !c.errors.is_empty() {
        return Err(InvalidSpec { errors: c.errors });
    }
    Ok(ValidSpec {
        namespace: own,
        name,
        destination_namespace,
        service_account,
        url: src.url.trim().to_owned(),
        reference,
        path,
        credentials_secret,
        verify,
        interval,
        retry_interval,
        timeout,
        depends_on,
        prune: spec.prune,
        allow_empty: spec.allow_empty,
        suspend: spec.suspend,
        decryption_secret,
        vault,
    })
}

/// What the Policies binding this Application say about it as a whole: its source URL
/// (local sources refused unless allowed), its service account and its Vault address. Objects it renders
/// are checked separately ([`crate::policy::PolicySet::check`]). Any denial should stop
/// the reconcile with [`reason::POLICY_DENIED`] before anything is fetched.
pub fn policy_denials(valid: &ValidSpec, bound: &[&Policy]) -> Vec<Denial> {
    let mut out = check_source(bound, &valid.url);
    out.extend(check_service_account(
        bound,
        &valid.namespace,
        &valid.service_account,
    ));
    if let Some(v) = &valid.vault {
        out.extend(check_vault_address(bound, &v.address));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(yaml_spec: &str) -> Application {
        let doc = format!(
            "apiVersion: lockstep.dev/v1alpha1\nkind: Application\nmetadata: {{name: payments, namespace: payments}}\nspec:\n{yaml_spec}"
        );
        serde_saphyr::from_str(&doc).unwrap_or_else(|e| panic!("{e}\n{doc}"))
    }

    const BASE: &str = "  source: {url: 'https://git.example.com/org/platform.git'}\n  serviceAccountName: deployer\n  interval: 1m\n";

    fn refused(extra: &str) -> InvalidSpec {
        validate(&app(&format!("{BASE}{extra}"))).expect_err(extra)
    }

    #[test]
    fn a_minimal_spec_gets_its_defaults() {
        let v = validate(&app(BASE)).unwrap();
        assert_eq!(v.destination_namespace, "payments");
        assert_eq!(v.reference, GitRef::Branch("main".into()));
        assert_eq!(v.path, "");
        assert_eq!(v.interval, Duration::from_secs(60));
        assert_eq!(v.retry_interval, v.interval);
        assert_eq!(v.timeout, v.interval);
        assert_eq!(
            v.impersonated_user(),
            "system:serviceaccount:payments:deployer"
        );
        assert!(!v.prune && !v.suspend && !v.allow_empty);
    }

    #[test]
    fn the_design_example_is_valid() {
        let v = validate(&app(
            "  source:\n    url: https://git.example.com/org/platform.git\n    ref: {tag: v1.2.0}\n    path: ./apps/payments/\n    secretRef: {name: git-credentials}\n    verify: {mode: Tag, secretRef: {name: signers, namespace: payments}}\n  destination: {namespace: payments-prod}\n  serviceAccountName: payments-deployer\n  interval: 1m\n  retryInterval: 30s\n  timeout: 5m\n  dependsOn: [{name: shared-config}]\n  prune: true\n  decryption: {secretRef: {name: sops-age}}\n  vault:\n    address: https://vault.example.com/\n    auth: {kubernetes: {role: payments}}\n",
        ))
        .unwrap();
        assert_eq!(v.destination_namespace, "payments-prod");
        assert_eq!(v.reference, GitRef::Tag("v1.2.0".into()));
        assert_eq!(v.path, "apps/payments");
        assert_eq!(v.credentials_secret.as_deref(), Some("git-credentials"));
        assert_eq!(
            v.verify,
            Some(VerifySettings {
                mode: VerifyMode::Tag,
                secret: Some("signers".into())
            })
        );
        assert_eq!(
            (v.retry_interval, v.timeout),
            (Duration::from_secs(30), Duration::from_secs(300))
        );
        assert_eq!(v.depends_on, ["shared-config"]);
        assert_eq!(v.decryption_secret.as_deref(), Some("sops-age"));
        let vault = v.vault.unwrap();
        assert_eq!(vault.address, "https://vault.example.com");
        assert_eq!(
            vault.login,
            VaultLogin::Kubernetes {
                role: "payments".into(),
                mount: "kubernetes".into()
            }
        );
    }

    #[test]
    fn no_service_account_is_stalled_with_its_own_reason() {
        let e = validate(&app("  source: {url: 'https://h/r.git'}\n  interval: 1m\n")).unwrap_err();
        assert_eq!(e.errors, [SpecError::MissingServiceAccount]);
        assert_eq!(e.reason(), "ServiceAccountNameMissing");
        assert!(e.to_string().contains("no fallback identity"), "{e}");
    }

    #[test]
    fn every_cross_namespace_reference_is_refused() {
        for (extra, field) in [
            (
                "  decryption: {secretRef: {name: k, namespace: lockstep-system}}\n",
                "spec.decryption.secretRef.namespace",
            ),
            (
                "  dependsOn: [{name: other, namespace: team-b}]\n",
                "spec.dependsOn[0].namespace",
            ),
            (
                "  vault: {address: 'https://v', auth: {tokenSecretRef: {name: t, namespace: x}}}\n",
                "spec.vault.auth.tokenSecretRef.namespace",
            ),
            (
                "  vault: {address: 'https://v', caSecretRef: {name: ca, namespace: x}, auth: {kubernetes: {role: r}}}\n",
                "spec.vault.caSecretRef.namespace",
            ),
            (
                "  vault: {address: 'https://v', auth: {appRole: {secretRef: {name: s, namespace: x}}}}\n",
                "spec.vault.auth.appRole.secretRef.namespace",
            ),
        ] {
            let e = refused(extra);
            assert_eq!(e.reason(), "CrossNamespaceReference", "{extra}");
            assert!(
                matches!(&e.errors[0], SpecError::CrossNamespace { field: f, .. } if f == field),
                "{extra}: {e}"
            );
        }
        // Source credentials and verify secrets are under source: replace the base source.
        for (src, field) in [
            (
                "{url: 'https://h/r', secretRef: {name: c, namespace: x}}",
                "spec.source.secretRef.namespace",
            ),
            (
                "{url: 'https://h/r', verify: {secretRef: {name: c, namespace: x}}}",
                "spec.source.verify.secretRef.namespace",
            ),
        ] {
            let e = validate(&app(&format!(
                "  source: {src}\n  serviceAccountName: d\n  interval: 1m\n"
            )))
            .unwrap_err();
            assert!(
                matches!(&e.errors[0], SpecError::CrossNamespace { field: f, namespace, own } if f == field && namespace == "x" && own == "payments"),
                "{e}"
            );
        }
        // Naming the own namespace explicitly is fine.
        assert!(
            validate(&app(&format!(
                "{BASE}  decryption: {{secretRef: {{name: k, namespace: payments}}}}\n"
            )))
            .is_ok()
        );
    }

    #[test]
    fn each_malformed_field_is_refused() {
        let cases: &[(&str, &str)] = &[
            ("  retryInterval: soon\n", "spec.retryInterval"),
            ("  timeout: 0s\n", "spec.timeout"),
            ("  dependsOn: [{name: payments}]\n", "itself"),
            (
                "  dependsOn: [{name: Bad_Name}]\n",
                "spec.dependsOn[0].name",
            ),
            (
                "  destination: {namespace: a.b}\n",
                "spec.destination.namespace",
            ),
            (
                "  vault: {address: 'vault.example.com', auth: {kubernetes: {role: r}}}\n",
                "address",
            ),
            (
                "  vault: {address: 'https://u:p@v', auth: {kubernetes: {role: r}}}\n",
                "credentials",
            ),
            ("  vault: {address: 'https://v', auth: {}}\n", "exactly one"),
            (
                "  vault: {address: 'https://v', auth: {kubernetes: {role: r}, tokenSecretRef: {name: t}}}\n",
                "found 2",
            ),
            (
                "  vault: {address: 'https://v', auth: {kubernetes: {role: ''}}}\n",
                "role is empty",
            ),
        ];
        for (extra, needle) in cases {
            let e = refused(extra);
            assert_eq!(e.reason(), "InvalidSpec", "{extra}");
            assert!(e.to_string().contains(needle), "{extra}: {e}");
        }
        let with_source = |src: &str, rest: &str| {
            validate(&app(&format!(
                "  source: {src}\n  serviceAccountName: d\n{rest}"
            )))
            .unwrap_err()
            .to_string()
        };
        let i = "  interval: 1m\n";
        assert!(
            with_source("{url: 'https://h/r'}", "  interval: 500ms\n").contains("minimum of 1s")
        );
        assert!(
            with_source("{url: 'https://h/r'}", "  interval: often\n").contains("spec.interval")
        );
        assert!(with_source("{url: 'ftp://h/r'}", i).contains("unsupported URL scheme"));
        assert!(
            with_source("{url: 'https://h/r', ref: {branch: main, tag: v1}}", i)
                .contains("exactly one of branch, tag, commit (found branch, tag)")
        );
        assert!(
            with_source("{url: 'https://h/r', ref: {commit: xyz}}", i).contains("not a commit id")
        );
        assert!(
            with_source("{url: 'https://h/r', ref: {branch: '--upload-pack=x'}}", i)
                .contains("not a valid Git reference")
        );
        assert!(with_source("{url: 'https://h/r', path: '../other'}", i).contains("'..'"));
        assert!(with_source("{url: 'https://h/r', path: /etc}", i).contains("relative"));
        assert!(with_source("{url: 'https://h/r', verify: {mode: Tag}}", i).contains("ref.tag"));
        assert!(
            with_source("{url: 'https://h/r', secretRef: {name: ''}}", i)
                .contains("spec.source.secretRef.name")
        );
    }

    #[test]
    fn passwords_in_the_url_are_refused_without_being_echoed() {
        let e = validate(&app("  source: {url: 'https://bob:hunter2@git.example.com/r.git'}\n  serviceAccountName: d\n  interval: 1m\n")).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("spec.source.secretRef") && !text.contains("hunter2"),
            "{text}"
        );
        // A user name alone (ssh) is fine.
        assert!(validate(&app("  source: {url: 'ssh://git@git.example.com/r.git'}\n  serviceAccountName: d\n  interval: 1m\n")).is_ok());
    }

    #[test]
    fn an_invalid_spec_stalls_the_application() {
        let e = validate(&app("  source: {url: 'https://h/r.git'}\n  interval: 1m\n")).unwrap_err();
        let mut status = ApplicationStatus::default();
        assert!(e.mark(&mut status, Some(4), "2026-01-01T00:00:00Z"));
        let stalled = status
            .condition(crate::controller::conditions::STALLED)
            .unwrap();
        assert_eq!(
            (stalled.status.as_str(), stalled.reason.as_str()),
            ("True", "ServiceAccountNameMissing")
        );
        assert!(!status.is_ready());
        assert_eq!(status.observed_generation, Some(4));
    }

    #[test]
    fn binding_policies_judge_the_source_and_the_service_account() {
        let docs = crate::manifest::load_documents(b"apiVersion: lockstep.dev/v1alpha1\nkind: Policy\nmetadata: {name: tenants}\nspec:\n  applications: {namespaces: ['pay*']}\n  sources: {allow: ['https://git.example.com/*']}\n  serviceAccounts: [{namespaces: ['*'], names: ['*-deployer']}]\n").unwrap();
        let policies = vec![Policy::from_node(&docs[0], std::path::Path::new("p.yaml")).unwrap()];
        let bound = crate::policy::policies_binding("payments", &policies);
        let ok = validate(&app("  source: {url: 'https://git.example.com/org/platform.git'}\n  serviceAccountName: payments-deployer\n  interval: 1m\n")).unwrap();
        assert!(policy_denials(&ok, &bound).is_empty());
        let bad = validate(&app("  source: {url: 'file:///var/lib/lockstep'}\n  serviceAccountName: admin\n  interval: 1m\n")).unwrap();
        let rules: Vec<String> = policy_denials(&bad, &bound)
            .into_iter()
            .map(|d| d.rule)
            .collect();
        assert_eq!(rules, ["sources.allow", "sources", "serviceAccounts"]);
        // With no Policy at all, a local source is still refused.
        assert_eq!(policy_denials(&bad, &[]).len(), 1);
        // A Vault address outside spec.vaultAddresses is refused before any Vault call.
        let docs = crate::manifest::load_documents(b"apiVersion: lockstep.dev/v1alpha1\nkind: Policy\nmetadata: {name: vault}\nspec:\n  vaultAddresses: ['https://vault.example.com']\n").unwrap();
        let policies = vec![Policy::from_node(&docs[0], std::path::Path::new("v.yaml")).unwrap()];
        let bound = crate::policy::policies_binding("payments", &policies);
        let with_vault = |addr: &str| {
            validate(&app(&format!("  source: {{url: 'https://git.example.com/org/platform.git'}}\n  serviceAccountName: payments-deployer\n  interval: 1m\n  vault: {{address: '{addr}', auth: {{kubernetes: {{role: payments}}}}}}\n"))).unwrap()
        };
        assert!(policy_denials(&with_vault("https://vault.example.com/"), &bound).is_empty());
        let d = policy_denials(&with_vault("https://vault.example.com.evil.test"), &bound);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].rule, "vaultAddresses");
        assert!(
            policy_denials(&ok, &bound).is_empty(),
            "no vault block, no opinion"
        );
    }

    #[test]
    fn all_errors_are_reported_together_and_no_url_password_is_echoed() {
        let e = validate(&app(
            "  source: {url: 'ftp://user:hunter2@h/r'}\n  interval: x\n",
        ))
        .unwrap_err();
        assert_eq!(e.errors.len(), 3, "{e}");
        assert_eq!(e.reason(), "ServiceAccountNameMissing");
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }
}
