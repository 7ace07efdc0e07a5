//! Command-line types (clap derive), and the completion scripts and man page generated
//! from them (so they never drift from `--help`). Parsing values and merging them
//! with the file and the environment is `config::load`'s job, so every value of a flag
//! that the file can also set is a raw `Option<String>` here. A clap `default_value`
//! would hide the file's value (DEPS §7), and raw strings let `config::load` report
//! every bad flag together with the file's and the environment's errors.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "gsup",
    version,
    about = "A small, correct process supervisor: signals, zombies, graceful shutdown with hard deadlines"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once per run, so the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Supervise PROGRAM (the main job).
    Run(RunArgs),
    /// Validate the config; print the effective config and each value's source.
    Check(CheckArgs),
    /// Exit 0/1 from a health endpoint (for Docker HEALTHCHECK, no curl needed).
    Probe(ProbeArgs),
    /// Talk to a running gsup over its control socket.
    Ctl(CtlArgs),
    /// Print deployment snippets consistent with the config.
    Generate(GenerateArgs),
    /// Print a shell completion script (e.g. `gsup completions bash > /etc/bash_completion.d/gsup`).
    Completions(CompletionsArgs),
    /// Print the man page (roff), e.g. `gsup man | man -l -`.
    Man,
    /// Internal: sets LISTEN_PID/WATCHDOG_PID to its own pid, then execs PROGRAM (DESIGN §8).
    #[command(name = "__exec-shim", hide = true)]
    ExecShim(ExecShimArgs),
}

/// The flags of `run` that override config keys; `config::load` merges them last.
#[derive(Debug, Clone, Default, Args)]
pub struct ConfigFlags {
    /// Config file (default: $GSUP_CONFIG, else ./supervisor.toml if present).
    #[arg(long, value_name = "F")]
    pub config: Option<PathBuf>,
    /// `[http] listen`: ADDR or "off".
    #[arg(long, value_name = "ADDR|off")]
    pub http: Option<String>,
    /// `[shutdown] timeout`, e.g. 30s.
    #[arg(long, value_name = "D")]
    pub timeout: Option<String>,
    /// `[shutdown] force_timeout`, e.g. 5s.
    #[arg(long, value_name = "D")]
    pub force_timeout: Option<String>,
    /// `[shutdown] drain_delay`, e.g. 5s.
    #[arg(long, value_name = "D")]
    pub drain_delay: Option<String>,
    /// `[signals] forward_to`: group | child.
    #[arg(long, value_name = "group|child")]
    pub forward_to: Option<String>,
    /// `[signals] rewrite` entry FROM=TO (TO may be "none"); repeatable, merges with the file.
    #[arg(long, value_name = "FROM=TO")]
    pub rewrite: Vec<String>,
    /// `[restart] policy`: never | on-failure | always.
    #[arg(long, value_name = "POLICY")]
    pub restart: Option<String>,
    /// `[readiness] probe = { http = URL }`.
    #[arg(long, value_name = "URL", conflicts_with = "ready_tcp")]
    pub ready_http: Option<String>,
    /// `[readiness] probe = { tcp = ADDR }`.
    #[arg(long, value_name = "ADDR")]
    pub ready_tcp: Option<String>,
    /// A `[[listen]]` socket NAME=ADDR; repeatable, replaces the file's entry of that name.
    #[arg(long, value_name = "NAME=ADDR")]
    pub listen: Vec<String>,
    /// `[http] token_file`.
    #[arg(long, value_name = "F")]
    pub token_file: Option<PathBuf>,
    /// `[control] socket`.
    #[arg(long, value_name = "PATH")]
    pub control_socket: Option<PathBuf>,
    /// `[shutdown] exit_code_map` entry FROM=TO; repeatable, merges with the file.
    #[arg(long, value_name = "FROM=TO")]
    pub exit_map: Vec<String>,
    /// `[log] format`: auto | text | json.
    #[arg(long, value_name = "FMT")]
    pub log_format: Option<String>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub flags: ConfigFlags,
    /// PROGRAM and its ARGS; without them, `[process] command`.
    // No `allow_hyphen_values` (DEPS §7 suggests it): it would turn a mistyped flag such
    // as `--timout 5s` into PROGRAM instead of a usage error. `trailing_var_arg` already
    // passes everything after PROGRAM through, hyphens included; `--` covers the rest.
    #[arg(trailing_var_arg = true, value_name = "PROGRAM")]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Config file (default: $GSUP_CONFIG, else ./supervisor.toml if present).
    #[arg(long, value_name = "F")]
    pub config: Option<PathBuf>,
    /// Compare the worst-case shutdown with this grace period (e.g. 30s).
    #[arg(long, value_name = "D")]
    pub grace_period: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProbeKind {
    Ready,
    Alive,
    Health,
}

#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// Which endpoint; may be left out when `--url` names it.
    #[arg(required_unless_present = "url")]
    pub kind: Option<ProbeKind>,
    /// The full URL of the endpoint (default: the alias on `[http] listen`).
    #[arg(long, value_name = "U")]
    pub url: Option<String>,
    /// How long to wait for the answer (default 2s).
    #[arg(long, value_name = "D")]
    pub timeout: Option<String>,
    #[arg(long, value_name = "F")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CtlAction {
    Status,
    Shutdown,
    Kill,
    Reload,
    Prestop,
}

#[derive(Debug, Args)]
pub struct CtlArgs {
    pub action: CtlAction,
    /// The control socket (default: $GSUP_CONTROL_SOCKET, else `[control] socket`).
    #[arg(long, value_name = "P")]
    pub socket: Option<PathBuf>,
    #[arg(long, value_name = "F")]
    pub config: Option<PathBuf>,
    /// `status`: print the JSON even on a terminal (it is printed whenever stdout is not one).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    pub shell: Shell,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GenerateKind {
    Systemd,
    Kubernetes,
    Docker,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    pub kind: GenerateKind,
    #[arg(long, value_name = "F")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ExecShimArgs {
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        required = true,
        value_name = "PROGRAM"
    )]
    pub command: Vec<String>,
}

/// `gsup completions SHELL`: the script on stdout; exit 0, or 1 when stdout fails.
pub fn print_completions(shell: Shell) -> i32 {
    let shell = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    // Into memory first: clap_complete panics when its writer fails (a closed pipe).
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "gsup", &mut script);
    write_stdout(&script, "completions")
}

/// `gsup man`: one man page (section 1) for gsup and each of its subcommands.
pub fn print_man() -> i32 {
    match man_page() {
        Ok(page) => write_stdout(&page, "man"),
        Err(error) => {
            eprintln!("gsup man: {error}");
            1
        }
    }
}

/// The page: gsup's own sections, then per subcommand its synopsis and options under a
/// heading of its own (clap_mangen writes one page per command; one page is easier to
/// ship and to read, and needs no `gsup-run(1)` pages that would not exist).
fn man_page() -> std::io::Result<Vec<u8>> {
    let mut command = Cli::command();
    command.build();
    let man = clap_mangen::Man::new(command.clone());
    let mut page = Vec::new();
    // The preamble (the `Aq` string) once, from the title.
    man.render_title(&mut page)?;
    page.extend(section(|w| man.render_name_section(w))?);
    page.extend(section(|w| man.render_synopsis_section(w))?);
    page.extend(section(|w| man.render_description_section(w))?);
    page.extend(section(|w| man.render_options_section(w))?);
    for sub in command.get_subcommands().filter(|sub| !sub.is_hide_set()) {
        let name = format!("gsup {}", sub.get_name());
        let sub_man = clap_mangen::Man::new(sub.clone().bin_name(&name).display_name(&name));
        let synopsis = section(|w| sub_man.render_synopsis_section(w))?;
        let heading = format!(".SH \"{}\"\n", name.to_uppercase());
        page.extend(replace_heading(&synopsis, ".SH SYNOPSIS\n", &heading));
        if let Some(about) = sub.get_long_about().or_else(|| sub.get_about()) {
            writeln!(page, ".PP\n{}", roff_text(&about.to_string()))?;
        }
        let options = section(|w| sub_man.render_options_section(w))?;
        page.extend(replace_heading(&options, ".SH OPTIONS\n", ".SS Options\n"));
    }
    page.extend(section(|w| man.render_version_section(w))?);
    Ok(page)
}

/// One section rendered alone, without the preamble clap_mangen writes before each
/// (empty when the section has nothing to say, e.g. no options).
fn section(render: impl FnOnce(&mut Vec<u8>) -> std::io::Result<()>) -> std::io::Result<Vec<u8>> {
    let mut text = Vec::new();
    render(&mut text)?;
    let body = text
        .windows(4)
        .position(|w| w == b".SH ")
        .map_or(&[][..], |at| &text[at..]);
    Ok(body.to_vec())
}

fn replace_heading(section: &[u8], from: &str, to: &str) -> Vec<u8> {
    match section.strip_prefix(from.as_bytes()) {
        Some(rest) => [to.as_bytes(), rest].concat(),
        None => section.to_vec(),
    }
}

/// Plain text as a roff paragraph: no line may start a request, backslashes are literal.
fn roff_text(text: &str) -> String {
    text.replace('\\', "\\e")
        .lines()
        .map(|line| match line.chars().next() {
            Some('.' | '\'') => format!("\\&{line}"),
            _ => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn write_stdout(bytes: &[u8], what: &str) -> i32 {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => 0,
        // `gsup man | head`: the reader left; nothing is wrong with gsup.
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => 0,
        Err(error) => {
            eprintln!("gsup {what}: cannot write to stdout: {error}");
            1
        }
    }
}

impl CheckArgs {
    /// `check` reads the config exactly as `run` would without flags.
    pub fn config_flags(&self) -> ConfigFlags {
        ConfigFlags {
            config: self.config.clone(),
            ..ConfigFlags::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("gsup").chain(args.iter().copied()))
    }

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Any command line parses or is a usage error (exit 2), never a panic; the values
        /// of flags stay raw text for `config::load` to judge.
        #[test]
        fn any_command_line_parses_or_is_a_usage_error(
            args in proptest::collection::vec(
                prop_oneof![
                    proptest::sample::select(vec![
                        "run", "check", "probe", "ctl", "generate", "__exec-shim", "--", "-", "--config",
                        "--http", "--timeout", "--rewrite", "--listen", "--exit-map", "--grace-period",
                        "--url", "--socket", "ready", "status", "systemd", "--help", "-V",
                    ]).prop_map(str::to_string),
                    any::<String>(),
                ],
                0..8,
            )
        ) {
            if let Err(error) = parse(&args.iter().map(String::as_str).collect::<Vec<_>>()) {
                prop_assert!([0, 2].contains(&error.exit_code()), "{}", error);
            }
        }
    }

    #[test]
    fn run_takes_flags_and_a_trailing_command() {
        let cli = parse(&[
            "run",
            "--timeout",
            "10s",
            "--rewrite",
            "TERM=QUIT",
            "--rewrite",
            "INT=none",
            "--",
            "./api",
            "--port",
            "3000",
        ])
        .unwrap();
        let Command::Run(run) = cli.command else {
            panic!("not run")
        };
        assert_eq!(run.flags.timeout.as_deref(), Some("10s"));
        assert_eq!(run.flags.rewrite, ["TERM=QUIT", "INT=none"]);
        assert_eq!(run.command, ["./api", "--port", "3000"]);
    }

    #[test]
    fn run_command_is_optional_and_hyphens_pass_through() {
        let Command::Run(run) = parse(&["run"]).unwrap().command else {
            panic!("not run")
        };
        assert!(run.command.is_empty());
        assert!(run.flags.timeout.is_none());
        let Command::Run(run) = parse(&["run", "sh", "-c", "exit 3"]).unwrap().command else {
            panic!("not run")
        };
        assert_eq!(run.command, ["sh", "-c", "exit 3"]);
        let Command::Run(run) = parse(&["run", "--", "-weird", "--x"]).unwrap().command else {
            panic!("not run")
        };
        assert_eq!(run.command, ["-weird", "--x"]);
        let Command::Run(run) = parse(&["run", "./api", "--timeout", "1s"]).unwrap().command else {
            panic!("not run")
        };
        assert_eq!(run.command, ["./api", "--timeout", "1s"]);
        assert!(run.flags.timeout.is_none());
    }

    #[test]
    fn usage_errors_exit_2() {
        for args in [
            &["bogus"][..],
            &["run", "--bogus"],
            &["probe", "sideways"],
            &["ctl", "explode"],
            &["generate", "nomad"],
            &["completions", "tcsh"],
            &["man", "extra"],
            &["run", "--ready-http", "http://x/", "--ready-tcp", "x:1"],
        ] {
            let err = parse(args).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{args:?}");
        }
    }

    #[test]
    fn completions_and_man_are_generated_for_every_shell() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let Command::Completions(args) = parse(&["completions", &format!("{shell:?}").to_lowercase()])
                .unwrap()
                .command
            else {
                panic!("not completions")
            };
            assert_eq!(args.shell, shell);
        }
        let page = String::from_utf8(man_page().unwrap()).unwrap();
        assert!(page.contains("\n.TH gsup 1"), "{page}");
        assert_eq!(page.matches(".ds Aq").count(), 2, "one preamble (.ie/.el)");
        for heading in [".SH \"GSUP RUN\"", ".SH \"GSUP CTL\"", ".SH \"GSUP MAN\""] {
            assert!(page.contains(heading), "{heading} missing");
        }
        assert!(page.contains("\\-\\-grace\\-period"), "check's flags are there");
        assert!(!page.contains("exec-shim"), "hidden subcommands stay hidden");
        assert_eq!(roff_text(".x\n'y\\z"), "\\&.x\n\\&'y\\ez");
    }

    #[test]
    fn other_subcommands_parse() {
        assert!(matches!(
            parse(&["check", "--grace-period", "30s"]).unwrap().command,
            Command::Check(CheckArgs {
                grace_period: Some(_),
                ..
            })
        ));
        assert!(matches!(
            parse(&["probe", "ready", "--url", "http://127.0.0.1:9090/ready"])
                .unwrap()
                .command,
            Command::Probe(ProbeArgs {
                kind: Some(ProbeKind::Ready),
                ..
            })
        ));
        assert!(matches!(
            parse(&["ctl", "--socket", "/run/gsup.sock", "prestop"])
                .unwrap()
                .command,
            Command::Ctl(CtlArgs {
                action: CtlAction::Prestop,
                ..
            })
        ));
        assert!(matches!(
            parse(&["generate", "kubernetes"]).unwrap().command,
            Command::Generate(GenerateArgs {
                kind: GenerateKind::Kubernetes,
                ..
            })
        ));
        assert!(matches!(
            parse(&["__exec-shim", "./api", "-x"]).unwrap().command,
            Command::ExecShim(_)
        ));
    }
}
