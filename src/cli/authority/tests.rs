use clap::{CommandFactory, Parser};

use super::*;
use crate::cli::{Cli, Command};

fn parse(args: &[&str]) -> Result<ServeArgs, clap::Error> {
    let cli = Cli::try_parse_from(["regate", "authority", "serve"].iter().chain(args))?;
    match cli.command {
        Command::Authority(Authority::Serve(args)) => Ok(args),
        other => panic!("parsed as {other:?}"),
    }
}

#[test]
fn serve_takes_listen_state_kubeconfig_and_the_hidden_latency() {
    let args = parse(&[
        "--listen",
        "127.0.0.1:0",
        "--state",
        "/tmp/s",
        "--kubeconfig",
        "k.yaml",
        "--inject-latency",
        "5ms",
    ])
    .expect("parses");
    assert_eq!(args.listen.port(), 0);
    assert_eq!(args.kubeconfig, Some(PathBuf::from("k.yaml")));
    assert_eq!(args.inject_latency, Some(Duration::from_millis(5)));
}

#[test]
fn listen_is_required() {
    assert!(parse(&[]).is_err());
    assert!(parse(&["--listen", "not-an-address"]).is_err());
}

#[test]
fn the_fault_injection_flag_is_not_in_the_help() {
    let mut command = Cli::command();
    let serve = command
        .find_subcommand_mut("authority")
        .and_then(|c| c.find_subcommand_mut("serve"))
        .expect("authority serve");
    let help = serve.render_long_help().to_string();
    assert!(help.contains("--kubeconfig"), "{help}");
    assert!(!help.contains("inject"), "{help}");
}
