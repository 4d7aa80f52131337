//! `lockstep quickstart`: devcluster, the example repo and keys, a full reconcile, and a
//! readable result. Exits 1 when an Application that should settle did not.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use lockstep::quickstart::{self, Report, Setup, Summary};

use super::common::{CliError, CliResult};

#[derive(clap::Args, Debug)]
#[command(after_help = r#"Examples:
  cargo run --release -- quickstart      # from the repository
  # runs until Ctrl-C; explore with the kubectl commands it prints:
  lockstep quickstart --keep-running
  lockstep quickstart -o json | jq .apps

Exit status: 0 when every example Application settled as expected (the rogue one denied by
policy), the pushed commit was applied and the hand edit corrected; 1 otherwise."#)]
pub struct Args {
    /// The lockstep repository (holding examples/, deploy/, keys-example/); default: the
    /// current directory, else where this binary was built from.
    #[arg(long, value_name = "DIR")]
    project: Option<PathBuf>,
    /// How long the Applications may take to settle, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 90)]
    timeout: u64,
    /// Leave devcluster and the controller running; print the kubeconfig and commands.
    #[arg(long)]
    keep_running: bool,
    /// Skip the Vault example even when OpenBao's `bao` is on PATH.
    #[arg(long)]
    no_vault: bool,
    /// Output format of the summary.
    #[arg(short = 'o', long, value_enum, default_value = "text")]
    output: Output,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Output {
    Text,
    Json,
}

struct Progress {
    bar: ProgressBar,
}

impl Report for Progress {
    fn step(&self, text: &str) {
        if self.bar.is_hidden() {
            eprintln!("  ✓ {text}");
        } else {
            self.bar.println(format!("  ✓ {text}"));
        }
    }
    fn progress(&self, text: &str) {
        self.bar.set_message(text.to_owned());
    }
}

/// The first executable `name` on PATH.
fn on_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

fn project_dir(arg: Option<PathBuf>) -> PathBuf {
    if let Some(p) = arg {
        return p;
    }
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    if cwd.join("examples").is_dir() && cwd.join("deploy").is_dir() {
        return cwd;
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn run(args: Args) -> CliResult {
    let rt = tokio::runtime::Runtime::new()
        .map_err(|e| CliError::new(1, format!("cannot start the runtime: {e}")))?;
    let setup = Setup {
        project: project_dir(args.project),
        settle_timeout: Duration::from_secs(args.timeout),
        bao: if args.no_vault { None } else { on_path("bao") },
    };
    let bar = if std::io::stderr().is_terminal() {
        let b = ProgressBar::new_spinner();
        b.set_style(
            ProgressStyle::with_template("  {spinner} {msg} ({elapsed})")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        b.enable_steady_tick(Duration::from_millis(120));
        b
    } else {
        ProgressBar::hidden()
    };
    let progress = Progress { bar };
    if !progress.bar.is_hidden() || args.output == Output::Text {
        eprintln!(
            "lockstep quickstart: devcluster, the example repository and keys, the reconciler"
        );
    }
    rt.block_on(async {
        let (summary, env) = match quickstart::run_all(&setup, &progress).await {
            Ok(r) => r,
            Err(e) => {
                progress.bar.finish_and_clear();
                return Err(CliError::new(1, e.to_string()));
            }
        };
        progress.bar.finish_and_clear();
        match args.output {
            Output::Text => print_text(&summary),
            Output::Json => println!(
                "{}",
                serde_json::to_string_pretty(&summary).unwrap_or_default()
            ),
        }
        if args.keep_running {
            let path = std::env::current_dir()
                .unwrap_or_else(|_| PathBuf::from("."))
                .join("quickstart.kubeconfig");
            write_private(&path, &env.kubeconfig())
                .map_err(|e| CliError::new(3, format!("{}: {e}", path.display())))?;
            eprintln!(
                "\nStill running. In another shell:\n  export KUBECONFIG={}\n  kubectl get applications -A\n  kubectl describe application -n team-payments payments\n  kubectl get events -n team-frontend\nPress Ctrl-C to stop (the kubeconfig is removed).",
                path.display()
            );
            let _ = tokio::signal::ctrl_c().await;
            let _ = std::fs::remove_file(&path);
        }
        env.shutdown().await;
        if summary.ok {
            Ok(())
        } else {
            Err(CliError::new(
                1,
                "an example Application did not settle as expected (see above)",
            ))
        }
    })
}

fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())
}

fn print_text(s: &Summary) {
    println!();
    println!(
        "{:<26} {:<6} {:<22} RESULT",
        "APPLICATION", "READY", "REVISION"
    );
    for a in &s.apps {
        let rev = a
            .revision
            .as_deref()
            .map(short_revision)
            .unwrap_or_else(|| "-".into());
        let result = if a.ready {
            format!(
                "{} object{} applied",
                a.objects.len(),
                if a.objects.len() == 1 { "" } else { "s" }
            )
        } else {
            format!("{}: {}", a.reason, a.message)
        };
        let mark = if a.ready == a.expected_ready {
            ""
        } else {
            "  <- unexpected"
        };
        println!(
            "{:<26} {:<6} {:<22} {result}{mark}",
            format!("{}/{}", a.namespace, a.name),
            if a.ready { "True" } else { "False" },
            rev
        );
        for o in &a.objects {
            println!("{:<57}- {o}", "");
        }
    }
    println!();
    match &s.push {
        Some((c, t)) => {
            println!("Pushed commit {c} to the example repository: applied in {t:.1} s")
        }
        None => println!("Pushed commit: not applied"),
    }
    match &s.drift {
        Some((o, t)) => println!("Edited {o} by hand: corrected in {t:.1} s"),
        None => println!("Hand edit: not corrected"),
    }
    if !s.secrets.is_empty() {
        println!("\nSecrets in the cluster (values are never shown):");
        for sec in &s.secrets {
            let keys: Vec<String> = sec.keys.iter().map(|k| format!("{k}=<redacted>")).collect();
            println!("  {}/{}: {}", sec.namespace, sec.name, keys.join(" "));
        }
    }
    println!(
        "\n{}",
        if s.ok {
            "All example Applications settled as expected."
        } else {
            "Something did not settle as expected."
        }
    );
}

/// `main@sha1:0123456789abcdef...` -> `main@sha1:0123456789ab`.
fn short_revision(r: &str) -> String {
    match r.split_once("sha1:") {
        Some((head, commit)) => format!("{head}sha1:{}", &commit[..12.min(commit.len())]),
        None => r.to_owned(),
    }
}
