//! Shared CLI plumbing: errors with exit codes, input/output, identities, config.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use lockstep::crypto::age_keys::{AgeRecipient, Identities};
use lockstep::crypto::identity_sources;
use lockstep::sops::{self, EncryptSettings, Format, Layout, SopsError};

pub struct Context {
    pub identities: Vec<PathBuf>,
    pub config: Option<PathBuf>,
}

/// The input and output options `encrypt` and `decrypt` share.
#[derive(clap::Args, Debug)]
pub struct Io {
    #[arg(long, value_enum)]
    pub input_type: Option<Format>,
    #[arg(long, value_enum)]
    pub output_type: Option<Format>,
    /// Replace the file with the result instead of printing it.
    #[arg(short, long)]
    pub in_place: bool,
    /// Write to this file instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Use this name to pick the format (and, when encrypting, the .sops.yaml rule); useful
    /// with stdin.
    #[arg(long, value_name = "NAME")]
    pub filename_override: Option<PathBuf>,
    /// Indentation of YAML/JSON output.
    #[arg(long)]
    pub indent: Option<usize>,
}
#[derive(Debug)]
pub struct CliError {
    pub code: i32,
    pub message: String,
}

impl CliError {
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        CliError {
            code,
            message: message.into(),
        }
    }
    pub fn sops(file: &str, e: SopsError) -> Self {
        CliError::new(e.exit_code(), format!("{file}: {}", e.sops_message()))
    }
}

pub type CliResult = Result<(), CliError>;

pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LOCKSTEP_LOG")
        // kube's clients warn about every connection a server closes; that is routine.
        .unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new("warn,kube_client=error,kube_runtime=error")
        });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .try_init();
}

/// A display name for the input (`-` is stdin).
pub fn display_name(path: &Path) -> String {
    if path == Path::new("-") {
        "<stdin>".into()
    } else {
        path.display().to_string()
    }
}

pub fn read_input(path: &Path) -> Result<Vec<u8>, CliError> {
    let mut buf = Vec::new();
    if path == Path::new("-") {
        std::io::stdin()
            .read_to_end(&mut buf)
            .map_err(|e| CliError::new(2, format!("<stdin>: {e}")))?;
    } else {
        buf = std::fs::read(path)
            .map_err(|e| CliError::new(2, format!("{}: {e}", path.display())))?;
    }
    Ok(buf)
}

/// Writes a file atomically (temporary file in the same directory, then rename),
/// keeping the original's permissions, so a failure never leaves a half-written file.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<(), CliError> {
    let err =
        |e: std::io::Error| CliError::new(3, format!("{}: cannot write: {e}", path.display()));
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".lockstep-")
        .tempfile_in(dir)
        .map_err(err)?;
    if let Ok(meta) = std::fs::metadata(path) {
        std::fs::set_permissions(tmp.path(), meta.permissions()).map_err(err)?;
    }
    tmp.write_all(data).map_err(err)?;
    tmp.as_file().sync_all().map_err(err)?;
    tmp.persist(path).map_err(|e| err(e.error))?;
    Ok(())
}

pub fn write_stdout(data: &[u8]) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    out.write_all(data)
        .and_then(|_| out.flush())
        .map_err(|e| CliError::new(3, format!("<stdout>: {e}")))
}

/// Writes the result: in place, to `--output`, or to stdout.
pub fn emit(
    input: &Path,
    in_place: bool,
    output: Option<&Path>,
    data: &[u8],
) -> Result<(), CliError> {
    if in_place {
        if input == Path::new("-") {
            return Err(CliError::new(100, "--in-place needs a file, not stdin"));
        }
        write_atomic(input, data)
    } else if let Some(out) = output {
        write_atomic(out, data)
    } else {
        write_stdout(data)
    }
}

/// Loads identities from `--identity` and every sops source; problems become warnings.
pub fn identities(ctx: &Context) -> (Identities, Vec<String>) {
    let loaded = identity_sources::load(&ctx.identities);
    for p in &loaded.problems {
        tracing::warn!("identity source skipped: {p}");
    }
    (loaded.identities, loaded.searched)
}

/// Identities from `--identity` only (sealing keys are never looked up implicitly).
pub fn explicit_identities(ctx: &Context) -> Result<Identities, CliError> {
    if ctx.identities.is_empty() {
        return Err(CliError::new(
            1,
            "no identity: give --identity FILE (repeatable for several cluster keys)",
        ));
    }
    let loaded = identity_sources::load_explicit(&ctx.identities);
    if let Some(p) = loaded.problems.first() {
        return Err(CliError::new(1, p.clone()));
    }
    Ok(loaded.identities)
}

/// Splits comma-separated recipient lists (`--age a,b --age c`).
pub fn parse_recipients(values: &[String]) -> Result<Vec<AgeRecipient>, CliError> {
    values
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| AgeRecipient::parse(s).map_err(|e| CliError::new(1, e.to_string())))
        .collect()
}

/// The `.sops.yaml` in effect, if any.
pub fn load_config(ctx: &Context) -> Result<Option<sops::config::Config>, CliError> {
    let cwd =
        std::env::current_dir().map_err(|e| CliError::new(1, format!("current directory: {e}")))?;
    sops::config::locate(ctx.config.as_deref(), &cwd)
        .map_err(|e| CliError::new(1, format!("error loading config: {e}")))
}

/// Turns a creation rule into encryption settings (age keys only).
pub fn settings_from_rule(
    rule: &sops::config::CreationRule,
    config_path: &Path,
) -> Result<EncryptSettings, CliError> {
    let mut groups = Vec::new();
    for (i, g) in rule.key_groups.iter().enumerate() {
        if !g.pgp.is_empty() || !g.other.is_empty() {
            return Err(CliError::new(
                1,
                format!(
                    "{}: creation rule key group {i} lists PGP/KMS/Vault keys; lockstep encrypts to age keys only",
                    config_path.display()
                ),
            ));
        }
        groups.push(parse_recipients(&g.age)?);
    }
    Ok(EncryptSettings {
        groups,
        shamir_threshold: rule.shamir_threshold.unwrap_or(0),
        selection: rule.selection.clone(),
        mac_only_encrypted: rule.mac_only_encrypted,
    })
}

/// Output layout from the config's `stores:` section and `--indent`.
pub fn layout(config: Option<&sops::config::Config>, indent: Option<usize>) -> Layout {
    let mut l = Layout::default();
    if let Some(c) = config {
        if let Some(i) = c.yaml_indent {
            l.yaml_indent = i;
        }
        if c.json_indent.is_some() {
            l.json_indent = c.json_indent;
        }
    }
    if let Some(i) = indent {
        l.yaml_indent = i;
        l.json_indent = Some(i);
    }
    l
}

/// The absolute path used to match creation rules.
pub fn rule_path(input: &Path, filename_override: Option<&Path>) -> PathBuf {
    let p = filename_override.unwrap_or(input);
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

pub fn formats(
    input: &Path,
    input_type: Option<Format>,
    output_type: Option<Format>,
    filename_override: Option<&Path>,
) -> (Format, Format) {
    let by_name = Format::for_path(filename_override.unwrap_or(input));
    let i = input_type.unwrap_or(by_name);
    let o = output_type.unwrap_or(i);
    (i, o)
}
