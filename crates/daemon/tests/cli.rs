//! highlanderd's command line as an administrator meets it: help with
//! examples and exit codes, usage errors with exit code 2.

use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_highlanderd")).args(args).output().expect("run highlanderd")
}

#[test]
fn help_has_examples_and_exit_codes() {
    let o = run(&["--help"]);
    assert!(o.status.success());
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(text.contains("Examples:") && text.contains("Exit codes:"), "highlanderd --help:\n{text}");
}

#[test]
fn a_bad_command_line_exits_2_with_usage() {
    let o = run(&["--bogus"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("Usage:"));
}
