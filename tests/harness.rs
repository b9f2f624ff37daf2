//! The fixture checked against the bare registry, with no regate: if these fail, the other
//! tests' failures say nothing about regate.

mod common;

use common::*;

#[test]
fn skopeo_round_trip_to_the_bare_registry() {
    let env = Env::builder().without_regate().run();
    let src = env.dir().join("src");
    let image = oci_layout(&src, &unique_bytes(100_000));
    let push = env.skopeo_copy(&env.oci_ref("src"), &env.registry_ref("ns/app:v1"), None);
    assert!(
        push.status.success(),
        "skopeo push to the registry: {}",
        show_output(&push)
    );

    let pull = env.skopeo_copy(&env.registry_ref("ns/app:v1"), &env.oci_ref("back"), None);
    assert!(
        pull.status.success(),
        "skopeo pull from the registry: {}",
        show_output(&pull)
    );
    let back = env.dir().join("back");
    assert_eq!(
        oci_manifest_digest(&back),
        image.manifest_digest,
        "manifest digest kept"
    );
    assert_eq!(
        digest_file(&oci_blob(&back, &image.layer_digest)),
        image.layer_digest,
        "layer came back intact"
    );
    assert!(
        env.registry_log()
            .contains("\"PUT /v2/ns/app/manifests/v1 HTTP/1.1\" 201"),
        "the registry's access log shows the push:\n{}",
        env.registry_log()
    );
}

#[test]
fn docker_import_push_pull_with_the_bare_registry() {
    let env = Env::builder().without_regate().run();
    let docker = env.docker();
    let tag = format!("{}/ns/dimg:v1", env.registry_addr());
    docker.image(&tag);
    docker.ok(&["push", &tag]);
    docker.ok(&["rmi", &tag]);
    assert!(!docker.has_image(&tag), "image removed before pull");
    let pull = docker.pull(&tag);
    assert!(pull.status.success(), "docker pull: {}", show_output(&pull));
    assert!(docker.has_image(&tag), "image pulled");
}

#[test]
fn http_helpers_against_the_bare_registry() {
    let env = Env::builder().without_regate().run();
    let image = Image::unique(4096);
    env.seed("ns/http", "v1", &image);

    // reqwest
    let head = Reply::from_request(
        client()
            .head(format!("{}/v2/ns/http/manifests/v1", env.registry_url()))
            .header("Accept", OCI_MANIFEST),
    );
    assert_eq!(head.status, 200, "{head}");
    assert_eq!(
        head.header("Docker-Content-Digest"),
        Some(image.manifest_digest.as_str())
    );
    assert_eq!(
        head.header("Content-Length"),
        Some(image.manifest.len().to_string().as_str())
    );

    // raw, with a body and a HEAD
    let addr = env.registry_addr();
    let host = addr.to_string();
    let get = raw_http(
        addr,
        &build_raw(
            "GET",
            &format!("/v2/ns/http/blobs/{}", image.layer_digest),
            &host,
            &[],
            b"",
        ),
    )
    .expect("raw GET");
    assert_eq!(get.status, 200, "{get}");
    assert_eq!(get.body, image.layer);
    let head = raw_http(
        addr,
        &build_raw(
            "HEAD",
            &format!("/v2/ns/http/blobs/{}", image.layer_digest),
            &host,
            &[],
            b"",
        ),
    )
    .expect("raw HEAD");
    assert_eq!(head.status, 200, "{head}");
    assert!(head.body.is_empty());
    assert_eq!(head.header("Content-Length"), Some("4096"));

    // the registry's own errors are OCI JSON too
    let missing = raw_http(
        addr,
        &build_raw("GET", "/v2/ns/http/manifests/nope", &host, &[], b""),
    )
    .expect("raw GET");
    assert_eq!(missing.status, 404);
    assert_eq!(
        missing.oci_error_problem("MANIFEST_UNKNOWN"),
        None,
        "{missing}"
    );
}

#[test]
fn big_layout_is_hashed_while_written() {
    let dir = tempfile::tempdir().expect("temp dir");
    let image = oci_layout_big(dir.path(), 3 * 1024 * 1024 + 17);
    let path = oci_blob(dir.path(), &image.layer_digest);
    assert_eq!(
        std::fs::metadata(&path).expect("layer").len(),
        3 * 1024 * 1024 + 17
    );
    assert_eq!(digest_file(&path), image.layer_digest);
}
