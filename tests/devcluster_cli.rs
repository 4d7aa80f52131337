//! `lockstep devcluster` with the real kubectl: it serves until interrupted, writes a private
//! kubeconfig, and says how to use it.

mod support;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use support::{Sandbox, tool};

#[test]
fn devcluster_serves_kubectl_until_interrupted() {
    let sb = Sandbox::new();
    let kubeconfig = sb.path("dev.kubeconfig");
    // A link planted at the kubeconfig path must be replaced, not written through.
    let bashrc = sb.path("bashrc");
    let canary = "export CANARY_BASHRC=unchanged\n";
    std::fs::write(&bashrc, canary).expect("bashrc written");
    #[cfg(unix)]
    std::os::unix::fs::symlink(&bashrc, &kubeconfig).expect("link planted");
    let mut child = sb
        .lockstep([
            "devcluster",
            "--listen",
            "127.0.0.1:0",
            "--kubeconfig",
            kubeconfig.to_str().unwrap_or_default(),
        ])
        .stderr(Stdio::piped())
        .spawn()
        .expect("lockstep devcluster starts");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let mut banner = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        let done = line.contains("Ctrl-C");
        banner.push(line);
        if done {
            break;
        }
    }
    let banner = banner.join("\n");
    assert!(
        banner.contains("devcluster serving at https://127.0.0.1:"),
        "{banner}"
    );
    assert!(banner.contains("export KUBECONFIG="), "{banner}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::symlink_metadata(&kubeconfig).expect("kubeconfig written");
        assert!(meta.file_type().is_file(), "the planted link was followed");
        assert_eq!(
            meta.permissions().mode() & 0o777,
            0o600,
            "the kubeconfig holds the admin token"
        );
    }
    assert_eq!(
        std::fs::read_to_string(&bashrc).expect("bashrc read"),
        canary,
        "the kubeconfig was written through the planted link"
    );

    let kubectl = |args: &[&str]| {
        sb.command(tool("kubectl"))
            .args(args)
            .env("KUBECONFIG", &kubeconfig)
            .output()
            .expect("kubectl runs")
    };
    let out = kubectl(&["create", "ns", "team-a"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = kubectl(&["get", "ns", "team-a", "-o", "jsonpath={.status.phase}"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Active");

    // Ctrl-C stops it cleanly.
    let pid = child.id().to_string();
    let killed = sb
        .command("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "devcluster did not stop on SIGINT"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status:?}");
    let out = kubectl(&["get", "ns", "--request-timeout=2s"]);
    assert!(!out.status.success(), "the server is gone");
}
