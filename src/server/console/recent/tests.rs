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

#[test]
fn a_request_is_one_entry_with_its_decisions_in_order() {
    let recent = Recent::default();
    let push = |id: &'static str, allowed: &[bool]| {
        let record = RequestRecord {
            request_id: id,
            method: "POST",
            path: "/v2/ns/app/blobs/uploads/",
            ..request(202)
        };
        let events: Vec<Event> = allowed.iter().map(|a| decision(*a)).collect();
        recent.record(&record, &events);
    };
    push("one", &[true, true]);
    push("two", &[true, false]);
    push("three", &[true]);
    let requests = recent.newest_requests(10, |_| true);
    let ids: Vec<(&str, usize)> = requests
        .iter()
        .map(|r| (r[0].request_id.as_str(), r.len()))
        .collect();
    assert_eq!(ids, [("three", 1), ("two", 2), ("one", 2)]);
    assert_eq!(
        requests[1].iter().map(|s| s.allowed).collect::<Vec<_>>(),
        [Some(true), Some(false)],
        "in the order they were made"
    );
    let denied = recent.newest_requests(10, |r| r.iter().any(|s| s.allowed == Some(false)));
    assert_eq!(denied.len(), 1);
    assert_eq!(recent.newest_requests(2, |_| true).len(), 2);
}
