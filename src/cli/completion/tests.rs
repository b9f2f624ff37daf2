use super::*;

#[test]
fn every_shell_gets_a_script_naming_the_commands() {
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let script = script(shell);
        for word in ["regate", "who-can", "can-i", "explain", "completion"] {
            assert!(script.contains(word), "{shell} script lacks {word}");
        }
    }
}

/// Every command, the leaves a user runs and the groups above them (`regate`, `regate
/// policy`), shows an example invoking regate in its `--help`.
#[test]
fn every_command_and_subcommand_has_an_example_invoking_regate() {
    fn check(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
        let path = format!("{path} {}", command.get_name()).trim().to_string();
        let help = command.get_after_help().map(|h| h.to_string());
        if !help.is_some_and(|h| h.contains("regate ")) {
            missing.push(path.clone());
        }
        for sub in command.get_subcommands() {
            check(sub, &path, missing);
        }
    }
    let mut missing = Vec::new();
    check(&Cli::command(), "", &mut missing);
    assert!(
        missing.is_empty(),
        "no example in --help (after_help): {missing:?}"
    );
}
