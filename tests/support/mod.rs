//! Helpers shared by the interop test files: where the vectors and the real tools are,
//! running commands with a clean identity environment, and comparing documents by value.
//!
//! Every test file includes this module with `mod support;`, so not every helper is used
//! by every file.
#![allow(dead_code)]

pub mod cluster;
pub mod git;
pub mod openbao;

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use lockstep::sops::tree::{MapItem, Node, Scalar};
use lockstep::sops::{self, Format};

/// The directory of sops test vectors. Panics (never skips) when it is missing: the tests
/// that use it are part of the suite.
pub fn vectors_dir() -> PathBuf {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/sops"));
    assert!(
        dir.join("key1.txt").is_file(),
        "the sops test vectors are missing: expected them in {} (with key1.txt); \
         these tests need them and do not skip",
        dir.display()
    );
    dir
}

/// A file inside the vectors directory; panics if it does not exist.
pub fn vector(rel: &str) -> PathBuf {
    let p = vectors_dir().join(rel);
    assert!(p.exists(), "test vector {} is missing", p.display());
    p
}

/// Reads a file, naming it on failure.
pub fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Reads a text file, naming it on failure.
pub fn read_string(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Writes a file, naming it on failure.
pub fn write(path: &Path, data: impl AsRef<[u8]>) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    }
    std::fs::write(path, data).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

/// The secret key lines (`AGE-SECRET-KEY-1…`) of a vector key file.
pub fn secret_of(key_file: &Path) -> String {
    read_string(key_file)
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-"))
        .unwrap_or_else(|| panic!("{} holds no AGE-SECRET-KEY line", key_file.display()))
        .to_owned()
}

/// The public key (`# public key: age1…`) of a key file.
pub fn recipient_of(key_file: &Path) -> String {
    read_string(key_file)
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .unwrap_or_else(|| panic!("{} has no '# public key:' line", key_file.display()))
        .trim()
        .to_owned()
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The real `sops` binary: from PATH, else the project's `.tools/bin/sops`. Panics with
/// instructions when it is absent.
pub fn sops_bin() -> PathBuf {
    if let Some(p) = find_on_path("sops") {
        return p;
    }
    let local = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.tools/bin/sops"));
    assert!(
        local.is_file(),
        "the real sops binary was not found on PATH nor at {}; run scripts/install-test-tools \
         (or scripts/test, which installs it)",
        local.display()
    );
    local
}

/// A required system tool such as `age`, `age-keygen` or `ssh-keygen`.
pub fn tool(name: &str) -> PathBuf {
    find_on_path(name)
        .or_else(|| Some(PathBuf::from("/usr/bin").join(name)).filter(|p| p.is_file()))
        .unwrap_or_else(|| panic!("`{name}` is required by this test but was not found on PATH; run scripts/install-test-tools"))
}

/// The lockstep binary under test.
pub fn lockstep_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_lockstep"))
}

/// The result of a finished command.
pub struct Output {
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: String,
    pub what: String,
}

impl Output {
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Panics with the command's stderr unless it exited 0.
    pub fn ok(self) -> Self {
        assert_eq!(
            self.code, 0,
            "`{}` failed with exit code {}; stderr:\n{}",
            self.what, self.code, self.stderr
        );
        self
    }

    /// Panics unless the command failed with `code`.
    pub fn fails_with(self, code: i32) -> Self {
        assert_eq!(
            self.code, code,
            "`{}`: expected exit code {code}, got {}; stderr:\n{}",
            self.what, self.code, self.stderr
        );
        self
    }

    /// stdout and stderr together, for searching.
    pub fn all_text(&self) -> String {
        format!("{}\n{}", self.stdout_str(), self.stderr)
    }
}

/// Runs a command to completion, capturing stdout, stderr and the exit code.
pub fn run(cmd: &mut Command) -> Output {
    run_with_stdin(cmd, None)
}

/// Like [`run`], feeding `stdin` to the command.
pub fn run_with_stdin(cmd: &mut Command, stdin: Option<&[u8]>) -> Output {
    let what = describe(cmd);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start `{what}`: {e}"));
    if let Some(input) = stdin {
        use std::io::Write;
        let mut pipe = child.stdin.take().expect("stdin of the child is piped");
        pipe.write_all(input)
            .unwrap_or_else(|e| panic!("cannot write stdin of `{what}`: {e}"));
    }
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("waiting for `{what}` failed: {e}"));
    let code = match out.status.code() {
        Some(c) => c,
        None => {
            use std::os::unix::process::ExitStatusExt;
            128 + out.status.signal().unwrap_or(0)
        }
    };
    Output {
        code,
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        what,
    }
}

fn describe(cmd: &Command) -> String {
    let prog = Path::new(cmd.get_program())
        .file_name()
        .unwrap_or(cmd.get_program())
        .to_string_lossy()
        .into_owned();
    let args: Vec<String> = cmd
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    format!("{prog} {}", args.join(" "))
}

/// A private sandbox for one test: a work directory (the CWD of every command, so no
/// `.sops.yaml` from elsewhere is found), an empty `HOME` (so `~/.ssh` and
/// `~/.config/sops` are never used) and a `TMPDIR`.
pub struct Sandbox {
    root: tempfile::TempDir,
}

impl Default for Sandbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Sandbox {
    pub fn new() -> Self {
        let root = tempfile::Builder::new()
            .prefix("lockstep-test-")
            .tempdir()
            .expect("create a temporary directory for the test");
        for d in ["work", "home", "tmp"] {
            std::fs::create_dir(root.path().join(d)).expect("create sandbox sub-directory");
        }
        Sandbox { root }
    }

    /// The working directory of every command.
    pub fn dir(&self) -> PathBuf {
        self.root.path().join("work")
    }
    pub fn home(&self) -> PathBuf {
        self.root.path().join("home")
    }
    pub fn tmp(&self) -> PathBuf {
        self.root.path().join("tmp")
    }

    /// A path inside the work directory.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir().join(rel)
    }

    /// Writes a file into the work directory and returns its path.
    pub fn write(&self, rel: &str, data: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path(rel);
        write(&p, data);
        p
    }

    /// Copies a file (e.g. a vector) into the work directory.
    pub fn copy_in(&self, from: &Path, rel: &str) -> PathBuf {
        let p = self.path(rel);
        write(&p, read(from));
        p
    }

    /// A command with a clean environment: only `PATH`, `HOME` (the sandbox's), `TMPDIR`
    /// and `SOPS_DISABLE_VERSION_CHECK=1`; every `SOPS_AGE_*`, `SOPS_CONFIG`, editor and
    /// XDG variable of the caller is dropped.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut c = Command::new(program);
        c.env_clear()
            .env(
                "PATH",
                std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
            )
            .env("HOME", self.home())
            .env("TMPDIR", self.tmp())
            .env("SOPS_DISABLE_VERSION_CHECK", "1")
            .env("LC_ALL", "C.UTF-8")
            .current_dir(self.dir());
        c
    }

    pub fn lockstep<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut c = self.command(lockstep_bin());
        c.args(args);
        c
    }

    pub fn sops<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut c = self.command(sops_bin());
        c.args(args);
        c
    }

    /// A new age identity made by `lockstep keygen -o`; returns (key file, recipient).
    pub fn keygen(&self, name: &str) -> (PathBuf, String) {
        let file = self.path(name);
        let out =
            run(&mut self.lockstep(["keygen".as_ref(), "-o".as_ref(), file.as_os_str()])).ok();
        let recipient = out.stdout_str().trim().to_owned();
        assert!(
            recipient.starts_with("age1"),
            "lockstep keygen -o printed {recipient:?}, expected an age1… recipient"
        );
        assert_eq!(
            recipient,
            recipient_of(&file),
            "keygen's stdout and the key file disagree"
        );
        (file, recipient)
    }
}

/// Sets `SOPS_AGE_KEY_FILE` on a command.
pub fn with_key(mut cmd: Command, key_file: &Path) -> Command {
    cmd.env("SOPS_AGE_KEY_FILE", key_file);
    cmd
}

/// Parses a plaintext document with lockstep's stores, naming `what` on failure.
pub fn parse(bytes: &[u8], format: Format, what: &str) -> Vec<Node> {
    sops::parse_plain(bytes, format).unwrap_or_else(|e| {
        panic!(
            "{what}: lockstep cannot parse it as {format:?}: {e}\n---\n{}",
            String::from_utf8_lossy(bytes)
        )
    })
}

/// Asserts that two plaintext documents hold the same values (trees, not bytes).
pub fn assert_same_values(left: &[u8], right: &[u8], format: Format, what: &str) {
    let a = parse(left, format, &format!("{what} (left)"));
    let b = parse(right, format, &format!("{what} (right)"));
    if !docs_equal(&a, &b) {
        panic!(
            "{what}: the documents differ by value\n--- left ---\n{}\n--- right ---\n{}\n--- left bytes ---\n{}\n--- right bytes ---\n{}",
            render_docs(&a),
            render_docs(&b),
            String::from_utf8_lossy(left),
            String::from_utf8_lossy(right)
        );
    }
}

/// Value equality of documents, where NaN equals NaN (the tree's `PartialEq` follows
/// IEEE and would call two identical NaN leaves different).
pub fn docs_equal(a: &[Node], b: &[Node]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| nodes_equal(x, y))
}

pub fn nodes_equal(a: &Node, b: &Node) -> bool {
    match (a, b) {
        (Node::Map(x), Node::Map(y)) => {
            x.len() == y.len()
                && x.iter().zip(y).all(|(p, q)| match (p, q) {
                    (MapItem::Entry(k1, v1), MapItem::Entry(k2, v2)) => {
                        k1 == k2 && nodes_equal(v1, v2)
                    }
                    (MapItem::Comment(c1), MapItem::Comment(c2)) => c1 == c2,
                    _ => false,
                })
        }
        (Node::List(x), Node::List(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| nodes_equal(p, q))
        }
        (Node::Scalar(Scalar::Float(f)), Node::Scalar(Scalar::Float(g))) => {
            (f.is_nan() && g.is_nan()) || f.to_bits() == g.to_bits()
        }
        _ => a == b,
    }
}

/// An unredacted rendering of documents, for failure messages of tests (the tree's own
/// `Debug` hides secret text).
pub fn render_docs(docs: &[Node]) -> String {
    let mut s = String::new();
    for (i, d) in docs.iter().enumerate() {
        let _ = writeln!(s, "# document {i}");
        render(d, 0, &mut s);
    }
    s
}

fn render(n: &Node, depth: usize, out: &mut String) {
    let pad = "  ".repeat(depth);
    match n {
        Node::Map(items) => {
            for item in items {
                match item {
                    MapItem::Entry(k, v) => {
                        let _ = writeln!(out, "{pad}{k:?}:");
                        render(v, depth + 1, out);
                    }
                    MapItem::Comment(c) => {
                        let _ = writeln!(out, "{pad}#{:?}", c.as_str());
                    }
                }
            }
            if items.is_empty() {
                let _ = writeln!(out, "{pad}{{}}");
            }
        }
        Node::List(items) => {
            let _ = writeln!(out, "{pad}[");
            for it in items {
                render(it, depth + 1, out);
            }
            let _ = writeln!(out, "{pad}]");
        }
        Node::Comment(c) => {
            let _ = writeln!(out, "{pad}- #{:?}", c.as_str());
        }
        Node::Scalar(sc) => {
            let text = match sc {
                Scalar::Null => "null".to_owned(),
                Scalar::Bool(b) => format!("bool {b}"),
                Scalar::Int(i) => format!("int {i}"),
                Scalar::Float(f) => format!("float {f:?}"),
                Scalar::Str(t) => format!("str {:?}", t.as_str()),
                Scalar::Time(t) => format!("time {:?}", t.as_str()),
                Scalar::Bytes(b) => format!("bytes {:?}", String::from_utf8_lossy(b.as_bytes())),
            };
            let _ = writeln!(out, "{pad}{text}");
        }
    }
}

/// The lines of an encrypted YAML file above its `sops:` block, i.e. the value lines.
pub fn yaml_value_lines(file: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(file);
    text.lines()
        .take_while(|l| !l.starts_with("sops:"))
        .map(str::to_owned)
        .collect()
}

/// Every line of an encrypted YAML file, with the `sops:` block cut off.
pub fn sops_block(file: &[u8]) -> String {
    let text = String::from_utf8_lossy(file);
    text.lines()
        .skip_while(|l| !l.starts_with("sops:"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every `ENC[...]` value in a file, in order.
pub fn ciphertexts(file: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(file);
    let mut out = Vec::new();
    let mut rest: &str = &text;
    while let Some(start) = rest.find("ENC[AES256_GCM,") {
        let tail = &rest[start..];
        let end = tail.find(']').map(|i| i + 1).unwrap_or(tail.len());
        out.push(tail[..end].to_owned());
        rest = &tail[end..];
    }
    out
}

/// The value of a top-level scalar field in the `sops:` YAML block, e.g. `lastmodified`.
pub fn sops_field(file: &[u8], field: &str) -> Option<String> {
    let block = sops_block(file);
    let prefix = format!("    {field}: ");
    block
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|v| v.trim().to_owned())
}

/// Every form in which `secret` could show up in printed text: itself, and its base64
/// at each of the three byte alignments (only the characters that depend on `secret`
/// alone, so a hit is found whatever surrounds it).
pub fn leak_forms(secret: &[u8]) -> Vec<String> {
    use base64::Engine;
    let mut forms = vec![String::from_utf8_lossy(secret).into_owned()];
    for pad in 0..3usize {
        let mut bytes = vec![0u8; pad];
        bytes.extend_from_slice(secret);
        let enc = base64::engine::general_purpose::STANDARD.encode(&bytes);
        let first_group = pad.div_ceil(3);
        let end_group = bytes.len() / 3;
        if end_group > first_group {
            forms.push(enc[first_group * 4..end_group * 4].to_owned());
        }
    }
    forms
}

/// Panics if `secret`, plain or base64-encoded, appears in the command's output.
pub fn assert_no_leak(out: &Output, secret: &[u8]) {
    let text = out.all_text();
    for form in leak_forms(secret) {
        assert!(
            !text.contains(&form),
            "`{}` printed the secret (as {form:?}):\n{text}",
            out.what
        );
    }
}

/// A path inside the repository (examples, example keys, policies).
pub fn repo(rel: &str) -> PathBuf {
    let p = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"))).join(rel);
    assert!(p.exists(), "{} is missing from the repository", p.display());
    p
}

/// Copies a directory tree (regular files and directories only).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("cannot create {}: {e}", to.display()));
    let entries =
        std::fs::read_dir(from).unwrap_or_else(|e| panic!("cannot list {}: {e}", from.display()));
    for e in entries {
        let e = e.unwrap_or_else(|e| panic!("cannot list {}: {e}", from.display()));
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            write(&target, read(&e.path()));
        }
    }
}

/// Encrypts a plaintext YAML file with the real sops to `recipient`, encrypting only the
/// keys `encrypted_regex` selects; returns the encrypted bytes.
pub fn sops_encrypt_yaml(
    sb: &Sandbox,
    plain: &Path,
    recipient: &str,
    encrypted_regex: &str,
) -> Vec<u8> {
    let out = run(&mut sb.sops([
        "encrypt".as_ref(),
        "--age".as_ref(),
        recipient.as_ref(),
        "--encrypted-regex".as_ref(),
        encrypted_regex.as_ref(),
        "--input-type".as_ref(),
        "yaml".as_ref(),
        "--output-type".as_ref(),
        "yaml".as_ref(),
        plain.as_os_str(),
    ]))
    .ok();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("ENC[AES256_GCM,"),
        "sops encrypt printed no ciphertext"
    );
    out.stdout
}
