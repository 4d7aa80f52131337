//! `lockstep check`: the pre-commit gate. Reports plaintext Secrets, files that do not
//! parse, SOPS files whose MAC fails (when an identity is at hand) and policy violations,
//! each as `file:line: message`. Exit status 1 when anything is found.

use std::path::{Path, PathBuf};

use lockstep::check::{self, Finding};
use lockstep::policy::PolicySet;

use super::common::{self, CliError, CliResult, Context};

#[derive(clap::Args, Debug)]
#[command(after_help = r#"Examples:
  lockstep check examples/apps/payments examples/apps/billing
  lockstep check --policy policies/tenant-baseline.yaml examples/apps/ \
    || echo "exit status $?: the rogue app breaks the policy"
  # also verifies SOPS MACs:
  SOPS_AGE_KEY_FILE=keys-example/sops.agekey lockstep check examples/apps

As a pre-commit hook: see .pre-commit-hooks.yaml (id: lockstep-check)."#)]
pub struct Args {
    /// Files or directories to check.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Policy files or directories to check objects against.
    #[arg(long, value_name = "DIR")]
    policy: Vec<PathBuf>,
}

pub fn run(ctx: &Context, a: Args) -> CliResult {
    let policies = PolicySet::load(&a.policy).map_err(|e| CliError::new(2, e.to_string()))?;
    let (ids, _) = common::identities(ctx);
    let files = lockstep::manifest::manifest_files(&a.paths)
        .map_err(|e| CliError::new(2, e.to_string()))?;
    let mut findings: Vec<Finding> = Vec::new();
    // Kustomizations must build; the patch files they read are checked by that build.
    let mut patch_files = Vec::new();
    for f in &files {
        if f.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| lockstep::kustomize::KUSTOMIZATION_FILES.contains(&n))
            && let Some(dir) = f.parent()
        {
            let (found, patches) = check::check_kustomization(dir);
            findings.extend(found);
            patch_files.extend(patches.iter().filter_map(|p| p.canonicalize().ok()));
        }
    }
    // With a .sops.yaml, SOPS files whose recipients differ from their rule are findings.
    let sops_config = common::load_config(ctx).ok().flatten();
    for f in &files {
        let policy_files: Vec<&Path> = policies.policies.iter().map(|p| p.file.as_path()).collect();
        if policy_files.contains(&f.as_path())
            || f.canonicalize().is_ok_and(|c| patch_files.contains(&c))
        {
            continue;
        }
        match std::fs::read(f) {
            Ok(bytes) => {
                findings.extend(check::check_file(
                    f,
                    &bytes,
                    (!ids.is_empty()).then_some(&ids),
                    &policies,
                ));
                if let Some(m) = sops_config.as_ref().and_then(|c| {
                    lockstep::sops::recipients::check_file_against_config(c, f, &bytes)
                }) {
                    findings.push(Finding {
                        file: f.clone(),
                        line: 1,
                        message: m.to_string(),
                    });
                }
            }
            Err(e) => findings.push(Finding {
                file: f.clone(),
                line: 1,
                message: e.to_string(),
            }),
        }
    }
    let mut out = String::new();
    for f in &findings {
        out.push_str(&format!("{f}\n"));
    }
    common::write_stdout(out.as_bytes())?;
    if findings.is_empty() {
        Ok(())
    } else {
        Err(CliError::new(
            1,
            format!(
                "{} finding(s) in {} file(s) checked",
                findings.len(),
                files.len()
            ),
        ))
    }
}
