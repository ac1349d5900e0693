//! The fail-closed response guard (docs/proxy.md, "How a request goes
//! through", 5): no response carries the real credential into a sandbox.
//! Response headers and trailers are searched for it, and each body frame
//! as it streams; a frame ending in the credential's first bytes keeps
//! them back until the next frame shows what follows.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::HeaderMap;
use hyper::body::{Body, Frame};

use super::server::BoxError;

/// One credential as the guard looks for it: its bytes, its lowercase form
/// (header names arrive lowercase) and a search for each, set up once per
/// credential (the proxy keeps it with the credential it caches) and shared
/// by every response sent with that credential.
pub(super) struct Needle {
    secret: zeroize::Zeroizing<Vec<u8>>,
    lower: zeroize::Zeroizing<Vec<u8>>,
    scan: Scan,
    scan_lower: Scan,
}

impl std::fmt::Debug for Needle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Needle(<redacted>)")
    }
}

impl Needle {
    /// The guard for `secret` (an empty one is never found).
    pub(super) fn new(secret: &[u8]) -> Needle {
        let lower = zeroize::Zeroizing::new(secret.to_ascii_lowercase());
        Needle {
            scan: Scan::new(secret),
            scan_lower: Scan::new(&lower),
            secret: zeroize::Zeroizing::new(secret.to_vec()),
            lower,
        }
    }

    /// True when `hay` holds the credential.
    pub(super) fn in_bytes(&self, hay: &[u8]) -> bool {
        self.scan.carries(hay, &self.secret)
    }

    /// True when a header's value holds the credential, or its name holds
    /// it lowercased.
    pub(super) fn in_headers(&self, headers: &HeaderMap) -> bool {
        headers.iter().any(|(k, v)| {
            self.in_bytes(v.as_bytes())
                || self.scan_lower.carries(k.as_str().as_bytes(), &self.lower)
        })
    }

    /// True when a body frame that is not data (trailer fields) carries
    /// the credential.
    pub(super) fn in_trailers<B>(&self, frame: &Frame<B>) -> bool {
        frame.trailers_ref().is_some_and(|t| self.in_headers(t))
    }
}

/// A search for one credential, set up once (with the credential, see
/// [`Needle`]) and used on each header value and body frame (setting up
/// `memchr::memmem`'s searcher costs more than searching a frame). It keeps no copy of the credential:
/// a rolling hash of it and, with AVX2, two of its bytes to look for; every
/// candidate is compared with the whole credential.
struct Scan {
    rk: memchr::arch::all::rabinkarp::Finder,
    #[cfg(target_arch = "x86_64")]
    pair: Option<memchr::arch::x86_64::avx2::packedpair::Finder>,
}

impl Scan {
    fn new(secret: &[u8]) -> Scan {
        Scan {
            rk: memchr::arch::all::rabinkarp::Finder::new(secret),
            #[cfg(target_arch = "x86_64")]
            pair: memchr::arch::x86_64::avx2::packedpair::Finder::new(secret),
        }
    }

    /// True when `hay` holds `secret` (the one this was made for; an empty
    /// secret is never looked for).
    fn carries(&self, hay: &[u8], secret: &[u8]) -> bool {
        if secret.is_empty() || hay.len() < secret.len() {
            return false;
        }
        #[cfg(target_arch = "x86_64")]
        if let Some(p) = &self.pair
            && hay.len() >= p.min_haystack_len()
        {
            return p.find(hay, secret).is_some();
        }
        self.rk.find(hay, secret).is_some()
    }
}

/// A response body that never delivers the real credential to the sandbox
/// (fail closed): each frame is searched for it, and a frame holding it ends
/// the response with an error (the sandbox's connection is cut) instead of
/// being sent. A frame ending in the credential's first bytes keeps those
/// bytes back until the next frame shows what follows, so that a
/// credential split across frames is caught too; SSE frames end in a blank
/// line, which no credential begins with, so nothing is held back from them.
pub(super) struct Guarded<B> {
    inner: B,
    needle: Arc<Needle>,
    held: zeroize::Zeroizing<Vec<u8>>,
    ended: bool,
    cut: Arc<AtomicBool>,
}

impl<B> Guarded<B> {
    /// `inner`, guarded against `needle`'s credential; `cut` is set when
    /// the response is cut.
    pub(super) fn new(inner: B, needle: Arc<Needle>, cut: Arc<AtomicBool>) -> Self {
        Guarded {
            inner,
            needle,
            held: zeroize::Zeroizing::new(Vec::new()),
            ended: false,
            cut,
        }
    }

    /// What of `held + data` may go out now, or `None` when it holds the
    /// credential.
    fn pass(&mut self, data: Bytes) -> Option<Bytes> {
        if self.held.is_empty() {
            // the common case: the frame itself, no copy
            if self.needle.in_bytes(&data) {
                return None;
            }
            let keep = held_tail(&data, &self.needle.secret);
            self.held.extend_from_slice(&data[data.len() - keep..]);
            return Some(data.slice(..data.len() - keep));
        }
        let mut buf = zeroize::Zeroizing::new(std::mem::take(&mut *self.held));
        buf.extend_from_slice(&data);
        if self.needle.in_bytes(&buf) {
            return None;
        }
        let keep = held_tail(&buf, &self.needle.secret);
        self.held.extend_from_slice(&buf[buf.len() - keep..]);
        Some(Bytes::copy_from_slice(&buf[..buf.len() - keep]))
    }
}

/// The length of the longest end of `data` that is a proper beginning of
/// `secret`: bytes that, with what comes next, could form the credential.
fn held_tail(data: &[u8], secret: &[u8]) -> usize {
    let max = data.len().min(secret.len().saturating_sub(1));
    let Some(&first) = secret.first() else {
        return 0;
    };
    // only where the credential's first byte is: the earliest such start
    // in the last `max` bytes that matches is the longest
    let from = data.len() - max;
    memchr::memchr_iter(first, &data[from..])
        .map(|i| from + i)
        .find(|&p| secret.starts_with(&data[p..]))
        .map_or(0, |p| data.len() - p)
}

/// Why [`Guarded`] cut a response.
#[derive(Debug)]
pub(super) struct CarriedCredential;

impl std::fmt::Display for CarriedCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the upstream's response carried the real credential: cut")
    }
}

impl std::error::Error for CarriedCredential {}

impl<B> Body for Guarded<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<std::result::Result<Frame<Bytes>, BoxError>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(f))) => match f.into_data() {
                Ok(d) => match self.pass(d) {
                    Some(out) => Poll::Ready(Some(Ok(Frame::data(out)))),
                    None => {
                        self.ended = true;
                        self.held.clear();
                        self.cut.store(true, Ordering::Relaxed);
                        tracing::error!(
                            "the upstream's response carried the real credential: the response was cut"
                        );
                        Poll::Ready(Some(Err(Box::new(CarriedCredential))))
                    }
                },
                Err(other) if self.needle.in_trailers(&other) => {
                    self.ended = true;
                    self.held.clear();
                    self.cut.store(true, Ordering::Relaxed);
                    tracing::error!(
                        "the upstream's response trailers carried the real credential: the response was cut"
                    );
                    Poll::Ready(Some(Err(Box::new(CarriedCredential))))
                }
                Err(other) => Poll::Ready(Some(Ok(other))),
            },
            Poll::Ready(None) => {
                self.ended = true;
                if self.held.is_empty() {
                    Poll::Ready(None)
                } else {
                    // the stream ended: what was held back is not the credential
                    let rest = Bytes::copy_from_slice(&self.held);
                    self.held.clear();
                    Poll::Ready(Some(Ok(Frame::data(rest))))
                }
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended || (self.held.is_empty() && self.inner.is_end_stream())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_credential_is_found_in_a_header_name_or_value() {
        let mut h = HeaderMap::new();
        h.insert("x-ok", "fine".parse().unwrap());
        assert!(!Needle::new(b"sk-SECRET").in_headers(&h));
        h.insert("x-echo", "a sk-SECRET b".parse().unwrap());
        assert!(Needle::new(b"sk-SECRET").in_headers(&h));
        let mut h = HeaderMap::new();
        h.insert(
            hyper::header::HeaderName::from_bytes(b"sk-SECRET").unwrap(),
            "1".parse().unwrap(),
        );
        assert!(
            Needle::new(b"sk-SECRET").in_headers(&h),
            "a lowercased name"
        );
        assert!(
            !Needle::new(b"").in_headers(&h),
            "an empty secret is never looked for"
        );
    }

    #[test]
    fn trailers_carrying_the_credential_are_found() {
        let n = Needle::new(b"sk-SECRET");
        let mut t = HeaderMap::new();
        t.insert("x-fine", "1".parse().unwrap());
        assert!(!n.in_trailers(&Frame::<Bytes>::trailers(t.clone())));
        t.insert("x-echo", "sk-SECRET".parse().unwrap());
        assert!(n.in_trailers(&Frame::<Bytes>::trailers(t)));
        assert!(
            !n.in_trailers(&Frame::data(Bytes::from_static(b"sk-SECRET"))),
            "data is the body's"
        );
    }

    #[test]
    fn a_credential_split_across_frames_is_held_back_then_cut() {
        let secret = b"sk-ant-oat01-REAL".to_vec();
        let cut = Arc::new(AtomicBool::new(false));
        let mut g = Guarded::new(
            http_body_util::Empty::<Bytes>::new(),
            Arc::new(Needle::new(&secret)),
            cut,
        );
        // an SSE frame ends in a blank line: nothing held back
        assert_eq!(
            g.pass(Bytes::from_static(b"data: hello\n\n")).as_deref(),
            Some(&b"data: hello\n\n"[..])
        );
        // a frame ending in the credential's first bytes: those wait
        assert_eq!(
            g.pass(Bytes::from_static(b"data: sk-ant")).as_deref(),
            Some(&b"data: "[..])
        );
        // the next frame shows it was the credential: nothing more goes out
        assert_eq!(g.pass(Bytes::from_static(b"-oat01-REAL\n\n")), None);

        let mut g = Guarded::new(
            http_body_util::Empty::<Bytes>::new(),
            Arc::new(Needle::new(&secret)),
            Arc::new(AtomicBool::new(false)),
        );
        // a near miss is released with the next frame
        assert_eq!(
            g.pass(Bytes::from_static(b"sk-ant-oat")).as_deref(),
            Some(&b""[..])
        );
        assert_eq!(
            g.pass(Bytes::from_static(b"99\n")).as_deref(),
            Some(&b"sk-ant-oat99\n"[..])
        );
    }

    #[test]
    fn the_scan_finds_the_credential_wherever_memmem_does() {
        let secret = b"sk-ant-oat01-REAL-0123456789".as_slice();
        let scan = Scan::new(secret);
        // short and long haystacks (below and above the vector search's
        // minimum), the credential at the start, the middle, the end, cut
        // short by one byte, or absent
        for len in [0usize, 10, 27, 28, 29, 40, 64, 100, 1500, 20_000] {
            for at in [None, Some(0), Some(len / 2), Some(len.saturating_sub(28))] {
                let mut hay = vec![b'x'; len];
                // near misses everywhere: the credential's first bytes
                for i in (0..len).step_by(37) {
                    let n = (len - i).min(20);
                    hay[i..i + n].copy_from_slice(&secret[..n]);
                }
                if let Some(at) = at
                    && at + secret.len() <= len
                {
                    hay[at..at + secret.len()].copy_from_slice(secret);
                }
                for h in [&hay[..], &hay[..len.saturating_sub(1)]] {
                    assert_eq!(
                        scan.carries(h, secret),
                        memchr::memmem::find(h, secret).is_some(),
                        "length {}, at {at:?}",
                        h.len()
                    );
                }
            }
        }
        assert!(!Scan::new(b"").carries(b"anything", b""));
    }

    #[test]
    fn held_tail_is_the_longest_proper_prefix_at_the_end() {
        assert_eq!(held_tail(b"abcsec", b"secret"), 3);
        assert_eq!(held_tail(b"abcsecre", b"secret"), 5);
        assert_eq!(
            held_tail(b"secret", b"secret"),
            0,
            "a whole one is found, not held"
        );
        assert_eq!(held_tail(b"xyz", b"secret"), 0);
        assert_eq!(
            held_tail(b"sesec", b"secret"),
            3,
            "the longest, not the first"
        );
        assert_eq!(held_tail(b"ss", b"sss"), 2);
        assert_eq!(held_tail(b"xs", b"s"), 0, "never the whole credential");
        assert_eq!(held_tail(b"", b"secret"), 0);
    }
}
