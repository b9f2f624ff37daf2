use std::process::Command;

use super::*;

/// What `bash` passes to `regate` when it runs `line`: `regate` is a function printing each
/// argument followed by NUL, run in `dir`.
pub(crate) fn arguments_bash_gives(line: &str, dir: &std::path::Path) -> Vec<String> {
    let script = format!("regate() {{ printf '%s\\0' \"$@\"; }}; {line}");
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(dir)
        .output()
        .expect("run bash");
    assert!(
        out.status.success(),
        "bash failed on {line:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("arguments are UTF-8");
    let mut args: Vec<String> = text.split('\0').map(str::to_string).collect();
    assert_eq!(args.pop().as_deref(), Some(""), "each argument ends in NUL");
    args
}

#[test]
fn safe_words_stay_bare_and_the_rest_is_single_quoted() {
    for (word, quoted) in [
        (
            "system:serviceaccount:project-a:default",
            "system:serviceaccount:project-a:default",
        ),
        ("a_b@c%d+e=f:g,h./i-j", "a_b@c%d+e=f:g,h./i-j"),
        ("", "''"),
        ("two words", "'two words'"),
        ("it's", "'it'\\''s'"),
        ("'", "''\\'''"),
        ("$(touch${IFS}pwned)", "'$(touch${IFS}pwned)'"),
        ("`id`;a|b*c", "'`id`;a|b*c'"),
        ("line\nbreak", "'line\nbreak'"),
        ("~root", "'~root'"),
        ("é", "'é'"),
    ] {
        assert_eq!(quote(word), quoted, "{word:?}");
        assert_eq!(Quoted(word).to_string(), quoted, "{word:?}");
    }
    assert!(matches!(quote("project-b"), Cow::Borrowed(_)));
}

#[test]
fn the_common_command_needs_no_quotes() {
    let line = CommandLine::new(&["regate", "policy", "add-role-to-user"])
        .arg("system:image-puller")
        .arg("system:serviceaccount:project-a:default")
        .option("-n", "project-b");
    assert_eq!(
        line.to_string(),
        "regate policy add-role-to-user system:image-puller \
         system:serviceaccount:project-a:default -n project-b"
    );
}

#[test]
fn values_starting_with_a_dash_are_never_taken_for_options() {
    let line = CommandLine::new(&["regate", "policy", "add-role-to-user"])
        .arg("system:image-puller")
        .arg("-rf me")
        .option("-n", "project-b");
    assert_eq!(
        line.to_string(),
        "regate policy add-role-to-user -n project-b -- system:image-puller '-rf me'"
    );
    let line = CommandLine::new(&["regate", "create", "namespace"])
        .arg("x")
        .option("-n", "-y z")
        .flag("--dry-run");
    assert_eq!(
        line.to_string(),
        "regate create namespace x -n='-y z' --dry-run"
    );
}

/// The example of a CI identity from a git branch named `$(touch${IFS}pwned)`: pasted into
/// bash, the fix names the whole subject and runs nothing. Unquoted, the same text would
/// have created the file (and granted a truncated subject).
#[test]
fn a_branch_named_like_a_command_substitution_runs_nothing() {
    let subject = "ci:repo:org/app:ref:refs/heads/$(touch${IFS}pwned)";
    let attrs = crate::policy::Attributes::layers("get", "project-a", "app");
    let command = crate::policy::grant_command("system:image-puller", subject, &attrs);
    assert_eq!(
        command,
        "regate policy add-role-to-user system:image-puller \
         'ci:repo:org/app:ref:refs/heads/$(touch${IFS}pwned)' -n project-a"
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let args = arguments_bash_gives(&command, dir.path());
    assert_eq!(
        args,
        [
            "policy",
            "add-role-to-user",
            "system:image-puller",
            subject,
            "-n",
            "project-a"
        ]
    );
    assert!(!dir.path().join("pwned").exists(), "the command ran");

    // What the unquoted text did: the substitution runs, and the subject is cut.
    let unquoted =
        format!("regate policy add-role-to-user system:image-puller {subject} -n project-a");
    let args = arguments_bash_gives(&unquoted, dir.path());
    assert!(
        dir.path().join("pwned").exists(),
        "the unquoted text runs it"
    );
    assert_eq!(args[3], "ci:repo:org/app:ref:refs/heads/");
}
