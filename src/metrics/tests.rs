//! Route kinds and the exposition's shape.

use super::*;

#[test]
fn route_kinds_come_from_the_path() {
    let realms = ["/openshift/token", "/token"];
    let kind = |p| RouteKind::of(p, &realms);
    assert_eq!(kind("/v2/"), RouteKind::base);
    assert_eq!(kind("/v2"), RouteKind::base);
    assert_eq!(kind("/v2/_catalog"), RouteKind::catalog);
    assert_eq!(kind("/v2/a/b/manifests/v1"), RouteKind::manifest);
    assert_eq!(kind("/v2/a/blobs/sha256:00"), RouteKind::blob);
    assert_eq!(kind("/v2/a/blobs/uploads/"), RouteKind::upload);
    assert_eq!(kind("/v2/a/blobs/uploads/123"), RouteKind::upload);
    assert_eq!(kind("/v2/a/tags/list"), RouteKind::tags);
    assert_eq!(kind("/v2/a/referrers/sha256:00"), RouteKind::referrers);
    assert_eq!(kind("/openshift/token"), RouteKind::token);
    assert_eq!(kind("/token"), RouteKind::token);
    assert_eq!(kind("/healthz"), RouteKind::other);
    // A repository named like a route word is still a manifest request.
    assert_eq!(kind("/v2/blobs/manifests/v1"), RouteKind::manifest);
}

#[test]
fn counters_are_typed_under_their_sample_names() {
    let metrics = get();
    metrics.failed_logins.inc();
    let text = metrics.encode();
    assert!(
        text.contains("# TYPE regate_failed_logins_total counter\n"),
        "{text}"
    );
    assert!(
        text.contains("# HELP regate_failed_logins_total "),
        "{text}"
    );
    assert!(
        !text.contains("# EOF") && !text.contains("# UNIT"),
        "{text}"
    );
    assert!(
        text.contains("# TYPE regate_transfers_in_flight gauge\n"),
        "{text}"
    );
    assert!(
        text.contains("# TYPE regate_upstream_response_duration_seconds histogram\n"),
        "{text}"
    );
}
