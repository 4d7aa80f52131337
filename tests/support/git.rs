//! Real git servers and real signed history for the source tests: repositories made with
//! the `git` CLI (no global or system config), `git daemon`, `git http-backend` behind a
//! small HTTP server with basic auth, and `/usr/sbin/sshd`, all on loopback ports and all
//! stopped by PID when dropped. Keys come from `gpg --quick-gen-key` and `ssh-keygen`.
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::{read_string, run, tool, write};

/// A free loopback port (bound, then released).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    l.local_addr().expect("local address").port()
}

/// Waits until something accepts connections on the port.
pub fn wait_for_port(port: u16, what: &str, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited before listening on port {port}: {status}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{what} did not listen on 127.0.0.1:{port} within 15 s");
}

fn kill_child(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// `git` with a clean configuration and a fixed identity.
pub fn git_cmd(dir: &Path) -> Command {
    let mut c = Command::new(tool("git"));
    c.current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .args([
            "-c",
            "user.name=Test Author",
            "-c",
            "user.email=author@example.com",
            "-c",
            "init.defaultBranch=main",
            "-c",
            "commit.gpgsign=false",
            "-c",
            "tag.gpgsign=false",
        ]);
    c
}

/// Runs git in `dir`, panicking on failure; returns trimmed stdout.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let mut c = git_cmd(dir);
    c.args(args);
    run(&mut c).ok().stdout_str().trim().to_owned()
}

/// How to sign.
#[derive(Clone)]
pub enum Signer {
    Gpg(Arc<GpgKey>),
    Ssh(Arc<SshKey>),
}

impl Signer {
    fn configure(&self, c: &mut Command) {
        match self {
            Signer::Gpg(k) => {
                c.env("GNUPGHOME", &k.home)
                    .args(["-c", "gpg.program=gpg", "-c"])
                    .arg(format!("user.signingkey={}", k.fingerprint));
            }
            Signer::Ssh(k) => {
                c.args(["-c", "gpg.format=ssh", "-c"])
                    .arg(format!("user.signingkey={}", k.private_path.display()));
            }
        }
    }

    /// The entry to put in the list of allowed signers.
    pub fn allowed_entry(&self) -> String {
        match self {
            Signer::Gpg(k) => k.armored_public.clone(),
            Signer::Ssh(k) => k.public_line.clone(),
        }
    }
}

/// A working repository plus the bare repository the servers serve (`srv/repo.git`).
pub struct TestRepo {
    pub root: tempfile::TempDir,
    pub work: PathBuf,
    pub bare: PathBuf,
}

impl TestRepo {
    /// A repository with `files` initial files (plus a README) on `main`, published.
    pub fn new(files: usize) -> Self {
        let root = tempfile::Builder::new()
            .prefix("lockstep-git-")
            .tempdir()
            .expect("temp dir");
        let work = root.path().join("work");
        let bare = root.path().join("srv").join("repo.git");
        std::fs::create_dir_all(&work).expect("mkdir work");
        std::fs::create_dir_all(bare.parent().expect("parent")).expect("mkdir srv");
        git(&work, &["init", "-q"]);
        git(
            root.path(),
            &["init", "-q", "--bare", &bare.to_string_lossy()],
        );
        git(&bare, &["config", "http.receivepack", "true"]);
        git(
            &bare,
            &["config", "uploadpack.allowReachableSHA1InWant", "true"],
        );
        git(&work, &["remote", "add", "origin", &bare.to_string_lossy()]);
        write(&work.join("README.md"), "# test repository\n");
        for i in 0..files {
            write(
                &work.join(format!("apps/app{:02}/obj{i:04}.yaml", i % 50)),
                format!(
                    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: obj{i}\ndata:\n  n: \"{i}\"\n"
                ),
            );
        }
        git(&work, &["add", "-A"]);
        git(&work, &["commit", "-q", "-m", "initial"]);
        let r = TestRepo { root, work, bare };
        r.publish();
        r
    }

    /// Pushes every ref of the work repo to the bare repo (forced, deletions included).
    pub fn publish(&self) {
        git(&self.work, &["push", "-q", "--force", "--mirror", "origin"]);
    }

    pub fn head(&self) -> String {
        git(&self.work, &["rev-parse", "HEAD"])
    }

    /// Writes a file and commits it (optionally signed); publishes; returns the commit.
    pub fn commit(&self, file: &str, content: &str, signer: Option<&Signer>) -> String {
        write(&self.work.join(file), content);
        git(&self.work, &["add", "-A"]);
        let mut c = git_cmd(&self.work);
        if let Some(s) = signer {
            s.configure(&mut c);
            c.args(["commit", "-q", "-S", "-m"]);
        } else {
            c.args(["commit", "-q", "-m"]);
        }
        c.arg(format!("change {file}"));
        run(&mut c).ok();
        self.publish();
        self.head()
    }

    /// Writes `files`, deletes `remove`, commits everything (an empty commit when nothing
    /// changed); publishes; returns the commit.
    pub fn commit_files(&self, files: &[(&str, String)], remove: &[&str]) -> String {
        for f in remove {
            let _ = std::fs::remove_file(self.work.join(f));
        }
        for (path, content) in files {
            write(&self.work.join(path), content);
        }
        git(&self.work, &["add", "-A"]);
        git(
            &self.work,
            &["commit", "-q", "--allow-empty", "-m", "change"],
        );
        self.publish();
        self.head()
    }

    /// An annotated tag (signed with `git tag -s` when a signer is given).
    pub fn tag(&self, name: &str, signer: Option<&Signer>) {
        let mut c = git_cmd(&self.work);
        if let Some(s) = signer {
            s.configure(&mut c);
            c.args(["tag", "-s", "-m", "release", name]);
        } else {
            c.args(["tag", "-a", "-m", "release", name]);
        }
        run(&mut c).ok();
        self.publish();
    }

    pub fn lightweight_tag(&self, name: &str) {
        git(&self.work, &["tag", name]);
        self.publish();
    }

    /// Rewrites the message of the HEAD commit while keeping its signature header, and
    /// points `main` at the forged commit. Returns its id.
    pub fn tamper_head(&self) -> String {
        let raw = git(&self.work, &["cat-file", "commit", "HEAD"]);
        assert!(raw.contains("gpgsig"), "HEAD is not signed:\n{raw}");
        let forged = format!("{raw}\nand a forged line\n");
        let mut c = git_cmd(&self.work);
        c.args(["hash-object", "-t", "commit", "-w", "--stdin"]);
        let id = super::run_with_stdin(&mut c, Some(forged.as_bytes()))
            .ok()
            .stdout_str()
            .trim()
            .to_owned();
        git(&self.work, &["update-ref", "refs/heads/main", &id]);
        git(&self.work, &["reset", "-q", "--hard", &id]);
        self.publish();
        id
    }

    pub fn file_url(&self) -> String {
        format!("file://{}", self.bare.display())
    }

    pub fn srv_dir(&self) -> PathBuf {
        self.bare.parent().expect("srv").to_path_buf()
    }
}

/// An OpenPGP key in its own GNUPGHOME.
pub struct GpgKey {
    pub home: PathBuf,
    _dir: tempfile::TempDir,
    pub fingerprint: String,
    pub armored_public: String,
}

impl GpgKey {
    pub fn generate(uid: &str) -> Arc<Self> {
        Self::generate_with(uid, "ed25519")
    }

    /// A key of the given gpg algorithm (`ed25519`, `rsa2048`, ...).
    pub fn generate_with(uid: &str, algo: &str) -> Arc<Self> {
        let gpg = tool("gpg");
        let dir = tempfile::Builder::new()
            .prefix("gpg-")
            .tempdir_in("/tmp")
            .expect("temp dir");
        let home = dir.path().to_path_buf();
        let mut c = Command::new(&gpg);
        c.env("GNUPGHOME", &home).args([
            "--batch",
            "--passphrase",
            "",
            "--quick-gen-key",
            uid,
            algo,
            "sign",
            "never",
        ]);
        run(&mut c).ok();
        let mut c = Command::new(&gpg);
        c.env("GNUPGHOME", &home)
            .args(["--batch", "--with-colons", "--list-secret-keys"]);
        let listing = run(&mut c).ok().stdout_str();
        let fingerprint = listing
            .lines()
            .find_map(|l| l.strip_prefix("fpr:"))
            .and_then(|l| l.split(':').find(|f| !f.is_empty()))
            .unwrap_or_else(|| panic!("no fingerprint in gpg listing:\n{listing}"))
            .to_owned();
        let mut c = Command::new(&gpg);
        c.env("GNUPGHOME", &home)
            .args(["--batch", "--armor", "--export", &fingerprint]);
        let armored_public = run(&mut c).ok().stdout_str();
        assert!(armored_public.contains("BEGIN PGP PUBLIC KEY BLOCK"));
        Arc::new(GpgKey {
            home,
            _dir: dir,
            fingerprint,
            armored_public,
        })
    }
}

impl Drop for GpgKey {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", &self.home)
            .args(["--kill", "gpg-agent"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// An SSH key pair made by ssh-keygen.
pub struct SshKey {
    _dir: tempfile::TempDir,
    pub private_path: PathBuf,
    pub private_key: String,
    pub public_line: String,
    pub fingerprint: String,
}

impl SshKey {
    pub fn generate(kind: &str) -> Arc<Self> {
        let dir = tempfile::Builder::new()
            .prefix("sshkey-")
            .tempdir()
            .expect("temp dir");
        let private_path = dir.path().join("id");
        let mut c = Command::new(tool("ssh-keygen"));
        c.args(["-q", "-t", kind, "-N", "", "-C", "signer@example.com", "-f"])
            .arg(&private_path);
        if kind == "rsa" {
            c.args(["-b", "3072"]);
        }
        run(&mut c).ok();
        let public_line = read_string(&private_path.with_extension("pub"))
            .trim()
            .to_owned();
        let mut c = Command::new(tool("ssh-keygen"));
        c.arg("-lf").arg(private_path.with_extension("pub"));
        let fingerprint = run(&mut c)
            .ok()
            .stdout_str()
            .split_whitespace()
            .nth(1)
            .expect("fingerprint")
            .to_owned();
        Arc::new(SshKey {
            private_key: read_string(&private_path),
            _dir: dir,
            private_path,
            public_line,
            fingerprint,
        })
    }
}

/// `git daemon` serving a directory (`--export-all`) on a loopback port.
pub struct GitDaemon {
    child: Child,
    pub port: u16,
}

impl GitDaemon {
    pub fn start(base: &Path) -> Self {
        let port = free_port();
        // Run git-daemon itself (not through the `git` wrapper, which would leave the
        // daemon running when killed).
        let exec_path = git(base, &["--exec-path"]);
        let daemon = Path::new(&exec_path).join("git-daemon");
        assert!(daemon.is_file(), "{} is missing", daemon.display());
        let mut c = Command::new(daemon);
        c.current_dir(base)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .arg("--listen=127.0.0.1")
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", base.display()))
            .args(["--export-all", "--reuseaddr", "--informative-errors"])
            .arg(base)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = c.spawn().expect("start git daemon");
        wait_for_port(port, "git daemon", &mut child);
        GitDaemon { child, port }
    }

    pub fn url(&self, repo: &str) -> String {
        format!("git://127.0.0.1:{}/{repo}", self.port)
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        kill_child(&mut self.child);
    }
}

/// `git http-backend` behind a small HTTP server that demands basic auth.
pub struct HttpGit {
    pub port: u16,
    /// Requests refused with 401.
    pub unauthorized: Arc<AtomicUsize>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Clone)]
struct HttpState {
    root: PathBuf,
    expected_auth: String,
    unauthorized: Arc<AtomicUsize>,
}

impl HttpGit {
    pub fn start(project_root: &Path, user: &str, password: &str) -> Self {
        use base64::Engine;
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let unauthorized = Arc::new(AtomicUsize::new(0));
        let state = HttpState {
            root: project_root.to_path_buf(),
            expected_auth: format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
            ),
            unauthorized: unauthorized.clone(),
        };
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let app = axum::Router::new().fallback(cgi_bridge).with_state(state);
                axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = rx.await;
                    })
                    .await
                    .expect("serve");
            });
        });
        HttpGit {
            port,
            unauthorized,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }

    pub fn url(&self, repo: &str) -> String {
        format!("http://127.0.0.1:{}/{repo}", self.port)
    }
}

impl Drop for HttpGit {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn cgi_bridge(
    axum::extract::State(st): axum::extract::State<HttpState>,
    req: axum::extract::Request,
) -> axum::response::Response {
    use axum::http::{HeaderValue, StatusCode, header};
    use axum::response::IntoResponse;
    use tokio::io::AsyncWriteExt;

    let auth_ok = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == st.expected_auth);
    if !auth_ok {
        st.unauthorized.fetch_add(1, Ordering::SeqCst);
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Basic realm=\"git\"")],
            "authentication required\n",
        )
            .into_response();
    }
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, 256 << 20).await {
        Ok(b) => b,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    let hdr = |name: header::HeaderName| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let mut cmd = tokio::process::Command::new(tool("git"));
    cmd.arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_PROJECT_ROOT", &st.root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("PATH_INFO", parts.uri.path())
        .env("QUERY_STRING", parts.uri.query().unwrap_or(""))
        .env("REQUEST_METHOD", parts.method.as_str())
        .env("CONTENT_TYPE", hdr(header::CONTENT_TYPE))
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("HTTP_CONTENT_ENCODING", hdr(header::CONTENT_ENCODING))
        .env(
            "GIT_PROTOCOL",
            hdr(header::HeaderName::from_static("git-protocol")),
        )
        .env("REMOTE_USER", "tester")
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(&body).await;
        drop(stdin);
    }
    let out = match child.wait_with_output().await {
        Ok(o) => o,
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    };
    let data = out.stdout;
    let split = data
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| (p, p + 4))
        .or_else(|| {
            data.windows(2)
                .position(|w| w == b"\n\n")
                .map(|p| (p, p + 2))
        });
    let Some((head_end, body_start)) = split else {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!(
                "bad CGI output; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            ),
        )
            .into_response();
    };
    let mut status = StatusCode::OK;
    let mut builder = axum::http::Response::builder();
    for line in String::from_utf8_lossy(&data[..head_end]).lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim();
        if k.eq_ignore_ascii_case("status") {
            if let Some(code) = v.split_whitespace().next().and_then(|c| c.parse().ok()) {
                status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            }
        } else if let Ok(hv) = HeaderValue::from_str(v) {
            builder = builder.header(k.trim(), hv);
        }
    }
    builder
        .status(status)
        .body(axum::body::Body::from(data[body_start..].to_vec()))
        .unwrap_or_else(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response())
}

/// `/usr/sbin/sshd` on a loopback port, with a test host key and one authorized client
/// key. Runs as root (the tests do); `git-upload-pack` is run by root's shell.
pub struct Sshd {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
    /// The host's public key line (`ssh-ed25519 AAAA…`).
    pub host_public: String,
    pub host_fingerprint: String,
    /// The authorized client key.
    pub client: Arc<SshKey>,
}

impl Sshd {
    pub fn start() -> Self {
        let sshd = PathBuf::from("/usr/sbin/sshd");
        assert!(
            sshd.is_file(),
            "/usr/sbin/sshd is required by this test; run scripts/install-test-tools"
        );
        std::fs::create_dir_all("/run/sshd").expect("mkdir /run/sshd");
        let dir = tempfile::Builder::new()
            .prefix("sshd-")
            .tempdir()
            .expect("temp dir");
        let host_key = dir.path().join("host_ed25519");
        let mut c = Command::new(tool("ssh-keygen"));
        c.args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&host_key);
        run(&mut c).ok();
        let host_public = read_string(&host_key.with_extension("pub"));
        let host_public: String = host_public
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ");
        let mut c = Command::new(tool("ssh-keygen"));
        c.arg("-lf").arg(host_key.with_extension("pub"));
        let host_fingerprint = run(&mut c)
            .ok()
            .stdout_str()
            .split_whitespace()
            .nth(1)
            .expect("fingerprint")
            .to_owned();
        let client = SshKey::generate("ed25519");
        write(
            &dir.path().join("authorized_keys"),
            format!("{}\n", client.public_line),
        );
        let port = free_port();
        let cfg = dir.path().join("sshd_config");
        write(
            &cfg,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {hk}\nAuthorizedKeysFile {ak}\n\
                 PidFile {pid}\nUsePAM no\nStrictModes no\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
                 PermitRootLogin prohibit-password\n",
                hk = host_key.display(),
                ak = dir.path().join("authorized_keys").display(),
                pid = dir.path().join("sshd.pid").display(),
            ),
        );
        let mut child = Command::new(&sshd)
            .arg("-D")
            .arg("-f")
            .arg(&cfg)
            .arg("-E")
            .arg(dir.path().join("sshd.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start sshd");
        wait_for_port(port, "sshd", &mut child);
        Sshd {
            child,
            port,
            dir,
            host_public,
            host_fingerprint,
            client,
        }
    }

    pub fn url(&self, abs_path: &Path) -> String {
        format!("ssh://root@127.0.0.1:{}{}", self.port, abs_path.display())
    }

    /// A known_hosts line trusting this server.
    pub fn known_hosts(&self) -> String {
        format!("[127.0.0.1]:{} {}\n", self.port, self.host_public)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        kill_child(&mut self.child);
    }
}
