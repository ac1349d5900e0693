//! Defences against a hostile sandbox and a misbehaving upstream, kept out
//! of the proxy's hot path in [`super::server`] (docs/proxy.md, "What is and
//! is not protected"). Each function closes one way the real credential
//! could reach the sandbox, or a request could go somewhere it must not.

use hyper::HeaderMap;

use super::registry::Grant;

/// What of an upstream's response head goes to the sandbox: never the
/// upstream's own reason phrase (hyper would write it back verbatim, and it
/// is not among the headers scanned); the sandbox gets the canonical one.
pub(super) fn clean_response_head(parts: &mut hyper::http::response::Parts) {
    parts.extensions.remove::<hyper::ext::ReasonPhrase>();
}

/// Asked of the upstream in place of what the sandbox accepts: the guard
/// scans the bytes as they are sent, so a compressed body would hide the
/// credential from it.
pub(super) const ACCEPT_ENCODING: &str = "identity";

/// True when the upstream encoded its response body anyway (gzip, br,
/// deflate...), as a content coding or as a transfer coding other than
/// chunked (hyper takes off only the chunked framing and passes the rest
/// through): it is refused, since the guard cannot scan it.
pub(super) fn encoded(headers: &HeaderMap) -> bool {
    let coded = |name: hyper::header::HeaderName, plain: &[&[u8]]| {
        headers.get_all(name).iter().any(|v| {
            v.as_bytes()
                .split(|b| *b == b',')
                .map(|t| t.trim_ascii())
                .any(|t| !t.is_empty() && !plain.iter().any(|p| t.eq_ignore_ascii_case(p)))
        })
    };
    coded(hyper::header::CONTENT_ENCODING, &[b"identity"])
        || coded(hyper::header::TRANSFER_ENCODING, &[b"identity", b"chunked"])
}

/// Methods never forwarded: `CONNECT` would open a tunnel (and send the
/// credential with it), `TRACE` asks the upstream to echo the request,
/// credential included; no agent uses either.
pub(super) fn refused_method(m: &hyper::Method) -> bool {
    *m == hyper::Method::CONNECT || *m == hyper::Method::TRACE
}

/// The upstream request target for the request's path and query: `pq` in
/// origin-form, which must begin with `/` (not `*`, not an absolute URL).
/// Where it goes is the origin's alone ([`super::upstream`]): nothing in
/// the path can name another host.
pub(super) fn target(pq: &str) -> Option<hyper::Uri> {
    if !pq.starts_with('/') {
        return None;
    }
    let pq = hyper::http::uri::PathAndQuery::try_from(pq).ok()?;
    Some(hyper::Uri::from(pq))
}

/// The headers a placeholder travels in.
const CREDENTIAL_HEADERS: [&str; 3] = ["authorization", "x-api-key", "x-goog-api-key"];

/// True when the request carries a placeholder of a grant other than
/// `found`, among its candidates (one per slot) or in a second line of a
/// credential header: two sandboxes' (or accounts') placeholders in one
/// request are refused rather than one picked silently.
pub(super) fn another_grant<S>(
    grants: &[Grant],
    headers: &HeaderMap,
    candidates: &[(S, &str)],
    found: &Grant,
) -> bool {
    let lines = |n: &str| headers.get_all(n).iter().count();
    if candidates.len() <= 1 && CREDENTIAL_HEADERS.iter().all(|n| lines(n) <= 1) {
        return false;
    }
    let values = CREDENTIAL_HEADERS
        .iter()
        .flat_map(|n| headers.get_all(*n))
        .filter_map(|v| v.to_str().ok())
        .map(|v| v.strip_prefix("Bearer ").unwrap_or(v).trim());
    candidates
        .iter()
        .map(|(_, ph)| *ph)
        .chain(values)
        .any(|ph| {
            super::registry::lookup(grants, ph)
                .is_some_and(|g| g.placeholder_sha256 != found.placeholder_sha256)
        })
}

/// Overrides [`HEADER_TIMEOUT`] (milliseconds; for tests).
pub const HEADER_TIMEOUT_ENV: &str = "AIRLOCK_PROXY_HEADER_TIMEOUT_MS";

/// How long a sandbox's connection may take to send a request's head, and
/// stay idle between requests: a slow or silent client (slowloris) is
/// closed after it instead of holding its connection for ever. 75 s, as
/// nginx's `keepalive_timeout`: longer than the idle time of most clients'
/// connection pools, so that a client rarely reuses a connection the proxy
/// is closing at that moment.
pub const HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(75);

/// [`HEADER_TIMEOUT`], or the environment's override (read once).
pub(super) fn header_timeout() -> std::time::Duration {
    static T: std::sync::OnceLock<std::time::Duration> = std::sync::OnceLock::new();
    *T.get_or_init(|| {
        std::env::var(HEADER_TIMEOUT_ENV)
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|ms| *ms > 0)
            .map_or(HEADER_TIMEOUT, std::time::Duration::from_millis)
    })
}

/// The most request-body bytes kept for retries after a 401 at once, all
/// sandboxes together: past it a session's request streams (its 401, if
/// any, goes back as it came), so unfinished bodies cannot pile up.
pub(super) const REPLAY_BUDGET: u64 = 32 << 20;

static REPLAY_IN_USE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A share of [`REPLAY_BUDGET`], given back when dropped.
pub(super) struct ReplayPermit(u64);

impl ReplayPermit {
    /// `len` bytes of the budget, if they are free.
    pub(super) fn take(len: u64) -> Option<ReplayPermit> {
        use std::sync::atomic::Ordering;
        REPLAY_IN_USE
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(len).filter(|n| *n <= REPLAY_BUDGET)
            })
            .ok()
            .map(|_| ReplayPermit(len))
    }

    /// The bytes it holds.
    pub(super) fn len(&self) -> u64 {
        self.0
    }
}

impl Drop for ReplayPermit {
    fn drop(&mut self) {
        REPLAY_IN_USE.fetch_sub(self.0, std::sync::atomic::Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_target_is_the_path_alone_whatever_it_holds() {
        for pq in [
            "/v1/x",
            "//evil.example/x",
            "/@evil.example/x",
            "/v1/../../x?a=b",
        ] {
            let u = target(pq).unwrap();
            assert!(u.authority().is_none() && u.scheme().is_none(), "{pq}");
            assert_eq!(u.path_and_query().unwrap().as_str(), pq);
        }
        for pq in [
            "*",
            "",
            ".evil.example/",
            "@evil.example/",
            ":1/",
            "https://evil.example/x",
            "/a b",
        ] {
            assert!(target(pq).is_none(), "{pq}");
        }
    }

    #[test]
    fn the_replay_budget_is_shared_and_given_back() {
        let a = ReplayPermit::take(REPLAY_BUDGET - 10).unwrap();
        assert!(ReplayPermit::take(11).is_none(), "over the budget");
        let b = ReplayPermit::take(10).unwrap();
        assert!(ReplayPermit::take(1).is_none());
        drop(a);
        assert_eq!(ReplayPermit::take(5).unwrap().len(), 5);
        drop(b);
    }

    #[test]
    fn an_encoded_body_is_recognised() {
        let mut h = HeaderMap::new();
        assert!(!encoded(&h));
        h.insert("content-encoding", "identity".parse().unwrap());
        assert!(!encoded(&h));
        h.append("content-encoding", "gzip".parse().unwrap());
        assert!(encoded(&h));
        let mut h = HeaderMap::new();
        h.insert("transfer-encoding", "chunked".parse().unwrap());
        assert!(!encoded(&h));
        h.insert("transfer-encoding", "gzip, Chunked".parse().unwrap());
        assert!(encoded(&h));
    }
}
