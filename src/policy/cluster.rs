//! Policies as cluster-scoped objects, and the rules that concern an Application rather
//! than the objects it renders: which Applications a Policy binds, which Git sources
//! they may fetch, which service accounts they may act as.
//!
//! The object's `spec` is the file format of [`super::Policy`] plus:
//!
//! ```yaml
//! spec:
//!   applications: {namespaces: ["team-*"]}   # binds Applications in these namespaces;
//!                                            # absent: binds every Application
//!   sources: {allow: ["https://git.example.com/team-*/*"]}
//!   serviceAccounts:                         # per namespace pattern, allowed names
//!     - {namespaces: ["team-*"], names: ["*-deployer"]}
//! ```
//!
//! `file://` URLs (and anything that is not a remote URL) are refused unless a binding
//! Policy allows them with a pattern that itself starts with `file://`: a tenant must not
//! point an Application at the reconciler's own files or Git cache, and a catch-all `*`
//! does not count as allowing that.

use std::fmt;
use std::path::PathBuf;

use kube::CustomResource;
use kube::ResourceExt;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{MapItem, Node, Policy, PolicyError, PolicySet, Signatures, glob_match, strings};
use crate::sealed::Scope;
use crate::source::url::{Scheme, SourceUrl};

/// The spec of a cluster-scoped Policy object.
// Several printcolumn(...) entries share keys such as `type_`; that is not a duplicate.
#[allow(clippy::duplicated_attributes)]
#[derive(
    CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema,
)]
#[kube(
    group = "lockstep.dev",
    version = "v1alpha1",
    kind = "Policy",
    doc = "A Policy (cluster-scoped): what the Applications it binds may fetch, act as and write.",
    root = "ClusterPolicy",
    plural = "policies",
    singular = "policy",
    category = "lockstep",
    printcolumn(
        name = "Applications",
        type_ = "string",
        json_path = ".spec.applications.namespaces"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct PolicySpec {
    /// Which Applications this Policy binds; every Application when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applications: Option<ApplicationSelector>,
    /// Namespaces bound Applications may write (globs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kinds: Option<KindRules>,
    /// Accepted SealedSecret scopes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed_secret_scopes: Option<Vec<ScopeName>>,
    /// Allowed Vault path prefixes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault_paths: Option<Vec<String>>,
    /// Vault origins (`scheme://host[:port]`, globs) bound Applications may name in
    /// `spec.vault.address`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault_addresses: Option<Vec<String>>,
    /// Where `ref+vault://` references may be resolved beyond a Secret's data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault_references: Option<VaultReferenceRules>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signatures: Option<SignatureRules>,
    /// Git sources bound Applications may fetch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sources: Option<SourceRules>,
    /// Service accounts bound Applications may act as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_accounts: Option<Vec<ServiceAccountRule>>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
pub struct ApplicationSelector {
    /// Namespace globs of the Applications bound.
    #[serde(default)]
    pub namespaces: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
pub struct KindRules {
    /// `Kind` or `group/Kind` patterns (core group: `/ConfigMap`), with globs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ScopeName {
    Strict,
    NamespaceWide,
    ClusterWide,
}

impl From<ScopeName> for Scope {
    fn from(s: ScopeName) -> Scope {
        match s {
            ScopeName::Strict => Scope::Strict,
            ScopeName::NamespaceWide => Scope::NamespaceWide,
            ScopeName::ClusterWide => Scope::ClusterWide,
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VaultReferenceRules {
    /// `true` lets bound Applications resolve references in any value of an object of a
    /// kind this Policy allows (not in metadata), unless another bound Policy says `false`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outside_secrets: Option<bool>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
pub struct SignatureRules {
    #[serde(default)]
    pub required: bool,
    /// Allowed signer keys (OpenPGP fingerprints or SSH public keys).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signers: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
pub struct SourceRules {
    /// URL globs (`*`, `?`). A `file://` URL matches only patterns starting with `file://`.
    #[serde(default)]
    pub allow: Vec<String>,
}

/// For Applications in namespaces matching `namespaces`, the service account names
/// (globs) they may use.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
pub struct ServiceAccountRule {
    pub namespaces: Vec<String>,
    pub names: Vec<String>,
}

impl ClusterPolicy {
    /// The evaluation form of this object, checked the way a Policy file is.
    pub fn to_policy(&self) -> Result<Policy, PolicyError> {
        let name = self.name_any();
        let origin = format!("cluster Policy {name}");
        let err = |message: &str| PolicyError {
            file: origin.clone(),
            policy: name.clone(),
            message: message.to_owned(),
        };
        if name.is_empty() {
            return Err(err("metadata.name is required"));
        }
        let s = &self.spec;
        let signatures = s.signatures.clone().unwrap_or_default();
        if signatures.required && signatures.signers.is_empty() {
            return Err(err(
                "spec.signatures.required is true but no signers are listed",
            ));
        }
        let kinds = s.kinds.clone().unwrap_or_default();
        Ok(Policy {
            name: name.clone(),
            file: PathBuf::from(origin.clone()),
            namespaces: s.namespaces.clone(),
            allow_kinds: kinds.allow,
            deny_kinds: kinds.deny,
            sealed_secret_scopes: s
                .sealed_secret_scopes
                .as_ref()
                .map(|v| v.iter().map(|x| Scope::from(*x)).collect()),
            vault_paths: s.vault_paths.clone(),
            vault_refs_outside_secrets: s.vault_references.as_ref().and_then(|v| v.outside_secrets),
            vault_addresses: s.vault_addresses.clone(),
            signatures: Signatures {
                required: signatures.required,
                signers: signatures.signers,
            },
            applications: s.applications.as_ref().map(|a| a.namespaces.clone()),
            sources: s.sources.as_ref().map(|r| r.allow.clone()),
            service_accounts: s.service_accounts.clone(),
        })
    }
}

/// The Application-level fields of a Policy file (`applications`, `sources`,
/// `serviceAccounts`), read by [`Policy::from_node`].
pub(super) struct FileExtensions {
    pub applications: Option<Vec<String>>,
    pub sources: Option<Vec<String>>,
    pub service_accounts: Option<Vec<ServiceAccountRule>>,
}

pub(super) fn parse_file_extensions(
    spec: &Node,
    policy: &str,
    file: &str,
) -> Result<FileExtensions, PolicyError> {
    let err = |message: String| PolicyError {
        file: file.to_owned(),
        policy: policy.to_owned(),
        message,
    };
    let only_keys = |node: &Node, field: &str, allowed: &[&str]| -> Result<(), PolicyError> {
        let Some(items) = node.as_map() else {
            return Err(err(format!("{field} must be a map")));
        };
        for item in items {
            if let MapItem::Entry(k, _) = item
                && !allowed.contains(&k.as_str())
            {
                return Err(err(format!("unknown field {field}.{k}")));
            }
        }
        Ok(())
    };
    let applications = match spec.get("applications") {
        None => None,
        Some(a) => {
            only_keys(a, "spec.applications", &["namespaces"])?;
            Some(
                strings(
                    a.get("namespaces"),
                    policy,
                    file,
                    "spec.applications.namespaces",
                )?
                .unwrap_or_default(),
            )
        }
    };
    let sources = match spec.get("sources") {
        None => None,
        Some(s) => {
            only_keys(s, "spec.sources", &["allow"])?;
            Some(strings(s.get("allow"), policy, file, "spec.sources.allow")?.unwrap_or_default())
        }
    };
    let service_accounts = match spec.get("serviceAccounts") {
        None => None,
        Some(Node::List(items)) => {
            let mut rules = Vec::new();
            for (i, item) in items
                .iter()
                .filter(|i| !matches!(i, Node::Comment(_)))
                .enumerate()
            {
                let field = format!("spec.serviceAccounts[{i}]");
                only_keys(item, &field, &["namespaces", "names"])?;
                let list = |key: &str| {
                    strings(item.get(key), policy, file, &format!("{field}.{key}"))?
                        .ok_or_else(|| err(format!("{field}.{key} is required")))
                };
                rules.push(ServiceAccountRule {
                    namespaces: list("namespaces")?,
                    names: list("names")?,
                });
            }
            Some(rules)
        }
        Some(_) => return Err(err("spec.serviceAccounts must be a list".into())),
    };
    Ok(FileExtensions {
        applications,
        sources,
        service_accounts,
    })
}

/// A refusal of an Application-level rule (source, service account). It names the
/// policy and the rule, like [`super::Violation`] does for objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// The policy that refused; empty for lockstep's built-in `file://` rule.
    pub policy: String,
    pub rule: String,
    pub message: String,
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.policy.is_empty() {
            write!(
                f,
                "denied by lockstep's default rule ({}): {}",
                self.rule, self.message
            )
        } else {
            write!(
                f,
                "denied by policy {:?} ({}): {}",
                self.policy, self.rule, self.message
            )
        }
    }
}

/// A source URL as matched against `sources.allow`: scheme lowercased, user and password
/// removed (so a password never reaches a denial, and credentials do not change the
/// verdict). Returns it and whether the URL is local (anything but a parsed remote URL).
fn match_form(url: &str) -> (String, bool) {
    let url = url.trim();
    // `file:/path` parses as the scp-like form with host "file"; treat it as what a
    // reader means by it.
    let local = !matches!(SourceUrl::parse(url), Ok(u) if u.scheme != Scheme::File
        && !u.host.eq_ignore_ascii_case("file"));
    let Some((scheme, rest)) = url.split_once("://") else {
        return (url.to_owned(), local);
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    (
        format!(
            "{}://{}{path}",
            scheme.to_ascii_lowercase(),
            host.to_ascii_lowercase()
        ),
        local,
    )
}

/// `.` / `..` path segments (also percent-encoded) would let a URL that matches a glob
/// lead somewhere else once resolved.
fn has_dot_segments(url: &str) -> bool {
    let lower = url.to_ascii_lowercase().replace("%2e", ".");
    let path = lower.split_once("://").map_or(lower.as_str(), |(_, r)| r);
    path.split(['/', ':']).any(|s| s == ".." || s == ".")
}

impl Policy {
    /// Whether this Policy binds Applications in `app_namespace`.
    pub fn binds(&self, app_namespace: &str) -> bool {
        match &self.applications {
            None => true,
            Some(globs) => globs.iter().any(|g| glob_match(g, app_namespace)),
        }
    }

    /// This Policy's verdict on a source URL (`None`: allowed, or no `sources` rule).
    /// `file://` needs a pattern that starts with `file://`; see also
    /// [`check_source`], which adds the built-in refusal of local sources.
    pub fn check_source(&self, url: &str) -> Option<Denial> {
        let allow = self.sources.as_ref()?;
        let (form, local) = match_form(url);
        let deny = |message: String| {
            Some(Denial {
                policy: self.name.clone(),
                rule: "sources.allow".into(),
                message,
            })
        };
        if has_dot_segments(&form) {
            return deny(format!("source {form:?} has '.' or '..' path segments"));
        }
        let matched = allow.iter().any(|p| {
            let explicit_file = p.to_ascii_lowercase().starts_with("file://");
            (local == explicit_file) && glob_match(p, &form)
        });
        if matched {
            None
        } else {
            deny(format!("source {form:?} matches none of {allow:?}"))
        }
    }

    /// This Policy's verdict on a Vault address (`None`: allowed, or no `vaultAddresses`
    /// rule). Patterns match the address's origin only, so a path or a longer host
    /// (`https://vault.example.com.evil.test`) never rides on an exact pattern.
    pub fn check_vault_address(&self, address: &str) -> Option<Denial> {
        let allow = self.vault_addresses.as_ref()?;
        let origin = vault_origin(address);
        let matched = allow.iter().any(|p| {
            let p = p.trim().trim_end_matches('/').to_ascii_lowercase();
            glob_match(&p, &origin)
        });
        if matched {
            None
        } else {
            Some(Denial {
                policy: self.name.clone(),
                rule: "vaultAddresses".into(),
                message: format!("Vault address {origin:?} matches none of {allow:?}"),
            })
        }
    }

    /// This Policy's verdict on acting as service account `name` in namespace `ns`.
    pub fn check_service_account(&self, ns: &str, name: &str) -> Option<Denial> {
        let rules = self.service_accounts.as_ref()?;
        let deny = |message: String| {
            Some(Denial {
                policy: self.name.clone(),
                rule: "serviceAccounts".into(),
                message,
            })
        };
        let applicable: Vec<&ServiceAccountRule> = rules
            .iter()
            .filter(|r| r.namespaces.iter().any(|g| glob_match(g, ns)))
            .collect();
        if applicable.is_empty() {
            return deny(format!(
                "no rule allows any service account in namespace {ns:?}"
            ));
        }
        if applicable
            .iter()
            .any(|r| r.names.iter().any(|g| glob_match(g, name)))
        {
            return None;
        }
        let names: Vec<&str> = applicable
            .iter()
            .flat_map(|r| r.names.iter().map(String::as_str))
            .collect();
        deny(format!(
            "service account {ns}/{name} is not one of {names:?}"
        ))
    }
}

/// The Policies that bind an Application in `app_namespace`.
pub fn policies_binding<'a>(app_namespace: &str, policies: &'a [Policy]) -> Vec<&'a Policy> {
    policies.iter().filter(|p| p.binds(app_namespace)).collect()
}

/// The binding Policies as a [`PolicySet`], for the per-object checks and signers.
pub fn bound_set(app_namespace: &str, policies: &[Policy]) -> PolicySet {
    PolicySet {
        policies: policies_binding(app_namespace, policies)
            .into_iter()
            .cloned()
            .collect(),
    }
}

/// Every denial of a source URL by the binding Policies, plus the built-in rule: a
/// local source (`file://`, a path) is refused unless one of them allows it explicitly.
pub fn check_source(bound: &[&Policy], url: &str) -> Vec<Denial> {
    let mut out: Vec<Denial> = bound.iter().filter_map(|p| p.check_source(url)).collect();
    let (form, local) = match_form(url);
    if local {
        let allowed = bound.iter().any(|p| {
            p.sources.as_ref().is_some_and(|allow| {
                allow
                    .iter()
                    .any(|a| a.to_ascii_lowercase().starts_with("file://") && glob_match(a, &form))
            })
        }) && !has_dot_segments(&form);
        if !allowed {
            out.push(Denial {
                policy: String::new(),
                rule: "sources".into(),
                message: format!(
                    "source {form:?} is local; a Policy binding this Application must allow it with a file:// pattern in spec.sources.allow"
                ),
            });
        }
    }
    out
}

/// `scheme://host[:port]` of a Vault address, lower-cased: what `vaultAddresses`
/// patterns match. Anything after the authority (a path, a query) is dropped, and so is
/// userinfo (validation refuses it anyway) so that it cannot pose as the host.
fn vault_origin(address: &str) -> String {
    let lower = address.trim().to_ascii_lowercase();
    let (scheme, rest) = lower.split_once("://").unwrap_or(("", lower.as_str()));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    format!("{scheme}://{host}")
}

/// Every denial of a Vault address by the binding Policies.
pub fn check_vault_address(bound: &[&Policy], address: &str) -> Vec<Denial> {
    bound
        .iter()
        .filter_map(|p| p.check_vault_address(address))
        .collect()
}

/// Every denial of service account `name` in `ns` by the binding Policies.
pub fn check_service_account(bound: &[&Policy], ns: &str, name: &str) -> Vec<Denial> {
    bound
        .iter()
        .filter_map(|p| p.check_service_account(ns, name))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn file_policy(yaml: &str) -> Policy {
        let docs = crate::manifest::load_documents(yaml.as_bytes()).unwrap();
        Policy::from_node(&docs[0], Path::new("policies/p.yaml")).unwrap()
    }

    fn named(name: &str, spec: &str) -> Policy {
        file_policy(&format!(
            "apiVersion: lockstep.dev/v1alpha1\nkind: Policy\nmetadata: {{name: {name}}}\nspec:\n{spec}"
        ))
    }

    #[test]
    fn binding_by_application_namespace_globs() {
        let ps = vec![
            named("tenants", "  applications: {namespaces: ['team-*']}\n"),
            named(
                "platform",
                "  applications: {namespaces: [platform, 'infra-?']}\n",
            ),
            named("everyone", "  namespaces: ['*']\n"),
            named("nobody", "  applications: {namespaces: []}\n"),
        ];
        let names = |ns: &str| -> Vec<String> {
            policies_binding(ns, &ps)
                .iter()
                .map(|p| p.name.clone())
                .collect()
        };
        assert_eq!(names("team-a"), ["tenants", "everyone"]);
        assert_eq!(names("platform"), ["platform", "everyone"]);
        assert_eq!(names("infra-1"), ["platform", "everyone"]);
        assert_eq!(names("infra-12"), ["everyone"]);
        assert_eq!(names("default"), ["everyone"]);
        assert_eq!(bound_set("team-a", &ps).policies.len(), 2);
    }

    #[test]
    fn vault_addresses_match_the_origin_only() {
        let p = named(
            "tenants",
            "  vaultAddresses: ['https://vault.example.com:8200', 'https://*.vault.internal']\n",
        );
        let bound = [&p];
        for ok in [
            "https://vault.example.com:8200",
            "HTTPS://Vault.Example.com:8200/",
            "https://vault.example.com:8200/v1/some/path",
            "https://team-a.vault.internal",
        ] {
            assert!(check_vault_address(&bound, ok).is_empty(), "{ok}");
        }
        for bad in [
            // Another port, another scheme, a longer host, userinfo posing as the host.
            "https://vault.example.com",
            "http://vault.example.com:8200",
            "https://vault.example.com:8200.evil.test",
            "https://vault.example.com:8200@evil.test",
            "https://vault.internal",
        ] {
            let d = check_vault_address(&bound, bad);
            assert_eq!(d.len(), 1, "{bad}");
            assert_eq!(
                (d[0].policy.as_str(), d[0].rule.as_str()),
                ("tenants", "vaultAddresses")
            );
        }
        // No rule: no opinion; an empty list allows nothing.
        let open = named("open", "  namespaces: ['*']\n");
        assert!(check_vault_address(&[&open], "https://anywhere").is_empty());
        let none = named("none", "  vaultAddresses: []\n");
        assert_eq!(check_vault_address(&[&none], "https://anywhere").len(), 1);
        // Every binding Policy with a rule must agree.
        assert_eq!(
            check_vault_address(&[&p, &none], "https://vault.example.com:8200").len(),
            1
        );
    }

    #[test]
    fn sources_allowed_by_glob_and_file_refused_by_default() {
        let p = named(
            "tenants",
            "  sources: {allow: ['https://git.example.com/team-*', 'git@github.com:org/*', '*']}\n",
        );
        let strict = named(
            "strict",
            "  sources: {allow: ['https://git.example.com/team-*']}\n",
        );
        let bound = [&p, &strict];
        assert!(check_source(&bound, "https://git.example.com/team-a/app.git").is_empty());
        // Credentials and scheme case neither change the verdict nor appear in a denial.
        assert!(
            check_source(&bound, "HTTPS://bob:hunter2@git.example.com/team-a/app.git").is_empty()
        );
        let d = check_source(&bound, "https://bob:hunter2@evil.example.com/x.git");
        assert_eq!(d.len(), 1);
        assert_eq!(
            (d[0].policy.as_str(), d[0].rule.as_str()),
            ("strict", "sources.allow")
        );
        assert!(!d[0].to_string().contains("hunter2"), "{}", d[0]);
        assert!(d[0].to_string().starts_with("denied by policy \"strict\" (sources.allow): source \"https://evil.example.com/x.git\""), "{}", d[0]);

        // file:// is refused even by a catch-all `*`, and with no Policy at all.
        for url in [
            "file:///var/lib/lockstep/cache/repo.git",
            "/var/lib/lockstep",
            "./repo",
        ] {
            let d = check_source(&[&p], url);
            assert!(
                d.iter().any(|d| d.policy.is_empty() && d.rule == "sources"),
                "{url}: {d:?}"
            );
            assert!(!check_source(&[], url).is_empty(), "{url}");
        }
        // Explicitly allowed file:// works, but not with '..' escaping the allowed tree.
        let local = named("local", "  sources: {allow: ['file:///srv/git/*']}\n");
        assert!(check_source(&[&local], "file:///srv/git/apps.git").is_empty());
        assert!(!check_source(&[&local], "file:///srv/other.git").is_empty());
        assert!(!check_source(&[&local], "file:///srv/git/../../var/lib/lockstep").is_empty());
        assert!(!check_source(&[&local], "file:///srv/git/%2e%2e/secret").is_empty());
        // A file:// pattern does not admit remote URLs either.
        assert!(!check_source(&[&local], "https://srv/git/x").is_empty());
        // No sources rule: only the built-in local rule applies.
        let open = named("open", "  namespaces: ['*']\n");
        assert!(check_source(&[&open], "ssh://git@h/x.git").is_empty());
    }

    #[test]
    fn service_accounts_allowed_per_namespace_pattern() {
        let p = named(
            "sa",
            "  serviceAccounts:\n    - {namespaces: ['team-*'], names: ['*-deployer']}\n    - {namespaces: [platform], names: [platform-admin, flux]}\n",
        );
        assert!(
            p.check_service_account("team-a", "payments-deployer")
                .is_none()
        );
        assert!(p.check_service_account("platform", "flux").is_none());
        let d = p.check_service_account("team-a", "admin").unwrap();
        assert_eq!(
            (d.policy.as_str(), d.rule.as_str()),
            ("sa", "serviceAccounts")
        );
        assert!(
            d.to_string()
                .contains("team-a/admin is not one of [\"*-deployer\"]"),
            "{d}"
        );
        let d = p
            .check_service_account("default", "payments-deployer")
            .unwrap();
        assert!(d.message.contains("namespace \"default\""), "{d}");
        // Without the rule a Policy has no opinion; several Policies all must agree.
        let open = named("open", "  namespaces: ['*']\n");
        assert!(open.check_service_account("x", "y").is_none());
        assert_eq!(
            check_service_account(&[&p, &open], "team-a", "admin").len(),
            1
        );
    }

    #[test]
    fn file_extensions_are_checked() {
        let bad = |spec: &str| {
            let docs = crate::manifest::load_documents(format!("apiVersion: lockstep.dev/v1alpha1\nkind: Policy\nmetadata: {{name: p}}\nspec:\n{spec}").as_bytes()).unwrap();
            Policy::from_node(&docs[0], Path::new("p.yaml"))
                .unwrap_err()
                .to_string()
        };
        assert!(
            bad("  applications: {namespace: [a]}\n")
                .contains("unknown field spec.applications.namespace")
        );
        assert!(bad("  sources: ['https://x']\n").contains("spec.sources must be a map"));
        assert!(
            bad("  serviceAccounts: [{namespaces: [a]}]\n")
                .contains("spec.serviceAccounts[0].names is required")
        );
        assert!(bad("  serviceAccounts: {a: b}\n").contains("must be a list"));
    }

    #[test]
    fn a_cluster_policy_evaluates_like_the_same_file() {
        let yaml = "apiVersion: lockstep.dev/v1alpha1\nkind: Policy\nmetadata: {name: tenants}\nspec:\n  applications: {namespaces: ['team-*']}\n  namespaces: ['team-*']\n  kinds: {allow: [/ConfigMap, 'apps/*'], deny: [/Pod]}\n  sealedSecretScopes: [strict, namespace-wide]\n  vaultPaths: [secret/data/tenants/]\n  vaultReferences: {outsideSecrets: true}\n  vaultAddresses: ['https://vault.example.com:8200']\n  signatures: {required: true, signers: ['ssh-ed25519 AAAA x']}\n  sources: {allow: ['https://git.example.com/*']}\n  serviceAccounts: [{namespaces: ['team-*'], names: [deployer]}]\n";
        let from_file = file_policy(yaml);
        assert_eq!(from_file.vault_refs_outside_secrets, Some(true));
        assert_eq!(
            from_file.vault_addresses.as_deref(),
            Some(&["https://vault.example.com:8200".to_owned()][..])
        );
        let obj: ClusterPolicy = serde_saphyr::from_str(yaml).unwrap();
        let mut from_cluster = obj.to_policy().unwrap();
        assert_eq!(from_cluster.file, PathBuf::from("cluster Policy tenants"));
        from_cluster.file = from_file.file.clone();
        assert_eq!(from_cluster, from_file);

        let bad: ClusterPolicy = serde_saphyr::from_str("apiVersion: lockstep.dev/v1alpha1\nkind: Policy\nmetadata: {name: p}\nspec: {signatures: {required: true}}\n").unwrap();
        assert!(
            bad.to_policy()
                .unwrap_err()
                .to_string()
                .contains("cluster Policy p: policy p: spec.signatures.required")
        );
    }
}
