//! The examples printed by `lockstep --help` and every subcommand's `--help` run as printed,
//! from the root of a scratch copy of the repository's example trees (tests/support/docs.rs:
//! the built lockstep and .tools/bin on PATH, HOME inside the scratch directory).
//!
//! Conventions in the help texts: an example whose comment says `runs until Ctrl-C` is
//! started in the background and must still be running 3 s later (the next examples may use
//! it; it is stopped with the rest at the end); one whose comment holds `[not run: REASON]` is
//! not run, and the reason is printed in the help for the reader too. Examples of one command
//! run in order in one bash session, so a variable set by one is seen by the next.

#[path = "support/docs.rs"]
mod docs;

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn help(path: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_lockstep"))
        .args(path)
        .arg("--help")
        // An 80-column terminal: clap wraps help text to the terminal, and an example
        // wrapped in two is no longer the command it was.
        .env("COLUMNS", "80")
        .output()
        .unwrap();
    assert!(out.status.success(), "lockstep {path:?} --help failed");
    String::from_utf8(out.stdout).unwrap()
}

/// The subcommand names listed under `Commands:` (without `help`).
fn subcommands(help_text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut inside = false;
    for line in help_text.lines() {
        if line == "Commands:" {
            inside = true;
        } else if inside {
            if !line.starts_with("  ") {
                break;
            }
            // A description wrapped onto the next line is indented further.
            if line.starts_with("   ") {
                continue;
            }
            let name = line.split_whitespace().next().unwrap_or("");
            if name != "help" {
                names.push(name.to_owned());
            }
        }
    }
    names
}

/// One example: its command text (continuation lines joined by the shell itself) and the
/// reason it is not run, if it has one.
#[derive(Debug)]
struct Example {
    text: String,
    not_run: Option<String>,
    background: bool,
}

/// The examples after `Examples:`, up to the first blank line. A line starting with `#` is
/// a comment for the reader; its markers (`[not run: ...]`, `runs until Ctrl-C`) apply to
/// the example after it.
fn examples(help_text: &str) -> Vec<Example> {
    let mut out = Vec::new();
    let mut lines = help_text.lines().skip_while(|l| *l != "Examples:").skip(1);
    let mut comment = String::new();
    while let Some(line) = lines.next() {
        if line.trim().is_empty() {
            break;
        }
        let mut text = line.trim_start().to_owned();
        if text.starts_with('#') {
            comment.push_str(&text);
            continue;
        }
        while text.ends_with('\\') {
            let Some(next) = lines.next() else { break };
            text.push('\n');
            text.push_str(next);
        }
        let markers = format!("{} {text}", std::mem::take(&mut comment));
        let not_run = markers.split_once("[not run:").map(|(_, r)| {
            r.split_once(']')
                .map(|(r, _)| r)
                .unwrap_or(r)
                .trim()
                .to_owned()
        });
        out.push(Example {
            background: markers.contains("runs until Ctrl-C"),
            text,
            not_run,
        });
    }
    out
}

/// Runs one command's examples; returns the failures.
fn run_examples(cmd: &str, exs: &[Example], dir: &std::path::Path) -> Vec<String> {
    std::fs::create_dir_all(dir).unwrap();
    docs::scratch_copy(dir);
    // `cargo run --release -- ARGS` (the quickstart's first example) runs the built binary.
    let mut script = String::from(docs::PRELUDE);
    let runnable: Vec<&Example> = exs.iter().filter(|e| e.not_run.is_none()).collect();
    for (n, e) in runnable.iter().enumerate() {
        std::fs::write(dir.join(format!(".ex{n}.sh")), format!("{}\n", e.text)).unwrap();
        if e.background {
            script.push_str(&format!(
                "echo {n} > .ex.current\n\
                 bash -euo pipefail .ex{n}.sh > .ex{n}.out 2>&1 < /dev/null &\n\
                 bg=$!; sleep 3\n\
                 kill -0 $bg 2> /dev/null || {{ wait $bg; exit 1; }}\n"
            ));
        } else {
            script.push_str(&format!(
                "echo {n} > .ex.current\n{{ source .ex{n}.sh; }} > .ex{n}.out 2>&1 < /dev/null\n"
            ));
        }
    }
    script.push_str("echo done > .ex.current\n");
    std::fs::write(dir.join(".ex.sh"), script).unwrap();
    let mut child = docs::clean_command("bash", dir)
        .arg(".ex.sh")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join(".ex.err")).unwrap())
        .process_group(0)
        .spawn()
        .unwrap();
    let pgid = child.id();
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if started.elapsed() > Duration::from_secs(120) {
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    docs::stop_group(pgid);
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let current = std::fs::read_to_string(dir.join(".ex.current")).unwrap_or_default();
    let current = current.trim();
    if current == "done" && status.is_some_and(|s| s.success()) {
        return Vec::new();
    }
    let Ok(n) = current.parse::<usize>() else {
        return vec![format!(
            "lockstep {cmd} --help: the examples stopped outside any example: {}",
            std::fs::read_to_string(dir.join(".ex.err")).unwrap_or_default()
        )];
    };
    let output = std::fs::read_to_string(dir.join(format!(".ex{n}.out"))).unwrap_or_default();
    vec![format!(
        "lockstep {cmd} --help: this example {}:\n  {}\n--- output ---\n{output}{}",
        match status {
            None => "did not finish within 120 s".to_owned(),
            Some(s) => format!("failed ({s})"),
        },
        runnable[n].text,
        std::fs::read_to_string(dir.join(".ex.err")).unwrap_or_default()
    )]
}

#[test]
fn every_help_example_runs_as_printed() {
    let work = tempfile::Builder::new()
        .prefix("lockstep-help-")
        .tempdir()
        .unwrap();
    let mut helps: BTreeMap<String, String> = BTreeMap::new();
    helps.insert(String::new(), help(&[]));
    for c in subcommands(&helps[""]) {
        let h = help(&[&c]);
        for sub in subcommands(&h) {
            helps.insert(format!("{c} {sub}"), help(&[&c, &sub]));
        }
        helps.insert(c, h);
    }
    let mut failures = Vec::new();
    let mut ran = 0;
    let mut not_run = Vec::new();
    let mut without = Vec::new();
    for (i, (cmd, text)) in helps.iter().enumerate() {
        let exs = examples(text);
        if exs.is_empty() {
            if !text.contains("Commands:") {
                without.push(cmd.clone());
            }
            continue;
        }
        for e in &exs {
            if let Some(r) = &e.not_run {
                assert!(
                    !r.is_empty(),
                    "lockstep {cmd} --help: [not run:] without a reason"
                );
                not_run.push(format!("{cmd}: {r}"));
            }
        }
        ran += exs.iter().filter(|e| e.not_run.is_none()).count();
        failures.extend(run_examples(cmd, &exs, &work.path().join(format!("c{i}"))));
    }
    assert!(
        failures.is_empty(),
        "{} command(s) with a failing help example:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    assert!(
        without.is_empty(),
        "commands whose --help shows no example: {without:?}"
    );
    // Every command has examples; a parser change that finds none must not pass quietly.
    assert!(ran >= 30, "only {ran} help examples ran");
    eprintln!(
        "{ran} help examples ran; not run: {}",
        if not_run.is_empty() {
            "none".to_owned()
        } else {
            not_run.join("; ")
        }
    );
}

#[test]
fn examples_are_read_as_printed() {
    let text = "Usage: x\n\nExamples:\n  lockstep a   # note\n  # a comment\n  kubectl b \\\n    | lockstep c -\n  lockstep d   # interactive [not run: opens an editor]\n  lockstep e   # runs until Ctrl-C\n  # runs until Ctrl-C:\n  lockstep f\n  # [not run: needs a cluster]\n  lockstep g\n\nExit status: 0\n  lockstep never\n";
    let exs = examples(text);
    assert_eq!(exs.len(), 6, "{exs:?}");
    assert!(exs[4].background && exs[4].not_run.is_none());
    assert_eq!(exs[5].not_run.as_deref(), Some("needs a cluster"));
    assert!(!exs[1].background && exs[1].not_run.is_none());
    assert_eq!(exs[0].text, "lockstep a   # note");
    assert_eq!(exs[1].text, "kubectl b \\\n    | lockstep c -");
    assert_eq!(exs[2].not_run.as_deref(), Some("opens an editor"));
    assert!(exs[3].background && exs[3].not_run.is_none());
}
