//! Changes to a namespace's bindings from the console: the grant and revoke forms, each the
//! `regate policy` operation (on the state directory, or asked of the API server as the viewer),
//! taken only from the console's own pages
//! with the session's CSRF token, and only when RBAC lets the viewer make it. Each one that
//! gets that far, made or refused, is a `binding` line in the audit log.

use std::time::SystemTime;

use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use http::HeaderMap;

use super::directory::Op;
use super::handlers::{ConsoleState, csrf_refused};
use super::{Console, Refused, Viewer};
use crate::audit::{Event, RequestRecord};
use crate::authority::embedded::SubjectRef;

/// A change to the bindings of a namespace: the fields of the grant and revoke forms.
#[derive(serde::Deserialize)]
pub(super) struct Change {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    role: String,
    /// `user` (a user or `system:serviceaccount:NS:NAME`) or `group`.
    #[serde(default)]
    kind: String,
    #[serde(default)]
    subject: String,
    /// The decision the grant was applied from, to go back to.
    decision: Option<u64>,
}

/// The viewer of a write and its form, once its CSRF token is checked (its origin was, before
/// the handler ran).
async fn writer(
    console: &Console,
    headers: &HeaderMap,
    form: Result<Form<Change>, FormRejection>,
) -> Result<(Viewer, Change, SubjectRef), Refused> {
    let viewer = console.viewer(headers).await?;
    let Ok(Form(form)) = form else {
        return Err(Refused::BadRequest("the form is not readable".into()));
    };
    if !viewer.session.csrf_matches(&form.csrf) {
        return Err(csrf_refused());
    }
    let subject = form.subject.trim();
    if form.role.is_empty() || subject.is_empty() {
        return Err(Refused::BadRequest(
            "a role and a subject are needed".into(),
        ));
    }
    let subject = match form.kind.as_str() {
        "user" => SubjectRef::user(subject),
        "group" => SubjectRef::Group(subject.to_string()),
        other => {
            return Err(Refused::BadRequest(format!(
                "unknown subject kind {other:?}: user or group"
            )));
        }
    };
    Ok((viewer, form, subject))
}

/// `POST /console/namespaces/NS/grant`: `regate policy add-role-to-user|group ROLE SUBJECT -n
/// NS`, when the viewer may create bindings there and holds what the role grants.
pub(super) async fn grant(
    State(console): ConsoleState,
    Path(ns): Path<String>,
    headers: HeaderMap,
    form: Result<Form<Change>, FormRejection>,
) -> Result<Response, Refused> {
    change_bindings(&console, ns, &headers, form, Op::Grant).await
}

/// `POST /console/namespaces/NS/revoke`: `regate policy remove-role-from-user|group ROLE
/// SUBJECT -n NS`, when the viewer may delete bindings there.
pub(super) async fn revoke(
    State(console): ConsoleState,
    Path(ns): Path<String>,
    headers: HeaderMap,
    form: Result<Form<Change>, FormRejection>,
) -> Result<Response, Refused> {
    change_bindings(&console, ns, &headers, form, Op::Revoke).await
}

async fn change_bindings(
    console: &Console,
    ns: String,
    headers: &HeaderMap,
    form: Result<Form<Change>, FormRejection>,
    op: Op,
) -> Result<Response, Refused> {
    let (viewer, form, subject) = writer(console, headers, form).await?;
    console.namespace(&viewer, &ns).await?;
    let refused = match op {
        Op::Grant => console
            .may_grant(&viewer, &ns, &form.role)
            .await?
            .err()
            .map(|why| format!("Not granted: {why}.")),
        Op::Revoke => (!console.may_revoke(&viewer, &ns).await?).then(|| {
            format!(
                "Not removed: {} may not delete rolebindings in namespace {ns}.",
                viewer.user.name
            )
        }),
    };
    let (verb, path) = match op {
        Op::Grant => ("add-role-to", "grant"),
        Op::Revoke => ("remove-role-from", "revoke"),
    };
    let command = command(verb, &form.role, &subject, &ns);
    let attempt = Attempt {
        console,
        headers,
        viewer: &viewer,
        path: format!("/console/namespaces/{ns}/{path}"),
        command: &command,
        namespace: &ns,
    };
    if let Some(why) = refused {
        attempt.audit(403, Some(&why));
        return Err(Refused::Forbidden(why));
    }
    let done = console
        .directory
        .change(&viewer, op, &ns, &form.role, subject)
        .await;
    attempt.audit(303, done.as_ref().err().map(String::as_str));
    Ok(finish(console, &viewer, done, &command, &ns, form.decision))
}

/// A change asked for, as the audit log records it.
struct Attempt<'a> {
    console: &'a Console,
    headers: &'a HeaderMap,
    viewer: &'a Viewer,
    path: String,
    command: &'a str,
    namespace: &'a str,
}

impl Attempt<'_> {
    /// Writes the attempt's audit line, when there is an audit log: made, or `refused` and why.
    fn audit(&self, status: u16, refused: Option<&str>) {
        let Some(audit) = &self.console.gateway.audit else {
            return;
        };
        let request = RequestRecord {
            request_id: self
                .headers
                .get("x-request-id")
                .and_then(|id| id.to_str().ok())
                .unwrap_or(""),
            client: None,
            method: "POST",
            path: &self.path,
            user: Some(&self.viewer.user.name),
            groups: &self.viewer.user.groups,
            status,
        };
        let event = Event::Binding {
            time: SystemTime::now(),
            command: self.command.to_string(),
            namespace: self.namespace.to_string(),
            refused: refused.map(str::to_string),
        };
        audit.write(crate::audit::lines(&request, &[event]));
    }
}

/// The `regate policy` command a change is, e.g. `regate policy add-role-to-user
/// system:image-puller alice -n project-b`, quoted for the shell as every command regate shows.
fn command(verb: &str, role: &str, subject: &SubjectRef, ns: &str) -> String {
    let kind = match subject {
        SubjectRef::Group(_) => "group",
        _ => "user",
    };
    let verb = format!("{verb}-{kind}");
    crate::policy::policy_command(&verb, role, &subject.to_string(), Some(ns))
}

/// Tells the viewer what the change did (on the next page, through the session cookie this
/// answer re-issues) and goes back: to the decision the grant was applied from, or to the
/// namespace.
fn finish(
    console: &Console,
    viewer: &Viewer,
    done: Result<(), String>,
    command: &str,
    ns: &str,
    decision: Option<u64>,
) -> Response {
    match done {
        Ok(()) => {
            tracing::info!(user = %viewer.user.name, %command, "console: bindings changed");
            viewer.session.tell(true, format!("Done: {command}"));
        }
        Err(error) => viewer.session.tell(false, format!("Not done: {error}")),
    }
    let to = match decision {
        Some(seq) => format!("/console/decisions/{seq}"),
        None => format!("/console/namespaces/{ns}"),
    };
    super::handlers::for_viewer(console, viewer, Redirect::to(&to).into_response())
}
