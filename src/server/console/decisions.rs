//! The recent-decisions pages (docs/console.md, "Pages"): the requests this replica decided, one
//! row each with its checks, and one denial explained with the grant that fixes it.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use http::HeaderMap;

use super::handlers::{ConsoleState, grantees, viewed, who};
use super::pages::{self, Filter};
use super::{Refused, Seen, Viewer};
use crate::identity::UserInfo;
use crate::policy::{self, Attributes};

/// Requests shown on the decisions page.
const ROWS: usize = 200;

/// `GET /console/decisions`: recent decisions the viewer may see, filtered.
pub(super) async fn list(
    State(console): ConsoleState,
    headers: HeaderMap,
    filter: Result<Query<Filter>, QueryRejection>,
) -> Result<Response, Refused> {
    let viewer = console.viewer(&headers).await?;
    let Ok(Query(filter)) = filter else {
        return Err(Refused::BadRequest("the filter is not readable".into()));
    };
    let visible: BTreeSet<String> = console.namespaces(&viewer).await?.into_iter().collect();
    let rows: Vec<Vec<Arc<Seen>>> = console
        .recent
        .newest_requests(ROWS, |checks| {
            checks.iter().any(|seen| sees(&viewer, &visible, seen))
                && matches_filter(&filter, checks)
        })
        .into_iter()
        // A check about a namespace the viewer does not see (a mount's source) stays hidden.
        .map(|checks| {
            checks
                .into_iter()
                .filter(|seen| sees(&viewer, &visible, seen))
                .collect()
        })
        .collect();
    let visible: Vec<String> = visible.into_iter().collect();
    let markup = pages::decisions(&who(&viewer), &filter, &visible, &rows);
    Ok(viewed(&console, &viewer, markup))
}

/// Whether `viewer` may see decision `seen`: cluster viewers see all, others those about the
/// namespaces they see.
fn sees(viewer: &Viewer, visible: &BTreeSet<String>, seen: &Seen) -> bool {
    viewer.cluster || visible.contains(&seen.attrs.namespace)
}

/// Whether a request, by its checks, is one `filter` asks for: its identity, a check in the
/// namespace, and its outcome (allowed when every check was).
fn matches_filter(filter: &Filter, checks: &[Arc<Seen>]) -> bool {
    let identity = filter.identity.trim();
    let Some(first) = checks.first() else {
        return false;
    };
    let allowed = checks.iter().all(|seen| seen.allowed == Some(true));
    (identity.is_empty() || first.user.as_deref().is_some_and(|u| u.contains(identity)))
        && (filter.namespace.is_empty()
            || checks
                .iter()
                .any(|seen| seen.attrs.namespace == filter.namespace))
        && match filter.outcome.as_str() {
            "allowed" => allowed,
            "denied" => !allowed,
            _ => true,
        }
}

/// `GET /console/decisions/SEQ`: one decision, and for a denial what is missing and the grant.
pub(super) async fn explain(
    State(console): ConsoleState,
    Path(seq): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Refused> {
    let viewer = console.viewer(&headers).await?;
    let gone = || Refused::NotFound("this decision is no longer kept (or not yours to see)".into());
    let seen = seq
        .parse()
        .ok()
        .and_then(|seq| console.recent.get(seq))
        .ok_or_else(gone)?;
    // A cluster-scoped decision is for cluster viewers only.
    let visible = if seen.attrs.namespace.is_empty() {
        viewer.cluster
    } else {
        console.sees(&viewer, &seen.attrs.namespace).await?
    };
    if !visible {
        return Err(gone());
    }
    let attrs = &seen.attrs;
    let (held, partial) = console.directory.held(&viewer, &attrs.namespace).await?;
    let policy = held.policy();
    let checks = request_checks(&seen);
    let pushing = checks.iter().any(|check| check.verb == "update");
    let role = policy::role_granting_request(attrs, pushing).to_string();
    let user = seen.user.clone().unwrap_or_default();
    let subject = UserInfo {
        name: user.clone(),
        groups: seen.groups.clone(),
        ..UserInfo::anonymous()
    };
    // "Allowed now" only when the whole request would pass: a push refused its `get` needs
    // `update` too, and a grant of the puller role alone does not let it through.
    let now = match policy.evaluate(&subject, attrs) {
        policy::Decision::Allow { by }
            if seen.allowed == Some(false)
                && checks
                    .iter()
                    .all(|check| policy.evaluate(&subject, check).allowed()) =>
        {
            Some(by)
        }
        _ => None,
    };
    let apply = if attrs.namespace.is_empty() {
        Err("cluster-wide".to_string())
    } else {
        match console.may_bind(&viewer, &attrs.namespace).await? {
            Ok(()) => console.grantable(&viewer, policy, &attrs.namespace, &role),
            Err(why) => Err(why),
        }
    };
    let view = pages::Explanation {
        role_grants: rules_text(policy.cluster_role_rules(&role)),
        command: policy::grant_command(&role, &user, attrs),
        now,
        who_can: grantees(policy.who_can(attrs)),
        apply,
        partial,
        role,
        seen,
    };
    let flash = viewer.session.told();
    let markup = pages::decision(&who(&viewer), &view, flash.as_ref());
    Ok(viewed(&console, &viewer, markup))
}

/// Every check the request of decision `seen` needed (docs/behaviour.md §2), read again from
/// its method and path; the decision's own check when they no longer parse.
fn request_checks(seen: &Seen) -> Vec<Attributes> {
    let method = http::Method::from_bytes(seen.method.as_bytes()).ok();
    let plan = method.and_then(|method| {
        let route = crate::route::parse(&seen.path).ok()?;
        crate::access::plan(&method, &route, None).ok()
    });
    match plan {
        Some(plan) if plan.required.contains(&seen.attrs) => plan.required,
        _ => vec![seen.attrs.clone()],
    }
}

/// A role's rules as text: `get, update on imagestreams/layers`.
fn rules_text(rules: &[k8s_openapi::api::rbac::v1::PolicyRule]) -> Vec<String> {
    rules
        .iter()
        .filter_map(|rule| {
            let resources = rule.resources.as_ref().filter(|r| !r.is_empty())?;
            let mut text = format!("{} on {}", rule.verbs.join(", "), resources.join(", "));
            if let Some(names) = rule.resource_names.as_ref().filter(|n| !n.is_empty()) {
                text.push_str(&format!(" named {}", names.join(", ")));
            }
            Some(text)
        })
        .collect()
}
