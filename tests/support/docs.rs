//! Runs the shell blocks of a Markdown document as a newcomer would type them.
//!
//! The document is read with pulldown-cmark (a real CommonMark parser, so fences, indented
//! blocks and HTML comments are found as a renderer sees them). Every fenced block must name
//! its language. A block in `sh`, `bash` or `shell` runs unless the line right before its
//! fence is `<!-- not run: REASON -->`. Blocks run in document order, each `##` section in one
//! `bash -euo pipefail` session (variables set by one block are seen by the next) inside a
//! fresh scratch copy of the repository's example trees, with `lockstep` (the binary cargo
//! built for this test) and `.tools/bin` first on PATH, and HOME, the XDG directories and
//! TMPDIR inside the scratch directory. `cargo run --release -- ARGS` is mapped to the built
//! `lockstep ARGS`, so the test never starts a release build. A ```text block that follows a
//! shell block in the same section (prose in between is fine) is that block's expected output:
//! compared line by line with what it printed (stdout and stderr together), after both sides
//! are normalised (hashes, durations, ports, temporary paths), `...` standing for any text.
//! Processes a block leaves in the background (a server started with `&`) are stopped when
//! its section ends.
//!
//! Included with `#[path]` by tests/readme.rs and tests/help_examples.rs, each of which uses
//! only part of it.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pulldown_cmark::{CodeBlockKind, Event, HeadingLevel, Parser, Tag, TagEnd};

/// One fenced block of a document.
#[derive(Debug, Clone)]
pub struct Block {
    /// 1-based line of the opening fence.
    pub line: usize,
    /// The `##` section it is in (the document title before the first one).
    pub section: String,
    pub lang: String,
    pub code: String,
    /// Set by `<!-- not run: REASON -->` on the line before the fence.
    pub not_run: Option<String>,
}

/// The shell languages that are run.
pub fn is_shell(lang: &str) -> bool {
    matches!(lang, "sh" | "bash" | "shell")
}

/// Every fenced or indented code block of `text`, with the problems found in the markup
/// itself (a fence without a language, a `not run` marker without a reason).
pub fn blocks(text: &str) -> (Vec<Block>, Vec<String>) {
    let mut out = Vec::new();
    let mut problems = Vec::new();
    let mut section = String::new();
    let mut heading: Option<(HeadingLevel, String)> = None;
    let mut current: Option<Block> = None;
    let line_of = |offset: usize| text[..offset].bytes().filter(|&b| b == b'\n').count() + 1;
    for (event, range) in Parser::new(text).into_offset_iter() {
        match event {
            Event::Start(Tag::Heading { level, .. }) => heading = Some((level, String::new())),
            Event::End(TagEnd::Heading(_)) => {
                if let Some((level, title)) = heading.take()
                    && level <= HeadingLevel::H2
                {
                    section = title;
                }
            }
            Event::Start(Tag::CodeBlock(kind)) => {
                let line = line_of(range.start);
                let lang = match kind {
                    CodeBlockKind::Fenced(info) => {
                        let lang = info.split([' ', ',']).next().unwrap_or("").to_owned();
                        if lang.is_empty() {
                            problems.push(format!(
                                "line {line}: a fenced block without a language (use text for output)"
                            ));
                        }
                        lang
                    }
                    CodeBlockKind::Indented => {
                        problems.push(format!(
                            "line {line}: an indented code block (use a fence with a language)"
                        ));
                        String::new()
                    }
                };
                let not_run = marker_before(text, range.start);
                if let Some(reason) = &not_run
                    && reason.is_empty()
                {
                    problems.push(format!("line {line}: `not run` without a reason"));
                }
                current = Some(Block {
                    line,
                    section: section.clone(),
                    lang,
                    code: String::new(),
                    not_run,
                });
            }
            Event::End(TagEnd::CodeBlock) => out.extend(current.take()),
            Event::Text(t) | Event::Code(t) => {
                if let Some(b) = current.as_mut() {
                    b.code.push_str(&t);
                } else if let Some((_, title)) = heading.as_mut() {
                    title.push_str(&t);
                }
            }
            _ => {}
        }
    }
    (out, problems)
}

/// The reason of a `<!-- not run: REASON -->` line directly above the fence at `start`.
fn marker_before(text: &str, start: usize) -> Option<String> {
    let before = text[..start].trim_end_matches([' ', '\t']);
    let before = before.strip_suffix('\n')?;
    let prev = before.rsplit('\n').next()?.trim();
    let inner = prev.strip_prefix("<!--")?.strip_suffix("-->")?.trim();
    let reason = inner.strip_prefix("not run:")?;
    Some(reason.trim().to_owned())
}

/// The directories of the repository a document's blocks may use, copied into each scratch
/// directory (never the build output or the tools).
pub const TREES: &[&str] = &[
    "examples",
    "keys-example",
    "policies",
    "deploy",
    "docs",
    "tests/kustomize",
];

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Copies the example trees into `dir` and makes it a Git work tree, as a clone is (some
/// commands find their root that way).
pub fn scratch_copy(dir: &Path) {
    for t in TREES {
        let from = repo_root().join(t);
        if from.exists() {
            copy_tree(&from, &dir.join(t));
        }
    }
    let st = Command::new("git")
        .args(["init", "-q"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "git init in {}", dir.display());
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let ty = e.file_type().unwrap();
        let dest = to.join(e.file_name());
        if ty.is_dir() {
            copy_tree(&e.path(), &dest);
        } else if ty.is_file() {
            std::fs::copy(e.path(), &dest).unwrap();
        }
    }
}

/// PATH for the blocks: the built lockstep, the tools, then the system's.
pub fn tool_path() -> String {
    let bin = Path::new(env!("CARGO_BIN_EXE_lockstep"));
    format!(
        "{}:{}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        bin.parent().unwrap().display(),
        repo_root().join(".tools/bin").display()
    )
}

/// A command with a clean environment rooted in `dir`: HOME, XDG dirs and TMPDIR inside it,
/// no identity or editor variables from the developer's shell.
pub fn clean_command(program: &str, dir: &Path) -> Command {
    let home = dir.join("home");
    let tmp = dir.join("tmp");
    for d in [
        home.clone(),
        home.join(".config"),
        home.join(".local/share"),
        home.join(".cache"),
        tmp.clone(),
    ] {
        std::fs::create_dir_all(&d).unwrap();
    }
    let mut cmd = Command::new(program);
    cmd.current_dir(dir)
        .env_clear()
        .env("PATH", tool_path())
        .env("HOME", &home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("XDG_DATA_HOME", home.join(".local/share"))
        .env("XDG_CACHE_HOME", home.join(".cache"))
        .env("TMPDIR", &tmp)
        .env("LANG", "C.UTF-8")
        .env("SOPS_DISABLE_VERSION_CHECK", "1")
        .stdin(Stdio::null());
    cmd
}

/// A devcluster started by `lockstep devcluster` for the blocks that need a cluster.
pub struct Cluster {
    child: std::process::Child,
    pub kubeconfig: PathBuf,
}

impl Cluster {
    pub fn start(dir: &Path) -> Cluster {
        let kubeconfig = dir.join("cluster.kubeconfig");
        let log = std::fs::File::create(dir.join("cluster.log")).unwrap();
        let child = clean_command(env!("CARGO_BIN_EXE_lockstep"), dir)
            .args(["devcluster", "--kubeconfig"])
            .arg(&kubeconfig)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !kubeconfig.exists() {
            assert!(Instant::now() < deadline, "devcluster did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Cluster { child, kubeconfig }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The start of every script the tests run: strict bash, and `cargo run --release -- ARGS`
/// mapped to the lockstep binary cargo built for the test, so no release build is started.
pub const PRELUDE: &str = r#"set -euo pipefail
cargo() {
  if [ "${1-}" = run ] && [ "${2-}" = --release ] && [ "${3-}" = -- ]; then
    shift 3; command lockstep "$@"
  else echo "cargo $*: not run by the documentation tests" >&2; return 97; fi
}
"#;

/// Stops what a script left running: everything in the process group its shell led
/// (spawned with `process_group(0)`).
pub fn stop_group(pgid: u32) {
    // SAFETY: kill(2) with a negative pid signals that process group; no memory is shared.
    unsafe {
        libc::kill(-(pgid as libc::pid_t), libc::SIGTERM);
    }
}

/// What a section's run left for the report.
struct BlockRun<'a> {
    block: &'a Block,
    expected: Option<&'a Block>,
}

/// Runs every shell block of `doc` (a path relative to the repository root) and returns a
/// report of every failure (empty when all ran and matched), plus the number of blocks run.
pub fn run_document(doc: &str, work: &Path, kubeconfig: &Path) -> (Vec<String>, usize) {
    // A relative path is taken from the repository root (an absolute one as it is).
    let text = std::fs::read_to_string(repo_root().join(doc)).unwrap();
    let (all, problems) = blocks(&text);
    let mut failures: Vec<String> = problems.iter().map(|p| format!("{doc}: {p}")).collect();
    // Group by section, pairing each shell block with the text block after it.
    let mut sections: Vec<(String, Vec<BlockRun>)> = Vec::new();
    for b in &all {
        if sections.last().map(|s| &s.0) != Some(&b.section) {
            sections.push((b.section.clone(), Vec::new()));
        }
        let runs = &mut sections.last_mut().unwrap().1;
        if is_shell(&b.lang) {
            // A block that is not run stays in the list, so that a text block after it is
            // not taken for the output of an earlier one.
            runs.push(BlockRun {
                block: b,
                expected: None,
            });
        } else if b.lang == "text"
            && let Some(last) = runs.last_mut()
            && last.expected.is_none()
            && last.block.not_run.is_none()
        {
            last.expected = Some(b);
        } else if b.not_run.is_some() {
            failures.push(format!(
                "{doc}:{}: a `not run` marker on a {} block, which is never run",
                b.line, b.lang
            ));
        }
    }
    let mut ran = 0;
    // DOCS_SECTION=WORDS runs only the sections whose title contains WORDS (while editing).
    let only = std::env::var("DOCS_SECTION").ok();
    for (i, (section, runs)) in sections.iter().enumerate() {
        if only.as_ref().is_some_and(|o| !section.contains(o.as_str())) {
            continue;
        }
        let runnable: Vec<&BlockRun> = runs.iter().filter(|r| r.block.not_run.is_none()).collect();
        if runnable.is_empty() {
            continue;
        }
        let dir = work.join(format!("s{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        scratch_copy(&dir);
        ran += runnable.len();
        let found = run_section(doc, section, &runnable, &dir, kubeconfig);
        // A failing section's scratch directory stays (inside the test's temporary
        // directory) until the test ends; a passing one is not needed.
        if found.is_empty() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        failures.extend(found);
    }
    (failures, ran)
}

/// The section's limit: long enough for the quickstart on a busy machine.
const SECTION_TIMEOUT: Duration = Duration::from_secs(150);

fn run_section(
    doc: &str,
    section: &str,
    runs: &[&BlockRun],
    dir: &Path,
    kubeconfig: &Path,
) -> Vec<String> {
    let meta = dir.join(".docblocks");
    std::fs::create_dir_all(&meta).unwrap();
    let mut script = String::from(PRELUDE);
    for (n, r) in runs.iter().enumerate() {
        std::fs::write(meta.join(format!("b{n}.sh")), &r.block.code).unwrap();
        writeln!(
            script,
            "echo {n} > .docblocks/current\n{{ source .docblocks/b{n}.sh; }} > .docblocks/out{n} 2>&1 </dev/null"
        )
        .unwrap();
    }
    script.push_str("echo done > .docblocks/current\n");
    std::fs::write(meta.join("section.sh"), script).unwrap();

    let started = Instant::now();
    let mut child = clean_command("bash", dir)
        .arg(".docblocks/section.sh")
        .env("KUBECONFIG", kubeconfig)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(meta.join("shell.err")).unwrap())
        .process_group(0)
        .spawn()
        .unwrap();
    let pgid = child.id();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if started.elapsed() > SECTION_TIMEOUT {
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // Stop whatever the blocks left running in the background.
    stop_group(pgid);
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let current = std::fs::read_to_string(meta.join("current")).unwrap_or_default();
    let current = current.trim();
    let mut failures = Vec::new();
    let finished = current == "done" && status.is_some_and(|s| s.success());
    for (n, r) in runs.iter().enumerate() {
        let output = std::fs::read_to_string(meta.join(format!("out{n}"))).unwrap_or_default();
        let is_current = current == n.to_string();
        if is_current && !finished {
            let why = match status {
                None => format!("did not finish within {} s", SECTION_TIMEOUT.as_secs()),
                Some(s) => format!("failed ({s})"),
            };
            let shell_err = std::fs::read_to_string(meta.join("shell.err")).unwrap_or_default();
            failures.push(format!(
                "{doc}:{} (section \"{section}\"): the block {why}\n--- block ---\n{}--- output ---\n{output}{shell_err}",
                r.block.line, r.block.code
            ));
            break;
        }
        if let Some(exp) = r.expected
            && let Err(diff) = compare(&exp.code, &output)
        {
            failures.push(format!(
                "{doc}:{} (section \"{section}\"): the output shown at line {} differs from what the block printed: {diff}\n--- block ---\n{}--- printed ---\n{output}",
                r.block.line, exp.line, r.block.code
            ));
        }
    }
    if !finished && failures.is_empty() {
        failures.push(format!(
            "{doc} (section \"{section}\"): the section stopped ({status:?}) outside any block: {}",
            std::fs::read_to_string(meta.join("shell.err")).unwrap_or_default()
        ));
    }
    failures
}

/// Replaces what legitimately varies from run to run by fixed words.
pub fn normalise(text: &str) -> String {
    use regex::Regex;
    use std::sync::OnceLock;
    static RULES: OnceLock<Vec<(Regex, &'static str)>> = OnceLock::new();
    let rules = RULES.get_or_init(|| {
        [
            // Temporary and scratch paths.
            (r"(/tmp|/var/tmp)/[^\s:,'\x22)]*", "<PATH>"),
            (r"127\.0\.0\.1:\d+", "127.0.0.1:<PORT>"),
            // Hex hashes of 7 characters or more (commit ids, digests, content suffixes).
            (r"\b[0-9a-f]{7,64}\b", "<HASH>"),
            // age recipients and keys generated on the fly.
            (r"\bage1[0-9a-z]{58}\b", "<AGE>"),
            // Durations.
            (r"\b\d+(\.\d+)?\s?(ms|s|m)\b", "<TIME>"),
        ]
        .into_iter()
        .map(|(re, to)| (Regex::new(re).unwrap(), to))
        .collect()
    });
    let mut s = text.to_owned();
    for (re, to) in rules {
        s = re.replace_all(&s, *to).into_owned();
    }
    s
}

/// Compares the shown output with the printed one, line by line after normalising both and
/// collapsing runs of spaces (table columns widen with their content); `...` in a shown line
/// matches any text. Blank lines are ignored on both sides.
pub fn compare(expected: &str, actual: &str) -> Result<(), String> {
    let squash = |l: &str| l.split_whitespace().collect::<Vec<_>>().join(" ");
    let exp: Vec<String> = normalise(expected)
        .lines()
        .map(squash)
        .filter(|l| !l.is_empty())
        .collect();
    let act: Vec<String> = normalise(actual)
        .lines()
        .map(squash)
        .filter(|l| !l.is_empty())
        .collect();
    for (i, e) in exp.iter().enumerate() {
        let Some(a) = act.get(i) else {
            return Err(format!("line {} missing: {e:?}", i + 1));
        };
        let pattern = e
            .split("...")
            .map(regex::escape)
            .collect::<Vec<_>>()
            .join(".*");
        let re = regex::Regex::new(&format!("^{pattern}$")).unwrap();
        if !re.is_match(a) {
            return Err(format!("line {}: shown {e:?}, printed {a:?}", i + 1));
        }
    }
    if act.len() > exp.len() {
        return Err(format!(
            "{} more line(s) printed, first: {:?}",
            act.len() - exp.len(),
            act[exp.len()]
        ));
    }
    Ok(())
}
