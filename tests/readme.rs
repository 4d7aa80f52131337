//! Every shell block of the documentation runs as written (tests/support/docs.rs says how),
//! and the output shown after a block is what it prints. A block that cannot run here
//! carries `<!-- not run: REASON -->` on the line before its fence.

#[path = "support/docs.rs"]
mod docs;

use std::path::Path;

fn check(doc: &str, min_blocks: usize) {
    let work = tempfile::Builder::new()
        .prefix("lockstep-docs-")
        .tempdir()
        .unwrap();
    let cluster = docs::Cluster::start(work.path());
    let (failures, ran) = docs::run_document(doc, work.path(), &cluster.kubeconfig);
    assert!(
        failures.is_empty(),
        "{} problem(s) in {doc}:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    // Guards against a parser change that silently finds nothing to run (unless only some
    // sections were asked for with DOCS_SECTION).
    assert!(
        std::env::var_os("DOCS_SECTION").is_some() || ran >= min_blocks,
        "{doc}: only {ran} block(s) ran, expected at least {min_blocks}"
    );
}

#[test]
fn readme() {
    check("README.md", 10);
}

#[test]
fn examples_readme() {
    check("examples/README.md", 2);
}

#[test]
fn install_guide() {
    check("docs/install.md", 5);
}

#[test]
fn security_md() {
    check("SECURITY.md", 3);
}

#[test]
fn devcluster_readme() {
    check("devcluster/README.md", 0);
}

#[test]
fn keys_example_readme() {
    check("keys-example/README.md", 0);
}

#[test]
fn blocks_are_found_and_markers_read() {
    let text = "# T\n\n## A\n\n```sh\necho hi\n```\n\n```text\nhi\n```\n\n<!-- not run: needs a Git host -->\n```sh\ngit push\n```\n\n```\nbare\n```\n";
    let (blocks, problems) = docs::blocks(text);
    assert_eq!(blocks.len(), 4);
    assert_eq!(blocks[0].section, "A");
    assert_eq!(blocks[0].line, 5);
    assert_eq!(blocks[0].code, "echo hi\n");
    assert_eq!(blocks[2].not_run.as_deref(), Some("needs a Git host"));
    assert_eq!(blocks[1].not_run, None);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].starts_with("line 18:"), "{problems:?}");
}

#[test]
fn output_comparison_ignores_what_varies_and_nothing_else() {
    let shown = "pushed commit 007ea3eb8c55: applied in 0.1 s\nat https://127.0.0.1:41327\nPolicyDenied: x: ...\n";
    let printed = "pushed commit 9a1b2c3d4e5f: applied in 2.35 s\nat https://127.0.0.1:6443\nPolicyDenied: x: the rest\n";
    assert_eq!(docs::compare(shown, printed), Ok(()));
    assert!(docs::compare(shown, "pushed commit 9a1b2c3d4e5f: failed\n").is_err());
    assert!(docs::compare("a\n", "a\nb\n").is_err());
    assert!(docs::compare("a\nb\n", "a\n").is_err());
}

#[test]
fn a_failing_block_is_reported_with_its_place_and_output_and_background_jobs_stop() {
    let work = tempfile::tempdir().unwrap();
    let doc = work.path().join("doc.md");
    std::fs::write(
        &doc,
        "# Doc\n\n## One\n\n```sh\nsleep 300 &\necho $! > \"$HOME/bg.pid\"\n```\n\n```sh\necho printed-before\nlockstep decrypt no-such-file.yaml\necho never\n```\n\n## Two\n\n```sh\necho two\n```\n\n```text\nthree\n```\n",
    )
    .unwrap();
    let kubeconfig = work.path().join("none.kubeconfig");
    let (failures, ran) = docs::run_document(doc.to_str().unwrap(), work.path(), &kubeconfig);
    assert_eq!(ran, 3);
    assert_eq!(failures.len(), 2, "{failures:#?}");
    let f = &failures[0];
    assert!(f.contains("doc.md:10 (section \"One\")"), "{f}");
    assert!(f.contains("lockstep decrypt no-such-file.yaml"), "{f}");
    assert!(f.contains("printed-before"), "{f}");
    assert!(
        f.contains("no-such-file.yaml:"),
        "the command's stderr: {f}"
    );
    assert!(!f.contains("\nnever"), "{f}");
    assert!(
        failures[1].contains("doc.md:18 (section \"Two\")"),
        "{}",
        failures[1]
    );
    assert!(
        failures[1].contains("shown \"three\", printed \"two\""),
        "{}",
        failures[1]
    );
    // The failing section's scratch directory is kept for the report; its background job
    // was stopped with the section.
    let pid = std::fs::read_to_string(work.path().join("s0/home/bg.pid")).unwrap();
    let proc_dir = format!("/proc/{}", pid.trim());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while Path::new(&proc_dir).exists()
        && !std::fs::read_to_string(format!("{proc_dir}/stat")).is_ok_and(|s| s.contains(") Z "))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the background job still runs"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The benchmarks take minutes, so they are not run here; instead the header of every
/// README table marked `<!-- printed by: FILE -->` must be one that FILE prints (a row
/// template in its source; `{}`, `$(...)`, `${...}` and `$VAR` stand for any text).
#[test]
fn benchmark_table_headers_are_what_the_benchmarks_print() {
    let readme = std::fs::read_to_string(docs::repo_root().join("README.md")).unwrap();
    let squash = |l: &str| l.split_whitespace().collect::<Vec<_>>().join(" ");
    let placeholder =
        regex::Regex::new(r"\\\{[^}]*\\\}|\\\$\\\([^)]*\\\)|\\\$\\\{[^}]*\\\}|\\\$[A-Za-z_]+")
            .unwrap();
    let mut lines = readme.lines().enumerate();
    let mut checked = 0;
    while let Some((n, line)) = lines.next() {
        let Some(file) = line
            .trim()
            .strip_prefix("<!-- printed by:")
            .and_then(|r| r.strip_suffix("-->"))
        else {
            continue;
        };
        let file = file.trim();
        let (_, header) = lines
            .find(|(_, l)| l.starts_with('|'))
            .unwrap_or_else(|| panic!("README.md:{}: no table after the marker", n + 1));
        let source = std::fs::read_to_string(docs::repo_root().join(file))
            .unwrap_or_else(|e| panic!("README.md:{}: {file}: {e}", n + 1));
        // Row templates: what a source line prints between its first "| and last |".
        let templates: Vec<String> = source
            .lines()
            .filter_map(|l| {
                let start = l.find("\"|")? + 1;
                let end = l.rfind("|\"")? + 1;
                (end > start).then(|| squash(&l[start..end].replace("\\\\", "\\")))
            })
            .collect();
        let header = squash(header);
        let matches = templates.iter().any(|t| {
            let pattern = placeholder
                .replace_all(&regex::escape(t), ".*")
                .into_owned();
            regex::Regex::new(&format!("^{pattern}$"))
                .unwrap()
                .is_match(&header)
        });
        assert!(
            matches,
            "README.md:{}: the table header\n  {header}\nis not one {file} prints; it prints:\n  {}",
            n + 1,
            templates.join("\n  ")
        );
        checked += 1;
    }
    assert!(checked >= 5, "only {checked} benchmark tables are marked");
}

/// A new Markdown file with commands in it is not left out of the tests above.
#[test]
fn every_markdown_document_is_checked() {
    let checked = [
        "README.md",
        "SECURITY.md",
        "docs/install.md",
        "examples/README.md",
        "keys-example/README.md",
        "devcluster/README.md",
        // Describes test vectors; its blocks are file listings, never commands.
        "tests/vectors/sops/README.md",
    ];
    let out = std::process::Command::new("git")
        .args(["ls-files", "*.md"])
        .current_dir(docs::repo_root())
        .output()
        .unwrap();
    assert!(out.status.success());
    let listed = String::from_utf8(out.stdout).unwrap();
    let missing: Vec<&str> = listed.lines().filter(|f| !checked.contains(f)).collect();
    assert!(
        missing.is_empty(),
        "Markdown files not run by tests/readme.rs: {missing:?} (add a test for each)"
    );
    let (blocks, _) = docs::blocks(
        &std::fs::read_to_string(docs::repo_root().join("tests/vectors/sops/README.md")).unwrap(),
    );
    assert!(
        blocks.iter().all(|b| !docs::is_shell(&b.lang)),
        "tests/vectors/sops/README.md has shell blocks now: run it like the others"
    );
}
