use super::*;
use crate::policy::Decision;

fn request(status: u16) -> RequestRecord<'static> {
    RequestRecord {
        request_id: "id",
        client: None,
        method: "GET",
        path: "/v2/ns/app/manifests/v1",
        user: Some("alice"),
        groups: &[],
        status,
    }
}

fn decision(allowed: bool) -> Event {
    Event::Decision {
        time: SystemTime::now(),
        attrs: Attributes::layers("get", "ns", "app"),
        decision: Some(if allowed {
            Decision::Allow { by: "b".into() }
        } else {
            Decision::deny("no binding")
        }),
        cache_hit: false,
    }
}

#[test]
fn keeps_decisions_in_order_and_drops_the_oldest_beyond_capacity() {
    let recent = Recent::default();
    let token = Event::Token {
        time: SystemTime::now(),
        realm: "gateway",
        scope: None,
        expires_in: 1,
        refresh_token: false,
    };
    recent.record(&request(200), &[decision(true), token]);
    recent.record(&request(403), &[decision(false)]);
    let newest = recent.newest(10, |_| true);
    assert_eq!(newest.len(), 2, "tokens are not decisions");
    assert_eq!((newest[0].seq, newest[0].allowed), (2, Some(false)));
    assert_eq!(newest[0].reason, "no binding");
    assert_eq!(newest[1].status, 200);
    assert_eq!(recent.newest(10, |s| s.allowed == Some(true)).len(), 1);
    for _ in 0..CAPACITY {
        recent.record(&request(200), &[decision(true)]);
    }
    assert!(recent.get(2).is_none(), "pushed out");
    let last = CAPACITY as u64 + 2;
    assert_eq!(recent.get(last).unwrap().seq, last);
    assert_eq!(recent.get(3).unwrap().seq, 3);
    assert!(recent.get(last + 1).is_none());
    assert_eq!(recent.newest(5, |_| true).len(), 5);
}

#[test]
fn an_authority_that_could_not_answer_is_neither_allowed_nor_denied() {
    let recent = Recent::default();
    let event = Event::Decision {
        time: SystemTime::now(),
        attrs: Attributes::layers("get", "ns", "app"),
        decision: None,
        cache_hit: false,
    };
    recent.record(&request(503), &[event]);
    let seen = recent.get(1).unwrap();
    assert_eq!(seen.allowed, None);
    assert!(seen.reason.contains("fail closed"));
}
