//! `.sops.yaml`: discovery and creation rules, as sops 3.11 does it
//! (`config/config.go`, `cmd/sops/main.go`).
//!
//! * Discovery starts at the **current directory** (not the file's) and walks up at
//!   most 100 levels; a `.sops.yml` is ignored with sops' warning.
//! * A file without `creation_rules` counts as absent ([`locate`] returns `None`).
//!   Its `stores:` settings can still be read with [`Config::load`].
//! * The first rule whose `path_regex` matches (unanchored search) wins; the path is
//!   relative to the config file's directory when the file is inside it.
//!
//! Differences from sops, all in error cases only:
//! * Every rule's regexes are compiled, and the one-selection-option check runs,
//!   when the file is loaded. sops checks only the rule it ends up using, so a bad
//!   rule later in the file that never matches does not bother it.
//! * Regexes use the `regex` crate instead of Go's RE2. The syntax is nearly the
//!   same; differences: `\d`, `\w`, `\s`, `\b` are Unicode-aware here (ASCII in Go),
//!   Rust accepts class set operations (`[a-z&&[^x]]`, `--`, `~~`) that Go reads
//!   literally, and Go's `\C` is rejected here.
//! * Empty items in a key list are skipped (sops fails on an empty item in a YAML
//!   list, and skips them only in a comma string).
//! * `age`/`pgp`/`hc_vault` inside `key_groups` also accept a comma string.
//!
//! Only age keys are usable by lockstep. Other key types are kept as descriptions in
//! [`KeyGroupSpec::other`] / [`KeyGroupSpec::pgp`] so the caller can refuse them.

use std::path::{Component, Path, PathBuf};

use regex::Regex;
use serde::Deserialize;

const CONFIG_FILE_NAME: &str = ".sops.yaml";
const ALTERNATE_CONFIG_NAME: &str = ".sops.yml";
const MAX_DEPTH: usize = 100;

/// Which values are encrypted; the same type the file metadata uses.
pub use crate::sops::metadata::Selection;

/// One key group of a rule.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyGroupSpec {
    /// age recipients (`age1…`, `age1pq1…`, ssh keys), trimmed, in file order.
    pub age: Vec<String>,
    /// PGP fingerprints (unsupported by lockstep).
    pub pgp: Vec<String>,
    /// Other key types, as `type:description` (`kms:arn…`, `gcp_kms:…`,
    /// `azure_keyvault:…`, `hc_vault:…`, `hckms:…`, `plugin:…`); unsupported.
    pub other: Vec<String>,
}

impl KeyGroupSpec {
    pub fn is_empty(&self) -> bool {
        self.age.is_empty() && self.pgp.is_empty() && self.other.is_empty()
    }

    /// Appends `other`'s keys, dropping ones already present (sops'
    /// `deduplicateKeygroup`: identity is key type plus its string form).
    fn extend_dedup(&mut self, other: KeyGroupSpec) {
        for (dst, src) in [
            (&mut self.age, other.age),
            (&mut self.pgp, other.pgp),
            (&mut self.other, other.other),
        ] {
            for k in src {
                if !dst.contains(&k) {
                    dst.push(k);
                }
            }
        }
    }
}

/// A creation rule, normalised.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreationRule {
    /// `None` when absent or empty: the rule matches every path.
    pub path_regex: Option<String>,
    /// From `key_groups` if it is non-empty, else exactly one group made of the
    /// top-level key fields (possibly an empty group: the caller decides whether
    /// "no keys" is an error, as sops' main does).
    pub key_groups: Vec<KeyGroupSpec>,
    /// `None` when absent or 0 (sops then uses the number of groups).
    pub shamir_threshold: Option<usize>,
    /// `None` when no option is set (sops then writes `unencrypted_suffix: _unencrypted`).
    pub selection: Option<Selection>,
    pub mac_only_encrypted: bool,
}

impl CreationRule {
    /// Whether any group holds any key.
    pub fn has_keys(&self) -> bool {
        self.key_groups.iter().any(|g| !g.is_empty())
    }
}

/// A loaded `.sops.yaml`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    /// Absolute, lexically cleaned path of the file.
    pub path: PathBuf,
    pub rules: Vec<CreationRule>,
    /// False when the file has no (or a null) `creation_rules`; [`locate`] then
    /// treats it as absent. An empty list is "present with no rules".
    pub has_creation_rules: bool,
    /// `stores: yaml: indent` (negative values are dropped).
    pub yaml_indent: Option<usize>,
    /// `stores: json: indent` (sops' default is -1, i.e. `None`).
    pub json_indent: Option<usize>,
    /// `stores: json_binary: indent`.
    pub json_binary_indent: Option<usize>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("could not read config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("error loading config: could not parse {}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    /// sops' text, then where.
    #[error(
        "error loading config: cannot use more than one of encrypted_suffix, unencrypted_suffix, \
         encrypted_regex, unencrypted_regex, encrypted_comment_regex, or unencrypted_comment_regex \
         for the same rule (creation_rules[{rule}] in {})",
        path.display()
    )]
    MultipleSelections { path: PathBuf, rule: usize },
    #[error(
        "error loading config: invalid {field} in creation_rules[{rule}] of {}: {source}",
        path.display()
    )]
    InvalidRegex {
        path: PathBuf,
        rule: usize,
        field: &'static str,
        #[source]
        source: Box<regex::Error>,
    },
    /// Exactly sops' message (vector 09 `no-matching-rule`); `path` is for callers.
    #[error("error loading config: no matching creation rules found")]
    NoMatchingRule { path: PathBuf },
}

/// Looks for `.sops.yaml` in `cwd` and its parents (at most 100 directories).
///
/// A `.sops.yml` met on the way is ignored and logged with sops' warning; paths in
/// the warning are relative to `cwd`, as sops prints them.
pub fn find_config_file(cwd: &Path) -> Option<PathBuf> {
    let mut dir = Some(lexical_absolute(cwd));
    let mut alternate: Option<String> = None;
    for level in 0..MAX_DEPTH {
        let Some(current) = dir else { break };
        // sops walks "." , "..", "../.." and reports those relative names.
        let rel = |name: &str| format!("{}{name}", "../".repeat(level));
        let candidate = current.join(CONFIG_FILE_NAME);
        // `stat` success, like sops (a directory of that name also "exists").
        if std::fs::metadata(&candidate).is_ok() {
            if let Some(alt) = &alternate {
                tracing::warn!("{}", alternate_warning(alt, Some(&rel(CONFIG_FILE_NAME))));
            }
            return Some(candidate);
        }
        if alternate.is_none() && std::fs::metadata(current.join(ALTERNATE_CONFIG_NAME)).is_ok() {
            alternate = Some(rel(ALTERNATE_CONFIG_NAME));
        }
        dir = current.parent().map(Path::to_path_buf);
    }
    if let Some(alt) = &alternate {
        tracing::warn!("{}", alternate_warning(alt, None));
    }
    None
}

/// sops' warning text (`config.LookupConfigFile`); `%q` quoting ≈ Rust `{:?}`.
fn alternate_warning(alternate: &str, used: Option<&str>) -> String {
    let base = format!(
        "ignoring {alternate:?} when searching for config file; the config file must be called {CONFIG_FILE_NAME:?}"
    );
    match used {
        Some(used) => format!("{base}; using {used:?} instead"),
        None => base,
    }
}

/// Finds and loads the config: `explicit` (`--config` or `SOPS_CONFIG`, resolved
/// against `cwd`) if given, else discovery from `cwd`.
///
/// `Ok(None)` when no file is found or the file has no `creation_rules`; sops then
/// needs keys on the command line (`config file not found, or has no creation
/// rules, and no keys provided through command line options`).
pub fn locate(explicit: Option<&Path>, cwd: &Path) -> Result<Option<Config>, ConfigError> {
    let path = match explicit {
        Some(p) => cwd.join(p),
        None => match find_config_file(cwd) {
            Some(p) => p,
            None => return Ok(None),
        },
    };
    let config = Config::load(&path)?;
    Ok(config.has_creation_rules.then_some(config))
}

impl Config {
    /// Reads and validates one config file, whether or not it has creation rules.
    /// A relative `path` is taken relative to the process's current directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let path = lexical_absolute(path);
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Parses config text; `path` is used for relative matching and in messages.
    pub fn parse(text: &str, path: PathBuf) -> Result<Config, ConfigError> {
        // An empty or comment-only document is a valid, empty config (as in yaml.v3).
        let raw: Option<RawConfig> =
            serde_saphyr::from_str(text).map_err(|e| ConfigError::Parse {
                path: path.clone(),
                message: e.to_string(),
            })?;
        let raw = raw.unwrap_or_default();

        let stores = raw.stores.unwrap_or_default();
        let indent = |s: Option<RawIndent>| {
            s.and_then(|s| s.indent)
                .and_then(|i| usize::try_from(i).ok())
        };
        let has_creation_rules = raw.creation_rules.is_some();
        let rules = raw
            .creation_rules
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(i, r)| r.normalise(&path, i))
            .collect::<Result<Vec<_>, _>>()?;

        Ok(Config {
            yaml_indent: indent(stores.yaml),
            json_indent: indent(stores.json),
            json_binary_indent: indent(stores.json_binary),
            path,
            rules,
            has_creation_rules,
        })
    }

    /// The directory that `path_regex` paths are relative to.
    pub fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("/"))
    }

    /// The first rule whose `path_regex` matches `file` (a rule without one matches
    /// everything). `file` should be absolute (the input path, or
    /// `--filename-override`); a relative one is resolved against the process's
    /// current directory. Inside the config's directory the match runs on the
    /// relative path (`secrets/prod/db.yaml`), elsewhere on the absolute path.
    pub fn rule_for(&self, file: &Path) -> Result<&CreationRule, ConfigError> {
        let file = lexical_absolute(file);
        let dir = lexical_absolute(self.dir());
        // sops strips `dir + "/"` as a string prefix, so a config at `/` never
        // strips anything.
        let subject = match file.strip_prefix(&dir) {
            Ok(rel) if dir.parent().is_some() && !rel.as_os_str().is_empty() => rel,
            _ => file.as_path(),
        };
        let subject = subject.to_string_lossy();
        for (i, rule) in self.rules.iter().enumerate() {
            let Some(pattern) = &rule.path_regex else {
                return Ok(rule);
            };
            let re = compile(pattern, &self.path, i, "path_regex")?;
            if re.is_match(&subject) {
                return Ok(rule);
            }
        }
        Err(ConfigError::NoMatchingRule {
            path: self.path.clone(),
        })
    }
}

fn compile(
    pattern: &str,
    path: &Path,
    rule: usize,
    field: &'static str,
) -> Result<Regex, ConfigError> {
    Regex::new(pattern).map_err(|e| ConfigError::InvalidRegex {
        path: path.to_path_buf(),
        rule,
        field,
        source: Box::new(e),
    })
}

/// `std::path::absolute` plus lexical removal of `.` and `..`, like Go's
/// `filepath.Abs` (which cleans). Symlinks are not resolved, as in sops.
fn lexical_absolute(path: &Path) -> PathBuf {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut out = PathBuf::new();
    for c in abs.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                // `/..` is `/`; pop() on the root is a no-op.
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

// ---- raw YAML shape -------------------------------------------------------

#[derive(Deserialize, Default)]
struct RawConfig {
    creation_rules: Option<Vec<RawRule>>,
    stores: Option<RawStores>,
}

#[derive(Deserialize, Default)]
struct RawStores {
    yaml: Option<RawIndent>,
    json: Option<RawIndent>,
    json_binary: Option<RawIndent>,
}

#[derive(Deserialize)]
struct RawIndent {
    indent: Option<i64>,
}

/// sops' `parseKeyField`: a comma-separated string or a list of strings.
#[derive(Deserialize)]
#[serde(untagged)]
enum StringOrList {
    One(String),
    Many(Vec<String>),
}

/// Splits every item on commas, trims, skips empty items.
fn key_list(field: Option<StringOrList>) -> Vec<String> {
    let items = match field {
        None => Vec::new(),
        Some(StringOrList::One(s)) => vec![s],
        Some(StringOrList::Many(v)) => v,
    };
    items
        .iter()
        .flat_map(|s| s.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn prefixed(kind: &str, keys: Vec<String>) -> impl Iterator<Item = String> + '_ {
    keys.into_iter().map(move |k| format!("{kind}:{k}"))
}

#[derive(Deserialize)]
struct RawRule {
    path_regex: Option<String>,
    age: Option<StringOrList>,
    pgp: Option<StringOrList>,
    kms: Option<StringOrList>,
    gcp_kms: Option<StringOrList>,
    azure_keyvault: Option<StringOrList>,
    hc_vault_transit_uri: Option<StringOrList>,
    hckms: Option<StringOrList>,
    plugins: Option<Vec<RawPlugin>>,
    key_groups: Option<Vec<RawGroup>>,
    shamir_threshold: Option<usize>,
    unencrypted_suffix: Option<String>,
    encrypted_suffix: Option<String>,
    unencrypted_regex: Option<String>,
    encrypted_regex: Option<String>,
    unencrypted_comment_regex: Option<String>,
    encrypted_comment_regex: Option<String>,
    mac_only_encrypted: Option<bool>,
}

impl RawRule {
    fn normalise(self, path: &Path, index: usize) -> Result<CreationRule, ConfigError> {
        // Go reads absent and "" alike (zero value), so "" means "not set".
        let set = |v: Option<String>| v.filter(|s| !s.is_empty());
        let candidates = [
            set(self.unencrypted_suffix).map(Selection::UnencryptedSuffix),
            set(self.encrypted_suffix).map(Selection::EncryptedSuffix),
            set(self.unencrypted_regex).map(Selection::UnencryptedRegex),
            set(self.encrypted_regex).map(Selection::EncryptedRegex),
            set(self.unencrypted_comment_regex).map(Selection::UnencryptedCommentRegex),
            set(self.encrypted_comment_regex).map(Selection::EncryptedCommentRegex),
        ];
        let mut chosen = candidates.into_iter().flatten();
        let selection = chosen.next();
        if chosen.next().is_some() {
            return Err(ConfigError::MultipleSelections {
                path: path.to_path_buf(),
                rule: index,
            });
        }
        if let Some(sel) = selection.as_ref().filter(|s| s.is_regex()) {
            compile(sel.value(), path, index, sel.key())?;
        }
        let path_regex = set(self.path_regex);
        if let Some(p) = &path_regex {
            compile(p, path, index, "path_regex")?;
        }

        // A non-empty `key_groups` replaces the top-level key fields entirely.
        let key_groups = match self.key_groups.filter(|g| !g.is_empty()) {
            Some(groups) => groups.into_iter().map(RawGroup::flatten).collect(),
            None => {
                let mut other: Vec<String> = Vec::new();
                other.extend(prefixed("kms", key_list(self.kms)));
                other.extend(prefixed("gcp_kms", key_list(self.gcp_kms)));
                other.extend(prefixed("hckms", key_list(self.hckms)));
                other.extend(prefixed("azure_keyvault", key_list(self.azure_keyvault)));
                other.extend(prefixed("hc_vault", key_list(self.hc_vault_transit_uri)));
                other.extend(self.plugins.into_iter().flatten().map(RawPlugin::describe));
                // Not de-duplicated: sops dedups only inside `key_groups`.
                vec![KeyGroupSpec {
                    age: key_list(self.age),
                    pgp: key_list(self.pgp),
                    other,
                }]
            }
        };

        Ok(CreationRule {
            path_regex,
            key_groups,
            shamir_threshold: self.shamir_threshold.filter(|&t| t != 0),
            selection,
            mac_only_encrypted: self.mac_only_encrypted.unwrap_or(false),
        })
    }
}

#[derive(Deserialize)]
struct RawGroup {
    merge: Option<Vec<RawGroup>>,
    age: Option<StringOrList>,
    pgp: Option<StringOrList>,
    kms: Option<Vec<RawKms>>,
    gcp_kms: Option<Vec<RawGcpKms>>,
    hckms: Option<Vec<RawHckms>>,
    azure_keyvault: Option<Vec<RawAzure>>,
    hc_vault: Option<StringOrList>,
    plugins: Option<Vec<RawPlugin>>,
}

impl RawGroup {
    /// sops' `extractMasterKeys`: merged groups first, then this group's keys,
    /// duplicates dropped.
    fn flatten(self) -> KeyGroupSpec {
        let mut group = KeyGroupSpec::default();
        for sub in self.merge.into_iter().flatten() {
            group.extend_dedup(sub.flatten());
        }
        let mut other: Vec<String> = Vec::new();
        other.extend(self.kms.into_iter().flatten().map(|k| match k.role {
            Some(role) if !role.is_empty() => format!("kms:{}+{role}", k.arn),
            _ => format!("kms:{}", k.arn),
        }));
        other.extend(
            self.gcp_kms
                .into_iter()
                .flatten()
                .map(|k| format!("gcp_kms:{}", k.resource_id)),
        );
        other.extend(
            self.hckms
                .into_iter()
                .flatten()
                .map(|k| format!("hckms:{}", k.key_id)),
        );
        other.extend(self.azure_keyvault.into_iter().flatten().map(|k| {
            format!(
                "azure_keyvault:{}/keys/{}/{}",
                k.vault_url.trim_end_matches('/'),
                k.key,
                k.version
            )
        }));
        other.extend(prefixed("hc_vault", key_list(self.hc_vault)));
        other.extend(self.plugins.into_iter().flatten().map(RawPlugin::describe));
        group.extend_dedup(KeyGroupSpec {
            age: key_list(self.age),
            pgp: key_list(self.pgp),
            other,
        });
        group
    }
}

#[derive(Deserialize)]
struct RawKms {
    #[serde(default)]
    arn: String,
    role: Option<String>,
}

#[derive(Deserialize)]
struct RawGcpKms {
    #[serde(default)]
    resource_id: String,
}

#[derive(Deserialize)]
struct RawHckms {
    #[serde(default)]
    key_id: String,
}

#[derive(Deserialize)]
struct RawAzure {
    #[serde(default, rename = "vaultUrl")]
    vault_url: String,
    #[serde(default)]
    key: String,
    #[serde(default)]
    version: String,
}

#[derive(Deserialize)]
struct RawPlugin {
    #[serde(default)]
    binary_name: String,
}

impl RawPlugin {
    fn describe(self) -> String {
        format!("plugin:{}", self.binary_name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const R1: &str = "age13737pkd5rxzmujsrm4nkmhqdya0tkvhwly424fwgzpqnswwcka3qstlkg8";
    const R2: &str = "age1tm3yt545vx5jsvk8xvpz9dfcwnhfwvgrllh3gl42uvqyqkrs7eas34t2hh";
    const R3: &str = "age1gdjm4klk2y77rlj0l0l4jy6p988kn2pnc9vwhclkva90n83eku5qumypjk";

    fn vectors() -> PathBuf {
        let rel = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/sops"));
        rel.canonicalize().unwrap_or_else(|_| rel.to_path_buf())
    }

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, PathBuf::from("/repo/.sops.yaml"))
    }

    fn group(age: &[&str]) -> KeyGroupSpec {
        KeyGroupSpec {
            age: age.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn index_of(config: &Config, rule: &CreationRule) -> usize {
        config
            .rules
            .iter()
            .position(|r| std::ptr::eq(r, rule))
            .unwrap()
    }

    #[test]
    fn vector_09_repo_rules() {
        let repo = vectors().join("09-sops-yaml-config/repo");
        let config = locate(None, &repo).unwrap().unwrap();
        assert_eq!(config.path, repo.join(".sops.yaml"));
        assert_eq!(config.rules.len(), 4);

        // Which rule sops used can be read off each encrypted file's metadata.
        let prod = config.rule_for(&repo.join("secrets/prod/db.yaml")).unwrap();
        assert_eq!(index_of(&config, prod), 0);
        assert_eq!(prod.key_groups, vec![group(&[R1, R2])]); // folded `>-` list
        assert_eq!(
            prod.selection,
            Some(Selection::EncryptedRegex("^(data|stringData)$".into()))
        );

        let dev = config.rule_for(&repo.join("secrets/dev/db.yaml")).unwrap();
        assert_eq!(index_of(&config, dev), 2);
        assert_eq!(dev.key_groups, vec![group(&[R2])]);
        assert_eq!(
            dev.selection,
            Some(Selection::UnencryptedRegex(
                "^(metadata|kind|apiVersion)$".into()
            ))
        );

        let env = config.rule_for(&repo.join("apps/app.env")).unwrap();
        assert_eq!(index_of(&config, env), 1);
        assert_eq!(env.key_groups, vec![group(&[R1])]);
        assert_eq!(env.selection, None);

        let other = config.rule_for(&repo.join("apps/other.yaml")).unwrap();
        assert_eq!(index_of(&config, other), 3);
        assert_eq!(other.path_regex, None);
        assert_eq!(other.key_groups, vec![group(&[R1])]);
        assert_eq!(other.shamir_threshold, None);
        assert!(!other.mac_only_encrypted);
    }

    #[test]
    fn vector_09_discovery_from_subdirectory_and_outside() {
        let base = vectors().join("09-sops-yaml-config");
        let sub = base.join("repo/secrets/prod");
        assert_eq!(find_config_file(&sub), Some(base.join("repo/.sops.yaml")));
        // Search starts at the cwd: from outside `repo/` nothing is found.
        assert_eq!(find_config_file(&base), None);
        assert!(locate(None, &base).unwrap().is_none());
        // --config / SOPS_CONFIG relative to the cwd.
        let explicit = locate(Some(Path::new("repo/.sops.yaml")), &base)
            .unwrap()
            .unwrap();
        assert_eq!(explicit.path, base.join("repo/.sops.yaml"));
        let rule = explicit
            .rule_for(&base.join("repo/secrets/prod/x.yaml"))
            .unwrap();
        assert_eq!(index_of(&explicit, rule), 0);
    }

    #[test]
    fn vector_09_no_matching_rule() {
        let dir = vectors().join("09-sops-yaml-config/no-matching-rule");
        let config = locate(None, &dir).unwrap().unwrap();
        let err = config.rule_for(&dir.join("x.yaml")).unwrap_err();
        let expected = std::fs::read_to_string(dir.join("encrypt.stderr.txt")).unwrap();
        assert_eq!(err.to_string(), expected.trim_end());
        assert!(matches!(err, ConfigError::NoMatchingRule { .. }));
    }

    #[test]
    fn vector_09_sops_yml_is_ignored() {
        let dir = vectors().join("09-sops-yaml-config/sops-yml-name");
        assert_eq!(find_config_file(&dir), None);
        assert!(locate(None, &dir).unwrap().is_none());
        let stderr = std::fs::read_to_string(dir.join("encrypt.stderr.txt")).unwrap();
        let logged = format!("{:?}", alternate_warning(".sops.yml", None));
        assert!(stderr.contains(&format!("msg={logged}")), "{stderr}");
    }

    #[test]
    fn vector_10_mac_only_encrypted() {
        let dir = vectors().join("10-mac-only-encrypted");
        let config = locate(Some(Path::new("sops-config.yaml")), &dir)
            .unwrap()
            .unwrap();
        let rule = config.rule_for(&dir.join("mac-only.plain.yaml")).unwrap();
        assert!(rule.mac_only_encrypted);
        assert_eq!(
            rule.selection,
            Some(Selection::EncryptedRegex("^data$".into()))
        );
        assert_eq!(rule.key_groups, vec![group(&[R1])]);
    }

    #[test]
    fn vector_11_key_groups() {
        let dir = vectors().join("11-key-groups-shamir");
        let two = Config::load(&dir.join("sops-config-threshold2.yaml")).unwrap();
        let rule = two.rule_for(&dir.join("kg.plain.yaml")).unwrap();
        assert_eq!(rule.key_groups, vec![group(&[R1]), group(&[R2])]);
        assert_eq!(rule.shamir_threshold, None);
        assert_eq!(rule.selection, None);

        let three = Config::load(&dir.join("sops-config-3groups-threshold2.yaml")).unwrap();
        let rule = three.rule_for(&dir.join("kg.plain.yaml")).unwrap();
        assert_eq!(
            rule.key_groups,
            vec![group(&[R1]), group(&[R2]), group(&[R3])]
        );
        assert_eq!(rule.shamir_threshold, Some(2));
    }

    #[test]
    fn discovery_walks_up_and_ignores_sops_yml() {
        let tmp = tempfile::tempdir().unwrap();
        let deep = tmp.path().join("a/b/c");
        std::fs::create_dir_all(&deep).unwrap();
        assert_eq!(find_config_file(&deep), None);

        std::fs::write(tmp.path().join("a/b/.sops.yml"), "creation_rules: [{}]\n").unwrap();
        assert_eq!(find_config_file(&deep), None);

        let top = tmp.path().join("a/.sops.yaml");
        std::fs::write(&top, "creation_rules:\n  - age: x\n").unwrap();
        assert_eq!(find_config_file(&deep), Some(top.clone()));
        // A cwd with `..` in it is cleaned first.
        assert_eq!(find_config_file(&deep.join("../c/.")), Some(top.clone()));
        assert_eq!(
            alternate_warning("../.sops.yml", Some("../../.sops.yaml")),
            "ignoring \"../.sops.yml\" when searching for config file; the config file must be \
             called \".sops.yaml\"; using \"../../.sops.yaml\" instead"
        );

        // The nearest one wins.
        let near = tmp.path().join("a/b/c/.sops.yaml");
        std::fs::write(&near, "creation_rules: []\n").unwrap();
        assert_eq!(find_config_file(&deep), Some(near));
        // ...and with an empty rule list it is "present", so nothing matches.
        let config = locate(None, &deep).unwrap().unwrap();
        assert!(matches!(
            config.rule_for(&deep.join("f.yaml")),
            Err(ConfigError::NoMatchingRule { .. })
        ));
    }

    #[test]
    fn no_creation_rules_counts_as_absent() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = tmp.path().join(".sops.yaml");
        for text in [
            "",
            "# only a comment\n",
            "stores:\n  yaml:\n    indent: 2\n",
            "creation_rules:\n",
            "destination_rules:\n  - path_regex: x\n",
        ] {
            std::fs::write(&cfg, text).unwrap();
            assert!(locate(None, tmp.path()).unwrap().is_none(), "{text:?}");
            assert!(locate(Some(&cfg), Path::new("/")).unwrap().is_none());
        }
        let loaded = Config::load(&cfg).unwrap();
        assert!(!loaded.has_creation_rules);
        std::fs::write(&cfg, "stores:\n  yaml:\n    indent: 2\n").unwrap();
        assert_eq!(Config::load(&cfg).unwrap().yaml_indent, Some(2));
    }

    #[test]
    fn explicit_missing_file_is_an_error() {
        let err = locate(Some(Path::new("/nonexistent/.sops.yaml")), Path::new("/")).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }));
        assert!(err.to_string().contains("/nonexistent/.sops.yaml"));
    }

    #[test]
    fn two_selection_options_error() {
        let err = parse(
            "creation_rules:\n  - path_regex: a\n    age: x\n  - encrypted_regex: ^data$\n    unencrypted_suffix: _plain\n",
        )
        .unwrap_err();
        assert!(matches!(
            err,
            ConfigError::MultipleSelections { rule: 1, .. }
        ));
        assert_eq!(
            err.to_string(),
            "error loading config: cannot use more than one of encrypted_suffix, \
             unencrypted_suffix, encrypted_regex, unencrypted_regex, encrypted_comment_regex, \
             or unencrypted_comment_regex for the same rule (creation_rules[1] in /repo/.sops.yaml)"
        );
        // An empty string is "not set", as in Go.
        let ok = parse("creation_rules:\n  - encrypted_regex: ''\n    encrypted_suffix: _enc\n")
            .unwrap();
        assert_eq!(
            ok.rules[0].selection,
            Some(Selection::EncryptedSuffix("_enc".into()))
        );
    }

    #[test]
    fn every_selection_option() {
        for (key, want) in [
            (
                "unencrypted_suffix",
                Selection::UnencryptedSuffix("v".into()),
            ),
            ("encrypted_suffix", Selection::EncryptedSuffix("v".into())),
            ("unencrypted_regex", Selection::UnencryptedRegex("v".into())),
            ("encrypted_regex", Selection::EncryptedRegex("v".into())),
            (
                "unencrypted_comment_regex",
                Selection::UnencryptedCommentRegex("v".into()),
            ),
            (
                "encrypted_comment_regex",
                Selection::EncryptedCommentRegex("v".into()),
            ),
        ] {
            let c = parse(&format!("creation_rules:\n  - {key}: v\n")).unwrap();
            assert_eq!(want.key(), key);
            assert_eq!(c.rules[0].selection, Some(want));
        }
    }

    #[test]
    fn invalid_regexes_name_file_and_rule() {
        let err = parse("creation_rules:\n  - age: x\n  - path_regex: '(unclosed'\n").unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(
                err,
                ConfigError::InvalidRegex {
                    rule: 1,
                    field: "path_regex",
                    ..
                }
            ),
            "{msg}"
        );
        assert!(
            msg.contains("creation_rules[1]") && msg.contains("/repo/.sops.yaml"),
            "{msg}"
        );

        let err = parse("creation_rules:\n  - encrypted_regex: '['\n").unwrap_err();
        assert!(matches!(
            err,
            ConfigError::InvalidRegex {
                rule: 0,
                field: "encrypted_regex",
                ..
            }
        ));
        // Suffixes are not regexes.
        assert!(parse("creation_rules:\n  - encrypted_suffix: '['\n").is_ok());
    }

    #[test]
    fn key_field_forms() {
        let c = parse(
            "creation_rules:\n\
             \x20 - age: ' a1 , a2,,a3, '\n\
             \x20 - age: [a1, 'a2,a3', ' a4 ']\n\
             \x20 - age: >-\n      a1,\n      a2\n\
             \x20 - age: a1,a1\n",
        )
        .unwrap();
        assert_eq!(c.rules[0].key_groups, vec![group(&["a1", "a2", "a3"])]);
        assert_eq!(
            c.rules[1].key_groups,
            vec![group(&["a1", "a2", "a3", "a4"])]
        );
        assert_eq!(c.rules[2].key_groups, vec![group(&["a1", "a2"])]);
        // Top-level lists are not de-duplicated (sops wraps the key twice).
        assert_eq!(c.rules[3].key_groups, vec![group(&["a1", "a1"])]);
    }

    #[test]
    fn non_age_keys_are_reported_not_rejected() {
        let c = parse(
            "creation_rules:\n\
             \x20 - pgp: 'FP1,FP2'\n\
             \x20   kms: arn:aws:kms:1\n\
             \x20   gcp_kms: [projects/p/key]\n\
             \x20   azure_keyvault: https://v.vault.azure.net/keys/k/1\n\
             \x20   hc_vault_transit_uri: https://vault/v1/transit/keys/k\n\
             \x20   hckms: [region:id]\n\
             \x20   age: a1\n\
             \x20 - key_groups:\n\
             \x20     - kms:\n\
             \x20         - arn: arn:aws:kms:2\n\
             \x20           role: r\n\
             \x20           context: {a: b}\n\
             \x20       gcp_kms: [{resource_id: projects/q}]\n\
             \x20       azure_keyvault: [{vaultUrl: 'https://v/', key: k, version: '1'}]\n\
             \x20       hc_vault: [https://vault/x]\n\
             \x20       hckms: [{key_id: 'r:i'}]\n\
             \x20       pgp: [FP3]\n",
        )
        .unwrap();
        let g = &c.rules[0].key_groups[0];
        assert_eq!(g.age, ["a1"]);
        assert_eq!(g.pgp, ["FP1", "FP2"]);
        assert_eq!(
            g.other,
            [
                "kms:arn:aws:kms:1",
                "gcp_kms:projects/p/key",
                "hckms:region:id",
                "azure_keyvault:https://v.vault.azure.net/keys/k/1",
                "hc_vault:https://vault/v1/transit/keys/k",
            ]
        );
        let g = &c.rules[1].key_groups[0];
        assert!(g.age.is_empty());
        assert_eq!(g.pgp, ["FP3"]);
        assert_eq!(
            g.other,
            [
                "kms:arn:aws:kms:2+r",
                "gcp_kms:projects/q",
                "hckms:r:i",
                "azure_keyvault:https://v/keys/k/1",
                "hc_vault:https://vault/x",
            ]
        );
        assert!(c.rules[1].has_keys());
    }

    #[test]
    fn key_groups_merge_dedup_and_override_top_level() {
        let c = parse(
            "creation_rules:\n\
             \x20 - age: top-level-ignored\n\
             \x20   shamir_threshold: 2\n\
             \x20   key_groups:\n\
             \x20     - merge:\n\
             \x20         - age: [a1, a2]\n\
             \x20         - age: [a2, a3]\n\
             \x20           merge:\n\
             \x20             - age: [a4]\n\
             \x20       age: [a1, a5]\n\
             \x20     - age: [b1, b1]\n\
             \x20 - age: t1\n\
             \x20   key_groups: []\n",
        )
        .unwrap();
        assert_eq!(
            c.rules[0].key_groups,
            vec![group(&["a1", "a2", "a4", "a3", "a5"]), group(&["b1"])]
        );
        assert_eq!(c.rules[0].shamir_threshold, Some(2));
        // An empty key_groups list falls back to the top-level keys.
        assert_eq!(c.rules[1].key_groups, vec![group(&["t1"])]);
    }

    #[test]
    fn rule_without_keys_is_one_empty_group() {
        let c = parse("creation_rules:\n  - path_regex: x\n    shamir_threshold: 0\n").unwrap();
        assert_eq!(c.rules[0].key_groups, vec![KeyGroupSpec::default()]);
        assert!(!c.rules[0].has_keys());
        assert_eq!(c.rules[0].shamir_threshold, None);
    }

    #[test]
    fn stores_and_unknown_keys() {
        let c = parse(
            "unknown_top: 1\n\
             stores:\n  yaml:\n    indent: 2\n  json:\n    indent: -1\n  json_binary:\n    indent: 3\n  dotenv: {}\n\
             creation_rules:\n  - age: a1\n    timeout: 5s\n    whatever: [1, 2]\n    aws_profile: p\n",
        )
        .unwrap();
        assert_eq!(c.yaml_indent, Some(2));
        assert_eq!(c.json_indent, None);
        assert_eq!(c.json_binary_indent, Some(3));
        assert_eq!(c.rules[0].key_groups, vec![group(&["a1"])]);
        assert!(c.has_creation_rules);
    }

    #[test]
    fn anchors_aliases_and_merge_keys() {
        // The common layout: recipients declared once under an ignored `keys:`.
        let c = parse(
            "keys:\n  - &admin a1\n  - &ci a2\n\
             defaults: &defaults\n  encrypted_regex: ^data$\n\
             creation_rules:\n\
             \x20 - path_regex: x\n    <<: *defaults\n    age: [*admin, *ci]\n\
             \x20 - key_groups:\n      - age: [*admin]\n",
        )
        .unwrap();
        assert_eq!(c.rules[0].key_groups, vec![group(&["a1", "a2"])]);
        assert_eq!(
            c.rules[0].selection,
            Some(Selection::EncryptedRegex("^data$".into()))
        );
        assert_eq!(c.rules[1].key_groups, vec![group(&["a1"])]);
    }

    #[test]
    fn malformed_yaml_names_the_file() {
        let err = parse("creation_rules: [\n").unwrap_err();
        assert!(matches!(err, ConfigError::Parse { .. }));
        assert!(err.to_string().contains("/repo/.sops.yaml"));
        assert!(parse("creation_rules:\n  - age: {not: valid}\n").is_err());
    }

    #[test]
    fn path_matching_is_relative_and_unanchored() {
        let c = parse(
            "creation_rules:\n\
             \x20 - path_regex: ^secrets/\n    age: rel\n\
             \x20 - path_regex: ^/elsewhere/\n    age: abs\n\
             \x20 - path_regex: prod\n    age: unanchored\n",
        )
        .unwrap();
        let age = |p: &str| {
            c.rule_for(Path::new(p))
                .map(|r| r.key_groups[0].age[0].clone())
        };
        assert_eq!(age("/repo/secrets/x.yaml").unwrap(), "rel");
        assert_eq!(age("/repo/sub/../secrets/x.yaml").unwrap(), "rel");
        // Outside the config dir the absolute path is matched.
        assert_eq!(age("/elsewhere/secrets/x.yaml").unwrap(), "abs");
        assert_eq!(age("/reproduction/secrets/x.yaml").unwrap(), "unanchored");
        assert_eq!(age("/repo/a/production.yaml").unwrap(), "unanchored");
        assert!(matches!(
            age("/repo/dev.yaml"),
            Err(ConfigError::NoMatchingRule { .. })
        ));

        // A config at the filesystem root never strips (sops strips "//").
        let root = Config::parse(
            "creation_rules:\n  - path_regex: ^/x\n",
            PathBuf::from("/.sops.yaml"),
        )
        .unwrap();
        assert!(root.rule_for(Path::new("/x/y.yaml")).is_ok());
    }
}
