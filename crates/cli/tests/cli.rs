//! The command-line interfaces as a user meets them: help with examples
//! and exit codes for every command, `--json` wherever there is output,
//! man pages and shell completions generated from the same definitions,
//! usage errors and exit codes. Runs the built binaries.

use std::process::{Command, Output};

const HIGHLANDER: &str = env!("CARGO_BIN_EXE_highlander");

fn run(bin: &str, args: &[&str]) -> Output {
    Command::new(bin).args(args).output().unwrap_or_else(|e| panic!("cannot run {bin}: {e}"))
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("UTF-8 output")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `--help` of `highlander ARGS`, which must succeed.
fn help(args: &[String]) -> String {
    let mut argv: Vec<&str> = args.iter().map(String::as_str).collect();
    argv.push("--help");
    let o = run(HIGHLANDER, &argv);
    assert!(o.status.success(), "highlander {argv:?}: {}", stderr(&o));
    stdout(&o)
}

/// The subcommand names listed under "Commands:" in a help text.
fn listed_commands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| l.trim() != "Commands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

/// Every command path, discovered from the help texts themselves (so a new
/// command is checked without touching this test); the top level is `[]`.
fn all_commands() -> Vec<Vec<String>> {
    let mut found = vec![];
    let mut todo = vec![vec![]];
    while let Some(path) = todo.pop() {
        for sub in listed_commands(&help(&path)) {
            let mut p = path.clone();
            p.push(sub);
            todo.push(p);
        }
        found.push(path);
    }
    found.sort();
    found
}

/// Commands that have no subcommands of their own.
fn leaf_commands() -> Vec<Vec<String>> {
    all_commands().into_iter().filter(|p| listed_commands(&help(p)).is_empty()).collect()
}

#[test]
fn every_command_is_discovered() {
    let all: Vec<String> = all_commands().iter().map(|p| p.join(" ")).collect();
    for expected in ["", "lockspace", "lockspace init", "lockspace clear-host", "dump", "status", "who", "check", "metrics", "generate", "generate man", "generate completions"] {
        assert!(all.iter().any(|c| c == expected), "command {expected:?} not found in {all:?}");
    }
}

#[test]
fn every_help_has_examples_and_exit_codes() {
    for path in all_commands() {
        let text = help(&path);
        assert!(text.contains("Examples:"), "`highlander {} --help` has no Examples section:\n{text}", path.join(" "));
        // `check` is a monitoring plugin: a bad command line is UNKNOWN (3) there.
        let usage = if path == ["check"] { "  3  UNKNOWN: bad command line" } else { "  2  bad command line" };
        assert!(text.contains("Exit codes:") && text.contains(usage), "`highlander {} --help` lists no exit codes:\n{text}", path.join(" "));
        // Every example line names the program (or is a comment or a shell line around it).
        let examples = text.split("Examples:").nth(1).unwrap().split("\n\n").next().unwrap();
        assert!(examples.lines().skip(1).any(|l| l.trim_start().starts_with("highlander") || l.contains("<(highlander")), "no example in:\n{examples}");
    }
}

#[test]
fn every_command_with_output_takes_json() {
    for path in leaf_commands() {
        if path.first().map(String::as_str) == Some("generate") {
            continue; // prints a man page or a script: not a report
        }
        if path == ["metrics"] {
            continue; // prints the OpenMetrics text format: machine-readable already
        }
        let text = help(&path);
        assert!(text.contains("--json"), "`highlander {}` prints something but has no --json:\n{text}", path.join(" "));
    }
}

#[test]
fn man_page_is_roff_and_names_every_command() {
    let o = run(HIGHLANDER, &["generate", "man"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let page = stdout(&o);
    for section in [".TH highlander 8", ".SH NAME", ".SH SYNOPSIS", ".SH DESCRIPTION", ".SH COMMANDS", ".SH EXAMPLES", ".SH \"EXIT STATUS\"", ".SH FILES", ".SH \"SEE ALSO\""] {
        assert!(page.contains(section), "man page lacks {section:?}");
    }
    for path in leaf_commands() {
        let heading = format!(".SS \"highlander {}\"", path.join(" "));
        assert!(page.contains(&heading), "man page lacks {heading:?}");
    }
    assert!(page.contains("\\-\\-json"), "options are rendered");
    check_roff(&page);

    let o = run(HIGHLANDER, &["generate", "man", "highlanderd"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let page = stdout(&o);
    for needle in [".TH highlanderd 8", ".SH OPTIONS", "\\-\\-config", "\\-\\-check", ".SH \"EXIT STATUS\"", "/etc/highlander/highlanderd.conf"] {
        assert!(page.contains(needle), "highlanderd man page lacks {needle:?}");
    }
    check_roff(&page);
}

/// Plain ASCII (portable to any man implementation) and, where groff is
/// installed, formats without a single warning.
fn check_roff(page: &str) {
    assert!(page.is_ascii(), "man page has non-ASCII characters");
    assert!(page.lines().all(|l| !l.starts_with('.') || l.len() > 1), "stray control line");
    let groff = Command::new("groff")
        .args(["-man", "-Tutf8", "-ww", "-z"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let Ok(mut child) = groff else {
        eprintln!("groff not installed: man page checked for structure only");
        return;
    };
    use std::io::Write;
    child.stdin.take().unwrap().write_all(page.as_bytes()).unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success() && o.stderr.is_empty(), "groff: {}", stderr(&o));
}

#[test]
fn completions_generate_for_every_shell() {
    let o = run(HIGHLANDER, &["generate", "completions", "bash"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let script = stdout(&o);
    assert!(script.contains("complete -F _highlander"), "not a bash completion script:\n{script}");
    for word in ["lockspace", "clear-host", "dump", "status", "who", "--json", "--socket"] {
        assert!(script.contains(word), "bash completion lacks {word}");
    }
    for shell in ["zsh", "fish"] {
        let o = run(HIGHLANDER, &["generate", "completions", shell]);
        assert!(o.status.success() && stdout(&o).contains("highlander"), "{shell}: {}", stderr(&o));
    }
}

#[test]
fn bad_command_lines_exit_2_with_usage() {
    for args in [&["status", "--bogus"][..], &[], &["nosuchcommand"], &["lockspace", "init", "/tmp/x"], &["generate", "completions", "tcsh"], &["--json"]] {
        let o = run(HIGHLANDER, args);
        assert_eq!(o.status.code(), Some(2), "highlander {args:?}: {}", stderr(&o));
        let err = stderr(&o);
        // clap's message: what is wrong, then the usage line or the pointer to --help.
        assert!(err.contains("Usage:") || err.contains("try '--help'"), "highlander {args:?}: no usage message: {err}");
        assert!(o.stdout.is_empty(), "usage errors go to stderr");
    }
}

#[test]
fn check_reports_bad_command_lines_unknown_and_no_daemon_critical() {
    for args in [&["check", "--bogus"][..], &["check", "-w", "20:10"], &["check", "-c", "x"], &["check", "-t", "0"], &["check", "extra"]] {
        let o = run(HIGHLANDER, args);
        assert_eq!(o.status.code(), Some(3), "highlander {args:?}: {}", stderr(&o));
        let line = stdout(&o);
        assert!(line.starts_with("HIGHLANDER UNKNOWN - bad command line: ") && line.lines().count() == 1, "highlander {args:?}: {line}");
        assert!(stderr(&o).contains("Usage:") || stderr(&o).contains("try '--help'"), "clap's message stays on stderr: {}", stderr(&o));
    }
    let o = run(HIGHLANDER, &["check", "-w", "1:x"]);
    assert!(stdout(&o).contains("threshold \"1:x\": not a number"), "{}", stdout(&o));
    let o = run(HIGHLANDER, &["check", "--help"]);
    assert_eq!(o.status.code(), Some(0), "help is no error");

    let socket = std::env::temp_dir().join(format!("hl-cli-check-{}.sock", std::process::id()));
    let o = run(HIGHLANDER, &["check", "--socket", socket.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    assert!(stdout(&o).starts_with("HIGHLANDER CRITICAL - highlanderd is not running"), "{}", stdout(&o));
    let o = run(HIGHLANDER, &["check", "--json", "--socket", socket.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("check --json is JSON");
    assert_eq!((v["state"].as_str(), v["exit_code"].as_u64(), o.status.code()), (Some("CRITICAL"), Some(2), Some(2)));
}

#[test]
fn failures_exit_1_and_no_daemon_exits_3() {
    let dir = std::env::temp_dir().join(format!("hl-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let missing = dir.join("no-such-lockspace");
    let o = run(HIGHLANDER, &["dump", missing.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).starts_with("highlander: ") && stderr(&o).contains("no-such-lockspace"), "{}", stderr(&o));

    let socket = dir.join("no-such.sock");
    for args in [vec!["status", "--socket", socket.to_str().unwrap()], vec!["who", "/dev/null", "--socket", socket.to_str().unwrap()], vec!["metrics", "--socket", socket.to_str().unwrap()]] {
        let o = run(HIGHLANDER, &args);
        assert_eq!(o.status.code(), Some(3), "highlander {args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("highlanderd is not running"), "{}", stderr(&o));
    }

    // --json output parses, with the fields a script needs.
    let ls = dir.join("cli.lockspace");
    let o = run(HIGHLANDER, &["lockspace", "init", ls.to_str().unwrap(), "--name", "cli", "--max-hosts", "4", "--resources", "8", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("init --json is JSON");
    assert_eq!(v["name"], "cli");
    assert_eq!(v["max_hosts"], 4);
    let o = run(HIGHLANDER, &["dump", ls.to_str().unwrap(), "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("dump --json is JSON");
    assert_eq!(v["name"], "cli");
    let o = run(HIGHLANDER, &["lockspace", "init", ls.to_str().unwrap(), "--name", "again"]);
    assert_eq!(o.status.code(), Some(1), "refuses to overwrite");
    assert!(stderr(&o).contains("--force"), "{}", stderr(&o));
    std::fs::remove_dir_all(&dir).unwrap();
}
