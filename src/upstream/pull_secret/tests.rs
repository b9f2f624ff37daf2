use super::*;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use secrecy::ExposeSecret;

use crate::upstream::keyring::Credential;

fn document(user: &str) -> String {
    let auth = STANDARD.encode(format!("{user}:hunter2-secret"));
    format!(r#"{{"auths":{{"quay.io":{{"auth":"{auth}"}}}}}}"#)
}

/// Replaces `path` atomically (a new inode, as editors and `kubectl` mounts do).
fn replace(path: &Path, content: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn user(file: &PullSecretFile) -> Option<String> {
    let keyring = file.keyring();
    let found = keyring.lookup("quay.io/team/app");
    match &found.first()?.credential {
        Credential::Basic { username, password } => {
            assert_eq!(password.expose_secret(), "hunter2-secret");
            Some(username.clone())
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn open_and_lookup() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    std::fs::write(&path, document("first")).unwrap();
    let file = PullSecretFile::open(&path).unwrap();
    assert_eq!(user(&file).as_deref(), Some("first"));
    assert_eq!(file.path(), path);
    assert!(!file.reload().unwrap(), "nothing changed");
    let debug = format!("{file:?}");
    assert!(
        debug.contains("entries: 1") && !debug.contains("hunter2"),
        "{debug}"
    );
}

#[test]
fn open_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.json");
    let error = PullSecretFile::open(&missing).unwrap_err().to_string();
    assert!(error.contains(&*missing.to_string_lossy()), "{error}");
    assert!(error.contains("upstream.pull_secret"), "{error}");

    let broken = dir.path().join("broken.json");
    std::fs::write(&broken, r#"{"auths":{"quay.io":{"auth":7}}}"#).unwrap();
    let error = PullSecretFile::open(&broken).unwrap_err().to_string();
    assert!(error.contains(&*broken.to_string_lossy()), "{error}");
    assert!(error.contains(r#"auths["quay.io"].auth"#), "{error}");
}

#[test]
fn reload_picks_up_an_edit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    std::fs::write(&path, document("first")).unwrap();
    let file = PullSecretFile::open(&path).unwrap();
    // A request in flight holds the keyring it took.
    let in_flight = file.keyring();

    replace(&path, &document("second"));
    assert!(file.reload().unwrap());
    assert_eq!(user(&file).as_deref(), Some("second"));
    assert_eq!(in_flight.lookup("quay.io/x").len(), 1);
    assert!(matches!(
        &in_flight.lookup("quay.io/x")[0].credential,
        Credential::Basic { username, .. } if username == "first"
    ));

    // An in-place edit (same inode, another size) is seen too.
    std::fs::write(&path, document("third-longer")).unwrap();
    assert!(file.reload().unwrap());
    assert_eq!(user(&file).as_deref(), Some("third-longer"));

    // Rewriting the same content is not a new keyring.
    replace(&path, &document("third-longer"));
    assert!(!file.reload().unwrap());
}

#[test]
fn broken_edit_keeps_the_old_keyring() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    std::fs::write(&path, document("good")).unwrap();
    let file = PullSecretFile::open(&path).unwrap();

    replace(&path, r#"{"auths":{"quay.io":"#);
    let error = file.reload().unwrap_err().to_string();
    assert!(error.contains(&*path.to_string_lossy()), "{error}");
    assert!(error.contains("not JSON"), "{error}");
    assert_eq!(user(&file).as_deref(), Some("good"));
    // Not re-read (nor re-reported) until it changes again.
    assert!(!file.reload().unwrap());
    file.poll();

    replace(&path, &document("fixed"));
    assert!(file.reload().unwrap());
    assert_eq!(user(&file).as_deref(), Some("fixed"));
}

#[test]
fn removed_then_restored() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    std::fs::write(&path, document("before")).unwrap();
    let file = PullSecretFile::open(&path).unwrap();

    std::fs::remove_file(&path).unwrap();
    let error = file.reload().unwrap_err().to_string();
    assert!(error.contains(&*path.to_string_lossy()), "{error}");
    assert_eq!(user(&file).as_deref(), Some("before"));
    assert!(!file.reload().unwrap());

    // Restored as it was: the keyring in force is already that one.
    std::fs::write(&path, document("before")).unwrap();
    assert!(!file.reload().unwrap());
    assert_eq!(user(&file).as_deref(), Some("before"));

    std::fs::remove_file(&path).unwrap();
    assert!(file.reload().is_err());
    std::fs::write(&path, document("after")).unwrap();
    assert!(file.reload().unwrap());
    assert_eq!(user(&file).as_deref(), Some("after"));
}

#[test]
fn follows_a_secret_mount_symlink_swap() {
    use std::os::unix::fs::symlink;
    // The layout of a mounted Kubernetes Secret: FILE -> ..data/FILE, ..data -> ..<timestamp>.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir(root.join("..v1")).unwrap();
    std::fs::write(root.join("..v1/.dockerconfigjson"), document("v1")).unwrap();
    symlink("..v1", root.join("..data")).unwrap();
    symlink("..data/.dockerconfigjson", root.join(".dockerconfigjson")).unwrap();
    let file = PullSecretFile::open(&root.join(".dockerconfigjson")).unwrap();
    assert_eq!(user(&file).as_deref(), Some("v1"));

    std::fs::create_dir(root.join("..v2")).unwrap();
    std::fs::write(root.join("..v2/.dockerconfigjson"), document("v2")).unwrap();
    symlink("..v2", root.join("..data_tmp")).unwrap();
    std::fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
    std::fs::remove_dir_all(root.join("..v1")).unwrap();
    assert!(file.reload().unwrap());
    assert_eq!(user(&file).as_deref(), Some("v2"));
}

#[tokio::test]
async fn reloader_follows_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    std::fs::write(&path, document("first")).unwrap();
    let file = PullSecretFile::open(&path).unwrap();
    file.spawn_reloader();
    replace(&path, &document("second"));
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while user(&file).as_deref() != Some("second") {
        assert!(std::time::Instant::now() < deadline, "not reloaded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
