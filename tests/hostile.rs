//! Malformed and hostile input, each with its status (docs/behaviour.md §1, §3, §5), and tokens
//! that must stop working.

mod common;

use base64::Engine as _;
use common::*;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Every bad `Authorization` is 401 UNAUTHORIZED with a challenge, on `/v2/` and on a pull.
#[test]
fn malformed_credentials_are_401() {
    let env = Env::with_projects();
    env.seed("project-a/app", "v1", &Image::unique(512));
    let no_colon = format!("Basic {}", B64.encode("just-a-token-no-colon"));
    let empty_password = format!("Basic {}", B64.encode("anything:"));
    let empty_both = format!("Basic {}", B64.encode(":"));
    let cases: &[(&str, &str)] = &[
        ("bad base64", "Basic !!!not*base64!!!"),
        ("base64 of no user:password pair", &no_colon),
        ("empty password", &empty_password),
        ("empty user and password", &empty_both),
        ("Basic with nothing", "Basic"),
        ("unknown scheme", "Digest username=\"x\", realm=\"y\""),
        (
            "unknown scheme with a valid-looking value",
            "Token abc.def.ghi",
        ),
        ("garbage bearer", "Bearer abc.def.ghi"),
    ];
    for (what, header) in cases {
        for path in ["/v2/", "/v2/project-a/app/manifests/v1"] {
            let reply = env.raw_request("GET", path, &[("Authorization", header)]);
            env.expect_error(
                &reply,
                401,
                "UNAUTHORIZED",
                &format!("{what} on GET {path}"),
            );
            let challenge = reply.header("WWW-Authenticate").unwrap_or_default();
            assert!(
                challenge.starts_with("Bearer realm=\""),
                "{what} on {path}: a Bearer challenge: {reply}"
            );
        }
    }
    env.assert_registry_never_saw("no unauthenticated pull reached the registry", |r| {
        r.starts_with("GET /v2/project-a/app/manifests/")
    });
}

#[test]
fn scheme_names_are_case_insensitive() {
    let env = Env::with_projects();
    let token = env.token("default", "project-a");
    let basic = B64.encode(format!("anything:{token}"));
    for header in [
        format!("basic {basic}"),
        format!("BASIC {basic}"),
        format!("bearer {token}"),
        format!("BEARER {token}"),
    ] {
        let scheme = header.split(' ').next().unwrap_or_default().to_string();
        let reply = env.raw_request("GET", "/v2/", &[("Authorization", &header)]);
        env.expect_status(&reply, 200, &format!("GET /v2/ with scheme {scheme}"));
    }
}

/// Names that are not in the OCI grammar, or that a normaliser would turn into another
/// repository, are 400 NAME_INVALID and never reach the registry. The caller may read
/// project-b, so a normalised path would have answered 200 with project-b's manifest.
#[test]
fn hostile_names_are_400_and_never_forwarded() {
    let env = Env::with_projects();
    let image = Image::unique(1024);
    env.seed("project-b/app", "v1", &image);
    env.seed("project-a/app", "v1", &image);
    let reader = env.token("default", "project-b");
    let auth = Auth::Basic(&reader).header().expect("header");
    let cases = [
        "/v2/project-b/../project-b/app/manifests/v1",
        "/v2/project-a/../project-b/app/manifests/v1",
        "/v2/project-b/x/../app/manifests/v1",
        "/v2/project-b/%2e%2e/project-b/app/manifests/v1",
        "/v2/project-b/%2E%2E/project-b/app/manifests/v1",
        "/v2/project-b%2Fapp/manifests/v1",
        "/v2/project-b%2fapp/manifests/v1",
        "/v2/project-b/app%2F/manifests/v1",
        "/v2/project-b//app/manifests/v1",
        "/v2//project-b/app/manifests/v1",
        "/v2/project-b/./app/manifests/v1",
        "/v2/project-b/app/./manifests/v1",
        "/v2/Project-B/app/manifests/v1",
        "/v2/project-b/App/manifests/v1",
        "/v2/project-b/app-/manifests/v1",
        "/v2/project-b/a%00pp/manifests/v1",
    ];
    for path in cases {
        let reply = env.raw_request("GET", path, &[("Authorization", &auth)]);
        env.expect_error(&reply, 400, "NAME_INVALID", &format!("GET {path}"));
        assert_ne!(reply.body, image.manifest, "{path} returned a manifest");
    }
    let reply = env.raw_request(
        "POST",
        "/v2/project-b/../project-a/app/blobs/uploads/",
        &[("Authorization", &auth), ("Content-Length", "0")],
    );
    env.expect_error(&reply, 400, "NAME_INVALID", "POST upload with ..");
    // `..` after the name: not a name, but never a path to walk either
    let path = "/v2/project-b/app/blobs/uploads/../../../project-a/app/manifests/v1";
    let reply = env.raw_request("GET", path, &[("Authorization", &auth)]);
    env.expect_error_status(&reply, &[400, 404], &format!("GET {path}"));
    assert_ne!(reply.body, image.manifest, "{path} returned a manifest");

    env.assert_registry_never_saw("hostile names reached the registry", |r| {
        let seeding =
            r.starts_with("PUT ") || r.starts_with("POST /v2/project-a/app/blobs/uploads/ ");
        let lower = r.to_ascii_lowercase();
        !seeding
            && (lower.contains("..")
                || lower.contains("%2f")
                || lower.contains("%2e")
                || lower.contains("%00")
                || lower.contains("//")
                || lower.contains("/./")
                || r.contains("Project-B")
                || r.contains("App")
                || r.contains("app-/"))
    });
    env.assert_registry_never_saw(
        "no hostile request was normalised into a real manifest GET",
        |r| {
            r.starts_with("GET /v2/project-b/app/manifests/")
                || r.starts_with("GET /v2/project-a/app/manifests/")
        },
    );
}

#[test]
fn one_component_names_are_400() {
    let env = Env::with_projects();
    let builder = env.token("builder", "project-a");
    let auth = Auth::Basic(&builder).header().expect("header");
    for (method, path) in [
        ("GET", "/v2/app/manifests/latest"),
        ("HEAD", "/v2/app/manifests/latest"),
        ("GET", "/v2/project-a/manifests/latest"),
        ("GET", "/v2/app/tags/list"),
        ("POST", "/v2/app/blobs/uploads/"),
        (
            "GET",
            "/v2/app/blobs/sha256:0000000000000000000000000000000000000000000000000000000000000000",
        ),
    ] {
        let reply = env.raw_request(
            method,
            path,
            &[("Authorization", &auth), ("Content-Length", "0")],
        );
        if method == "HEAD" {
            env.expect_status(&reply, 400, &format!("{method} {path}"));
        } else {
            env.expect_error(&reply, 400, "NAME_INVALID", &format!("{method} {path}"));
        }
    }
    env.assert_registry_never_saw("one-component names reached the registry", |r| {
        r.contains("/v2/app/") || r.contains("/v2/project-a/manifests")
    });
}

#[test]
fn other_methods_and_paths_are_not_forwarded_unchecked() {
    let env = Env::with_projects();
    env.seed("project-a/app", "v1", &Image::unique(512));
    let token = env.token("default", "project-a");
    let auth = Auth::Basic(&token).header().expect("header");
    for (method, path) in [
        ("PUT", "/v2/project-a/app/tags/list"),
        ("PATCH", "/v2/project-a/app/manifests/v1"),
        ("GET", "/v2/project-a/app/unknown/thing"),
        ("OPTIONS", "/v2/project-a/app/manifests/v1"),
        ("GET", "/v2/project-a/app"),
    ] {
        let reply = env.raw_request(
            method,
            path,
            &[("Authorization", &auth), ("Content-Length", "0")],
        );
        env.expect_error_status(&reply, &[404, 405], &format!("{method} {path}"));
        let code = reply.json()["errors"][0]["code"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            code == "UNSUPPORTED" || code == "NOT_FOUND",
            "{method} {path}: code {code}"
        );
    }
    env.assert_registry_never_saw("unsupported requests reached the registry", |r| {
        r.starts_with("PATCH ")
            || r.starts_with("OPTIONS ")
            || r.contains("unknown")
            || r == "GET /v2/project-a/app"
            || r.starts_with("PUT /v2/project-a/app/tags")
    });
}

#[test]
fn expired_token_is_401_invalid_token() {
    let env = Env::with_projects();
    let token = env.regate_ok(&[
        "create",
        "token",
        "default",
        "-n",
        "project-a",
        "--duration",
        "1s",
    ]);
    std::thread::sleep(std::time::Duration::from_secs(2));
    for auth in [Auth::Basic(&token), Auth::Bearer(&token)] {
        let reply = env.send("GET", "/v2/", auth);
        env.expect_invalid_token(&reply, "GET /v2/ with an expired token");
    }
    let reply = env.send(
        "GET",
        "/openshift/token?service=regate",
        Auth::Basic(&token),
    );
    env.expect_error(
        &reply,
        401,
        "UNAUTHORIZED",
        "token endpoint with an expired token",
    );
}

#[test]
fn token_signed_by_another_key_is_401() {
    let env = Env::with_projects();
    // Same namespace and service account names, another state dir, so another signing key.
    let other = env.dir().join("other-state");
    let cli = |args: &[&str]| {
        let mut cmd = std::process::Command::new(REGATE);
        cmd.args(args)
            .arg("--state")
            .arg(&other)
            .env("REGATE_STATE", &other);
        let out = run_bounded(cmd, std::time::Duration::from_secs(60));
        assert!(
            out.status.success(),
            "regate {}: {}",
            args.join(" "),
            show_output(&out)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    cli(&["create", "namespace", "project-a"]);
    let foreign = cli(&["create", "token", "builder", "-n", "project-a"]);
    for auth in [Auth::Basic(&foreign), Auth::Bearer(&foreign)] {
        let reply = env.send("GET", "/v2/", auth);
        env.expect_invalid_token(&reply, "GET /v2/ with another key's token");
    }
    let reply = env.start_upload("project-a/app", Auth::Basic(&foreign));
    env.expect_error(&reply, 401, "UNAUTHORIZED", "push with another key's token");
}

#[test]
fn forged_and_tampered_tokens_are_401() {
    let env = Env::with_projects();
    let token = env.token("default", "project-a");
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "API tokens are JWTs: {token}");
    let url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let claims: serde_json::Value =
        serde_json::from_slice(&url.decode(parts[1]).expect("JWT payload is base64url"))
            .expect("JWT payload is JSON");

    // alg "none" with the same claims
    let none = format!(
        "{}.{}.",
        url.encode(br#"{"alg":"none","typ":"JWT"}"#),
        parts[1]
    );
    // claims of the builder, signature of the default SA
    let mut elevated = claims.clone();
    if let Some(sub) = elevated.get_mut("sub") {
        *sub = serde_json::Value::String("system:serviceaccount:project-a:builder".into());
    }
    let swapped = format!(
        "{}.{}.{}",
        parts[0],
        url.encode(serde_json::to_vec(&elevated).expect("json")),
        parts[2]
    );
    // HS256 signed with an empty key
    let hs = format!(
        "{}.{}.{}",
        url.encode(br#"{"alg":"HS256","typ":"JWT"}"#),
        parts[1],
        url.encode([0u8; 32])
    );
    for (what, bad) in [
        ("alg none", none),
        ("changed claims", swapped),
        ("HS256 substitution", hs),
    ] {
        let reply = env.send("GET", "/v2/", Auth::Basic(&bad));
        env.expect_error(
            &reply,
            401,
            "UNAUTHORIZED",
            &format!("GET /v2/ with {what}"),
        );
        let reply = env.start_upload("project-a/app", Auth::Bearer(&bad));
        env.expect_error(&reply, 401, "UNAUTHORIZED", &format!("upload with {what}"));
    }
}

/// A 1 MiB `Authorization` header: refused with a 4xx (431 or 400) or the connection closed,
/// and regate keeps serving.
#[test]
fn one_mebibyte_authorization_header_is_refused() {
    let env = Env::with_projects();
    let token = env.token("default", "project-a");
    let huge = format!("Bearer {}", "A".repeat(1024 * 1024));
    let req = build_raw("GET", "/v2/", &env.host(), &[("Authorization", &huge)], b"");
    match env.raw(&req) {
        Ok(reply) => assert!(
            (400..500).contains(&reply.status),
            "a 1 MiB Authorization header must get a 4xx, got {reply}"
        ),
        Err(e) => eprintln!("regate closed the connection on a 1 MiB header: {e}"),
    }
    // many header lines adding up to 1 MiB
    let line = "B".repeat(8 * 1024);
    let many: Vec<(String, String)> = (0..128)
        .map(|i| (format!("X-Filler-{i}"), line.clone()))
        .collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    if let Ok(reply) = env.raw(&build_raw("GET", "/v2/", &env.host(), &many, b"")) {
        assert!(
            (400..500).contains(&reply.status),
            "1 MiB of headers must get a 4xx, got {reply}"
        );
    }
    let reply = env.send("GET", "/v2/", Auth::Basic(&token));
    env.expect_status(&reply, 200, "regate still serves after the huge header");
    let rss = peak_rss_kib(env.regate_pid());
    assert!(
        rss < 64 * 1024,
        "regate's peak RSS stayed under 64 MiB, was {rss} KiB"
    );
}

#[test]
fn deleted_service_account_token_stops_working() {
    let env = Env::with_projects();
    env.seed("project-a/app", "v1", &Image::unique(512));
    env.regate_ok(&["create", "serviceaccount", "robot", "-n", "project-a"]);
    let token = env.token("robot", "project-a");
    std::thread::sleep(POLICY_DELAY);
    let reply = env.get_manifest("project-a/app", "v1", Auth::Basic(&token));
    env.expect_status(
        &reply,
        200,
        "robot pulls while it exists (system:serviceaccounts:project-a)",
    );

    env.change(&["delete", "serviceaccount", "robot", "-n", "project-a"]);
    for (what, auth, path) in [
        ("GET /v2/", Auth::Basic(&token), "/v2/"),
        (
            "pull",
            Auth::Basic(&token),
            "/v2/project-a/app/manifests/v1",
        ),
        (
            "pull, Bearer",
            Auth::Bearer(&token),
            "/v2/project-a/app/manifests/v1",
        ),
        (
            "token endpoint",
            Auth::Basic(&token),
            "/openshift/token?service=regate",
        ),
    ] {
        let reply = Reply::from_request(
            env.request("GET", path, auth)
                .header("Accept", OCI_MANIFEST),
        );
        env.expect_error(
            &reply,
            401,
            "UNAUTHORIZED",
            &format!("{what} with a deleted SA's token"),
        );
    }
    // re-creating an SA of the same name does not revive the old token (Kubernetes binds a
    // token to the service account's uid)
    env.change(&["create", "serviceaccount", "robot", "-n", "project-a"]);
    let reply = env.get_manifest("project-a/app", "v1", Auth::Basic(&token));
    env.expect_error(
        &reply,
        401,
        "UNAUTHORIZED",
        "old token of a deleted then re-created SA",
    );
}

#[test]
fn deleted_user_and_namespace_tokens_stop_working() {
    let env = Env::with_projects();
    env.seed("project-b/app", "v1", &Image::unique(512));
    env.regate_ok(&["create", "user", "alice"]);
    env.regate_ok(&[
        "policy",
        "add-role-to-user",
        "system:image-puller",
        "alice",
        "-n",
        "project-b",
    ]);
    let alice = env.user_token("alice");
    let default_b = env.token("default", "project-b");
    std::thread::sleep(POLICY_DELAY);
    for (who, token) in [("alice", &alice), ("project-b/default", &default_b)] {
        let reply = env.get_manifest("project-b/app", "v1", Auth::Basic(token));
        env.expect_status(&reply, 200, &format!("{who} pulls before deletion"));
    }
    env.change(&["delete", "user", "alice"]);
    let reply = env.get_manifest("project-b/app", "v1", Auth::Basic(&alice));
    env.expect_error(&reply, 401, "UNAUTHORIZED", "deleted user's token");

    env.change(&["delete", "namespace", "project-b"]);
    let reply = env.send("GET", "/v2/", Auth::Basic(&default_b));
    env.expect_error(
        &reply,
        401,
        "UNAUTHORIZED",
        "token of an SA of a deleted namespace",
    );
}
