//! Git source benchmark: the initial fetch (and checkout) of a repository with 1,000
//! files, and the incremental fetch of one new commit into the warm cache, over file://,
//! `git daemon` and `git http-backend`. Run by `scripts/bench-source`; timings are
//! printed as a Markdown table and written to bench-out/source/results.md.
//!
//! Environment: RUNS (default 10), FILES (default 1000).

#[path = "../tests/support/mod.rs"]
#[allow(unused_imports)]
mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use lockstep::source::{self, Credentials, FetchRequest, GitRef, Verification};
use secrecy::SecretString;
use support::git::{GitDaemon, HttpGit, TestRepo};

fn fetch_once(url: &str, creds: Option<&Credentials>, cache: &Path) -> (Duration, usize) {
    let r = GitRef::Branch("main".into());
    let t = Instant::now();
    let co = source::fetch(&FetchRequest {
        url,
        reference: &r,
        credentials: creds,
        cache_dir: cache,
        verification: &Verification::None,
    })
    .unwrap_or_else(|e| panic!("fetch failed: {e}"));
    (t.elapsed(), co.stats.received_objects)
}

struct Row {
    transport: &'static str,
    initial: Vec<Duration>,
    incremental: Vec<Duration>,
    initial_objects: usize,
    incremental_objects: usize,
}

fn stats(v: &[Duration]) -> String {
    let mut ms: Vec<f64> = v.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    ms.sort_by(|a, b| a.total_cmp(b));
    let median = ms[ms.len() / 2];
    format!(
        "{median:.1} ms | {:.1} ms | {:.1} ms",
        ms[0],
        ms[ms.len() - 1]
    )
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let runs: usize = std::env::var("RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let files: usize = std::env::var("FILES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let repo = TestRepo::new(files);
    let daemon = GitDaemon::start(&repo.srv_dir());
    let http = HttpGit::start(&repo.srv_dir(), "bench", "bench-password");
    let http_creds = Credentials {
        username: Some("bench".into()),
        password: Some(SecretString::from("bench-password")),
        ..Credentials::default()
    };
    let transports: Vec<(&'static str, String, Option<&Credentials>)> = vec![
        ("file://", repo.file_url(), None),
        ("git daemon (git://)", daemon.url("repo.git"), None),
        (
            "git http-backend (http://, basic auth)",
            http.url("repo.git"),
            Some(&http_creds),
        ),
    ];
    let mut rows = Vec::new();
    for (name, url, creds) in &transports {
        let mut row = Row {
            transport: name,
            initial: Vec::new(),
            incremental: Vec::new(),
            initial_objects: 0,
            incremental_objects: 0,
        };
        for i in 0..runs {
            let cache = tempfile::tempdir().expect("temp dir");
            let (d, n) = fetch_once(url, *creds, cache.path());
            row.initial.push(d);
            row.initial_objects = n;
            repo.commit(
                &format!("apps/app00/bench-{name}-{i}.yaml")
                    .replace([' ', ':', '/', '(', ')', ','], "_"),
                &format!("kind: ConfigMap\nmetadata:\n  name: bench{i}\n"),
                None,
            );
            let (d, n) = fetch_once(url, *creds, cache.path());
            row.incremental.push(d);
            row.incremental_objects = n;
        }
        rows.push(row);
    }
    let mut out = String::new();
    out.push_str(&format!(
        "Git source fetch + checkout, repository with {} files, {runs} runs each (median | min | max)\n\n",
        files + 1
    ));
    out.push_str(
        "| transport | step | objects received | median | min | max |\n|---|---|---|---|---|---|\n",
    );
    for r in &rows {
        out.push_str(&format!(
            "| {} | initial fetch + checkout | {} | {} |\n",
            r.transport,
            r.initial_objects,
            stats(&r.initial)
        ));
        out.push_str(&format!(
            "| {} | incremental fetch of 1 new commit + checkout | {} | {} |\n",
            r.transport,
            r.incremental_objects,
            stats(&r.incremental)
        ));
    }
    print!("{out}");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench-out/source");
    if std::fs::create_dir_all(&dir).is_ok() {
        let _ = std::fs::write(dir.join("results.md"), &out);
    }
}
