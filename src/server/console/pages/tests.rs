use std::sync::Arc;
use std::time::SystemTime;

use super::*;
use crate::policy::Attributes;

fn seen(allowed: Option<bool>) -> Arc<Seen> {
    Arc::new(Seen {
        seq: 7,
        time: SystemTime::now(),
        request_id: "id".into(),
        method: "GET".into(),
        path: "/v2/ns/app/manifests/v1".into(),
        user: Some("alice".into()),
        groups: vec![],
        attrs: Attributes::layers("get", "ns", "app"),
        allowed,
        reason: "RoleBinding ns/pullers (ClusterRole system:image-puller)".into(),
        status: 200,
    })
}

fn explained(allowed: Option<bool>, apply: Result<(), String>) -> String {
    let who = Who {
        name: "ops",
        csrf: "the-csrf",
        cluster: false,
    };
    let view = Explanation {
        seen: seen(allowed),
        role: "system:image-puller".into(),
        role_grants: vec!["get on imagestreams/layers".into()],
        command: "regate policy add-role-to-user system:image-puller alice -n ns".into(),
        now: None,
        who_can: vec![],
        apply,
        partial: None,
    };
    decision(&who, &view, None).into_string()
}

#[test]
fn a_decision_page_says_what_it_was_and_offers_the_grant_only_for_a_denial() {
    let allowed = explained(Some(true), Ok(()));
    assert!(allowed.contains("<h1>Allowed</h1>"));
    assert!(allowed.contains("Allowed by RoleBinding ns/pullers"));
    assert!(!allowed.contains("apply-grant") && !allowed.contains("grant-command"));

    let denied = explained(Some(false), Ok(()));
    assert!(denied.contains("Why was this denied?"));
    assert!(denied.contains("regate policy add-role-to-user system:image-puller alice -n ns"));
    for field in [
        "name=\"csrf\" value=\"the-csrf\"",
        "name=\"role\" value=\"system:image-puller\"",
        "name=\"subject\" value=\"alice\"",
        "name=\"decision\" value=\"7\"",
        "action=\"/console/namespaces/ns/grant\"",
    ] {
        assert!(denied.contains(field), "{field} missing: {denied}");
    }
    let not_allowed = explained(Some(false), Err("ops may not create rolebindings".into()));
    assert!(!not_allowed.contains("apply-grant"));
    assert!(not_allowed.contains("You cannot apply it here: ops may not create rolebindings"));

    let failed = explained(None, Ok(()));
    assert!(failed.contains("<h1>Failed closed</h1>"));
    assert!(!failed.contains("apply-grant"));
}

#[test]
fn what_clients_and_tokens_name_is_escaped() {
    let hostile = "<script>alert(1)</script>\"'";
    let seen = Arc::new(Seen {
        seq: 1,
        time: SystemTime::now(),
        request_id: hostile.into(),
        method: "GET".into(),
        path: format!("/v2/ns/{hostile}"),
        user: Some(hostile.into()),
        groups: vec![hostile.into()],
        attrs: Attributes::layers("get", "ns", hostile),
        allowed: Some(false),
        reason: hostile.into(),
        status: 403,
    });
    let who = Who {
        name: hostile,
        csrf: "c",
        cluster: true,
    };
    let filter = Filter {
        identity: hostile.into(),
        ..Filter::default()
    };
    let list =
        decisions(&who, &filter, &[hostile.to_string()], &[vec![seen.clone()]]).into_string();
    let explained = decision(
        &who,
        &Explanation {
            seen,
            role: hostile.into(),
            role_grants: vec![hostile.into()],
            command: hostile.into(),
            now: Some(hostile.into()),
            who_can: vec![],
            apply: Err(hostile.into()),
            partial: Some(hostile.into()),
        },
        Some(&Flash {
            done: true,
            text: hostile.into(),
        }),
    )
    .into_string();
    for page in [list, explained, sign_in(Some(hostile), true).into_string()] {
        assert!(!page.contains("<script>alert"), "unescaped: {page}");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    }
}
