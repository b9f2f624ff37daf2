//! Prometheus metrics (`GET /metrics`, Prometheus text format): what a request did, how the decision
//! cache and the authority fared, the registry's latency and bytes, transfers in flight, failed
//! logins and rate-limited clients, tokens issued, failed fetches of OIDC issuers' keys, build
//! info. One registry per process ([`get`]); the pieces of the pipeline record into it where the
//! thing happens. No label ever holds a user name, a repository or a token: their values are
//! bounded sets (an issuer label is one of the configured issuers).

use std::sync::OnceLock;
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// The kind of request, from its path.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum RouteKind {
    /// `/v2/`
    base,
    /// `/v2/NAME/manifests/REF`
    manifest,
    /// `/v2/NAME/blobs/DIGEST`
    blob,
    /// `/v2/NAME/blobs/uploads/…`
    upload,
    /// `/v2/NAME/tags/list`
    tags,
    /// `/v2/_catalog`
    catalog,
    /// `/v2/NAME/referrers/DIGEST`
    referrers,
    /// A token realm.
    token,
    /// Health, readiness, metrics, and paths that are not the API.
    other,
}

impl RouteKind {
    /// The kind of `path` (`realms` are the token endpoints' paths).
    pub fn of(path: &str, realms: &[impl AsRef<str>]) -> RouteKind {
        if realms.iter().any(|r| r.as_ref() == path) {
            return RouteKind::token;
        }
        let Some(rest) = path.strip_prefix("/v2") else {
            return RouteKind::other;
        };
        match rest {
            "" | "/" => RouteKind::base,
            "/_catalog" => RouteKind::catalog,
            _ if rest.contains("/blobs/uploads") => RouteKind::upload,
            _ if rest.contains("/manifests/") => RouteKind::manifest,
            _ if rest.contains("/blobs/") => RouteKind::blob,
            _ if rest.ends_with("/tags/list") => RouteKind::tags,
            _ if rest.contains("/referrers/") => RouteKind::referrers,
            _ => RouteKind::other,
        }
    }
}

/// Labels of `regate_requests`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// What the request was for.
    pub route: RouteKind,
    /// GET, HEAD, …, or `other`.
    pub method: &'static str,
    /// `1xx` to `5xx`.
    pub status: &'static str,
}

/// Labels of the decision cache counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    /// `hit` or `miss`.
    pub result: &'static str,
}

/// Labels of `regate_decision_cache_evictions`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EvictionLabels {
    /// `expired` (its TTL passed), `size` (room for newer ones) or `invalidated` (the policy
    /// changed).
    pub cause: &'static str,
}

/// Labels of the authority counters and histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReviewLabels {
    /// `authenticate` or `authorize`.
    pub kind: &'static str,
    /// `allowed`/`denied`, `valid`/`invalid`, or `error`.
    pub result: &'static str,
}

/// Labels of `regate_tokens_issued`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RealmLabels {
    /// `gateway` (`/openshift/token`) or `token_server`.
    pub realm: &'static str,
}

/// Labels of `regate_dependency_up`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DependencyLabels {
    /// `authority` or `upstream`.
    pub dependency: &'static str,
}

/// Labels of `regate_oidc_jwks_fetch_failures`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IssuerLabels {
    /// The issuer as configured (`identity.oidc`): a bounded set, never a token's `iss`.
    pub issuer: String,
}

/// Every metric regate keeps.
pub struct Metrics {
    registry: Registry,
    /// Requests answered, by route kind, method and status class.
    pub requests: Family<RequestLabels, Counter>,
    /// Decision cache lookups.
    pub cache: Family<CacheLabels, Counter>,
    /// Decisions being loaded from the authority right now.
    pub cache_loads_in_flight: Gauge,
    /// Decisions that left the cache, by cause.
    pub cache_evictions: Family<EvictionLabels, Counter>,
    /// Questions put to the authority.
    pub reviews: Family<ReviewLabels, Counter>,
    /// How long the authority took to answer.
    pub review_seconds: Family<ReviewLabels, Histogram>,
    /// Time to the registry's response headers.
    pub upstream_seconds: Histogram,
    /// Response bytes sent to clients.
    pub bytes_out: Counter,
    /// Request body bytes received from clients (uploads).
    pub bytes_in: Counter,
    /// Requests whose response is still being sent (pulls and pushes under way).
    pub transfers_in_flight: Gauge,
    /// Credentials refused.
    pub failed_logins: Counter,
    /// Requests refused 429 because their client or name had too many failed logins.
    pub rate_limited: Counter,
    /// Requests shed (503) beyond `connections.max_in_flight`.
    pub shed: Counter,
    /// Requests without credentials refused 503 beyond `connections.max_in_flight_per_client`.
    pub client_limited: Counter,
    /// 1 when the dependency answered the last `/readyz`, 0 when not.
    pub dependency_up: Family<DependencyLabels, Gauge>,
    /// Tokens issued, by realm.
    pub tokens_issued: Family<RealmLabels, Counter>,
    /// Audit lines written.
    pub audit_lines: Counter,
    /// Audit lines that could not be written (the file or stdout failed).
    pub audit_write_errors: Counter,
    /// Fetches of an OIDC issuer's keys (discovery and JWKS) that failed, by issuer.
    pub oidc_jwks_fetch_failures: Family<IssuerLabels, Counter>,
}

fn latency() -> Histogram {
    // 0.5 ms to about 16 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("regate");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests answered, by route kind, method and status class",
            requests.clone(),
        );
        let cache = Family::<CacheLabels, Counter>::default();
        registry.register(
            "decision_cache_lookups",
            "Decision cache lookups, by result (hit or miss)",
            cache.clone(),
        );
        let cache_loads_in_flight = Gauge::default();
        registry.register(
            "decision_cache_loads_in_flight",
            "Decisions being asked of the authority right now",
            cache_loads_in_flight.clone(),
        );
        let cache_evictions = Family::<EvictionLabels, Counter>::default();
        registry.register(
            "decision_cache_evictions",
            "Decisions that left the cache, by cause (expired, size, invalidated)",
            cache_evictions.clone(),
        );
        let reviews = Family::<ReviewLabels, Counter>::default();
        registry.register(
            "authority_reviews",
            "Questions put to the authority, by kind and result",
            reviews.clone(),
        );
        let review_seconds =
            Family::<ReviewLabels, Histogram>::new_with_constructor(latency as fn() -> Histogram);
        registry.register_with_unit(
            "authority_review_duration",
            "How long the authority took to answer",
            Unit::Seconds,
            review_seconds.clone(),
        );
        let upstream_seconds = latency();
        registry.register_with_unit(
            "upstream_response_duration",
            "Time until the registry's response headers",
            Unit::Seconds,
            upstream_seconds.clone(),
        );
        let bytes_out = Counter::default();
        registry.register_with_unit(
            "response_body",
            "Response body bytes sent to clients",
            Unit::Bytes,
            bytes_out.clone(),
        );
        let bytes_in = Counter::default();
        registry.register_with_unit(
            "request_body",
            "Request body bytes received from clients",
            Unit::Bytes,
            bytes_in.clone(),
        );
        let transfers_in_flight = Gauge::default();
        registry.register(
            "transfers_in_flight",
            "Requests whose response is still being sent",
            transfers_in_flight.clone(),
        );
        let failed_logins = Counter::default();
        registry.register(
            "failed_logins",
            "Credentials refused",
            failed_logins.clone(),
        );
        let rate_limited = Counter::default();
        registry.register(
            "rate_limited_requests",
            "Requests refused 429 after too many failed logins",
            rate_limited.clone(),
        );
        let shed = Counter::default();
        registry.register(
            "shed_requests",
            "Requests refused 503 beyond connections.max_in_flight",
            shed.clone(),
        );
        let client_limited = Counter::default();
        registry.register(
            "client_limited_requests",
            "Requests without credentials refused 503 beyond connections.max_in_flight_per_client",
            client_limited.clone(),
        );
        let dependency_up = Family::<DependencyLabels, Gauge>::default();
        registry.register(
            "dependency_up",
            "Whether a dependency (authority, upstream) answered the last /readyz (1) or not (0)",
            dependency_up.clone(),
        );
        let tokens_issued = Family::<RealmLabels, Counter>::default();
        registry.register(
            "tokens_issued",
            "Tokens issued, by realm",
            tokens_issued.clone(),
        );
        let audit_lines = Counter::default();
        registry.register("audit_lines", "Audit lines written", audit_lines.clone());
        let audit_write_errors = Counter::default();
        registry.register(
            "audit_write_errors",
            "Audit lines that could not be written",
            audit_write_errors.clone(),
        );
        let oidc_jwks_fetch_failures = Family::<IssuerLabels, Counter>::default();
        registry.register(
            "oidc_jwks_fetch_failures",
            "Fetches of an OIDC issuer's keys that failed (unreachable, timed out, malformed), by configured issuer",
            oidc_jwks_fetch_failures.clone(),
        );
        // A gauge at 1 with the version as label (Prometheus' text format has no `info` type).
        let build = Family::<Vec<(String, String)>, Gauge>::default();
        build
            .get_or_create(&vec![(
                "version".to_string(),
                env!("CARGO_PKG_VERSION").to_string(),
            )])
            .set(1);
        registry.register(
            "build_info",
            "regate's version, as a label (always 1)",
            build,
        );
        Metrics {
            registry,
            requests,
            cache,
            cache_loads_in_flight,
            cache_evictions,
            reviews,
            review_seconds,
            upstream_seconds,
            bytes_out,
            bytes_in,
            transfers_in_flight,
            failed_logins,
            rate_limited,
            shed,
            client_limited,
            dependency_up,
            tokens_issued,
            audit_lines,
            audit_write_errors,
            oidc_jwks_fetch_failures,
        }
    }

    /// The exposition in Prometheus' text format (0.0.4), which every scraper and `promtool`
    /// read: prometheus-client writes OpenMetrics, whose counters are typed under their name
    /// without `_total` and which has `# UNIT` and `# EOF` lines; those are rewritten.
    pub fn encode(&self) -> String {
        let mut open = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut open, &self.registry);
        let counters: Vec<&str> = open
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
            .collect();
        let mut text = String::with_capacity(open.len());
        for line in open.lines() {
            if line.starts_with("# UNIT ") || line == "# EOF" {
                continue;
            }
            let header = ["# HELP ", "# TYPE "]
                .iter()
                .find_map(|p| Some((*p, line.strip_prefix(p)?)));
            match header {
                Some((prefix, rest)) => {
                    let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                    let suffix = if counters.contains(&name) {
                        "_total"
                    } else {
                        ""
                    };
                    text.push_str(&format!("{prefix}{name}{suffix} {tail}\n"));
                }
                None => {
                    text.push_str(line);
                    text.push('\n');
                }
            }
        }
        text
    }

    /// Records one question to the authority.
    pub fn review(&self, kind: &'static str, result: &'static str, took: Duration) {
        let labels = ReviewLabels { kind, result };
        self.reviews.get_or_create(&labels).inc();
        self.review_seconds
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }
}

/// The process's metrics.
pub fn get() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// The `Content-Type` of [`Metrics::encode`].
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `2xx` for 204: a label value, without allocating per request.
pub fn status_class(status: u16) -> &'static str {
    match status / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        _ => "5xx",
    }
}

/// The method as a label value: the registry API's methods, else `other`.
pub fn method_label(method: &http::Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        _ => "other",
    }
}

#[cfg(test)]
mod tests;
