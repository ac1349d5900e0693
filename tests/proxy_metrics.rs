//! The proxy's Prometheus metrics, end to end: the real `airlock proxy` in
//! front of the TLS mock upstream, scraped through its unix socket
//! (`airlock proxy metrics`) and over `--metrics-listen`, parsed by a
//! strict reader of the text exposition format; the numbers move as
//! requests are forwarded and refused, and no secret ever shows.

#[path = "support/mock_upstream.rs"]
mod mock_upstream;

#[path = "support/proxy_harness.rs"]
mod proxy_harness;

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::Duration;

use common::{CANARY, TestContext, claude_token_behind_proxy, ok, wait_until};
use mock_upstream::MockUpstream;
use proxy_harness::{
    free_port, grant_claude, grant_claude_as, layout, read_until, response, send, start_proxy,
};

fn token() -> String {
    format!("sk-ant-oat01-{CANARY}-metrics-{}", "0123456789".repeat(6))
}

/// `name{label="v",…}` (labels sorted) → value.
type Samples = BTreeMap<String, f64>;

/// A strict reader of the text exposition format (version 0.0.4): every
/// sample belongs to a family declared by `# TYPE` before it (its
/// `# HELP` too), names and label names are valid, label values are
/// properly escaped, values are numbers, no series appears twice,
/// counters end in `_total`, and a histogram's buckets are cumulative and
/// end at `+Inf` with its `_count`.
fn parse(text: &str) -> Samples {
    assert!(text.ends_with('\n'), "the exposition ends with a newline");
    let valid_name = |n: &str| {
        !n.is_empty()
            && n.chars().enumerate().all(|(i, c)| {
                c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
            })
    };
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut helps: BTreeMap<String, String> = BTreeMap::new();
    let mut current: Option<String> = None;
    let mut out = Samples::new();
    let mut buckets: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for line in text.lines() {
        assert!(!line.is_empty(), "no blank lines");
        if let Some(rest) = line.strip_prefix("# ") {
            let (kw, rest) = rest.split_once(' ').expect("a comment with a keyword");
            let (name, what) = rest.split_once(' ').expect("a name and a text");
            assert!(valid_name(name), "bad metric name {name:?}");
            match kw {
                "HELP" => {
                    assert!(
                        helps.insert(name.into(), what.into()).is_none(),
                        "{name}: HELP twice"
                    );
                }
                "TYPE" => {
                    assert!(
                        ["counter", "gauge", "histogram", "summary", "untyped"].contains(&what),
                        "{name}: unknown type {what}"
                    );
                    assert!(
                        types.insert(name.into(), what.into()).is_none(),
                        "{name}: TYPE twice"
                    );
                    if what == "counter" {
                        assert!(name.ends_with("_total"), "counter {name} ends in _total");
                    }
                    current = Some(name.into());
                }
                other => panic!("unknown comment {other:?}"),
            }
            continue;
        }
        assert!(
            !line.starts_with('#'),
            "comments are `# HELP`/`# TYPE`: {line}"
        );
        let (series, value) = line.rsplit_once(' ').expect("a sample: series value");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("{line}: not a number")),
        };
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.strip_suffix('}').expect("labels end in }")),
            None => (series, ""),
        };
        assert!(valid_name(name), "bad metric name {name:?}");
        let family = current.clone().expect("a sample after its # TYPE");
        let kind = &types[&family];
        let allowed = if kind == "histogram" {
            [
                format!("{family}_bucket"),
                format!("{family}_sum"),
                format!("{family}_count"),
            ]
            .contains(&name.to_owned())
        } else {
            name == family
        };
        assert!(allowed, "{name} is not of family {family} ({kind})");
        assert!(helps.contains_key(&family), "{family} has a HELP");
        // labels: name="value" pairs, values escaped (\\, \", \n only)
        let mut pairs: Vec<(String, String)> = Vec::new();
        let mut rest = labels;
        while !rest.is_empty() {
            let (lname, after) = rest.split_once("=\"").expect("label=\"value\"");
            assert!(
                valid_name(lname) && !lname.starts_with("__"),
                "bad label {lname:?}"
            );
            let mut value = String::new();
            let mut chars = after.char_indices();
            let end = loop {
                let (i, c) = chars.next().expect("an unterminated label value");
                match c {
                    '\\' => match chars.next().map(|x| x.1) {
                        Some('\\') => value.push('\\'),
                        Some('"') => value.push('"'),
                        Some('n') => value.push('\n'),
                        other => panic!("bad escape \\{other:?} in {line}"),
                    },
                    '"' => break i,
                    '\n' => panic!("raw newline in a label value"),
                    c => value.push(c),
                }
            };
            assert!(
                !pairs.iter().any(|(n, _)| n == lname),
                "label {lname} twice"
            );
            pairs.push((lname.to_owned(), value));
            rest = &after[end + 1..];
            rest = rest.strip_prefix(',').unwrap_or_else(|| {
                assert!(rest.is_empty(), "labels separated by commas: {line}");
                rest
            });
        }
        if name.ends_with("_bucket") {
            let le = pairs
                .iter()
                .find(|(n, _)| n == "le")
                .expect("a bucket has le")
                .1
                .clone();
            let le: f64 = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap()
            };
            buckets.entry(family.clone()).or_default().push((le, value));
        }
        pairs.sort();
        let key = if pairs.is_empty() {
            name.to_owned()
        } else {
            let l: Vec<String> = pairs.iter().map(|(n, v)| format!("{n}={v:?}")).collect();
            format!("{name}{{{}}}", l.join(","))
        };
        assert!(out.insert(key.clone(), value).is_none(), "{key} twice");
    }
    for (family, b) in &buckets {
        assert!(
            b.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1),
            "{family}: buckets ascend and are cumulative"
        );
        let last = b.last().unwrap();
        assert_eq!(last.0, f64::INFINITY, "{family}: the last bucket is +Inf");
        assert_eq!(
            Some(&last.1),
            out.get(&format!("{family}_count")),
            "{family}: +Inf equals _count"
        );
    }
    out
}

fn get(m: &Samples, key: &str) -> f64 {
    m.get(key).copied().unwrap_or(0.0)
}

/// `airlock proxy metrics` (the unix socket).
fn scrape(ctx: &TestContext) -> String {
    ok(&ctx.cmd().args(["proxy", "metrics"]).output().unwrap())
}

/// `GET /metrics` on the `--metrics-listen` port: the head and the body.
fn scrape_http(port: u16, path: &str) -> (String, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: metrics\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (head.to_owned(), body.to_owned())
}

#[test]
fn the_metrics_move_with_each_request_and_never_show_a_secret() {
    let mock = MockUpstream::start();
    let mut ctx = TestContext::new();
    claude_token_behind_proxy(&mut ctx, &mock.origin(), &mock.ca_pem, &token());
    let (ph1, ph2) = (
        format!("sk-ant-oat01-airlock-{}", "c".repeat(32)),
        format!("sk-ant-oat01-airlock-{}", "d".repeat(32)),
    );
    grant_claude(&ctx, "sb-one", &ph1);
    grant_claude(&ctx, "sb-two", &ph2);
    let mport = free_port();
    let proxy = start_proxy(&ctx, &["--metrics-listen", &format!("127.0.0.1:{mport}")]);

    // the socket is the user's alone
    use std::os::unix::fs::PermissionsExt;
    let sock = layout(&ctx).dir.join("metrics.sock");
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{}", sock.display());

    let mut texts = Vec::new();
    let t0 = scrape(&ctx);
    let m0 = parse(&t0);
    texts.push(t0);
    assert_eq!(get(&m0, r#"airlock_proxy_grants{state="live"}"#), 2.0);
    assert_eq!(get(&m0, "airlock_proxy_open_streams"), 0.0);
    assert_eq!(
        m0.get(r#"airlock_proxy_credential_dead{account="default",agent="claude"}"#),
        Some(&0.0)
    );
    assert_eq!(
        get(&m0, "airlock_proxy_request_duration_seconds_count"),
        0.0
    );

    // one forwarded, one unknown placeholder, one revoked
    let r = response(send(proxy.port, "POST", "/v1/messages", &ph1));
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let unknown = format!("sk-ant-oat01-airlock-{}", "e".repeat(32));
    let r = response(send(proxy.port, "POST", "/v1/messages", &unknown));
    assert!(r.starts_with("HTTP/1.1 401"), "{r}");
    ok(&ctx.cmd().args(["revoke", "sb-two"]).output().unwrap());
    let r = response(send(proxy.port, "POST", "/v1/messages", &ph2));
    assert!(r.starts_with("HTTP/1.1 401"), "{r}");

    // an open stream is counted while it streams
    let mut s = send(proxy.port, "GET", "/slow", &ph1);
    read_until(&mut s, "data: first");
    let t1 = scrape(&ctx);
    let m1 = parse(&t1);
    texts.push(t1);
    assert_eq!(get(&m1, "airlock_proxy_open_streams"), 1.0);
    assert_eq!(
        get(
            &m1,
            r#"airlock_proxy_requests_total{agent="claude",class="2xx"}"#
        ),
        1.0
    );
    assert_eq!(
        get(
            &m1,
            r#"airlock_proxy_refused_total{agent="none",reason="unknown_placeholder"}"#
        ),
        1.0
    );
    assert_eq!(
        get(
            &m1,
            r#"airlock_proxy_refused_total{agent="claude",reason="revoked"}"#
        ),
        1.0
    );
    assert_eq!(get(&m1, r#"airlock_proxy_grants{state="live"}"#), 1.0);
    assert_eq!(get(&m1, r#"airlock_proxy_grants{state="revoked"}"#), 1.0);
    assert!(get(&m1, r#"airlock_proxy_bytes_up_total{agent="claude"}"#) > 0.0);
    assert!(get(&m1, r#"airlock_proxy_bytes_down_total{agent="claude"}"#) > 0.0);
    assert_eq!(
        get(&m1, "airlock_proxy_request_duration_seconds_count"),
        1.0
    );
    mock.release.notify_one();
    read_until(&mut s, "data: last");
    drop(s);
    // a client that goes away mid-stream closes its stream too
    let mut s = send(proxy.port, "GET", "/slow", &ph1);
    read_until(&mut s, "data: first");
    drop(s);
    wait_until(
        "the dropped stream is closed",
        Duration::from_secs(10),
        || get(&parse(&scrape(&ctx)), "airlock_proxy_open_streams") == 0.0,
    );

    // the sync watcher records that the account's refresh token was refused
    let accounts = ctx.state_dir.join("sync").join("accounts");
    std::fs::create_dir_all(&accounts).unwrap();
    std::fs::write(
        accounts.join("claude-default.json"),
        r#"{"agent":"claude","account":"default","truth":"vault","last_sync":null,"direction":null,"expiry":null,"last_rejected":null,"refused":"0011223344556677"}"#,
    )
    .unwrap();

    // over HTTP, for a scraper: the same numbers, and the stream has ended
    let mut m2 = Samples::new();
    wait_until(
        "the stream is counted as ended",
        Duration::from_secs(10),
        || {
            let (head, body) = scrape_http(mport, "/metrics");
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
            assert!(
                head.to_ascii_lowercase()
                    .contains("content-type: text/plain; version=0.0.4"),
                "{head}"
            );
            m2 = parse(&body);
            texts.push(body);
            get(&m2, "airlock_proxy_open_streams") == 0.0
        },
    );
    assert_eq!(
        get(
            &m2,
            r#"airlock_proxy_requests_total{agent="claude",class="2xx"}"#
        ),
        3.0
    );
    assert_eq!(
        get(&m2, "airlock_proxy_request_duration_seconds_count"),
        3.0
    );
    assert_eq!(
        get(
            &m2,
            r#"airlock_proxy_credential_dead{account="default",agent="claude"}"#
        ),
        1.0
    );
    let (head, _) = scrape_http(mport, "/other");
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");

    // never a token, a placeholder, or a placeholder's hash
    let mut secrets = vec![
        token(),
        ph1.clone(),
        ph2.clone(),
        unknown.clone(),
        CANARY.to_owned(),
    ];
    for p in [&ph1, &ph2, &unknown] {
        secrets.push(airlock::proxy::placeholder::hash(p));
    }
    for text in &texts {
        for s in &secrets {
            assert!(!text.contains(s.as_str()), "the metrics show a secret");
        }
        assert!(
            !text.contains("sk-ant"),
            "the metrics show a credential prefix"
        );
    }
    drop(proxy);
}

#[test]
fn upstream_failures_are_counted_by_kind() {
    let mock = MockUpstream::start();
    let mut ctx = TestContext::new();
    // nothing listens there: a connect error
    let closed = format!("https://127.0.0.1:{}", free_port());
    claude_token_behind_proxy(&mut ctx, &closed, &mock.ca_pem, &token());
    let ph = format!("sk-ant-oat01-airlock-{}", "f".repeat(32));
    grant_claude(&ctx, "sb-err", &ph);
    let proxy = start_proxy(&ctx, &[]);
    let r = response(send(proxy.port, "POST", "/v1/messages", &ph));
    assert!(r.starts_with("HTTP/1.1 502"), "{r}");
    let m = parse(&scrape(&ctx));
    assert_eq!(
        get(&m, r#"airlock_proxy_upstream_errors_total{kind="connect"}"#),
        1.0
    );
    assert_eq!(
        get(&m, r#"airlock_proxy_upstream_errors_total{kind="tls"}"#),
        0.0
    );
    assert_eq!(
        get(
            &m,
            r#"airlock_proxy_refused_total{agent="claude",reason="upstream_error"}"#
        ),
        1.0
    );
    drop(proxy);

    // the mock, but its CA not trusted: a TLS error (a fresh process
    // starts from zero)
    ctx.set_env("AIRLOCK_PROXY_UPSTREAM_CLAUDE", &mock.origin());
    ctx.unset_env("AIRLOCK_PROXY_CA_FILE");
    let proxy = start_proxy(&ctx, &[]);
    let r = response(send(proxy.port, "POST", "/v1/messages", &ph));
    assert!(r.starts_with("HTTP/1.1 502"), "{r}");
    let m = parse(&scrape(&ctx));
    assert_eq!(
        get(&m, r#"airlock_proxy_upstream_errors_total{kind="tls"}"#),
        1.0
    );
    assert_eq!(
        get(&m, r#"airlock_proxy_upstream_errors_total{kind="connect"}"#),
        0.0
    );
    assert!(
        mock.seen().is_empty(),
        "nothing reached the untrusted upstream"
    );
    drop(proxy);
}

/// A login session whose access token the API refuses (401): the proxy
/// asks for a refresh, which cannot happen without the sync watcher; the
/// 401 is forwarded and the refresh counted as failed.
#[test]
fn a_refresh_after_a_401_is_counted() {
    let mock = MockUpstream::start();
    let mut ctx = TestContext::new();
    claude_token_behind_proxy(&mut ctx, &mock.origin(), &mock.ca_pem, &token());
    let access = format!("sk-ant-oat01-{CANARY}-metrics-access");
    let session = serde_json::json!({"claudeAiOauth": {
        "accessToken": access,
        "refreshToken": format!("sk-ant-ort01-{CANARY}-metrics-refresh"),
        "expiresAt": 4_102_444_800_000u64,
        "scopes": ["user:inference", "user:profile"],
        "subscriptionType": "max",
    }});
    common::store_session(&ctx, "claude", &session.to_string());
    mock.reject(&access);
    let ph = format!("sk-ant-oat01-airlock-{}", "9".repeat(32));
    grant_claude_as(&ctx, "sb-401", &ph, airlock::vault::Method::Session);
    let proxy = start_proxy(&ctx, &[]);
    let r = response(send(proxy.port, "POST", "/v1/messages", &ph));
    assert!(r.starts_with("HTTP/1.1 401"), "{r}");
    let text = scrape(&ctx);
    let m = parse(&text);
    assert_eq!(
        get(&m, r#"airlock_proxy_refreshes_total{outcome="failed"}"#),
        1.0,
        "{text}"
    );
    assert_eq!(
        get(&m, r#"airlock_proxy_refreshes_total{outcome="refreshed"}"#),
        0.0
    );
    assert_eq!(
        get(
            &m,
            r#"airlock_proxy_requests_total{agent="claude",class="4xx"}"#
        ),
        1.0
    );
    assert!(!text.contains(CANARY), "the metrics show a secret");
    drop(proxy);
}

#[test]
fn metrics_need_a_running_proxy_and_a_loopback_address() {
    let ctx = TestContext::new();
    let out = ctx.cmd().args(["proxy", "metrics"]).output().unwrap();
    assert_eq!(out.status.code(), Some(6), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("airlock proxy"),
        "{out:?}"
    );
    for addr in ["0.0.0.0:9464", "172.17.0.1:9464"] {
        let out = ctx
            .cmd()
            .args(["proxy", "--metrics-listen", addr])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{addr}: {out:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("loopback"),
            "{out:?}"
        );
    }
}
