//! Which recipients a SOPS file is encrypted to, decided without trusting the file.
//!
//! The `recipient` entries in a file's `sops` block are not authenticated: the MAC
//! covers the values only, so anyone who can write the file can add an `age1…` entry.
//! Wrapping a new data key for "whatever the file lists" would hand every future key to
//! such an entry. Where a `.sops.yaml` creation rule covers the file, the rule decides.

use std::collections::BTreeSet;
use std::path::Path;

use crate::crypto::age_keys::{AgeRecipient, KeyError};
use crate::sops::config::{Config, CreationRule};
use crate::sops::metadata::Metadata;

/// Why a recipient listed in the file is not wrapped for any more.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// Named with `--rm-age`.
    Removed,
    /// Listed in the file but not in the `.sops.yaml` rule that covers it.
    NotInRule,
}

/// The recipients to wrap a data key for, and what that drops from the file's list.
#[derive(Clone, Debug)]
pub struct RecipientPlan {
    pub groups: Vec<Vec<AgeRecipient>>,
    pub dropped: Vec<(String, DropReason)>,
    /// True when the groups come from a `.sops.yaml` rule, false when from the file's
    /// own (unauthenticated) metadata.
    pub from_rule: bool,
}

/// The age recipients of a creation rule, one list per key group (other key types are
/// ignored here; callers that must wrap for them refuse such rules).
pub fn rule_age_groups(rule: &CreationRule) -> Result<Vec<Vec<AgeRecipient>>, KeyError> {
    rule.key_groups
        .iter()
        .map(|g| g.age.iter().map(|r| AgeRecipient::parse(r)).collect())
        .collect()
}

/// The age recipients the file's metadata lists, one list per key group.
pub fn file_age_groups(meta: &Metadata) -> Result<Vec<Vec<AgeRecipient>>, KeyError> {
    meta.key_groups
        .iter()
        .map(|g| {
            g.age
                .iter()
                .map(|k| AgeRecipient::parse(&k.recipient))
                .collect()
        })
        .collect()
}

/// Recipient text as compared: parsed and trimmed where possible.
fn normalised(text: &str) -> String {
    AgeRecipient::parse(text)
        .map(|r| r.text)
        .unwrap_or_else(|_| text.trim().to_owned())
}

/// Plans `rotate` / `updatekeys`: the rule's groups when `rule_groups` is given, else
/// the file's; `add` joins the first group, `rm` leaves every group. Every recipient of
/// the file that is not wrapped for afterwards is reported in `dropped`.
pub fn plan(
    meta: &Metadata,
    rule_groups: Option<Vec<Vec<AgeRecipient>>>,
    add: &[AgeRecipient],
    rm: &[AgeRecipient],
) -> Result<RecipientPlan, KeyError> {
    let from_rule = rule_groups.is_some();
    let mut groups = match rule_groups {
        Some(g) => g,
        None => file_age_groups(meta)?,
    };
    let removed: BTreeSet<String> = rm.iter().map(|r| r.text.clone()).collect();
    for g in groups.iter_mut() {
        g.retain(|r| !removed.contains(&r.text));
    }
    if groups.is_empty() {
        groups.push(Vec::new());
    }
    for r in add {
        if !groups.iter().flatten().any(|x| x.text == r.text) {
            groups[0].push(r.clone());
        }
    }
    let kept: BTreeSet<String> = groups.iter().flatten().map(|r| r.text.clone()).collect();
    let mut dropped = Vec::new();
    for text in meta.age_recipients().map(normalised) {
        if kept.contains(&text) || dropped.iter().any(|(t, _)| *t == text) {
            continue;
        }
        let reason = if removed.contains(&text) {
            DropReason::Removed
        } else {
            DropReason::NotInRule
        };
        dropped.push((text, reason));
    }
    Ok(RecipientPlan {
        groups,
        dropped,
        from_rule,
    })
}

/// How a file's listed recipients differ from its creation rule's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuleMismatch {
    /// Listed in the file, not in the rule (possibly injected).
    pub extra: Vec<String>,
    /// In the rule, not listed in the file (not re-keyed since the rule changed).
    pub missing: Vec<String>,
}

impl std::fmt::Display for RuleMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SOPS recipients differ from the .sops.yaml creation rule")?;
        if !self.extra.is_empty() {
            write!(f, "; not in the rule: {}", self.extra.join(", "))?;
        }
        if !self.missing.is_empty() {
            write!(f, "; missing: {}", self.missing.join(", "))?;
        }
        f.write_str(
            " (run `lockstep updatekeys` to wrap for the rule's recipients, then `lockstep rotate` if a recipient must lose access)",
        )
    }
}

/// Compares the age recipients a file lists with those of its rule (as sets over all
/// key groups). `None` when they agree or the rule lists no age key.
pub fn compare_with_rule(meta: &Metadata, rule: &CreationRule) -> Option<RuleMismatch> {
    let wanted: BTreeSet<String> = rule
        .key_groups
        .iter()
        .flat_map(|g| g.age.iter())
        .map(|r| normalised(r))
        .collect();
    if wanted.is_empty() {
        return None;
    }
    let listed: BTreeSet<String> = meta.age_recipients().map(normalised).collect();
    let m = RuleMismatch {
        extra: listed.difference(&wanted).cloned().collect(),
        missing: wanted.difference(&listed).cloned().collect(),
    };
    (!m.extra.is_empty() || !m.missing.is_empty()).then_some(m)
}

/// For `check`: whether the SOPS file at `path` (already read as `bytes`) lists other
/// recipients than the `.sops.yaml` rule covering it. `None` for files that are not
/// SOPS files or that no rule covers.
pub fn check_file_against_config(
    config: &Config,
    path: &Path,
    bytes: &[u8],
) -> Option<RuleMismatch> {
    let format = match crate::sops::Format::for_path(path) {
        crate::sops::Format::Binary => crate::sops::Format::Json,
        f => f,
    };
    let file = crate::sops::load_encrypted(bytes, format).ok()?;
    let rule = config.rule_for(path).ok()?;
    compare_with_rule(&file.metadata, rule)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sops::config::KeyGroupSpec;
    use crate::sops::metadata::{AgeKey, KeyGroup};

    fn recipient() -> String {
        crate::crypto::age_keys::generate().recipient
    }

    fn meta(recipients: &[&str]) -> Metadata {
        Metadata {
            shamir_threshold: 0,
            key_groups: vec![KeyGroup {
                age: recipients
                    .iter()
                    .map(|r| AgeKey {
                        recipient: (*r).to_owned(),
                        enc: String::new(),
                    })
                    .collect(),
                other: Vec::new(),
            }],
            lastmodified: String::new(),
            mac: String::new(),
            selection: None,
            mac_only_encrypted: false,
            version: "3.11.0".into(),
        }
    }

    fn rule(recipients: &[&str]) -> CreationRule {
        CreationRule {
            key_groups: vec![KeyGroupSpec {
                age: recipients.iter().map(|r| (*r).to_owned()).collect(),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn a_rule_decides_and_injected_recipients_are_reported_dropped() {
        let (owner, injected, added) = (recipient(), recipient(), recipient());
        let m = meta(&[&owner, &injected]);
        let r = rule(&[&owner]);
        let add = [AgeRecipient::parse(&added).unwrap()];
        let p = plan(&m, Some(rule_age_groups(&r).unwrap()), &add, &[]).unwrap();
        let texts: Vec<&str> = p.groups[0].iter().map(|r| r.text.as_str()).collect();
        assert_eq!(texts, vec![owner.as_str(), added.as_str()]);
        assert_eq!(p.dropped, vec![(injected.clone(), DropReason::NotInRule)]);
        assert!(p.from_rule);

        let mismatch = compare_with_rule(&m, &r).unwrap();
        assert_eq!(mismatch.extra, vec![injected]);
        assert!(mismatch.missing.is_empty());
        assert!(compare_with_rule(&meta(&[&owner]), &r).is_none());
    }

    #[test]
    fn without_a_rule_the_file_list_is_used_and_removals_are_named() {
        let (a, b) = (recipient(), recipient());
        let m = meta(&[&a, &b]);
        let rm = [AgeRecipient::parse(&b).unwrap()];
        let p = plan(&m, None, &[], &rm).unwrap();
        assert!(!p.from_rule);
        assert_eq!(p.groups[0].len(), 1);
        assert_eq!(p.groups[0][0].text, a);
        assert_eq!(p.dropped, vec![(b, DropReason::Removed)]);
    }
}
