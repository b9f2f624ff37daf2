//! Property tests of regate's parsers through the public API: the OCI route grammar, the
//! `Authorization` header, token scopes, docker config documents (pull secrets), and RBAC
//! manifests with the policy evaluated from them.
//!
//! Each property either feeds hostile input (arbitrary text, bytes, near-valid shapes) and
//! checks that nothing panics and that whatever is accepted keeps the module's invariants, or
//! generates valid input and checks it round trips. Case counts are bounded so the whole file
//! runs in a few seconds in a debug build; nothing is persisted (`failure_persistence: None`),
//! so a failure prints its shrunk input instead of writing a regressions file into the tree.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use http::{HeaderValue, Method};
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use regate::access::{self, Scope};
use regate::authority::embedded::Object;
use regate::authority::embedded::{ApplyError, parse_manifests};
use regate::identity::{self, Credential, CredentialError};
use regate::policy::{self, Attributes, Policy};
use regate::route::{self, MAX_NAME_LEN, Name, Route};
use regate::upstream::keyring::{self, Keyring};
use secrecy::ExposeSecret as _;

/// Bounded cases and no regressions file: cheap enough for every `cargo test`.
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Oracles, written independently of the library (maximal runs instead of a scanner) so that
// they can disagree with it.

/// One name component per the OCI grammar `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
fn oci_component(component: &str) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let mut runs: Vec<(bool, String)> = Vec::new();
    for c in component.chars() {
        match runs.last_mut() {
            Some((kind, run)) if *kind == alnum(c) => run.push(c),
            _ => runs.push((alnum(c), c.to_string())),
        }
    }
    // Maximal runs alternate, so "starts and ends alphanumeric" plus "every separator run is
    // one separator" is the whole grammar.
    runs.first().is_some_and(|(a, _)| *a)
        && runs.last().is_some_and(|(a, _)| *a)
        && runs.iter().filter(|(a, _)| !a).all(|(_, sep)| {
            sep == "." || sep == "_" || sep == "__" || sep.chars().all(|c| c == '-')
        })
}

/// A repository name regate must accept: the OCI grammar, at most 255 bytes, and at least
/// `<namespace>/<imagestream>`.
fn valid_repository(name: &str) -> bool {
    name.len() <= MAX_NAME_LEN && name.split('/').count() >= 2 && name.split('/').all(oci_component)
}

// ---------------------------------------------------------------------------------------------
// Generators.

/// A name component matching the OCI grammar, separators included.
fn component() -> impl Strategy<Value = String> {
    "[a-z0-9]{1,8}((\\.|_|__|-{1,3})[a-z0-9]{1,8}){0,3}"
}

/// A repository name of 2 to 8 valid components; may exceed 255 bytes, which the properties
/// use to check the length limit.
fn repository() -> impl Strategy<Value = String> {
    prop::collection::vec(component(), 2..=8).prop_map(|c| c.join("/"))
}

/// A repository name regate accepts.
fn valid_name() -> impl Strategy<Value = String> {
    repository().prop_filter("at most 255 bytes", |n| n.len() <= MAX_NAME_LEN)
}

/// A tag per the OCI spec.
fn tag() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_][A-Za-z0-9._-]{0,127}"
}

/// A sha256 digest.
fn digest() -> impl Strategy<Value = String> {
    "[0-9a-f]{64}".prop_map(|hex| format!("sha256:{hex}"))
}

/// One path segment, biased toward what confuses path parsers: encodings, dot segments,
/// endpoint keywords in name position, near-valid components, non-ASCII look-alikes.
fn segment() -> impl Strategy<Value = String> {
    let tricky: &[&str] = &[
        "",
        ".",
        "..",
        "%2F",
        "%2f",
        "%2e%2e",
        "%2E",
        "%",
        "A",
        "App",
        "a..b",
        "a___b",
        "a_-b",
        "-a",
        "a-",
        "_a",
        "a.",
        "é",
        "ａ",
        "a\u{301}",
        "ﬁ",
        "a b",
        "a?b",
        "a#b",
        "a\\b",
        "a;b",
        "manifests",
        "blobs",
        "uploads",
        "tags",
        "list",
        "referrers",
        "_catalog",
        "v2",
        "latest",
        "sha256:abc",
        "sha512:",
        "a:b",
        "\u{0}",
        "\u{202e}",
    ];
    prop_oneof![
        5 => component(),
        3 => prop::sample::select(tricky).prop_map(str::to_string),
        1 => digest(),
        1 => tag(),
        1 => "\\PC{0,6}",
    ]
}

/// A name that is right or nearly right: components of alphanumeric runs and separators,
/// sometimes a separator the grammar lacks (`___`, `._`, `..`), a character outside it, a
/// leading or trailing separator, or a doubled `/`. About one in twelve is valid.
fn near_grammar() -> impl Strategy<Value = String> {
    let alnum = prop_oneof![
        8 => "[a-z0-9]{1,3}",
        1 => prop::sample::select(&["A", "é", "%2f", " "][..]).prop_map(str::to_string),
    ];
    let separator = prop_oneof![
        3 => prop::sample::select(&[".", "_", "__", "-", "---"][..]),
        1 => prop::sample::select(&["___", "..", "._", "-_", "_.", "/"][..]),
    ];
    let edge = prop::option::weighted(0.1, separator.clone());
    let component = (
        edge.clone(),
        alnum.clone(),
        prop::collection::vec((separator, alnum), 0..4),
        edge,
    )
        .prop_map(|(lead, first, rest, trail)| {
            let mut c = lead.unwrap_or_default().to_string();
            c.push_str(&first);
            for (separator, run) in rest {
                c.push_str(separator);
                c.push_str(&run);
            }
            c.push_str(trail.unwrap_or_default());
            c
        });
    prop::collection::vec((component, prop::bool::weighted(0.1)), 1..5).prop_map(join_slashes)
}

/// Components joined with `/`, or with `//` before those flagged.
fn join_slashes(parts: Vec<(String, bool)>) -> String {
    let mut name = String::new();
    for (i, (part, double)) in parts.iter().enumerate() {
        if i > 0 {
            name.push_str(if *double { "//" } else { "/" });
        }
        name.push_str(part);
    }
    name
}

/// A request path: mostly `/v2/<name>/<endpoint>` from mostly valid parts (so that about half
/// parse and the invariants of accepted paths get exercised), with hostile segments, mangled
/// prefixes and doubled slashes mixed in; sometimes arbitrary text or lossily decoded bytes.
fn request_path() -> impl Strategy<Value = String> {
    let prefixes: &[&str] = &[
        "/v2", "v2/", "/V2/", "//v2/", "/v2//", "", "/v2/./", "/v2/%2F",
    ];
    let prefix = prop_oneof![
        8 => Just("/v2/"),
        1 => prop::sample::select(prefixes),
    ];
    let name = prop::collection::vec(
        (
            prop_oneof![8 => component(), 1 => segment()],
            prop::bool::weighted(0.03),
        ),
        1..5,
    )
    .prop_map(join_slashes);
    // The last segment is forwarded as is, so it is often short and dotted or encoded: `.`,
    // `..`, `%2e`, `a%2F`.
    let last = || prop_oneof![segment(), "[a-z0-9_.=%-]{1,3}"];
    let upload_id = "[A-Za-z0-9_.=-]{1,40}";
    let tail = prop_oneof![
        (prop_oneof![tag(), digest(), last()]).prop_map(|r| format!("manifests/{r}")),
        (prop_oneof![digest(), last()]).prop_map(|d| format!("blobs/{d}")),
        (prop_oneof![digest(), last()]).prop_map(|d| format!("referrers/{d}")),
        Just("blobs/uploads/".to_string()),
        Just("blobs/uploads".to_string()),
        (prop_oneof![upload_id, last()]).prop_map(|id| format!("blobs/uploads/{id}")),
        Just("tags/list".to_string()),
        prop::collection::vec(segment(), 0..4).prop_map(|s| s.join("/")),
    ];
    let built =
        (prefix, name, tail).prop_map(|(prefix, name, tail)| format!("{prefix}{name}/{tail}"));
    prop_oneof![
        8 => built,
        1 => any::<String>(),
        1 => "/v2/\\PC{0,40}",
        1 => prop::collection::vec(any::<u8>(), 0..64)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ]
}

/// A repository name from mostly valid components with hostile ones mixed in.
fn near_name() -> impl Strategy<Value = String> {
    prop::collection::vec(prop_oneof![6 => component(), 1 => segment()], 1..5)
        .prop_map(|parts| parts.join("/"))
}

/// `word` with the case of each letter chosen at random.
fn random_case(word: &'static str) -> impl Strategy<Value = String> {
    prop::collection::vec(any::<bool>(), word.len()).prop_map(move |upper| {
        word.chars()
            .zip(upper)
            .map(|(c, up)| if up { c.to_ascii_uppercase() } else { c })
            .collect()
    })
}

/// A secret long and random enough that it cannot occur by chance in a fixed error message.
fn secret() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_.~+/=-]{8,40}"
}

/// A DNS-1123 label (namespace, role or user name).
fn dns_label() -> impl Strategy<Value = String> {
    "[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?"
}

/// An arbitrary JSON value whose keys and strings lean toward docker config vocabulary. Its
/// text is ASCII: non-ASCII keys and images have properties of their own, so that a failure
/// on them does not hide others.
fn docker_json() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let words: &[&str] = &[
        "auths",
        "auth",
        "username",
        "password",
        "identitytoken",
        "email",
        "credsStore",
        "quay.io",
        "quay.io:443/team",
        "https://index.docker.io/v1/",
        "index.docker.io",
        "docker.io",
        "*.example.com",
        "[a-c]*.example.com",
        "[^a]?.example.com",
        "[]a]",
        "[a-",
        "\\",
        "[::1]:5000",
        "[::1",
        "[::1]x",
        "host:port",
        "host:",
        "http://user@h:5000/v2/p?q#f",
        "",
        " ",
        "dTpw",
        "dTpw==",
        "Og==",
        "====",
        "not base64",
    ];
    let text = prop_oneof![
        3 => prop::sample::select(words).prop_map(str::to_string),
        1 => "[ -~]{0,12}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        text.clone().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((text.clone(), inner), 0..6)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
        ]
    })
}

/// A docker config document near the valid shape: entries under `auths` (or at the top level,
/// the legacy format) whose keys and fields are mostly right, with wrong types, bad base64 and
/// odd keys mixed in; sometimes any JSON value.
fn docker_config() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::{Value, json};
    let fields: &[&str] = &[
        "auth",
        "username",
        "password",
        "identitytoken",
        "email",
        "x",
    ];
    let value = prop_oneof![
        4 => ("[^:]{0,6}", "\\PC{0,8}")
            .prop_map(|(u, p)| Value::String(STANDARD.encode(format!("{u}:{p}")))),
        2 => "[ -~]{0,12}".prop_map(Value::String),
        1 => prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i32>().prop_map(Value::from),
            Just(json!([])),
            Just(json!({})),
        ],
    ];
    let entry = prop_oneof![
        8 => prop::collection::btree_map(prop::sample::select(fields), value, 0..4)
            .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
        1 => docker_json(),
    ];
    let key = prop_oneof![
        4 => key_and_image().prop_map(|(key, ..)| key),
        1 => "[ -~]{0,16}",
    ];
    let entries = prop::collection::btree_map(key, entry, 0..4)
        .prop_map(|m| Value::Object(m.into_iter().collect()));
    prop_oneof![
        4 => entries.clone().prop_map(|auths| json!({ "auths": auths })),
        2 => entries,
        1 => docker_json().prop_map(|auths| json!({ "auths": auths, "credsStore": "desktop" })),
        1 => docker_json(),
    ]
}

/// A host name of 1 to 3 DNS labels.
fn host() -> impl Strategy<Value = String> {
    prop::collection::vec("[a-z0-9]([a-z0-9-]{0,6}[a-z0-9])?", 1..=3).prop_map(|l| l.join("."))
}

/// A path segment of a docker config key. `v1`/`v2` are left out: the kubelet (and regate)
/// strip a leading `/v1/` or `/v2/` from keys, never from images.
fn key_segment() -> impl Strategy<Value = String> {
    "[a-z0-9]{1,6}".prop_filter("not a version prefix", |s| s != "v1" && s != "v2")
}

/// A keyring key and an image it must match: (key, host, port, key path, image).
fn key_and_image() -> impl Strategy<Value = (String, String, Option<u16>, Vec<String>, String)> {
    let schemes: &[&str] = &["", "https://", "http://", "HTTPS://"];
    (
        prop::sample::select(schemes),
        host(),
        any::<bool>(),
        prop::option::of(any::<u16>()),
        prop::collection::vec(key_segment(), 0..3),
        any::<bool>(),
        prop::collection::vec("[a-z0-9]{1,6}", 1..3),
        prop_oneof![
            Just(String::new()),
            tag().prop_map(|t| format!(":{t}")),
            digest().prop_map(|d| format!("@{d}"))
        ],
    )
        .prop_map(
            |(scheme, host, upper, port, path, trailing, rest, reference)| {
                let authority = match port {
                    Some(p) => format!("{host}:{p}"),
                    None => host.clone(),
                };
                let written = if upper {
                    authority.to_ascii_uppercase()
                } else {
                    authority.clone()
                };
                let mut key = format!("{scheme}{written}");
                for segment in &path {
                    key.push('/');
                    key.push_str(segment);
                }
                if trailing {
                    key.push('/');
                }
                let image = format!(
                    "{authority}/{}{reference}",
                    path.iter()
                        .chain(&rest)
                        .cloned()
                        .collect::<Vec<_>>()
                        .join("/")
                );
                (key, host, port, path, image)
            },
        )
}

/// A policy rule over a small vocabulary, with free text where YAML quoting is at stake.
fn policy_rule() -> impl Strategy<Value = PolicyRule> {
    let verbs: &[&str] = &["get", "list", "update", "delete", "create", "*"];
    let groups: &[&str] = &["", "image.openshift.io", "*", "rbac.authorization.k8s.io"];
    let resources: &[&str] = &[
        "imagestreams",
        "imagestreams/layers",
        "images",
        "*",
        "*/layers",
    ];
    let word = |vocab: &'static [&'static str]| {
        prop_oneof![
            3 => prop::sample::select(vocab).prop_map(str::to_string),
            1 => "\\PC{1,12}",
        ]
    };
    (
        prop::collection::vec(word(verbs), 1..4),
        prop::option::of(prop::collection::vec(word(groups), 1..3)),
        prop::option::of(prop::collection::vec(word(resources), 1..3)),
        prop::option::of(prop::collection::vec("\\PC{1,12}", 1..3)),
    )
        .prop_map(
            |(verbs, api_groups, resources, resource_names)| PolicyRule {
                verbs,
                api_groups,
                resources,
                resource_names,
                non_resource_urls: None,
            },
        )
}

/// Strings that YAML would read as something else, or as a document separator, unquoted.
const YAML_WORDS: &[&str] = &[
    "---", "\n---\n", "--- x", "null", "true", "1e3", "0x1", "~", "'", "\"", "- a", "a: b", "#",
];

/// Object metadata with a valid name, and annotations of arbitrary text (newlines, `---`,
/// quotes, YAML-significant words) to stress quoting.
fn meta(namespace: Option<String>) -> impl Strategy<Value = ObjectMeta> {
    let value = prop_oneof![
        2 => any::<String>(),
        1 => prop::sample::select(YAML_WORDS).prop_map(str::to_string),
    ];
    (
        dns_label(),
        prop::option::of(prop::collection::btree_map(
            "[a-z.]{1,8}/[a-z]{1,8}",
            value,
            1..4,
        )),
    )
        .prop_map(move |(name, annotations)| ObjectMeta {
            name: Some(name),
            namespace: namespace.clone(),
            annotations,
            ..ObjectMeta::default()
        })
}

/// A namespaced Role.
fn role() -> impl Strategy<Value = Role> {
    dns_label()
        .prop_flat_map(|ns| {
            (
                meta(Some(ns)),
                prop::option::of(prop::collection::vec(policy_rule(), 1..4)),
            )
        })
        .prop_map(|(metadata, rules)| Role { metadata, rules })
}

/// A ClusterRole.
fn cluster_role() -> impl Strategy<Value = ClusterRole> {
    (
        meta(None),
        prop::option::of(prop::collection::vec(policy_rule(), 1..4)),
    )
        .prop_map(|(metadata, rules)| ClusterRole {
            metadata,
            rules,
            aggregation_rule: None,
        })
}

/// A RoleBinding of a Role or ClusterRole to users, groups and service accounts.
fn role_binding() -> impl Strategy<Value = RoleBinding> {
    let kinds: &[&str] = &["User", "Group", "ServiceAccount"];
    let subject = (
        prop::sample::select(kinds),
        "[a-z:.-]{1,20}",
        prop::option::of(dns_label()),
    )
        .prop_map(|(kind, name, namespace)| Subject {
            api_group: (kind != "ServiceAccount").then(|| "rbac.authorization.k8s.io".into()),
            kind: kind.into(),
            name,
            namespace: namespace.filter(|_| kind == "ServiceAccount"),
        });
    (
        dns_label().prop_flat_map(|ns| meta(Some(ns))),
        prop::sample::select(&["Role", "ClusterRole"][..]),
        "[a-z:.-]{1,20}",
        prop::option::of(prop::collection::vec(subject, 1..4)),
    )
        .prop_map(|(metadata, kind, name, subjects)| RoleBinding {
            metadata,
            role_ref: RoleRef {
                api_group: Some("rbac.authorization.k8s.io".into()),
                kind: kind.into(),
                name,
            },
            subjects,
        })
}

/// Text shaped like manifests: lines of manifest vocabulary at random indentation, with
/// document separators and flow syntax, so the parser gets past YAML syntax into typing.
fn manifest_text() -> impl Strategy<Value = String> {
    let lines: &[&str] = &[
        "apiVersion: rbac.authorization.k8s.io/v1",
        "apiVersion: v1",
        "apiVersion: user.openshift.io/v1",
        "kind: Role",
        "kind: ClusterRole",
        "kind: RoleBinding",
        "kind: ClusterRoleBinding",
        "kind: List",
        "kind: Secret",
        "kind: Namespace",
        "kind: User",
        "kind: Rol",
        "items:",
        "- apiVersion: rbac.authorization.k8s.io/v1",
        "  kind: Role",
        "metadata:",
        "  name: r",
        "  namespace: ns",
        "rules:",
        "- verbs: [get]",
        "  apiGroups: ['']",
        "  resources: [imagestreams/layers]",
        "roleRef: {kind: ClusterRole, name: x, apiGroup: rbac.authorization.k8s.io}",
        "subjects: [{kind: User, name: alice}]",
        "type: kubernetes.io/dockerconfigjson",
        "data:",
        "  .dockerconfigjson: e30=",
        "stringData: {.dockerconfigjson: '{}'}",
        "groups: [a, b]",
        "---",
        "--- !tag",
        "...",
        "- ",
        "? a",
        ": b",
        "&a [*a]",
        "{",
        "]",
        "\"",
        "'",
        "\t",
        "%YAML 1.2",
        "!!binary aGk=",
    ];
    let line = prop_oneof![
        6 => (0usize..3, prop::sample::select(lines))
            .prop_map(|(indent, line)| format!("{}{line}", "  ".repeat(indent))),
        1 => "\\PC{0,20}",
    ];
    prop::collection::vec(line, 0..24).prop_map(|lines| lines.join("\n"))
}

/// Valid manifests (RBAC objects, a List of them, a pull Secret) with a few line edits: deleted,
/// duplicated, re-indented or inserted lines, or the text cut short. Most edits keep the YAML
/// well formed and break the objects, which is where typing, line numbers and Secret checks run.
fn mutated_manifests() -> impl Strategy<Value = String> {
    let object = prop_oneof![
        role().prop_map(|r| serde_yaml::to_value(r).unwrap()),
        cluster_role().prop_map(|r| serde_yaml::to_value(r).unwrap()),
        role_binding().prop_map(|b| serde_yaml::to_value(b).unwrap()),
        docker_config().prop_map(|config| {
            serde_yaml::to_value(serde_json::json!({
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "s", "namespace": "ns"},
                "type": "kubernetes.io/dockerconfigjson",
                "stringData": {".dockerconfigjson": config.to_string()},
            }))
            .unwrap()
        }),
    ];
    let documents = prop::collection::vec(object, 1..4).prop_flat_map(|objects| {
        let list = serde_yaml::to_string(&serde_json::json!({
            "apiVersion": "v1",
            "kind": "List",
            "items": objects,
        }))
        .unwrap();
        let separate = objects
            .iter()
            .map(|o| serde_yaml::to_string(o).unwrap())
            .collect::<Vec<_>>()
            .join("---\n");
        prop_oneof![3 => Just(separate), 1 => Just(list)]
    });
    let edit = (0usize..6, any::<prop::sample::Index>(), manifest_text());
    (documents, prop::collection::vec(edit, 0..3)).prop_map(|(text, edits)| {
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        for (op, at, inserted) in edits {
            if lines.is_empty() {
                break;
            }
            let i = at.index(lines.len());
            match op {
                0 => drop(lines.remove(i)),
                1 => lines.insert(i, lines[i].clone()),
                2 => lines[i] = format!("  {}", lines[i]),
                3 => lines[i] = lines[i].trim_start().to_string(),
                4 => lines.insert(i, inserted),
                _ => {
                    lines.truncate(i + 1);
                    let half = lines[i].chars().count() / 2;
                    lines[i] = lines[i].chars().take(half).collect();
                }
            }
        }
        lines.join("\n")
    })
}

// ---------------------------------------------------------------------------------------------
// 1. The route grammar.

proptest! {
    #![proptest_config(config(512))]

    /// No path panics the router, and an accepted path keeps every invariant the gateway
    /// relies on: a valid name taken verbatim from the path, and no field that a server could
    /// normalise or decode into something else.
    #[test]
    fn route_parse_accepts_only_grammatical_names(path in request_path()) {
        let Ok(route) = route::parse(&path) else { return Ok(()) };
        if let Some(name) = route.name() {
            let text = name.as_str();
            prop_assert!(valid_repository(text), "accepted name {text:?} breaks the OCI grammar");
            let (first, rest) = text.split_once('/').expect("two components");
            prop_assert_eq!(name.namespace(), first);
            prop_assert_eq!(name.imagestream(), rest);
            // Verbatim and in place: right after `/v2/`, so it is the bytes the registry sees.
            prop_assert!(
                path.starts_with(&format!("/v2/{text}/")),
                "name {text:?} is not the undecoded text after /v2/ in {path:?}"
            );
        }
        let last = match &route {
            Route::Base => {
                prop_assert!(path == "/v2" || path == "/v2/");
                None
            }
            Route::Catalog => {
                prop_assert_eq!(path.as_str(), "/v2/_catalog");
                None
            }
            Route::Manifest { reference, .. } => Some(("manifests", reference)),
            Route::Blob { digest, .. } => Some(("blobs", digest)),
            Route::Referrers { digest, .. } => Some(("referrers", digest)),
            Route::Upload { id, .. } => Some(("uploads", id)),
            Route::UploadStart { .. } => {
                prop_assert!(path.ends_with("/blobs/uploads") || path.ends_with("/blobs/uploads/"));
                None
            }
            Route::Tags { .. } => {
                prop_assert!(path.ends_with("/tags/list"));
                None
            }
        };
        if let Some((kind, value)) = last {
            prop_assert!(
                path.ends_with(&format!("/{kind}/{value}")),
                "{value:?} is not the tail of {path:?}"
            );
            prop_assert!(
                !value.is_empty() && value != "." && value != ".."
                    && !value.contains(['/', '%', '\\']),
                "{kind} segment {value:?} of {path:?} could be normalised or decoded upstream"
            );
        }
    }

    /// `Name::parse` agrees with an independent reading of the OCI grammar on strings made of
    /// the pieces where the two could disagree (runs of separators, `/`, `%`, uppercase).
    #[test]
    fn name_parse_matches_the_oci_grammar(s in near_grammar()) {
        prop_assert_eq!(Name::parse(&s).is_ok(), valid_repository(&s), "{:?}", s);
    }

    /// Generated grammatical names are accepted exactly when they fit in 255 bytes, and then
    /// split at the first `/` and display as written.
    #[test]
    fn name_parse_accepts_grammatical_names(s in repository()) {
        match Name::parse(&s) {
            Ok(name) => {
                prop_assert!(s.len() <= MAX_NAME_LEN);
                prop_assert_eq!(name.to_string(), s.clone());
                let (first, rest) = s.split_once('/').unwrap();
                prop_assert_eq!(name.namespace(), first);
                prop_assert_eq!(name.imagestream(), rest);
                prop_assert_eq!(s.parse::<Name>(), Ok(name));
            }
            Err(e) => prop_assert!(s.len() > MAX_NAME_LEN, "{s:?} rejected: {e}"),
        }
    }

    /// Every endpoint shape round trips: the path built from a valid name and reference parses
    /// back to that name and reference.
    #[test]
    fn route_round_trips(
        name in valid_name(),
        tag in tag(),
        digest in digest(),
        id in "[A-Za-z0-9_=-][A-Za-z0-9_.=-]{0,40}",
    ) {
        let n = Name::parse(&name).unwrap();
        let cases = [
            (
                format!("/v2/{name}/manifests/{tag}"),
                Route::Manifest { name: n.clone(), reference: tag.clone() },
            ),
            (
                format!("/v2/{name}/manifests/{digest}"),
                Route::Manifest { name: n.clone(), reference: digest.clone() },
            ),
            (
                format!("/v2/{name}/blobs/{digest}"),
                Route::Blob { name: n.clone(), digest: digest.clone() },
            ),
            (
                format!("/v2/{name}/referrers/{digest}"),
                Route::Referrers { name: n.clone(), digest: digest.clone() },
            ),
            (format!("/v2/{name}/blobs/uploads/"), Route::UploadStart { name: n.clone() }),
            (
                format!("/v2/{name}/blobs/uploads/{id}"),
                Route::Upload { name: n.clone(), id: id.clone() },
            ),
            (format!("/v2/{name}/tags/list"), Route::Tags { name: n.clone() }),
        ];
        for (path, want) in cases {
            let route = route::parse(&path);
            prop_assert_eq!(route.as_ref(), Ok(&want), "{}", path);
            let got = route.unwrap();
            let got = got.name().unwrap();
            prop_assert_eq!(got.namespace(), name.split('/').next().unwrap());
        }
    }

    /// The scope a 401 challenge names for a route parses back to that route's repository, so a
    /// client asking the token endpoint for it asks for the repository it was refused.
    #[test]
    fn challenge_scope_round_trips(name in valid_name(), tag in tag()) {
        let route = route::parse(&format!("/v2/{name}/manifests/{tag}")).unwrap();
        for method in [Method::GET, Method::PUT] {
            let plan = access::plan(&method, &route, None).unwrap();
            let scope = plan.scope.clone().unwrap();
            let parsed = Scope::parse(&scope).unwrap().unwrap();
            prop_assert_eq!(parsed.kind.as_str(), "repository");
            prop_assert_eq!(&parsed.name, &name);
            prop_assert_eq!(plan.repository(), Some(name.as_str()));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 2. The `Authorization` header.

proptest! {
    #![proptest_config(config(512))]

    /// No header value panics, and a credential is only ever read from Basic or Bearer.
    #[test]
    fn credential_never_panics(
        prefix in prop::sample::select(
            &["", "Basic ", "bearer ", "BASIC  ", "Bearer", " basic\t", "Digest "][..],
        ),
        bytes in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut raw = prefix.as_bytes().to_vec();
        raw.extend(bytes);
        let Ok(header) = HeaderValue::from_bytes(&raw) else { return Ok(()) };
        let result = identity::credential(Some(&header));
        let text = String::from_utf8_lossy(&raw).trim().to_ascii_lowercase();
        match result {
            Ok(Credential::Anonymous) => prop_assert!(text.starts_with("bearer")),
            Ok(Credential::Token(token)) => {
                prop_assert!(text.starts_with("basic ") || text.starts_with("bearer "));
                prop_assert!(!token.expose_secret().is_empty());
            }
            Err(_) => {}
        }
    }

    /// Basic `base64(user:password)` gives the password back, whatever the scheme's case, the
    /// spaces after it, the user name (without `:`) or the password (with `:` or not).
    #[test]
    fn basic_round_trips(
        scheme in random_case("basic"),
        spaces in 1usize..4,
        user in "[^:]{0,16}",
        password in "\\PC{1,32}",
    ) {
        let encoded = STANDARD.encode(format!("{user}:{password}"));
        let header = format!("{scheme}{}{encoded}", " ".repeat(spaces));
        let header = HeaderValue::from_str(&header).unwrap();
        match identity::credential(Some(&header)) {
            Ok(Credential::Token(token)) => {
                prop_assert_eq!(token.expose_secret(), password.as_str())
            }
            other => prop_assert!(false, "{header:?} gave {other:?}"),
        }
    }

    /// Bearer gives its value back as the token, whatever the scheme's case.
    #[test]
    fn bearer_round_trips(scheme in random_case("bearer"), token in "[!-~]{1,64}") {
        prop_assume!(token != "anonymous");
        let header = HeaderValue::from_str(&format!("{scheme} {token}")).unwrap();
        match identity::credential(Some(&header)) {
            Ok(Credential::Token(t)) => prop_assert_eq!(t.expose_secret(), token.as_str()),
            other => prop_assert!(false, "{header:?} gave {other:?}"),
        }
    }

    /// A header over the length limit is refused, one at the limit is read.
    #[test]
    fn credential_length_limit(extra in 0usize..3, over in any::<bool>()) {
        let max = identity::MAX_AUTHORIZATION_LEN;
        let len = if over { max + 1 + extra } else { max - extra };
        let token = "t".repeat(len - "Bearer ".len());
        let header = HeaderValue::from_str(&format!("Bearer {token}")).unwrap();
        let result = identity::credential(Some(&header));
        prop_assert_eq!(matches!(result, Err(CredentialError::Unreadable)), over, "{} bytes", len);
    }

    /// A malformed header built around a secret never puts the secret in the error (which is
    /// logged and sent to the client), nor in the Debug of what was read.
    #[test]
    fn credential_errors_never_contain_the_secret(
        secret in secret(),
        shape in 0usize..6,
        scheme in random_case("basic"),
    ) {
        let header = match shape {
            0 => format!("{scheme} {}", STANDARD.encode(&secret)),
            1 => format!("{scheme} {}", secret),
            2 => format!("{scheme} {}!", STANDARD.encode(format!("user:{secret}"))),
            3 => format!("Token {secret}"),
            4 => format!("{scheme} {}", STANDARD.encode(format!("{secret}:"))),
            _ => format!("{scheme}:{secret}"),
        };
        let header = HeaderValue::from_str(&header).unwrap();
        let shown = match identity::credential(Some(&header)) {
            Err(e) => format!("{e} {e:?}"),
            Ok(credential) => format!("{credential:?}"),
        };
        prop_assert!(!shown.contains(&secret), "{shown:?} shows the secret of {header:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// 3. and 4. Token scopes, alone and as the space-separated list of a token request.

/// A valid scope: (text, the scope it must parse to). With `spaces`, the action list may have
/// spaces after its commas (tolerated in a single scope; a scope list splits at them).
fn scope(spaces: bool) -> impl Strategy<Value = (String, Scope)> {
    let actions: &[&str] = &["pull", "push", "delete", "*", "pull", "push"];
    let action = prop_oneof![
        3 => prop::sample::select(actions).prop_map(str::to_string),
        1 => "[a-z]{1,6}",
    ];
    let target = prop_oneof![
        valid_name().prop_map(|n| ("repository".to_string(), n)),
        valid_name().prop_map(|n| ("repository(plugin)".to_string(), n)),
        Just(("registry".to_string(), "catalog".to_string())),
        // The name of a non-repository scope may hold a `:` (a host with a port).
        "[a-z0-9.-]{1,12}:[0-9]{1,5}/[a-z]{1,6}".prop_map(|n| ("registry".to_string(), n)),
    ];
    let prefixes: &[&str] = if spaces {
        &["", ",", " ", ", ", " ,"]
    } else {
        &["", ","]
    };
    (
        target,
        prop::collection::vec((action, prop::sample::select(prefixes)), 0..6),
    )
        .prop_map(|((kind, name), actions)| {
            // Empty items (`,,`) and spaces around actions are tolerated, never kept; a repeated
            // action is kept once, where it first appears.
            let items: Vec<String> = actions
                .iter()
                .map(|(a, prefix)| format!("{prefix}{a}"))
                .collect();
            let mut want: Vec<String> = Vec::new();
            for (action, _) in actions {
                if !want.contains(&action) {
                    want.push(action);
                }
            }
            let text = format!("{kind}:{name}:{}", items.join(","));
            let kind = kind.split('(').next().unwrap().to_string();
            (
                text,
                Scope {
                    kind,
                    name,
                    actions: want,
                },
            )
        })
}

proptest! {
    #![proptest_config(config(512))]

    /// No scope text panics, and a parsed scope keeps its invariants: a repository scope names
    /// a valid repository, actions are trimmed, non-empty and unique, and only a repository
    /// scope is ever an error.
    #[test]
    fn scope_parse_invariants(
        text in prop_oneof![
            any::<String>(),
            ("[a-z()]{0,14}", "\\PC{0,30}", "[a-z*, ]{0,20}")
                .prop_map(|(k, n, a)| format!("{k}:{n}:{a}")),
            ("\\PC{0,30}", "[a-z*, :]{0,20}").prop_map(|(n, a)| format!("repository:{n}:{a}")),
            (
                prop::sample::select(
                    &["repository", "repository(x)", "Repository", "registry"][..],
                ),
                near_name(),
                "[a-z*, ]{0,20}",
            )
                .prop_map(|(k, n, a)| format!("{k}:{n}:{a}")),
        ],
    ) {
        let kind = text.split(':').next().unwrap_or_default();
        let kind = kind.split('(').next().unwrap_or_default();
        match Scope::parse(&text) {
            Ok(Some(scope)) => {
                prop_assert_eq!(scope.kind.as_str(), kind);
                if scope.kind == "repository" {
                    prop_assert!(
                        valid_repository(&scope.name),
                        "{:?} names {:?}",
                        text,
                        scope.name
                    );
                    prop_assert!(Name::parse(&scope.name).is_ok());
                }
                for (i, action) in scope.actions.iter().enumerate() {
                    prop_assert!(
                        !action.is_empty() && action.trim() == action && !action.contains(',')
                    );
                    prop_assert!(
                        !scope.actions[..i].contains(action),
                        "{:?} repeats {:?}",
                        text,
                        action
                    );
                }
            }
            Ok(None) => prop_assert!(text.matches(':').count() < 2, "{:?} has a resource", text),
            Err(_) => prop_assert_eq!(kind, "repository"),
        }
    }

    /// A formatted scope parses back to what it was made of.
    #[test]
    fn scope_round_trips((text, want) in scope(true)) {
        prop_assert_eq!(Scope::parse(&text), Ok(Some(want)), "{}", text);
    }

    /// The `scope` parameter of a token request (several scopes separated by runs of spaces)
    /// parses to the scopes it lists, in order. `Params::parse` in the token endpoint does the
    /// splitting and is private, so the split is the endpoint's (`split(' ')` without empties).
    #[test]
    fn scope_list_round_trips(
        scopes in prop::collection::vec(scope(false), 0..5),
        gaps in prop::collection::vec(1usize..4, 6),
    ) {
        let mut list = " ".repeat(gaps[0] - 1);
        for (i, (text, _)) in scopes.iter().enumerate() {
            list.push_str(text);
            list.push_str(&" ".repeat(gaps[i + 1]));
        }
        let parsed: Vec<Scope> = list
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(|s| Scope::parse(s).unwrap().unwrap())
            .collect();
        let want: Vec<Scope> = scopes.into_iter().map(|(_, s)| s).collect();
        prop_assert_eq!(parsed, want, "{:?}", list);
    }
}

// ---------------------------------------------------------------------------------------------
// 5. Docker config documents.

proptest! {
    #![proptest_config(config(256))]

    /// No byte string panics the docker config parser.
    #[test]
    fn keyring_parse_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..128)) {
        let _ = Keyring::parse(&bytes);
    }

    /// No JSON document (ASCII text) panics the parser or a lookup in what it parsed; every
    /// entry read has a usable credential (placeholders are skipped), and a lookup only finds
    /// entries of the keyring.
    #[test]
    fn keyring_parse_json_never_panics(
        document in docker_config(),
        images in prop::collection::vec(prop_oneof![
            "[ -~]{0,24}",
            host().prop_map(|h| format!("{h}/a/b:t")),
            Just("docker.io/library/x".to_string()),
            Just("[::1]:5000/a".to_string()),
        ], 0..4),
    ) {
        let bytes = serde_json::to_vec(&document).unwrap();
        let Ok(ring) = Keyring::parse(&bytes) else { return Ok(()) };
        prop_assert_eq!(ring.len(), ring.entries().count());
        for entry in ring.entries() {
            let usable = match &entry.credential {
                keyring::Credential::Basic { username, password } => {
                    !username.is_empty() || !password.expose_secret().is_empty()
                }
                keyring::Credential::IdentityToken(token) => !token.expose_secret().is_empty(),
            };
            prop_assert!(usable, "{:?} has nothing usable", entry);
        }
        for image in images {
            for found in ring.lookup(&image) {
                prop_assert!(ring.entries().any(|e| std::ptr::eq(e, found)));
            }
        }
    }

    /// An unusable document built around a secret never quotes the secret in its error
    /// (errors are logged and shown by `regate registry login`).
    #[test]
    fn keyring_errors_never_contain_the_secret(secret in secret(), shape in 0usize..8) {
        let document = match shape {
            // Not base64 (`!` is outside the alphabet).
            0 => format!(r#"{{"auths":{{"h":{{"auth":"{secret}!"}}}}}}"#),
            // Base64 of text without `:`.
            1 => format!(r#"{{"auths":{{"h":{{"auth":"{}"}}}}}}"#, STANDARD.encode(&secret)),
            // Base64 of bytes that are not UTF-8.
            2 => format!(
                r#"{{"auths":{{"h":{{"auth":"{}"}}}}}}"#,
                STANDARD.encode([&[0xff], secret.as_bytes()].concat())
            ),
            // A good secret next to a field of the wrong type.
            3 => format!(r#"{{"auths":{{"h":{{"password":"{secret}","username":7}}}}}}"#),
            // An entry that is a string, `auths` that is a string.
            4 => format!(r#"{{"auths":{{"h":"{secret}"}}}}"#),
            5 => format!(r#"{{"auths":"{secret}"}}"#),
            // Cut short, and a bad escape, right after the secret.
            6 => format!(r#"{{"auths":{{"h":{{"auth":"{secret}"#),
            _ => format!(r#"{{"auths":{{"h":{{"password":"{secret}\q"}}}}}}"#),
        };
        match Keyring::parse(document.as_bytes()) {
            Err(e) => {
                let shown = format!("{e} {e:?}");
                prop_assert!(!shown.contains(&secret), "{shown:?} quotes the secret of {document}");
            }
            Ok(ring) => {
                // Only shape 0 can be read (when `secret!` happens to decode leniently).
                let shown = format!("{ring:?}");
                prop_assert!(!shown.contains(&secret), "{shown:?} shows the secret of {document}");
            }
        }
    }

    /// Keys with non-ASCII text never panic the parser (a pull secret is operator input, read
    /// by `regate apply`, the store loader and the pull-secret file watcher).
    #[test]
    fn keyring_keys_with_non_ascii_text_never_panic(key in "\\PC{0,12}") {
        let document = serde_json::json!({"auths": {key: {"auth": STANDARD.encode("u:p")}}});
        let _ = Keyring::parse(document.to_string().as_bytes());
    }

    /// Images with non-ASCII text never panic a lookup.
    #[test]
    fn keyring_lookup_of_non_ascii_images_never_panics(image in "\\PC{0,16}") {
        let document = serde_json::json!({"auths": {
            "quay.io": {"auth": "dTpw"},
            "https://*.example.com/v1/team": {"auth": "dTpw"},
        }});
        let ring = Keyring::parse(document.to_string().as_bytes()).unwrap();
        prop_assert!(ring.lookup(&image).len() <= 2);
    }

    /// An `auth` of base64 `user:password` (padded or not, line-wrapped or not, in either
    /// format) reads back as that user and password, the rest of the password's `:` included.
    #[test]
    fn keyring_auth_round_trips(
        user in "[^:]{0,12}",
        password in "\\PC{0,24}",
        key in host(),
        padded in any::<bool>(),
        wrap in prop::option::of(1usize..8),
        legacy in any::<bool>(),
    ) {
        prop_assume!(!user.is_empty() || !password.is_empty());
        let pair = format!("{user}:{password}");
        let mut auth = if padded { STANDARD.encode(&pair) } else { STANDARD_NO_PAD.encode(&pair) };
        if let Some(width) = wrap {
            let lines: Vec<&str> =
                auth.as_bytes().chunks(width).map(|c| std::str::from_utf8(c).unwrap()).collect();
            auth = lines.join("\n");
        }
        let entry = serde_json::json!({"auth": auth, "email": "x@example.com"});
        let document = if legacy {
            serde_json::json!({ key.clone(): entry })
        } else {
            serde_json::json!({"auths": { key.clone(): entry }})
        };
        let ring = Keyring::parse(document.to_string().as_bytes()).unwrap();
        let entries: Vec<_> = ring.entries().collect();
        prop_assert_eq!(entries.len(), 1);
        prop_assert_eq!(&entries[0].key, &key);
        match &entries[0].credential {
            keyring::Credential::Basic { username, password: got } => {
                prop_assert_eq!(username, &user);
                prop_assert_eq!(got.expose_secret(), password.as_str());
            }
            other => prop_assert!(false, "{other:?}"),
        }
    }

    /// A key (any scheme, host case, port, path, trailing slash) matches the images under its
    /// own host and path; changing the port, adding a host label or changing a path segment
    /// makes it miss.
    #[test]
    fn keyring_key_matches_its_own_images(
        (key, host, port, path, image) in key_and_image(),
        change in 0usize..3,
    ) {
        let document =
            serde_json::json!({"auths": {key.clone(): {"username": "u", "password": "p"}}});
        let ring = Keyring::parse(document.to_string().as_bytes()).unwrap();
        let found: Vec<&str> = ring.lookup(&image).iter().map(|e| e.key.as_str()).collect();
        prop_assert_eq!(&found, &vec![key.as_str()], "{} should match key {}", image, key);

        let authority = match port { Some(p) => format!("{host}:{p}"), None => host.clone() };
        let other = match (change, path.first()) {
            (0, _) => {
                let other_port = port.map_or(5000, |p| p.wrapping_add(1));
                format!("{host}:{other_port}/{}", image.split_once('/').unwrap().1)
            }
            (1, _) => format!("x.{image}"),
            (_, Some(first)) => image.replacen(
                &format!("{authority}/{first}"),
                &format!("{authority}/{first}x"),
                1,
            ),
            (_, None) => format!("x.{image}"),
        };
        prop_assert!(ring.lookup(&other).is_empty(), "{} should not match key {}", other, key);
    }
}

// ---------------------------------------------------------------------------------------------
// 6. RBAC manifests and the policy evaluated from them.

/// Lines in `text`, as a 1-based line number of an error may point just past the last.
fn line_count(text: &str) -> usize {
    text.lines().count().max(1)
}

proptest! {
    #![proptest_config(config(128))]

    /// No text panics the manifest parser, an error's line is a line of the text, and the
    /// documents it returns are numbered in order from lines of the text.
    #[test]
    fn parse_manifests_never_panics(
        text in prop_oneof![4 => mutated_manifests(), 2 => manifest_text(), 1 => any::<String>()],
    ) {
        match parse_manifests("-", &text) {
            Ok(documents) => {
                let mut previous = 0;
                for document in &documents {
                    prop_assert!(
                        document.number >= previous.max(1) && document.number <= previous + 1
                    );
                    prop_assert!(document.line >= 1 && document.line <= line_count(&text) + 1);
                    previous = document.number;
                }
            }
            Err(ApplyError::Manifest { line, document, .. }) => {
                prop_assert!(document >= 1);
                if let Some(line) = line {
                    prop_assert!(
                        line >= 1 && line <= line_count(&text) + 1,
                        "line {} of {:?}",
                        line,
                        text
                    );
                }
            }
            Err(other) => prop_assert!(false, "parsing alone gave {other:?}"),
        }
    }

    /// Roles, ClusterRoles and RoleBindings written as YAML (serde_yaml, and regate's own
    /// `to_yaml`) read back as the same objects, one document each, in order.
    #[test]
    fn rbac_objects_round_trip(
        roles in prop::collection::vec(role(), 0..3),
        cluster_roles in prop::collection::vec(cluster_role(), 0..2),
        bindings in prop::collection::vec(role_binding(), 0..3),
    ) {
        let objects: Vec<Object> = roles.into_iter().map(Object::Role)
            .chain(cluster_roles.into_iter().map(Object::ClusterRole))
            .chain(bindings.into_iter().map(Object::RoleBinding))
            .collect();
        let direct: Vec<String> = objects.iter().map(|o| match o {
            Object::Role(r) => serde_yaml::to_string(r),
            Object::ClusterRole(r) => serde_yaml::to_string(r),
            Object::RoleBinding(b) => serde_yaml::to_string(b),
            _ => unreachable!(),
        }.unwrap()).collect();
        let own: Vec<String> = objects.iter().map(|o| o.to_yaml().unwrap()).collect();
        for texts in [direct, own] {
            let text = texts.join("---\n");
            let documents = parse_manifests("-", &text);
            prop_assert!(documents.is_ok(), "{:?}\n{}", documents.err(), text);
            let parsed: Vec<Object> = documents.unwrap().into_iter().map(|d| d.object).collect();
            prop_assert_eq!(&parsed, &objects, "{}", text);
        }
    }

    /// A Role (or ClusterRole) with a rule naming exactly a request, bound (through YAML) by a
    /// RoleBinding to a user in the request's namespace, allows that user that request, and
    /// nothing next to it: not another user, namespace or verb.
    #[test]
    fn bound_role_grants_exactly_its_request(
        verb in "[a-z]{1,8}",
        group in prop::sample::select(&["", "image.openshift.io", "apps"][..]),
        resource in "[a-z]{1,10}",
        subresource in prop::option::of("[a-z]{1,8}"),
        namespace in dns_label(),
        name in "[a-z0-9]{0,8}",
        user in "[a-z]{1,10}",
        by_group in any::<bool>(),
        cluster_role in any::<bool>(),
    ) {
        let rule = PolicyRule {
            verbs: vec![verb.clone()],
            api_groups: Some(vec![group.to_string()]),
            resources: Some(vec![match &subresource {
                Some(sub) => format!("{resource}/{sub}"),
                None => resource.clone(),
            }]),
            resource_names: (!name.is_empty()).then(|| vec![name.clone()]),
            non_resource_urls: None,
        };
        let metadata = ObjectMeta {
            name: Some("r".into()),
            namespace: (!cluster_role).then(|| namespace.clone()),
            ..ObjectMeta::default()
        };
        let (role, role_kind) = if cluster_role {
            let role = ClusterRole { metadata, rules: Some(vec![rule]), aggregation_rule: None };
            (serde_yaml::to_string(&role).unwrap(), policy::CLUSTER_ROLE_KIND)
        } else {
            let role = Role { metadata, rules: Some(vec![rule]) };
            (serde_yaml::to_string(&role).unwrap(), policy::ROLE_KIND)
        };
        let subject = if by_group {
            Subject {
                kind: policy::GROUP_KIND.into(),
                name: format!("team-{user}"),
                ..Subject::default()
            }
        } else {
            Subject { kind: policy::USER_KIND.into(), name: user.clone(), ..Subject::default() }
        };
        let binding = RoleBinding {
            metadata: ObjectMeta {
                name: Some("b".into()),
                namespace: Some(namespace.clone()),
                ..ObjectMeta::default()
            },
            role_ref: RoleRef {
                api_group: Some("rbac.authorization.k8s.io".into()),
                kind: role_kind.into(),
                name: "r".into(),
            },
            subjects: Some(vec![subject]),
        };
        let text = format!("{role}---\n{}", serde_yaml::to_string(&binding).unwrap());
        let (mut cluster_roles, mut roles, mut bindings) = (Vec::new(), Vec::new(), Vec::new());
        for document in parse_manifests("-", &text).unwrap() {
            match document.object {
                Object::ClusterRole(r) => cluster_roles.push(r),
                Object::Role(r) => roles.push(r),
                Object::RoleBinding(b) => bindings.push(b),
                other => prop_assert!(false, "{other:?}"),
            }
        }
        let policy = Policy::new(cluster_roles, roles, Vec::new(), bindings);

        let groups = if by_group { vec![format!("team-{user}")] } else { Vec::new() };
        let caller = identity::UserInfo::authenticated(user.clone(), String::new(), groups);
        let stranger =
            identity::UserInfo::authenticated(format!("{user}x"), String::new(), Vec::new());
        let attrs = Attributes {
            verb: verb.clone(),
            group: group.to_string(),
            resource: resource.clone(),
            subresource: subresource.clone().unwrap_or_default(),
            namespace: namespace.clone(),
            name: name.clone(),
        };
        prop_assert!(policy.evaluate(&caller, &attrs).allowed(), "{:?} denied by\n{}", attrs, text);
        prop_assert!(!policy.evaluate(&stranger, &attrs).allowed());
        let elsewhere = Attributes { namespace: format!("{namespace}x"), ..attrs.clone() };
        prop_assert!(!policy.evaluate(&caller, &elsewhere).allowed());
        let other_verb = Attributes { verb: format!("{verb}x"), ..attrs.clone() };
        prop_assert!(!policy.evaluate(&caller, &other_verb).allowed());
        // who-can lists the subject of the granting binding.
        let who = policy.who_can(&attrs);
        prop_assert_eq!(who.len(), 1);
        let team = format!("team-{user}");
        prop_assert!(who[0].name == user || who[0].name == team);
    }

}

proptest! {
    // Cheap, and some cases (a service account bound without a namespace) are rare.
    #![proptest_config(config(1024))]

    /// Adding bindings never takes an allow away (RBAC has no deny rules).
    #[test]
    fn more_bindings_never_deny(
        world in small_world(),
        extra in prop::collection::vec(small_binding(), 1..3),
        caller in small_caller(),
        attrs in small_attributes(),
    ) {
        let (cluster_roles, roles, cluster_bindings, bindings) = world;
        let before = Policy::new(
            cluster_roles.clone(),
            roles.clone(),
            cluster_bindings.clone(),
            bindings.clone(),
        );
        let more = bindings.into_iter().chain(extra).collect();
        let after = Policy::new(cluster_roles, roles, cluster_bindings, more);
        if before.evaluate(&caller, &attrs).allowed() {
            prop_assert!(after.evaluate(&caller, &attrs).allowed(), "{:?}", attrs);
        }
    }

    /// `who-can` and the gateway's decision agree: a caller is allowed exactly when `who-can`
    /// lists a subject that is the caller (its user, one of its groups, its service account).
    #[test]
    fn who_can_agrees_with_evaluate(
        world in small_world(),
        caller in small_caller(),
        attrs in small_attributes(),
    ) {
        let (cluster_roles, roles, cluster_bindings, bindings) = world;
        let policy = Policy::new(cluster_roles, roles, cluster_bindings, bindings);
        let listed = policy.who_can(&attrs).into_iter().any(|g| match g.kind.as_str() {
            policy::GROUP_KIND => caller.groups.contains(&g.name),
            policy::USER_KIND | policy::SERVICE_ACCOUNT_KIND => g.name == caller.name,
            _ => false,
        });
        let decision = policy.evaluate(&caller, &attrs);
        prop_assert_eq!(decision.allowed(), listed, "{:?} for {:?}: {:?}", attrs, caller, decision);
    }
}

// A small world for the policy properties: few names, so that bindings do refer to roles and
// subjects do name callers, and both allows and denies are common.

/// A rule over the verbs, groups, resources and names the small world's requests use; one in
/// four allows everything, so that allows are common enough to check.
fn small_rule() -> impl Strategy<Value = PolicyRule> {
    let everything = PolicyRule {
        verbs: vec!["*".into()],
        api_groups: Some(vec!["*".into()]),
        resources: Some(vec!["*".into()]),
        ..PolicyRule::default()
    };
    let specific = (
        prop::sample::subsequence(&["get", "update", "delete", "list", "*"][..], 1..4),
        prop::sample::select(&["", "image.openshift.io", "*", "apps"][..]),
        prop::sample::select(
            &[
                "imagestreams/layers",
                "images",
                "*",
                "imagestreams",
                "*/layers",
                "imagestreams/*",
            ][..],
        ),
        prop::option::of(prop::sample::subsequence(&["app", "other"][..], 0..2)),
    )
        .prop_map(|(verbs, group, resource, names)| PolicyRule {
            verbs: verbs.into_iter().map(str::to_string).collect(),
            api_groups: Some(vec![group.to_string()]),
            resources: Some(vec![resource.to_string()]),
            resource_names: names.map(|n| n.into_iter().map(str::to_string).collect()),
            non_resource_urls: None,
        });
    prop_oneof![3 => specific, 1 => Just(everything)]
}

/// Metadata named from `names`, in one of the small world's namespaces or none.
fn small_meta(
    names: &'static [&'static str],
    namespaced: bool,
) -> impl Strategy<Value = ObjectMeta> {
    (
        prop::sample::select(names),
        // Mostly the namespace requests are about, so that RoleBindings apply.
        prop::sample::select(&["ns", "ns", "other"][..]),
    )
        .prop_map(move |(name, namespace)| ObjectMeta {
            name: Some(name.to_string()),
            namespace: namespaced.then(|| namespace.to_string()),
            ..ObjectMeta::default()
        })
}

/// A subject naming one of the small world's callers (or nobody).
fn small_subject() -> impl Strategy<Value = Subject> {
    let subjects: &[(&str, &str, Option<&str>)] = &[
        ("User", "alice", None),
        ("Group", "g", None),
        ("Group", "system:authenticated", None),
        ("ServiceAccount", "builder", None),
        ("ServiceAccount", "builder", Some("ns")),
        ("ServiceAccount", "builder", Some("other")),
        ("Robot", "alice", None),
    ];
    prop::sample::select(subjects).prop_map(|(kind, name, namespace)| Subject {
        kind: kind.to_string(),
        name: name.to_string(),
        namespace: namespace.map(str::to_string),
        ..Subject::default()
    })
}

/// A binding's subjects: usually one to three, sometimes none at all.
fn small_subjects() -> impl Strategy<Value = Option<Vec<Subject>>> {
    prop_oneof![
        9 => prop::collection::vec(small_subject(), 1..4).prop_map(Some),
        1 => Just(None),
    ]
}

/// A reference to one of the small world's roles.
fn small_role_ref() -> impl Strategy<Value = RoleRef> {
    (
        prop::sample::select(&["Role", "ClusterRole"][..]),
        prop::sample::select(&["r1", "r2"][..]),
    )
        .prop_map(|(kind, name)| RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: kind.into(),
            name: name.into(),
        })
}

/// A RoleBinding of the small world.
fn small_binding() -> impl Strategy<Value = RoleBinding> {
    (
        small_meta(&["b1", "b2"], true),
        small_role_ref(),
        small_subjects(),
    )
        .prop_map(|(metadata, role_ref, subjects)| RoleBinding {
            metadata,
            role_ref,
            subjects,
        })
}

/// Roles, ClusterRoles, ClusterRoleBindings and RoleBindings of the small world.
fn small_world() -> impl Strategy<
    Value = (
        Vec<ClusterRole>,
        Vec<Role>,
        Vec<ClusterRoleBinding>,
        Vec<RoleBinding>,
    ),
> {
    let rules = || {
        prop_oneof![
            9 => prop::collection::vec(small_rule(), 1..3).prop_map(Some),
            1 => Just(None),
        ]
    };
    (
        prop::collection::vec((small_meta(&["r1", "r2"], false), rules()), 1..4).prop_map(
            |roles| {
                roles
                    .into_iter()
                    .map(|(metadata, rules)| ClusterRole {
                        metadata,
                        rules,
                        aggregation_rule: None,
                    })
                    .collect()
            },
        ),
        prop::collection::vec((small_meta(&["r1", "r2"], true), rules()), 1..4).prop_map(|roles| {
            roles
                .into_iter()
                .map(|(metadata, rules)| Role { metadata, rules })
                .collect()
        }),
        prop::collection::vec(
            (
                small_meta(&["c1", "c2"], false),
                small_role_ref(),
                small_subjects(),
            ),
            0..3,
        )
        .prop_map(|bindings| {
            bindings
                .into_iter()
                .map(|(metadata, role_ref, subjects)| ClusterRoleBinding {
                    metadata,
                    role_ref,
                    subjects,
                })
                .collect()
        }),
        prop::collection::vec(small_binding(), 1..5),
    )
}

/// One of the small world's callers.
fn small_caller() -> impl Strategy<Value = identity::UserInfo> {
    (
        prop::sample::select(
            &[
                "alice",
                "bob",
                "system:serviceaccount:ns:builder",
                "system:serviceaccount:other:builder",
            ][..],
        ),
        any::<bool>(),
    )
        .prop_map(|(name, in_g)| {
            let groups = if in_g {
                vec!["g".to_string()]
            } else {
                Vec::new()
            };
            identity::UserInfo::authenticated(name.to_string(), String::new(), groups)
        })
}

/// A request of the small world: a pull, push or delete of a repository, or a cluster check.
fn small_attributes() -> impl Strategy<Value = Attributes> {
    (
        prop::sample::select(&["get", "update", "delete", "list"][..]),
        prop::sample::select(&["ns", "ns", "other"][..]),
        prop::sample::select(&["app", "other"][..]),
        any::<bool>(),
    )
        .prop_map(|(verb, namespace, name, cluster)| {
            if cluster {
                Attributes::cluster(verb, "images")
            } else {
                Attributes::layers(verb, namespace, name)
            }
        })
}
