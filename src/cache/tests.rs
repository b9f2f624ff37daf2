use super::*;
use crate::authority::Authn;
use async_trait::async_trait;
use secrecy::SecretString;
use std::sync::atomic::AtomicUsize;

/// An authority that counts calls, allows `get`, and can be made to fail.
#[derive(Default)]
struct Counting {
    calls: AtomicUsize,
    failing: std::sync::atomic::AtomicBool,
    generation: AtomicU64,
}

#[async_trait]
impl Authority for Counting {
    async fn authenticate(&self, _: &SecretString) -> Result<Authn, AuthorityError> {
        unreachable!("not used by the cache")
    }
    async fn authorize(
        &self,
        _: &UserInfo,
        _: Option<&SecretString>,
        a: &Attributes,
    ) -> Result<Decision, AuthorityError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(20)).await;
        if self.failing.load(Ordering::SeqCst) {
            return Err(AuthorityError::unavailable("down"));
        }
        Ok(if a.verb == "get" {
            Decision::Allow { by: "test".into() }
        } else {
            Decision::deny("test")
        })
    }
    async fn anonymous_has_grants(&self) -> Result<bool, AuthorityError> {
        Ok(false)
    }
    fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }
}

impl Counting {
    /// How many decisions it was asked for.
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// Takes it down (every decision fails) or brings it back.
    fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }
}

fn setup(settings: CacheSettings) -> (Arc<Counting>, Arc<Decisions>) {
    let authority = Arc::new(Counting::default());
    let decisions = Arc::new(Decisions::new(authority.clone(), &settings));
    (authority, decisions)
}

fn user() -> UserInfo {
    UserInfo::authenticated("system:serviceaccount:p:default".into(), "u".into(), vec![])
}

/// Whether the cache allows [`user`] `attrs`; the test fails if there is no answer.
async fn allows(decisions: &Decisions, attrs: &Attributes) -> bool {
    decisions
        .decide(&user(), None, attrs)
        .await
        .unwrap()
        .allowed()
}

/// Whether the cache fails to decide for [`user`] on `attrs`.
async fn fails(decisions: &Decisions, attrs: &Attributes) -> bool {
    decisions.decide(&user(), None, attrs).await.is_err()
}

#[tokio::test]
async fn concurrent_first_requests_make_one_call() {
    let (authority, decisions) = setup(CacheSettings::default());
    let attrs = Attributes::layers("get", "p", "app");
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let (d, a) = (decisions.clone(), attrs.clone());
        tasks.push(tokio::spawn(async move { allows(&d, &a).await }));
    }
    for t in tasks {
        assert!(t.await.unwrap());
    }
    assert_eq!(authority.calls(), 1);
}

#[tokio::test]
async fn deny_expires_sooner_than_allow() {
    let (authority, decisions) = setup(CacheSettings {
        deny_ttl: Duration::from_millis(100),
        ..CacheSettings::default()
    });
    let (get, update) = (
        Attributes::layers("get", "p", "app"),
        Attributes::layers("update", "p", "app"),
    );
    decisions.decide(&user(), None, &get).await.unwrap();
    decisions.decide(&user(), None, &update).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    decisions.decide(&user(), None, &get).await.unwrap();
    decisions.decide(&user(), None, &update).await.unwrap();
    assert_eq!(authority.calls(), 3);
}

#[tokio::test]
async fn errors_are_not_cached_and_a_new_generation_misses() {
    let (authority, decisions) = setup(CacheSettings::default());
    let get = Attributes::layers("get", "p", "app");
    authority.set_failing(true);
    assert!(fails(&decisions, &get).await);
    authority.set_failing(false);
    assert!(allows(&decisions, &get).await);
    assert_eq!(authority.calls(), 2);
    authority.generation.store(1, Ordering::SeqCst);
    decisions.decide(&user(), None, &get).await.unwrap();
    assert_eq!(authority.calls(), 3);
}

#[tokio::test]
async fn stale_if_error_serves_an_expired_allow_only_while_the_authority_is_down() {
    let (authority, decisions) = setup(CacheSettings {
        allow_ttl: Duration::from_millis(100),
        deny_ttl: Duration::from_millis(100),
        stale_if_error: Duration::from_secs(60),
        ..CacheSettings::default()
    });
    let (get, update) = (
        Attributes::layers("get", "p", "app"),
        Attributes::layers("update", "p", "app"),
    );
    assert!(allows(&decisions, &get).await);
    assert!(!allows(&decisions, &update).await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    authority.set_failing(true);
    assert!(allows(&decisions, &get).await, "stale allow");
    assert!(fails(&decisions, &update).await, "denies are never stale");
    let other = Attributes::layers("get", "p", "other");
    assert!(fails(&decisions, &other).await, "never allowed before");
}

#[tokio::test]
async fn without_stale_if_error_an_expired_allow_fails_closed() {
    let (authority, decisions) = setup(CacheSettings {
        allow_ttl: Duration::from_millis(100),
        ..CacheSettings::default()
    });
    let get = Attributes::layers("get", "p", "app");
    assert!(allows(&decisions, &get).await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    authority.set_failing(true);
    assert!(fails(&decisions, &get).await);
}

#[tokio::test]
async fn a_scoped_token_does_not_reuse_an_unscoped_decision() {
    let (authority, decisions) = setup(CacheSettings::default());
    let get = Attributes::layers("get", "p", "app");
    decisions.decide(&user(), None, &get).await.unwrap();
    let mut scoped = user();
    scoped.extra.insert(
        "scopes.authorization.openshift.io".into(),
        vec!["user:info".into()],
    );
    decisions.decide(&scoped, None, &get).await.unwrap();
    assert_eq!(authority.calls(), 2);
}

#[tokio::test]
async fn answers_say_whether_the_cache_gave_them() {
    let (_, decisions) = setup(CacheSettings::default());
    let get = Attributes::layers("get", "p", "app");
    let first = decisions.decide(&user(), None, &get).await.unwrap();
    let second = decisions.decide(&user(), None, &get).await.unwrap();
    assert!(!first.cache_hit && second.cache_hit);
    assert_eq!(first.decision, second.decision);
}

#[tokio::test]
async fn evictions_are_counted_by_cause() {
    let evicted = |cause| {
        crate::metrics::get()
            .cache_evictions
            .get_or_create(&crate::metrics::EvictionLabels { cause })
            .get()
    };
    let (size, invalidated, expired) =
        (evicted("size"), evicted("invalidated"), evicted("expired"));
    let (authority, decisions) = setup(CacheSettings {
        max_entries: 2,
        ..CacheSettings::default()
    });
    for n in 0..10 {
        let attrs = Attributes::layers("get", "p", &format!("app{n}"));
        decisions.decide(&user(), None, &attrs).await.unwrap();
    }
    decisions.cache.run_pending_tasks().await;
    assert!(evicted("size") >= size + 8, "{}", evicted("size") - size);
    // An expired decision asked again.
    let (_, short) = setup(CacheSettings {
        allow_ttl: Duration::from_millis(100),
        ..CacheSettings::default()
    });
    let get = Attributes::layers("get", "p", "app");
    short.decide(&user(), None, &get).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    short.decide(&user(), None, &get).await.unwrap();
    short.cache.run_pending_tasks().await;
    assert!(evicted("expired") > expired);
    // A policy change drops what is left.
    authority.generation.store(7, Ordering::SeqCst);
    let get = Attributes::layers("get", "p", "app");
    decisions.decide(&user(), None, &get).await.unwrap();
    decisions.cache.run_pending_tasks().await;
    assert!(evicted("invalidated") > invalidated);
}

#[tokio::test]
async fn every_part_of_the_question_keeps_its_own_decision() {
    let (authority, decisions) = setup(CacheSettings::default());
    let named = |name: &str, groups: &[&str]| UserInfo {
        name: name.into(),
        uid: String::new(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        extra: Default::default(),
    };
    let get = Attributes::layers("get", "p", "app");
    let mut questions = vec![
        (named("ab", &[]), get.clone()),
        // The same characters split differently between the parts.
        (named("a", &["b"]), get.clone()),
        (named("a", &["b", ""]), get.clone()),
        (named("a", &["", "b"]), get.clone()),
        (named("a", &[]), get.clone()),
    ];
    let attrs = [
        Attributes::layers("update", "p", "app"),
        Attributes::layers("get", "q", "app"),
        Attributes::layers("get", "p", "other"),
        Attributes {
            subresource: String::new(),
            ..get.clone()
        },
        Attributes {
            group: String::new(),
            ..get.clone()
        },
        Attributes {
            resource: "imagestreams".into(),
            subresource: "layer".into(),
            ..get.clone()
        },
    ];
    questions.extend(attrs.into_iter().map(|a| (named("a", &[]), a)));
    let mut extra = named("a", &[]);
    extra.extra.insert("k".into(), vec!["v".into()]);
    questions.push((extra, get.clone()));
    for (user, attrs) in &questions {
        decisions.decide(user, None, attrs).await.unwrap();
    }
    assert_eq!(authority.calls(), questions.len(), "one call per question");
    for (user, attrs) in &questions {
        assert!(decisions.decide(user, None, attrs).await.unwrap().cache_hit);
    }
    assert_eq!(
        authority.calls(),
        questions.len(),
        "each asked again is a hit"
    );
}
