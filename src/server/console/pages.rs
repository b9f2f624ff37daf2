//! The console's pages as HTML, rendered on the server with `maud` (every value escaped). Each
//! page works without JavaScript; `console.js` only keeps the decisions table live. The layout
//! gives every page a skip link, one `h1`, labelled form fields and a visible focus ring.

use maud::{DOCTYPE, Markup, html};

use super::Seen;
use super::session::Flash;

/// The section of the console a page belongs to, marked in the navigation.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Section {
    SignIn,
    Namespaces,
    Decisions,
}

/// The signed-in person a page is for.
pub(super) struct Who<'a> {
    pub name: &'a str,
    pub csrf: &'a str,
    /// Sees every namespace.
    pub cluster: bool,
}

/// The frame around every page.
pub(super) fn layout(
    title: &str,
    section: Section,
    who: Option<&Who<'_>>,
    flash: Option<&Flash>,
    body: Markup,
) -> Markup {
    let current = |s: Section| (s == section).then_some("page");
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · regate console" }
                link rel="stylesheet" href="/console/assets/console.css";
                script src="/console/assets/console.js" defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/console/" { "regate console" }
                    @if let Some(who) = who {
                        nav aria-label="Main" {
                            ul {
                                li { a href="/console/namespaces" aria-current=[current(Section::Namespaces)] { "Namespaces" } }
                                li { a href="/console/decisions" aria-current=[current(Section::Decisions)] { "Decisions" } }
                            }
                        }
                        form.signout method="post" action="/console/logout" {
                            span { "Signed in as " strong #signed-in-as { (who.name) } }
                            @if who.cluster { " " span.badge { "all namespaces" } }
                            input type="hidden" name="csrf" value=(who.csrf);
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main #main tabindex="-1" {
                    h1 { (title) }
                    @if let Some(flash) = flash {
                        p.flash.(if flash.done { "done" } else { "refused" }) role="status" #flash { (flash.text) }
                    }
                    (body)
                }
            }
        }
    }
}

/// The sign-in form. `plain_http` warns that browsers keep the session cookie only over HTTPS
/// (or on the loopback address).
pub(super) fn sign_in(message: Option<&str>, plain_http: bool) -> Markup {
    let body = html! {
        @if let Some(message) = message {
            p.flash.refused role="alert" #sign-in-error { (message) }
        }
        @if plain_http {
            p.warning {
                "This console is served over plain HTTP. Browsers keep its session cookie only "
                "over HTTPS or on the loopback address: configure " code { "tls:" } " or put a "
                "TLS proxy in front (" code { "trusted_proxies" } ")."
            }
        }
        form.card method="post" action="/console/login" {
            label for="token" { "API token or OIDC ID token" }
            input #token type="password" name="token" autocomplete="off" required spellcheck="false";
            p.hint {
                "The token you give " code { "docker login" } " as the password: e.g. from "
                code { "regate create token --user NAME" } " (or " code { "regate create token SERVICEACCOUNT -n NAMESPACE" } "), or your identity provider."
            }
            button type="submit" { "Sign in" }
        }
    };
    layout("Sign in", Section::SignIn, None, None, body)
}

/// One row of the namespace list.
pub(super) struct NamespaceRow {
    pub name: String,
    /// Repositories in the registry.
    pub repositories: usize,
    /// `None` where counting them would cost a request per namespace (on a cluster).
    pub service_accounts: Option<usize>,
}

/// The namespaces the viewer sees.
pub(super) fn namespaces(
    who: &Who<'_>,
    rows: &[NamespaceRow],
    registry_error: Option<&str>,
) -> Markup {
    let body = html! {
        @if let Some(error) = registry_error {
            p.warning { "The registry could not list its repositories: " (error) }
        }
        @if rows.is_empty() {
            p #no-namespaces { "You administer no namespace. A namespace's admins (a RoleBinding of "
              code { "registry-admin" } " or " code { "admin" } ") see it here." }
        } @else {
            table #namespaces {
                caption { "Namespaces you administer" }
                thead { tr { th scope="col" { "Namespace" } th scope="col" { "Repositories" } th scope="col" { "Service accounts" } } }
                tbody {
                    @for row in rows {
                        tr {
                            th scope="row" { a href={ "/console/namespaces/" (row.name) } { (row.name) } }
                            td { (row.repositories) }
                            td {
                                @match row.service_accounts {
                                    Some(count) => (count),
                                    None => span.muted { "—" },
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    let body = html! {
        (body)
        form.filters #open-namespace method="get" action="/console/namespaces" {
            div {
                label for="open" { "Open a namespace by name" }
                input #open type="text" name="open" spellcheck="false" placeholder="project-a";
            }
            button type="submit" { "Open" }
        }
    };
    layout("Namespaces", Section::Namespaces, Some(who), None, body)
}

/// A repository and its tags.
pub(super) struct Repository {
    pub name: String,
    pub tags: Result<Vec<String>, String>,
}

/// Someone a binding grants a right to, and through which binding.
pub(super) struct Grantee {
    pub kind: String,
    pub name: String,
    pub by: Vec<String>,
}

/// A binding of the namespace.
pub(super) struct Binding {
    pub name: String,
    /// `ClusterRole NAME` or `Role NAME`.
    pub role: String,
    /// The ClusterRole's name, when it is one (only those can be removed here, as with
    /// `regate policy remove-role-from-*`).
    pub cluster_role: Option<String>,
    /// `(kind, name as regate policy takes it)`.
    pub subjects: Vec<(String, String)>,
}

/// A service account and the pull secrets linked to it.
pub(super) struct ServiceAccount {
    pub name: String,
    pub pull_secrets: Vec<String>,
}

/// Everything the namespace page shows.
pub(super) struct NamespaceView {
    pub name: String,
    pub repositories: Result<Vec<Repository>, String>,
    pub pullers: Vec<Grantee>,
    pub pushers: Vec<Grantee>,
    pub bindings: Vec<Binding>,
    /// Its service accounts, or why they are not shown.
    pub service_accounts: Result<Vec<ServiceAccount>, String>,
    /// Docker config Secrets of the namespace, by name, or why they are not shown.
    pub secrets: Result<Vec<String>, String>,
    /// What the viewer may not read of the roles and bindings, when something.
    pub partial: Option<String>,
    /// The ClusterRoles to offer; empty when the viewer may not add bindings.
    pub roles: Vec<String>,
    /// Why the viewer may not add bindings, if not.
    pub no_grant: Option<String>,
    pub may_revoke: bool,
}

/// One namespace: repositories and tags, who may pull and push, bindings, service accounts.
pub(super) fn namespace(who: &Who<'_>, view: &NamespaceView, flash: Option<&Flash>) -> Markup {
    let ns = &view.name;
    let body = html! {
        section aria-labelledby="repositories-h" {
            h2 #repositories-h { "Repositories" }
            @match &view.repositories {
                Err(error) => p.warning { "The registry could not list them: " (error) },
                Ok(repos) if repos.is_empty() => p { "No repositories yet. Push one to " code { (ns) "/NAME:TAG" } "." },
                Ok(repos) => table #repositories {
                    thead { tr { th scope="col" { "Repository" } th scope="col" { "Tags" } } }
                    tbody {
                        @for repo in repos {
                            tr {
                                th scope="row" { (repo.name) }
                                td {
                                    @match &repo.tags {
                                        Ok(tags) if tags.is_empty() => span.muted { "none" },
                                        Ok(tags) => ul.tags { @for tag in tags { li { code { (tag) } } } },
                                        Err(error) => span.muted { "cannot list: " (error) },
                                    }
                                }
                            }
                        }
                    }
                },
            }
        }
        @if let Some(partial) = &view.partial {
            p.warning #partial { (partial) " Who can pull and push is what the rest shows." }
        }
        div.columns {
            (grantees("who-can-pull", "Who can pull", "get imagestreams/layers", &view.pullers))
            (grantees("who-can-push", "Who can push", "update imagestreams/layers", &view.pushers))
        }
        section aria-labelledby="bindings-h" {
            h2 #bindings-h { "Bindings" }
            table #bindings {
                thead { tr { th scope="col" { "Binding" } th scope="col" { "Role" } th scope="col" { "Subjects" } } }
                tbody {
                    @for binding in &view.bindings {
                        tr {
                            th scope="row" { (binding.name) }
                            td { (binding.role) }
                            td {
                                ul.subjects {
                                    @for (kind, subject) in &binding.subjects {
                                        li {
                                            span.kind { (kind) } " " code { (subject) }
                                            @if let (true, Some(role)) = (view.may_revoke, &binding.cluster_role) {
                                                form.inline method="post" action={ "/console/namespaces/" (ns) "/revoke" } {
                                                    input type="hidden" name="csrf" value=(who.csrf);
                                                    input type="hidden" name="role" value=(role);
                                                    input type="hidden" name="kind" value=(subject_kind(kind));
                                                    input type="hidden" name="subject" value=(subject);
                                                    button.danger type="submit" aria-label={ "Remove " (subject) " from " (role) } { "Remove" }
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if let Some(why) = &view.no_grant {
                p.muted #no-grant { "You cannot add bindings here: " (why) "." }
            } @else {
                form.card #add-binding method="post" action={ "/console/namespaces/" (ns) "/grant" } {
                    h3 { "Add a binding" }
                    input type="hidden" name="csrf" value=(who.csrf);
                    div.row {
                        div {
                            label for="role" { "Role" }
                            select #role name="role" {
                                @for role in &view.roles {
                                    option value=(role) selected[role == "system:image-puller"] { (role) }
                                }
                            }
                        }
                        div {
                            label for="kind" { "Subject kind" }
                            select #kind name="kind" {
                                option value="user" { "User or service account" }
                                option value="group" { "Group" }
                            }
                        }
                        div.grow {
                            label for="subject" { "Subject" }
                            input #subject type="text" name="subject" required spellcheck="false"
                                placeholder="alice, system:serviceaccount:project-a:default, system:serviceaccounts:project-a";
                        }
                    }
                    button type="submit" { "Add binding" }
                }
            }
        }
        section aria-labelledby="sa-h" {
            h2 #sa-h { "Service accounts" }
            @match &view.service_accounts {
                Err(why) => p.muted #service-accounts { "Not shown: " (why) "." },
                Ok(accounts) => table #service-accounts {
                    thead { tr { th scope="col" { "Service account" } th scope="col" { "Pull secrets linked" } } }
                    tbody {
                        @for sa in accounts {
                            tr {
                                th scope="row" { (sa.name) }
                                td {
                                    @if sa.pull_secrets.is_empty() { span.muted { "none" } }
                                    @else { ul.tags { @for s in &sa.pull_secrets { li { code { (s) } } } } }
                                }
                            }
                        }
                    }
                },
            }
            p #secrets {
                "Docker config Secrets of " (ns) ": "
                @match &view.secrets {
                    Err(why) => span.muted { "not shown: " (why) },
                    Ok(secrets) if secrets.is_empty() => span.muted { "none" },
                    Ok(secrets) => @for (i, s) in secrets.iter().enumerate() { @if i > 0 { ", " } code { (s) } },
                }
                " (names only; their data is never shown)."
            }
        }
    };
    layout(
        &format!("Namespace {ns}"),
        Section::Namespaces,
        Some(who),
        flash,
        body,
    )
}

/// The form value of a binding subject's kind.
fn subject_kind(kind: &str) -> &'static str {
    if kind == crate::policy::GROUP_KIND {
        "group"
    } else {
        "user"
    }
}

fn grantees(id: &str, title: &str, check: &str, list: &[Grantee]) -> Markup {
    html! {
        section aria-labelledby={ (id) "-h" } {
            h2 id={ (id) "-h" } { (title) }
            p.muted { code { (check) } }
            @if list.is_empty() { p { "Nobody." } }
            @else {
                ul #(id) .grantees {
                    @for g in list {
                        li { span.kind { (g.kind) } " " code { (g.name) } br; span.muted { "via " (g.by.join("; ")) } }
                    }
                }
            }
        }
    }
}

/// What the decisions page is filtered by.
#[derive(Default, serde::Deserialize)]
pub(super) struct Filter {
    #[serde(default)]
    pub identity: String,
    #[serde(default)]
    pub namespace: String,
    /// `allowed`, `denied` or empty for both.
    #[serde(default)]
    pub outcome: String,
}

/// Recent decisions, newest first.
pub(super) fn decisions(
    who: &Who<'_>,
    filter: &Filter,
    namespaces: &[String],
    rows: &[Vec<std::sync::Arc<Seen>>],
) -> Markup {
    let body = html! {
        form.filters method="get" action="/console/decisions" {
            div {
                label for="identity" { "Identity" }
                input #identity type="search" name="identity" value=(filter.identity) spellcheck="false";
            }
            div {
                label for="namespace" { "Namespace" }
                select #namespace name="namespace" {
                    option value="" { "All you see" }
                    @for ns in namespaces { option value=(ns) selected[*ns == filter.namespace] { (ns) } }
                }
            }
            div {
                label for="outcome" { "Outcome" }
                select #outcome name="outcome" {
                    option value="" { "Allowed and denied" }
                    option value="allowed" selected[filter.outcome == "allowed"] { "Allowed" }
                    option value="denied" selected[filter.outcome == "denied"] { "Denied" }
                }
            }
            button type="submit" { "Filter" }
        }
        p.muted #this-replica {
            "Requests this regate process decided since it started. Other replicas behind the \
             same address keep their own; their access logs hold them all."
        }
        p.muted {
            span #live-status aria-live="polite" { "Newest first." }
            noscript { " Reload the page to see new decisions." }
        }
        table #decisions data-live="" {
            colgroup {
                col.when; col.who; col.request; col.checks; col.outcome;
            }
            thead {
                tr {
                    th scope="col" { "Time (UTC)" }
                    th scope="col" { "Identity" }
                    th scope="col" { "Request" }
                    th scope="col" { "Checks" }
                    th scope="col" { "Outcome" }
                }
            }
            tbody #decisions-body {
                @if rows.is_empty() { tr { td colspan="5" { "No decisions yet." } } }
                @for checks in rows {
                    @if let Some(first) = checks.first() {
                        @let failed = checks.iter().find(|seen| seen.allowed != Some(true));
                        tr.(failed.map_or("allowed", |seen| outcome_class(seen))) {
                            td { (time_text(first)) }
                            td { code { (first.user.as_deref().unwrap_or("-")) } }
                            td { (first.method) " " code { (first.path) } " → " (first.status) }
                            td {
                                ul.checks {
                                    @for seen in checks {
                                        li.(outcome_class(seen)) { (seen.attrs.describe()) }
                                    }
                                }
                            }
                            td {
                                @match failed {
                                    None => "Allowed",
                                    Some(seen) if seen.allowed.is_none() => a href={ "/console/decisions/" (seen.seq) } { "Failed closed" },
                                    Some(seen) => a href={ "/console/decisions/" (seen.seq) } { "Denied: why?" },
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    layout(
        "Recent decisions",
        Section::Decisions,
        Some(who),
        None,
        body,
    )
}

fn outcome_class(seen: &Seen) -> &'static str {
    match seen.allowed {
        Some(true) => "allowed",
        Some(false) => "denied",
        None => "failed",
    }
}

/// `2026-12-07 05:31:02.123`.
fn time_text(seen: &Seen) -> String {
    let text = humantime::format_rfc3339_millis(seen.time).to_string();
    text.trim_end_matches('Z').replacen('T', " ", 1)
}

/// A denial, explained.
pub(super) struct Explanation {
    pub seen: std::sync::Arc<Seen>,
    /// The role whose binding would grant it, and what it grants.
    pub role: String,
    pub role_grants: Vec<String>,
    /// The `regate policy` command that grants it.
    pub command: String,
    /// Whether the policy in force now allows it (someone granted it since), and by what.
    pub now: Option<String>,
    /// Who may do it now.
    pub who_can: Vec<Grantee>,
    /// `Ok`: the viewer may apply the grant here; `Err`: why not.
    pub apply: Result<(), String>,
    /// What the viewer may not read of the roles and bindings, when something.
    pub partial: Option<String>,
}

/// One denial: what was missing and how to grant it.
pub(super) fn decision(who: &Who<'_>, view: &Explanation, flash: Option<&Flash>) -> Markup {
    let seen = &view.seen;
    let user = seen.user.as_deref().unwrap_or("-");
    let body = html! {
        dl.facts {
            dt { "Identity" } dd { code #identity { (user) } }
            dt { "Groups" } dd { (seen.groups.join(", ")) }
            dt { "Request" } dd { (seen.method) " " code { (seen.path) } " → " (seen.status) " (request id " code { (seen.request_id) } ")" }
            dt { "When (UTC)" } dd { (time_text(seen)) }
            dt { "Check" } dd { (seen.attrs.describe()) }
            dt { "Decision" } dd { (match seen.allowed { Some(true) => "allowed: ", Some(false) => "denied: ", None => "failed closed: " }) (seen.reason) }
        }
        @if seen.allowed == Some(true) {
            p #allowed-by { "Allowed by " (seen.reason) "." }
        } @else if seen.allowed.is_none() {
            p { "The authority could not answer, so nothing was forwarded. No grant is missing; "
                "see " code { "/readyz" } " and the gateway's log." }
        } @else {
            h2 { "What is missing" }
            p #missing {
                "No binding gives " code { (user) } " the right to " strong { (seen.attrs.describe()) } ". "
                "ClusterRole " code { (view.role) } " grants it:"
            }
            ul { @for rule in &view.role_grants { li { (rule) } } }
            @if let Some(by) = &view.now {
                p.flash.done #now-allowed { "Allowed now, by " (by) ". The next request will be let through." }
            }
            h2 { "The fix" }
            pre #grant-command { code { (view.command) } }
            @match (&view.apply, &view.now, seen.attrs.namespace.is_empty()) {
                (_, Some(_), _) => {},
                (_, None, true) => p.muted { "Cluster-wide grants are made with the command above." },
                (Ok(()), None, false) => form.card method="post" action={ "/console/namespaces/" (seen.attrs.namespace) "/grant" } {
                    input type="hidden" name="csrf" value=(who.csrf);
                    input type="hidden" name="role" value=(view.role);
                    input type="hidden" name="kind" value="user";
                    input type="hidden" name="subject" value=(user);
                    input type="hidden" name="decision" value=(seen.seq);
                    button #apply-grant type="submit" { "Grant " (view.role) " to " (user) " in " (seen.attrs.namespace) }
                },
                (Err(why), None, false) => p.muted #no-apply { "You cannot apply it here: " (why) "." },
            }
            @if let Some(partial) = &view.partial {
                p.warning #partial { (partial) " What follows is what the rest shows." }
            }
            h2 { "Who can do it now" }
            @if view.who_can.is_empty() { p { "Nobody." } }
            @else {
                ul.grantees { @for g in &view.who_can { li { span.kind { (g.kind) } " " code { (g.name) } " via " (g.by.join("; ")) } } }
            }
        }
        p { a href="/console/decisions" { "Back to recent decisions" } }
    };
    let title = match seen.allowed {
        Some(true) => "Allowed",
        Some(false) => "Why was this denied?",
        None => "Failed closed",
    };
    layout(title, Section::Decisions, Some(who), flash, body)
}

/// A page saying why a request cannot go on.
pub(super) fn refusal(title: &str, message: &str, who: Option<&Who<'_>>) -> Markup {
    let body = html! {
        p #refusal { (message) }
        p { a href="/console/" { "Back to the console" } }
    };
    layout(title, Section::Namespaces, who, None, body)
}

/// The stylesheet, embedded in the binary.
pub(super) const CSS: &str = include_str!("assets/console.css");
/// The script keeping the decisions table live, embedded in the binary.
pub(super) const JS: &str = include_str!("assets/console.js");

#[cfg(test)]
mod tests;
