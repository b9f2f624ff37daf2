use super::*;

const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn name(s: &str) -> Name {
    Name::parse(s).expect("test name is valid")
}

fn name_invalid(path: &str) -> String {
    match parse(path) {
        Err(RouteError::NameInvalid(msg)) => msg,
        other => panic!("{path}: expected NameInvalid, got {other:?}"),
    }
}

#[test]
fn base_and_catalog() {
    assert_eq!(parse("/v2/"), Ok(Route::Base));
    assert_eq!(parse("/v2"), Ok(Route::Base));
    assert_eq!(parse("/v2/_catalog"), Ok(Route::Catalog));
    assert_eq!(Route::Base.name(), None);
    assert_eq!(Route::Catalog.name(), None);
}

#[test]
fn manifests_by_tag_and_digest() {
    assert_eq!(
        parse("/v2/project-a/app/web/manifests/v1.2_rc-3"),
        Ok(Route::Manifest {
            name: name("project-a/app/web"),
            reference: "v1.2_rc-3".into()
        })
    );
    assert_eq!(
        parse(&format!("/v2/ns/app/manifests/{D}")),
        Ok(Route::Manifest {
            name: name("ns/app"),
            reference: D.into()
        })
    );
    assert_eq!(
        parse("/v2/ns/app/manifests/_Latest"),
        Ok(Route::Manifest {
            name: name("ns/app"),
            reference: "_Latest".into()
        })
    );
}

#[test]
fn blobs_tags_referrers() {
    assert_eq!(
        parse(&format!("/v2/ns/app/blobs/{D}")),
        Ok(Route::Blob {
            name: name("ns/app"),
            digest: D.into()
        })
    );
    assert_eq!(
        parse("/v2/ns/app/tags/list"),
        Ok(Route::Tags {
            name: name("ns/app")
        })
    );
    assert_eq!(
        parse(&format!("/v2/ns/app/referrers/{D}")),
        Ok(Route::Referrers {
            name: name("ns/app"),
            digest: D.into()
        })
    );
}

#[test]
fn uploads() {
    for path in ["/v2/ns/app/blobs/uploads/", "/v2/ns/app/blobs/uploads"] {
        assert_eq!(
            parse(path),
            Ok(Route::UploadStart {
                name: name("ns/app")
            }),
            "{path}"
        );
    }
    let id = "5f0c7a8e-3b0b-4d5e-9a1c-2f4b6c8d0e1f";
    assert_eq!(
        parse(&format!("/v2/ns/app/blobs/uploads/{id}")),
        Ok(Route::Upload {
            name: name("ns/app"),
            id: id.into()
        })
    );
    assert_eq!(
        parse("/v2/ns/app/blobs/uploads/a_b.c=d-E"),
        Ok(Route::Upload {
            name: name("ns/app"),
            id: "a_b.c=d-E".into()
        })
    );
}

#[test]
fn bad_upload_ids_are_not_found() {
    let long = "a".repeat(MAX_UPLOAD_ID_LEN + 1);
    for id in ["..", ".", "a%2Fb", "a+b", "a:b", long.as_str()] {
        assert_eq!(
            parse(&format!("/v2/ns/app/blobs/uploads/{id}")),
            Err(RouteError::NotFound),
            "{id}"
        );
    }
    let max = "a".repeat(MAX_UPLOAD_ID_LEN);
    assert!(parse(&format!("/v2/ns/app/blobs/uploads/{max}")).is_ok());
}

#[test]
fn the_name_ends_at_the_last_suffix() {
    assert_eq!(
        parse(&format!("/v2/a/blobs/blobs/{D}")),
        Ok(Route::Blob {
            name: name("a/blobs"),
            digest: D.into()
        })
    );
    assert_eq!(
        parse("/v2/ns/manifests/manifests/latest"),
        Ok(Route::Manifest {
            name: name("ns/manifests"),
            reference: "latest".into()
        })
    );
    assert_eq!(
        parse("/v2/ns/tags/list/tags/list"),
        Ok(Route::Tags {
            name: name("ns/tags/list")
        })
    );
    assert_eq!(
        parse("/v2/ns/blobs/uploads/blobs/uploads/"),
        Ok(Route::UploadStart {
            name: name("ns/blobs/uploads")
        })
    );
    assert_eq!(
        parse("/v2/ns/blobs/blobs/uploads/x1"),
        Ok(Route::Upload {
            name: name("ns/blobs"),
            id: "x1".into()
        })
    );
    assert_eq!(
        parse(&format!("/v2/ns/uploads/blobs/{D}")),
        Ok(Route::Blob {
            name: name("ns/uploads"),
            digest: D.into()
        })
    );
}

#[test]
fn unknown_shapes_are_not_found() {
    for path in [
        "/",
        "",
        "/v1/",
        "/v2x/ns/app/tags/list",
        "/V2/ns/app/tags/list",
        "//v2/ns/app/tags/list",
        "/v2/_catalog/",
        "/v2/ns/app",
        "/v2/ns/app/",
        "/v2/ns/app/manifests/",
        "/v2/ns/app/manifests",
        "/v2/ns/app/blobs/",
        "/v2/ns/app/tags/list/",
        "/v2/ns/app/tags",
        "/v2/ns/app/widgets/x",
        "/v2/ns/app/uploads/x",
        "/v2/ns/app/blobs/uploads//",
        "/v2/ns/app/blobs/uploads/x/y",
    ] {
        assert_eq!(parse(path), Err(RouteError::NotFound), "{path:?}");
    }
}

#[test]
fn hostile_names_are_name_invalid_not_normalised() {
    for path in [
        "/v2/ns%2Fapp/manifests/latest",
        "/v2/ns/%2e%2e/other/manifests/latest",
        "/v2/%2e%2e/ns/app/manifests/latest",
        "/v2/ns/app%2fx/tags/list",
        "/v2/ns//app/manifests/latest",
        "/v2//ns/app/manifests/latest",
        "/v2/ns/./app/manifests/latest",
        "/v2/ns/../other/app/manifests/latest",
        "/v2/../v2/ns/app/manifests/latest",
        "/v2/ns/app/../manifests/latest",
        "/v2/./ns/app/tags/list",
        "/v2/ns/app/./tags/list",
        "/v2/ns/app//tags/list",
        "/v2/ns/app/./blobs/uploads/",
        "/v2/ns/..//blobs/uploads/x",
    ] {
        name_invalid(path);
    }
    assert!(name_invalid("/v2/ns%2Fapp/manifests/latest").contains('%'));
    assert!(name_invalid("/v2/ns//app/tags/list").contains("empty component"));
    assert!(name_invalid("/v2/ns/../app/tags/list").contains("`..`"));
}

#[test]
fn one_component_names_are_invalid() {
    let msg = name_invalid("/v2/app/manifests/latest");
    assert!(msg.contains("<namespace>/<imagestream>"), "{msg}");
    name_invalid(&format!("/v2/app/blobs/{D}"));
    name_invalid("/v2/app/blobs/uploads/");
    name_invalid("/v2/app/tags/list");
}

#[test]
fn component_grammar() {
    for ok in [
        "a/b",
        "a0/b1/c2",
        "a.b/c_d",
        "a__b/c--d",
        "a-----b/c",
        "0/9",
        "ns/a.b_c__d-e",
    ] {
        assert!(Name::parse(ok).is_ok(), "{ok}");
    }
    for bad in [
        "a/B", "Ns/app", "a/b_", "a/_b", "a/b-", "a/-b", "a/.b", "a/b.", "a/b..c", "a/b___c",
        "a/b._c", "a/b c", "a/b:c", "a/b@c", "a/b+c", "a/é", "/a/b", "a/b/", "", "a",
    ] {
        assert!(
            matches!(Name::parse(bad), Err(RouteError::NameInvalid(_))),
            "{bad:?}"
        );
    }
    let upper = name_invalid("/v2/ns/App/tags/list");
    assert!(upper.contains("lowercase"), "{upper}");
    assert!(upper.contains(COMPONENT_GRAMMAR), "{upper}");
}

#[test]
fn names_are_at_most_255_bytes() {
    let at_max = format!("ns/{}", "a".repeat(MAX_NAME_LEN - 3));
    assert_eq!(at_max.len(), 255);
    assert!(Name::parse(&at_max).is_ok());
    let over = format!("ns/{}", "a".repeat(MAX_NAME_LEN - 2));
    assert_eq!(over.len(), 256);
    let msg = name_invalid(&format!("/v2/{over}/manifests/latest"));
    assert!(msg.contains("255"), "{msg}");
}

#[test]
fn namespace_and_imagestream() {
    let n = name("project-a/app/web");
    assert_eq!(n.namespace(), "project-a");
    assert_eq!(n.imagestream(), "app/web");
    assert_eq!(n.as_str(), "project-a/app/web");
    assert_eq!(n.to_string(), "project-a/app/web");
    assert_eq!(
        "x/y".parse::<Name>().map(|n| n.imagestream().to_owned()),
        Ok("y".into())
    );
    let r = parse("/v2/ns/app/tags/list").expect("valid");
    assert_eq!(r.name().map(Name::as_str), Some("ns/app"));
}

#[test]
fn bad_tags() {
    let long = "a".repeat(MAX_TAG_LEN + 1);
    for tag in [".latest", "-x", "a/b", "a%20b", "a$b", "ü", long.as_str()] {
        let path = format!("/v2/ns/app/manifests/{tag}");
        match parse(&path) {
            Err(e @ RouteError::ReferenceInvalid(_)) => assert_eq!(e.code(), "MANIFEST_INVALID"),
            // `a/b` makes `b` the reference and `ns/app/manifests/a` no shape at all.
            Err(RouteError::NotFound) if tag.contains('/') => {}
            other => panic!("{tag:?}: {other:?}"),
        }
    }
    let max = "a".repeat(MAX_TAG_LEN);
    assert!(parse(&format!("/v2/ns/app/manifests/{max}")).is_ok());
}

#[test]
fn bad_digests() {
    let hex64 = &D["sha256:".len()..];
    for digest in [
        "sha256:0123".to_owned(),
        format!("sha256:{}", hex64.to_uppercase()),
        format!("sha256:{hex64}0"),
        format!("sha256:{}g", &hex64[1..]),
        "sha512:abcd".to_owned(),
        format!("SHA256:{hex64}"),
        format!(":{hex64}"),
        "sha256:".to_owned(),
        "sha256".to_owned(),
        "sha256+:abc".to_owned(),
        "+sha256:abc".to_owned(),
        "x:ab!c".to_owned(),
        "x:".to_owned(),
        "x:a:b".to_owned(),
    ] {
        for kind in ["blobs", "referrers"] {
            let path = format!("/v2/ns/app/{kind}/{digest}");
            match parse(&path) {
                Err(e @ RouteError::DigestInvalid(_)) => assert_eq!(e.code(), "DIGEST_INVALID"),
                other => panic!("{path}: {other:?}"),
            }
        }
    }
    // A manifest reference with `:` is a digest.
    assert!(matches!(
        parse("/v2/ns/app/manifests/sha256:0123"),
        Err(RouteError::DigestInvalid(_))
    ));
    for ok in [
        format!("sha512:{}", "0a".repeat(64)),
        "multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8".to_owned(),
        "sha256+b64u:LCa0a2j_xo_5m0U8HTBBNBNCLXBkg7-g-YpeiGJm564".to_owned(),
        "tarsum.v1+sha256:abc=".to_owned(),
    ] {
        assert!(parse(&format!("/v2/ns/app/blobs/{ok}")).is_ok(), "{ok}");
    }
}

#[test]
fn a_bad_name_is_reported_before_a_bad_reference() {
    name_invalid("/v2/NS/app/manifests/.bad");
    name_invalid("/v2/ns/../app/blobs/sha256:short");
}

#[test]
fn codes_and_statuses() {
    use crate::error::ApiError;
    let answer = |e: RouteError| {
        let a = ApiError::from(e);
        (a.status(), a.code())
    };
    assert_eq!(
        answer(RouteError::NotFound),
        (http::StatusCode::NOT_FOUND, "NOT_FOUND")
    );
    assert_eq!(
        answer(RouteError::NameInvalid("x".into())),
        (http::StatusCode::BAD_REQUEST, "NAME_INVALID")
    );
    assert_eq!(
        answer(RouteError::ReferenceInvalid("x".into())),
        (http::StatusCode::BAD_REQUEST, "MANIFEST_INVALID")
    );
    assert_eq!(
        answer(RouteError::DigestInvalid("x".into())),
        (http::StatusCode::BAD_REQUEST, "DIGEST_INVALID")
    );
}
