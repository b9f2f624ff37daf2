//! What regate forwards and how (docs/behaviour.md §5, §6): headers kept, headers removed,
//! `Location`/`Link` rewriting, and the upstream going away. Where the real registry cannot
//! show what it received, a [`Recorder`] plays the upstream.

mod common;

use std::sync::Arc;

use common::*;

#[test]
fn head_keeps_the_registrys_length_and_digest() {
    let env = Env::with_projects();
    let image = Image::unique(123_457);
    env.seed("project-a/app", "v1", &image);
    let token = env.token("default", "project-a");
    let auth = Auth::Basic(&token).header().expect("header");

    for (path, accept) in [
        ("/v2/project-a/app/manifests/v1".to_string(), OCI_MANIFEST),
        (
            format!("/v2/project-a/app/manifests/{}", image.manifest_digest),
            OCI_MANIFEST,
        ),
        (
            format!("/v2/project-a/app/blobs/{}", image.layer_digest),
            "*/*",
        ),
    ] {
        let via = env.raw_request(
            "HEAD",
            &path,
            &[("Authorization", &auth), ("Accept", accept)],
        );
        let direct = raw_http(
            env.registry_addr(),
            &build_raw(
                "HEAD",
                &path,
                &env.registry_addr().to_string(),
                &[("Accept", accept)],
                b"",
            ),
        )
        .expect("HEAD on the registry");
        env.expect_status(&via, 200, &format!("HEAD {path} through regate"));
        assert_eq!(direct.status, 200, "{direct}");
        for header in ["Content-Length", "Docker-Content-Digest", "Content-Type"] {
            assert_eq!(
                via.header(header),
                direct.header(header),
                "HEAD {path}: {header} through regate equals the registry's\nregate: {via}\nregistry: {direct}"
            );
        }
        assert!(
            via.header("Content-Length").is_some_and(|l| l != "0"),
            "{via}"
        );
        assert!(
            via.header("Content-Encoding").is_none(),
            "no compression added: {via}"
        );
    }

    // and GET returns the same bytes
    let reply = Reply::from_request(
        env.request(
            "GET",
            &format!("/v2/project-a/app/blobs/{}", image.layer_digest),
            Auth::Basic(&token),
        )
        .header("Accept-Encoding", "gzip, br"),
    );
    env.expect_status(&reply, 200, "GET blob");
    assert!(
        reply.header("Content-Encoding").is_none(),
        "no compression added: {reply}"
    );
    assert!(
        reply.body == image.layer,
        "blob intact ({} bytes)",
        reply.body.len()
    );
}

#[test]
fn upload_location_points_at_regate() {
    let env = Env::with_projects();
    let builder = env.token("builder", "project-a");
    let reply = env.start_upload("project-a/app", Auth::Basic(&builder));
    let location = env.expect_upload_started(&reply, "upload start");
    let registry = env.registry_addr().to_string();
    assert!(
        !location.contains(&registry),
        "Location must not point at the registry ({registry}): {location}"
    );
    assert!(
        location.starts_with(&format!("{}/v2/project-a/app/blobs/uploads/", env.url()))
            || location.starts_with("/v2/project-a/app/blobs/uploads/"),
        "Location points at regate's URL or is relative: {location}"
    );
    assert!(
        location.contains("_state="),
        "the registry's signed _state passes through: {location}"
    );

    // following it works
    let data = unique_bytes(5000);
    let url = add_query(&absolute(&env.url(), &location), "digest", &digest(&data));
    let put = Reply::from_request(
        Auth::Basic(&builder)
            .apply(client().put(url))
            .body(data.clone()),
    );
    env.expect_status(&put, 201, "PUT to the rewritten Location");
    let created = put.header("Location").unwrap_or_default();
    assert!(
        !created.contains(&registry),
        "the 201's Location does not point at the registry: {put}"
    );
}

#[test]
fn registry_down_is_502_json() {
    let mut env = Env::with_projects();
    let token = env.token("default", "project-a");
    env.stop_registry();
    for path in [
        "/v2/project-a/app/manifests/v1",
        "/v2/project-a/app/tags/list",
    ] {
        let reply = env.send("GET", path, Auth::Basic(&token));
        env.expect_error_status(
            &reply,
            &[502, 504],
            &format!("GET {path} with the registry down"),
        );
    }
    let reply = env.send("GET", "/v2/project-a/app/manifests/v1", Auth::None);
    env.expect_error(
        &reply,
        401,
        "UNAUTHORIZED",
        "anonymous request with the registry down: auth first",
    );
}

fn recorder_env(
    handler: impl Fn(&Recorded, std::net::SocketAddr) -> Vec<u8> + Send + Sync + 'static,
) -> (Recorder, Env) {
    let recorder = Recorder::start(handler);
    let env = Env::builder()
        .namespaces(PROJECTS)
        .upstream(&recorder.url())
        .run();
    (recorder, env)
}

const API: (&str, &str) = ("Docker-Distribution-API-Version", "registry/2.0");

#[test]
fn client_credentials_and_forwarding_headers_are_not_forwarded() {
    let (recorder, env) = recorder_env(|_, _| {
        http_response(
            200,
            &[API, ("Content-Type", OCI_MANIFEST)],
            b"{\"schemaVersion\":2}",
        )
    });
    let token = env.token("default", "project-a");
    let auth = Auth::Basic(&token).header().expect("header");
    let reply = env.raw_request(
        "GET",
        "/v2/project-a/app/manifests/v1",
        &[
            ("Authorization", &auth),
            ("Cookie", "session=secret-cookie"),
            ("Forwarded", "for=6.6.6.6;host=evil.example"),
            ("X-Forwarded-Host", "evil.example"),
            ("X-Forwarded-Proto", "gopher"),
            ("X-Forwarded-For", "6.6.6.6"),
            ("Proxy-Authorization", "Basic c2VjcmV0OnNlY3JldA=="),
            ("Accept", OCI_MANIFEST),
        ],
    );
    env.expect_status(&reply, 200, "GET manifest through regate to the recorder");
    assert_eq!(reply.body, b"{\"schemaVersion\":2}");

    let reqs = recorder.requests();
    let manifest = reqs
        .iter()
        .find(|r| r.target == "/v2/project-a/app/manifests/v1")
        .unwrap_or_else(|| panic!("the upstream got the manifest GET: {reqs:?}"));
    assert_eq!(manifest.method, "GET");
    for r in &reqs {
        assert!(
            r.header("Authorization").is_none(),
            "client Authorization forwarded: {r:?}"
        );
        assert!(
            r.header("Proxy-Authorization").is_none(),
            "Proxy-Authorization forwarded: {r:?}"
        );
        assert!(r.header("Cookie").is_none(), "Cookie forwarded: {r:?}");
        assert!(
            !r.headers
                .iter()
                .any(|(_, v)| v.contains("evil.example") || v.contains("6.6.6.6") || v == "gopher"),
            "client's Forwarded/X-Forwarded-* values forwarded: {r:?}"
        );
        assert!(
            !r.headers.iter().any(|(_, v)| v.contains(&token)),
            "the token itself went upstream: {r:?}"
        );
    }
    assert!(
        manifest
            .header("Accept")
            .is_some_and(|a| a.contains(OCI_MANIFEST)),
        "Accept is forwarded: {manifest:?}"
    );
}

#[test]
fn location_and_link_are_rewritten_but_foreign_hosts_pass() {
    let (recorder, env) = recorder_env(|req, own| {
        let upstream = format!("http://{own}");
        match (req.method.as_str(), req.target.as_str()) {
            ("POST", t) if t.starts_with("/v2/project-a/app/blobs/uploads/") => http_response(
                202,
                &[
                    API,
                    (
                        "Location",
                        &format!(
                            "{upstream}/v2/project-a/app/blobs/uploads/abc-123?_state=s1%2Bx%3D%3D&x=1"
                        ),
                    ),
                    ("Docker-Upload-UUID", "abc-123"),
                    ("Range", "0-0"),
                ],
                b"",
            ),
            ("GET", t) if t.starts_with("/v2/project-a/app/blobs/") => http_response(
                307,
                &[
                    API,
                    (
                        "Location",
                        "http://storage.invalid/bucket/blob?X-Amz-Signature=abc%2Fdef",
                    ),
                ],
                b"",
            ),
            ("GET", t) if t.starts_with("/v2/project-a/app/tags/list") => http_response(
                200,
                &[
                    API,
                    ("Content-Type", "application/json"),
                    (
                        "Link",
                        &format!(
                            "<{upstream}/v2/project-a/app/tags/list?last=b&n=2>; rel=\"next\""
                        ),
                    ),
                ],
                b"{\"name\":\"project-a/app\",\"tags\":[\"a\",\"b\"]}",
            ),
            ("HEAD", _) => http_response(
                200,
                &[
                    API,
                    ("Content-Length", "12345"),
                    (
                        "Docker-Content-Digest",
                        "sha256:1111111111111111111111111111111111111111111111111111111111111111",
                    ),
                ],
                b"",
            ),
            _ => http_response(
                404,
                &[API, ("Content-Type", "application/json")],
                b"{\"errors\":[]}",
            ),
        }
    });
    let builder = env.token("builder", "project-a");
    let up = recorder.url();

    let reply = env.start_upload("project-a/app", Auth::Basic(&builder));
    let location = env.expect_upload_started(&reply, "upload start via the recorder");
    let suffix = "/v2/project-a/app/blobs/uploads/abc-123?_state=s1%2Bx%3D%3D&x=1";
    assert!(
        location == format!("{}{suffix}", env.url()) || location == suffix,
        "Location rewritten to regate (query verbatim), got {location}"
    );
    assert!(!location.contains(&up), "{location}");

    let reply = env.send(
        "GET",
        "/v2/project-a/app/blobs/sha256:2222222222222222222222222222222222222222222222222222222222222222",
        Auth::Basic(&builder),
    );
    env.expect_status(&reply, 307, "redirect to object storage");
    assert_eq!(
        reply.header("Location"),
        Some("http://storage.invalid/bucket/blob?X-Amz-Signature=abc%2Fdef"),
        "a foreign Location passes untouched: {reply}"
    );

    let reply = env.send(
        "GET",
        "/v2/project-a/app/tags/list?n=2",
        Auth::Basic(&builder),
    );
    env.expect_status(&reply, 200, "tags/list");
    let link = reply.header("Link").expect("Link");
    let want = "/v2/project-a/app/tags/list?last=b&n=2>; rel=\"next\"";
    assert!(
        link == format!("<{}{want}", env.url()) || link == format!("<{want}"),
        "Link rewritten to regate, got {link}"
    );
    let forwarded = recorder.requests();
    assert!(
        forwarded
            .iter()
            .any(|r| r.target == "/v2/project-a/app/tags/list?n=2"),
        "the query went upstream verbatim: {forwarded:?}"
    );

    let token = env.token("default", "project-a");
    let head = env.raw_request(
        "HEAD",
        "/v2/project-a/app/manifests/v1",
        &[(
            "Authorization",
            &Auth::Basic(&token).header().expect("header"),
        )],
    );
    env.expect_status(&head, 200, "HEAD via the recorder");
    assert_eq!(
        head.header("Content-Length"),
        Some("12345"),
        "HEAD length kept: {head}"
    );
    assert_eq!(
        head.header("Docker-Content-Digest"),
        Some("sha256:1111111111111111111111111111111111111111111111111111111111111111")
    );
}

#[test]
fn upload_body_streams_to_the_upstream_unchanged() {
    let (recorder, env) = recorder_env(|req, _| {
        if req.method == "PATCH" {
            let range = format!("0-{}", req.body.len().saturating_sub(1));
            http_response(
                202,
                &[
                    API,
                    ("Range", &range),
                    ("Location", "/v2/project-a/app/blobs/uploads/u1"),
                ],
                b"",
            )
        } else {
            http_response(404, &[API], b"")
        }
    });
    let builder = env.token("builder", "project-a");
    let data = Arc::new(unique_bytes(700_000));
    let body = std::io::Cursor::new(data.as_ref().clone());
    let reply = Reply::from_request(
        env.request(
            "PATCH",
            "/v2/project-a/app/blobs/uploads/u1",
            Auth::Basic(&builder),
        )
        .header("Content-Type", "application/octet-stream")
        .body(reqwest::blocking::Body::new(body)),
    );
    env.expect_status(&reply, 202, "streamed PATCH through regate");
    let reqs = recorder.requests();
    let patch = reqs
        .iter()
        .find(|r| r.method == "PATCH")
        .unwrap_or_else(|| panic!("the upstream got the PATCH: {reqs:?}"));
    assert!(
        patch.body == *data,
        "the upstream got the body unchanged ({} bytes)",
        patch.body.len()
    );
    assert_eq!(patch.target, "/v2/project-a/app/blobs/uploads/u1");
}
