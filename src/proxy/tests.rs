use super::*;

#[test]
fn client_credentials_and_proxy_headers_are_removed() {
    let mut h = HeaderMap::new();
    for (k, v) in [
        ("authorization", "Bearer secret"),
        ("cookie", "a=b"),
        ("forwarded", "for=1.2.3.4"),
        ("x-forwarded-host", "evil"),
        ("x-forwarded-for", "1.2.3.4"),
        ("connection", "close, x-custom"),
        ("x-custom", "1"),
        ("te", "trailers"),
        ("content-type", "application/octet-stream"),
        ("content-length", "10"),
    ] {
        h.append(HeaderName::from_static(k), HeaderValue::from_static(v));
    }
    strip_request_headers(&mut h);
    let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
    left.sort();
    assert_eq!(left, vec!["content-length", "content-type"]);
}

#[test]
fn links_to_the_registry_are_rewritten_and_foreign_ones_kept() {
    let up = Upstream::new("http://127.0.0.1:5000", Duration::from_secs(1)).unwrap();
    let public = PublicOrigin {
        scheme: "https".into(),
        host: "gw.example:8443".into(),
    };
    let mut h = HeaderMap::new();
    h.insert(
        header::LOCATION,
        HeaderValue::from_static("http://127.0.0.1:5000/v2/a/b/blobs/uploads/u?_state=x%3D"),
    );
    h.insert(
        header::LINK,
        HeaderValue::from_static("<http://127.0.0.1:5000/v2/_catalog?last=a&n=1>; rel=\"next\""),
    );
    up.rewrite_links(&mut h, &public);
    assert_eq!(
        h[header::LOCATION],
        "https://gw.example:8443/v2/a/b/blobs/uploads/u?_state=x%3D"
    );
    assert_eq!(
        h[header::LINK],
        "<https://gw.example:8443/v2/_catalog?last=a&n=1>; rel=\"next\""
    );
    let mut foreign = HeaderMap::new();
    foreign.insert(
        header::LOCATION,
        HeaderValue::from_static("https://storage.example/bucket/blob?sig=1"),
    );
    up.rewrite_links(&mut foreign, &public);
    assert_eq!(
        foreign[header::LOCATION],
        "https://storage.example/bucket/blob?sig=1"
    );
}

#[test]
fn only_http_and_https_origins_are_accepted() {
    assert!(Upstream::new("https://r.example", Duration::from_secs(1)).is_ok());
    assert!(Upstream::new("ftp://r.example", Duration::from_secs(1)).is_err());
    assert!(Upstream::new("http://r.example/v2", Duration::from_secs(1)).is_err());
    assert!(Upstream::new("r.example", Duration::from_secs(1)).is_err());
    assert!(Upstream::new("http://r.example:5000/", Duration::from_secs(1)).is_ok());
}
