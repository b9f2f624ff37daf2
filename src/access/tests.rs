use super::*;
use crate::route;

const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const ALL_METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT",
];

fn method(m: &str) -> Method {
    Method::from_bytes(m.as_bytes()).expect("test method is valid")
}

fn route_of(path: &str) -> Route {
    route::parse(path).expect("test path is valid")
}

fn plan_of(m: &str, path: &str, query: Option<&str>) -> Result<Plan, AccessError> {
    plan(&method(m), &route_of(path), query)
}

fn get() -> Attributes {
    Attributes::layers("get", "project-a", "app/web")
}

fn update() -> Attributes {
    Attributes::layers("update", "project-a", "app/web")
}

/// A representative path of every route.
fn every_route() -> Vec<String> {
    vec![
        "/v2/".into(),
        "/v2/_catalog".into(),
        "/v2/project-a/app/web/manifests/latest".into(),
        format!("/v2/project-a/app/web/blobs/{D}"),
        "/v2/project-a/app/web/blobs/uploads/".into(),
        "/v2/project-a/app/web/blobs/uploads/abc-123".into(),
        "/v2/project-a/app/web/tags/list".into(),
        format!("/v2/project-a/app/web/referrers/{D}"),
    ]
}

#[test]
fn base_needs_identity_only() {
    for m in ["GET", "HEAD"] {
        let p = plan_of(m, "/v2/", None).expect("allowed method");
        assert_eq!(p, Plan::default());
    }
}

#[test]
fn catalog_is_filtered_per_caller() {
    let p = plan_of("GET", "/v2/_catalog", Some("n=100")).expect("allowed method");
    assert!(p.required.is_empty());
    assert!(p.catalog);
    assert_eq!(p.mount_source, None);
    assert_eq!(p.scope.as_deref(), Some("registry:catalog:*"));
}

#[test]
fn pulls_need_get_on_layers() {
    let paths = [
        "/v2/project-a/app/web/manifests/latest".to_owned(),
        format!("/v2/project-a/app/web/manifests/{D}"),
        format!("/v2/project-a/app/web/blobs/{D}"),
        "/v2/project-a/app/web/tags/list".to_owned(),
        format!("/v2/project-a/app/web/referrers/{D}"),
    ];
    for path in &paths {
        for m in ["GET", "HEAD"] {
            let p = plan_of(m, path, None).expect("allowed method");
            assert_eq!(p.required, vec![get()], "{m} {path}");
            assert_eq!(
                p.scope.as_deref(),
                Some("repository:project-a/app/web:pull")
            );
            assert!(!p.catalog);
            assert_eq!(p.mount_source, None);
        }
    }
}

#[test]
fn pushes_need_get_and_update_on_layers() {
    let cases = [
        ("PUT", "/v2/project-a/app/web/manifests/v1"),
        ("POST", "/v2/project-a/app/web/blobs/uploads/"),
        ("POST", "/v2/project-a/app/web/blobs/uploads"),
        ("PATCH", "/v2/project-a/app/web/blobs/uploads/abc-123"),
        ("PUT", "/v2/project-a/app/web/blobs/uploads/abc-123"),
        ("GET", "/v2/project-a/app/web/blobs/uploads/abc-123"),
        ("HEAD", "/v2/project-a/app/web/blobs/uploads/abc-123"),
    ];
    for (m, path) in cases {
        let p = plan_of(m, path, Some("_state=abc&digest=sha256%3Aabc")).expect("allowed");
        assert_eq!(p.required, vec![get(), update()], "{m} {path}");
        assert_eq!(
            p.scope.as_deref(),
            Some("repository:project-a/app/web:pull,push")
        );
        assert_eq!(p.mount_source, None, "{m} {path}");
    }
}

#[test]
fn cancelling_an_upload_needs_update() {
    let p = plan_of(
        "DELETE",
        "/v2/project-a/app/web/blobs/uploads/abc-123",
        None,
    )
    .expect("allowed method");
    assert_eq!(p.required, vec![update()]);
}

#[test]
fn deletes_need_the_cluster_prune_right() {
    for path in [
        "/v2/project-a/app/web/manifests/latest".to_owned(),
        format!("/v2/project-a/app/web/manifests/{D}"),
        format!("/v2/project-a/app/web/blobs/{D}"),
    ] {
        let p = plan_of("DELETE", &path, None).expect("allowed method");
        assert_eq!(p.required, vec![Attributes::cluster("delete", "images")]);
        assert_eq!(
            p.scope.as_deref(),
            Some("repository:project-a/app/web:delete")
        );
    }
}

#[test]
fn other_methods_are_not_allowed() {
    let refused = [
        ("POST", "/v2/".to_owned()),
        ("DELETE", "/v2/".to_owned()),
        ("HEAD", "/v2/_catalog".to_owned()),
        ("POST", "/v2/_catalog".to_owned()),
        ("POST", "/v2/project-a/app/web/manifests/latest".to_owned()),
        ("PATCH", "/v2/project-a/app/web/manifests/latest".to_owned()),
        ("PUT", format!("/v2/project-a/app/web/blobs/{D}")),
        ("POST", format!("/v2/project-a/app/web/blobs/{D}")),
        ("PUT", "/v2/project-a/app/web/tags/list".to_owned()),
        ("DELETE", "/v2/project-a/app/web/tags/list".to_owned()),
        ("DELETE", format!("/v2/project-a/app/web/referrers/{D}")),
        // PUT on the start route would be a monolithic upload with no session: only POST.
        ("PUT", "/v2/project-a/app/web/blobs/uploads/".to_owned()),
        ("GET", "/v2/project-a/app/web/blobs/uploads/".to_owned()),
        ("DELETE", "/v2/project-a/app/web/blobs/uploads/".to_owned()),
        // Distribution would start a new (possibly mounting) upload here.
        (
            "POST",
            "/v2/project-a/app/web/blobs/uploads/abc-123".to_owned(),
        ),
        (
            "OPTIONS",
            "/v2/project-a/app/web/manifests/latest".to_owned(),
        ),
    ];
    for (m, path) in refused {
        let err = plan_of(m, &path, None).expect_err(&format!("{m} {path}"));
        assert!(
            matches!(&err, AccessError::MethodNotAllowed { method, .. } if method == m),
            "{err:?}"
        );
        let answer = crate::error::ApiError::from(err);
        assert_eq!(answer.code(), "UNSUPPORTED");
        assert_eq!(answer.status(), http::StatusCode::METHOD_NOT_ALLOWED);
    }
    let err =
        plan_of("PATCH", "/v2/project-a/app/web/manifests/latest", None).expect_err("refused");
    assert_eq!(err.to_string(), "PATCH is not supported on manifests");
}

#[test]
fn allowed_methods_agree_with_plan() {
    for path in every_route() {
        let route = route_of(&path);
        let allow: Vec<&str> = allowed_methods(&route).split(", ").collect();
        for m in ALL_METHODS {
            let planned = plan(&method(m), &route, None).is_ok();
            assert_eq!(planned, allow.contains(&m), "{m} {path}");
        }
    }
}

#[test]
fn mount_checks_get_on_the_source() {
    let p = plan_of(
        "POST",
        "/v2/project-a/app/web/blobs/uploads/",
        Some(&format!("mount={D}&from=project-b%2Flib%2Fbase")),
    )
    .expect("valid mount");
    assert_eq!(p.required, vec![get(), update()]);
    let src = p.mount_source.expect("a mount source");
    assert_eq!(src.from.as_str(), "project-b/lib/base");
    assert_eq!(
        src.check,
        Attributes::layers("get", "project-b", "lib/base")
    );
    assert_eq!(
        p.scope.as_deref(),
        Some("repository:project-a/app/web:pull,push")
    );

    // Encoded keys are the same keys to the upstream's query parser.
    let p = plan_of(
        "POST",
        "/v2/project-a/app/web/blobs/uploads",
        Some(&format!("fro%6D=project-b/base&%6dount={D}")),
    )
    .expect("valid mount");
    assert_eq!(
        p.mount_source.map(|s| s.from.to_string()),
        Some("project-b/base".into())
    );
}

#[test]
fn no_mount_without_both_parameters() {
    for query in [
        format!("mount={D}"),
        "from=project-b/base".to_owned(),
        format!("mount={D}&from="),
        "mount=&from=project-b/base".to_owned(),
        "digest=sha256%3Aabc".to_owned(),
        String::new(),
    ] {
        let p = plan_of("POST", "/v2/project-a/app/web/blobs/uploads/", Some(&query))
            .expect("plain upload start");
        assert_eq!(p.mount_source, None, "{query}");
    }
}

#[test]
fn mount_parameters_count_only_on_the_start_route() {
    let q = format!("mount={D}&from=project-b/base");
    let p = plan_of(
        "PATCH",
        "/v2/project-a/app/web/blobs/uploads/abc-123",
        Some(&q),
    )
    .expect("allowed method");
    assert_eq!(p.mount_source, None);
}

#[test]
fn invalid_mount_sources_are_name_invalid() {
    for from in [
        "base",
        "project-b%2F..%2Fsecret",
        "project-b/../secret",
        "project-b//base",
        "Project-B/base",
        "project-b/base%ff",
        "project-b%252Fbase",
    ] {
        let q = format!("mount={D}&from={from}");
        let err =
            plan_of("POST", "/v2/project-a/app/web/blobs/uploads/", Some(&q)).expect_err(from);
        assert!(
            matches!(
                err,
                AccessError::InvalidMountSource(RouteError::NameInvalid(_))
            ),
            "{from}: {err:?}"
        );
        let answer = crate::error::ApiError::from(err);
        assert_eq!(answer.code(), "NAME_INVALID");
        assert_eq!(answer.status(), http::StatusCode::BAD_REQUEST);
    }
}

#[test]
fn two_different_sources_are_refused() {
    let q = format!("mount={D}&from=project-b/base&from=secret/base");
    let err = plan_of("POST", "/v2/project-a/app/web/blobs/uploads/", Some(&q))
        .expect_err("ambiguous source");
    assert!(matches!(err, AccessError::InvalidMountSource(_)), "{err:?}");
    // The same source twice is not ambiguous.
    let q = format!("mount={D}&from=project-b/base&from=project-b/base");
    assert!(plan_of("POST", "/v2/project-a/app/web/blobs/uploads/", Some(&q)).is_ok());
}

#[test]
fn without_mount_keeps_everything_else_verbatim() {
    let state = "_state=eyJOYW1lIjoi%2Bx%2Fy%3D%3D&_state2=a+b";
    assert_eq!(
        without_mount(&format!(
            "mount={D}&{state}&from=project-b%2Fbase&digest=sha256%3Aab"
        )),
        format!("{state}&digest=sha256%3Aab")
    );
    assert_eq!(without_mount(&format!("mount={D}&from=a/b")), "");
    assert_eq!(without_mount("fro%6D=a/b&x=1&%6Dount=d"), "x=1");
    assert_eq!(without_mount("mount&from&a=&&b"), "a=&&b");
    assert_eq!(
        without_mount("mountain=1&fromage=2"),
        "mountain=1&fromage=2"
    );
    assert_eq!(without_mount("a=mount&b=from"), "a=mount&b=from");
    assert_eq!(without_mount(""), "");
}

#[test]
fn token_scopes_parse_with_ports_classes_and_repeated_actions() {
    let scope = Scope::parse("repository:project-a/app:pull,push,pull")
        .unwrap()
        .unwrap();
    assert_eq!(scope.kind, "repository");
    assert_eq!(scope.name, "project-a/app");
    assert_eq!(scope.actions, ["pull", "push"]);
    let plugin = Scope::parse("repository(plugin):project-a/app:pull")
        .unwrap()
        .unwrap();
    assert_eq!(plugin.kind, "repository");
    let catalog = Scope::parse("registry:catalog:*").unwrap().unwrap();
    assert_eq!(
        (catalog.kind.as_str(), catalog.actions),
        ("registry", vec!["*".to_string()])
    );
    assert_eq!(Scope::parse("nonsense").unwrap(), None);
    assert!(Scope::parse("repository:UPPER/app:pull").is_err());
    assert!(Scope::parse("repository:single:pull").is_err());
}

#[test]
fn each_scope_action_maps_to_the_rbac_checks_of_the_same_request() {
    let layers = |verb| Attributes::layers(verb, "project-a", "app");
    assert_eq!(
        scope_checks("repository", "project-a/app", "pull"),
        Some(vec![layers("get")])
    );
    assert_eq!(
        scope_checks("repository", "project-a/app", "push"),
        Some(vec![layers("update")])
    );
    assert_eq!(
        scope_checks("repository", "project-a/app", "delete"),
        Some(vec![Attributes::cluster("delete", "images")])
    );
    assert_eq!(
        scope_checks("repository", "project-a/app", "*").map(|c| c.len()),
        Some(3)
    );
    assert_eq!(
        scope_checks("registry", "catalog", "*"),
        Some(vec![Attributes::cluster("list", "imagestreams")])
    );
    for (kind, name, action) in [
        ("repository", "project-a/app", "mount"),
        ("registry", "catalog", "pull"),
        ("registry", "other", "*"),
        ("plugin", "x/y", "pull"),
    ] {
        assert_eq!(
            scope_checks(kind, name, action),
            None,
            "{kind}:{name}:{action}"
        );
    }
}
