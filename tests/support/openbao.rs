//! A real OpenBao dev server for tests: `bao server -dev` on a free loopback port,
//! started by the test and stopped by its PID (never by name), with a file audit log
//! so that tests count requests on the server's side.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `bao` binary: from PATH, else the project's `.tools/bin/bao`.
pub fn bao_bin() -> PathBuf {
    if let Some(p) = super::find_on_path("bao") {
        return p;
    }
    let local = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.tools/bin/bao"));
    assert!(
        local.is_file(),
        "the OpenBao binary `bao` was not found on PATH nor at {}; run scripts/install-test-tools",
        local.display()
    );
    local
}

pub const ROOT_TOKEN: &str = "lockstep-test-root";

pub struct OpenBao {
    child: Option<Child>,
    pub port: u16,
    pub addr: String,
    pub dir: tempfile::TempDir,
}

impl OpenBao {
    /// Starts a dev server with KV v2 at `secret/`, KV v1 at `kv/`, and a file audit log.
    pub fn start() -> OpenBao {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = super::git::free_port();
        let mut bao = OpenBao {
            child: None,
            port,
            addr: format!("http://127.0.0.1:{port}"),
            dir,
        };
        bao.spawn();
        bao.run(&["secrets", "enable", "-path=kv", "-version=1", "kv"]);
        bao
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("server.log")).expect("log");
        // OpenBao only accepts audit devices from its configuration file.
        let config = self.dir.path().join("config.hcl");
        std::fs::write(
            &config,
            format!(
                "audit \"file\" \"file\" {{\n  options {{\n    file_path = \"{}\"\n  }}\n}}\n",
                self.audit_path().display()
            ),
        )
        .expect("write config");
        let child = Command::new(bao_bin())
            .args([
                "server",
                "-dev",
                &format!("-dev-root-token-id={ROOT_TOKEN}"),
                &format!("-dev-listen-address=127.0.0.1:{}", self.port),
                &format!("-config={}", config.display()),
            ])
            .env("HOME", self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start bao server -dev");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = Command::new(bao_bin())
                .args(["status"])
                .env("BAO_ADDR", &self.addr)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "OpenBao did not come up: {}",
                std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Freezes the server (SIGSTOP to its PID): connections are accepted by the kernel
    /// and never answered, which is what a hung Vault looks like to a client.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let ok = Command::new("kill")
            .args([sig, &pid])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill {sig} {pid}");
    }

    /// Seals the dev server; [`OpenBao::unseal`] opens it again with the dev unseal key.
    pub fn seal(&self) {
        self.run(&["operator", "seal"]);
    }

    pub fn unseal(&self) {
        let log = std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
        let key = log
            .lines()
            .find_map(|l| l.trim().strip_prefix("Unseal Key: "))
            .expect("the dev server prints its unseal key")
            .trim()
            .to_owned();
        self.run(&["operator", "unseal", &key]);
    }

    /// Stops the server (by its PID) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // Never leave a frozen server behind (see `pause`).
            let _ = Command::new("kill")
                .args(["-CONT", &c.id().to_string()])
                .status();
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port. A dev server keeps nothing: the caller sets
    /// its state up again.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
        self.run(&["secrets", "enable", "-path=kv", "-version=1", "kv"]);
    }

    pub fn audit_path(&self) -> PathBuf {
        self.dir.path().join("audit.log")
    }

    /// Runs `bao ARGS` as root; panics with its output on failure.
    pub fn run(&self, args: &[&str]) -> String {
        self.run_stdin(args, None)
    }

    pub fn run_stdin(&self, args: &[&str], stdin: Option<&str>) -> String {
        use std::io::Write;
        let mut child = Command::new(bao_bin())
            .args(args)
            .env("BAO_ADDR", &self.addr)
            .env("BAO_TOKEN", ROOT_TOKEN)
            .env("HOME", self.dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run bao");
        if let Some(s) = stdin {
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(s.as_bytes())
                .expect("write stdin");
        } else {
            drop(child.stdin.take());
        }
        let out = child.wait_with_output().expect("bao output");
        assert!(
            out.status.success(),
            "bao {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Writes a policy from HCL text.
    pub fn policy(&self, name: &str, hcl: &str) {
        self.run_stdin(&["policy", "write", name, "-"], Some(hcl));
    }

    /// A new token with `policies`, returned as text.
    pub fn token(&self, policies: &[&str], ttl: &str) -> String {
        let mut args = vec!["token", "create", "-field=token", "-ttl", ttl];
        let p: Vec<String> = policies.iter().map(|p| format!("-policy={p}")).collect();
        args.extend(p.iter().map(String::as_str));
        self.run(&args).trim().to_owned()
    }

    /// Audit entries of type `response` whose path matches `pred`.
    pub fn audited(&self, pred: impl Fn(&str) -> bool) -> usize {
        audited_in(&self.audit_path(), pred)
    }
}

/// Audited `read` operations on exactly `path`.
pub fn audited_reads(path: &Path, of: &str) -> usize {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v.get("type").and_then(|t| t.as_str()) == Some("response"))
        .filter(|v| v.pointer("/request/operation").and_then(|p| p.as_str()) == Some("read"))
        .filter(|v| v.pointer("/request/path").and_then(|p| p.as_str()) == Some(of))
        .count()
}

pub fn audited_in(path: &Path, pred: impl Fn(&str) -> bool) -> usize {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v.get("type").and_then(|t| t.as_str()) == Some("response"))
        .filter(|v| {
            v.pointer("/request/path")
                .and_then(|p| p.as_str())
                .is_some_and(&pred)
        })
        .count()
}

impl Drop for OpenBao {
    fn drop(&mut self) {
        self.stop();
    }
}

impl OpenBao {
    /// Kubernetes auth at `auth/kubernetes`, configured the way a real install outside
    /// the cluster is: the API server's URL and CA, and the JWT of a dedicated reviewer
    /// service account (bound to `system:auth-delegator`) for TokenReview. The client's
    /// own JWT cannot serve as the reviewer's: lockstep's JWTs are bound to the Vault
    /// audience, so the API server refuses them as bearer tokens.
    pub fn kubernetes_auth(&self, host: &str, ca_pem: &str, reviewer_jwt: &str) {
        self.run(&["auth", "enable", "kubernetes"]);
        let ca = self.dir.path().join("k8s-ca.pem");
        std::fs::write(&ca, ca_pem).expect("write CA");
        self.run(&[
            "write",
            "auth/kubernetes/config",
            &format!("kubernetes_host={host}"),
            &format!("kubernetes_ca_cert=@{}", ca.display()),
            &format!("token_reviewer_jwt={reviewer_jwt}"),
            "disable_local_ca_jwt=true",
        ]);
    }

    /// A kubernetes auth role bound to one service account of one namespace and to
    /// `audience` (lockstep requests tokens for the Vault address).
    pub fn kubernetes_role(&self, role: &str, ns: &str, sa: &str, policy: &str, audience: &str) {
        self.run(&[
            "write",
            &format!("auth/kubernetes/role/{role}"),
            &format!("bound_service_account_names={sa}"),
            &format!("bound_service_account_namespaces={ns}"),
            &format!("policies={policy}"),
            &format!("audience={audience}"),
            "ttl=1h",
        ]);
    }

    /// `bao write auth/kubernetes/login role=ROLE jwt=JWT`: Ok(token) or Err(output).
    pub fn kubernetes_login(&self, role: &str, jwt: &str) -> Result<String, String> {
        let out = Command::new(bao_bin())
            .args([
                "write",
                "-field=token",
                "auth/kubernetes/login",
                &format!("role={role}"),
                &format!("jwt={jwt}"),
            ])
            .env("BAO_ADDR", &self.addr)
            .env_remove("BAO_TOKEN")
            .env("HOME", self.dir.path())
            .stdin(Stdio::null())
            .output()
            .expect("run bao");
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }
}
