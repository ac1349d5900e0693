//! The proxy's own certificate authority: a per-user CA that signs the
//! certificate the proxy shows sandboxes that speak TLS to it (Codex's
//! ChatGPT backend must be an `https://` origin; docs/proxy.md, "TLS to the
//! sandbox").
//!
//! * Made on first use (rcgen, ECDSA P-256, ring), kept in
//!   `<state>/proxy/ca/ca.json` (0600 in a 0700 directory, written
//!   atomically under `ca.lock`, so two proxies starting at once agree),
//!   with a copy of the certificates alone in `ca.pem`.
//! * **Name-constrained**: it may only sign for the names a sandbox reaches
//!   the proxy by ([`PERMITTED_DNS`], [`PERMITTED_NETS`]); a certificate
//!   for any other host (`chatgpt.com`, …) signed with a stolen key is
//!   refused by every verifier that checks name constraints (rustls,
//!   OpenSSL, browsers).
//! * Valid [`VALIDITY_DAYS`] days and renewed [`RENEW_DAYS`] days before
//!   its end: the new CA joins the file, sandboxes started from then on
//!   trust both, and the proxy keeps signing with the older one until
//!   [`SIGN_DAYS`] before its end, so running sandboxes keep working.
//! * Its key never leaves this file and the proxy's memory: a sandbox gets
//!   [`bundle_pem`] (certificates only). The proxy's leaf key is made at
//!   each start and is never written anywhere.

use std::net::IpAddr;
use std::path::PathBuf;

use jiff::civil::Date;
use rcgen::{
    BasicConstraints, CertificateParams, CidrSubnet, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, GeneralSubtree, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    NameConstraints, SanType,
};
use serde::{Deserialize, Serialize};

use super::registry::Layout;
use crate::error::{Error, Result};
use crate::fsutil::{self, FileLock};
use crate::secret::Secret;

/// How long a CA is valid.
pub const VALIDITY_DAYS: i32 = 90;
/// A new CA is made when the newest one has fewer days left than this.
pub const RENEW_DAYS: i32 = 30;
/// The proxy signs with the oldest CA that has at least this many days
/// left: after a renewal it keeps the older one (which running sandboxes
/// trust) until just before its end; sandboxes started since trust both.
pub const SIGN_DAYS: i32 = 2;

/// DNS names the CA may sign for: what sandboxes reach the proxy by.
pub const PERMITTED_DNS: &[&str] = &[
    super::sandbox::DOCKER_HOST,
    super::sandbox::PODMAN_HOST,
    "localhost",
];

/// Address ranges the CA may sign for: loopback, the private ranges the
/// container bridges and slirp4netns (10.0.2.2) use, shared address space
/// (VPNs such as Tailscale, for `--listen`), and IPv6 unique-local.
pub const PERMITTED_NETS: &[(&str, u8)] = &[
    ("127.0.0.0", 8),
    ("10.0.0.0", 8),
    ("172.16.0.0", 12),
    ("192.168.0.0", 16),
    ("100.64.0.0", 10),
    ("::1", 128),
    ("fc00::", 7),
];

/// The names every proxy certificate covers, besides its addresses.
const LEAF_DNS: &[&str] = PERMITTED_DNS;

/// The fixed addresses every proxy certificate covers.
const LEAF_IPS: &[&str] = &["127.0.0.1", "::1", super::sandbox::SLIRP_HOST_LOOPBACK];

/// The file's format version.
const VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct File {
    version: u32,
    /// Oldest first.
    cas: Vec<Stored>,
}

#[derive(Serialize, Deserialize)]
struct Stored {
    /// The certificate (PEM).
    cert: String,
    /// Its private key (PKCS#8 PEM).
    #[serde(with = "crate::secret::serde_expose")]
    key: Secret,
    /// First day of validity (UTC).
    not_before: Date,
    /// Last day of validity (UTC).
    not_after: Date,
}

/// Where the CA lives under the proxy's layout.
pub fn dir(layout: &Layout) -> PathBuf {
    layout.dir.join("ca")
}

/// The CA file (certificates and keys).
pub fn file(layout: &Layout) -> PathBuf {
    dir(layout).join("ca.json")
}

/// The certificates alone (what a sandbox or a client may be given).
pub fn pem_file(layout: &Layout) -> PathBuf {
    dir(layout).join("ca.pem")
}

fn today() -> Date {
    jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
}

fn days_left(s: &Stored, today: Date) -> i32 {
    (s.not_after - today).get_days()
}

/// Sets `params`' validity to the days `from` to `to` (UTC, inclusive).
fn validity(params: &mut CertificateParams, from: Date, to: Date) {
    let ymd = |d: Date| rcgen::date_time_ymd(i32::from(d.year()), d.month() as u8, d.day() as u8);
    params.not_before = ymd(from);
    params.not_after = ymd(to);
}

fn rcgen_error(what: &str, e: rcgen::Error) -> Error {
    Error::Other(format!("cannot make the proxy's {what}: {e}"))
}

/// The CA's own parameters (also what its issuer is rebuilt from: the
/// subject and key usages are fixed, the key identifier comes from the key).
fn ca_params() -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "airlock proxy CA (sandboxes only)");
    dn.push(DnType::OrganizationName, "airlock");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let mut permitted: Vec<GeneralSubtree> = PERMITTED_DNS
        .iter()
        .map(|d| GeneralSubtree::DnsName((*d).to_owned()))
        .collect();
    for (net, prefix) in PERMITTED_NETS {
        if let Ok(ip) = net.parse::<IpAddr>() {
            permitted.push(GeneralSubtree::IpAddress(CidrSubnet::from_addr_prefix(
                ip, *prefix,
            )));
        }
    }
    p.name_constraints = Some(NameConstraints {
        permitted_subtrees: permitted,
        excluded_subtrees: Vec::new(),
    });
    p
}

/// A private key wiped from memory when dropped (rcgen's `KeyPair` keeps
/// its serialised key otherwise).
struct Wiped(KeyPair);

impl Drop for Wiped {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

impl std::ops::Deref for Wiped {
    type Target = KeyPair;
    fn deref(&self) -> &KeyPair {
        &self.0
    }
}

fn new_ca(today: Date) -> Result<Stored> {
    let key = Wiped(KeyPair::generate().map_err(|e| rcgen_error("CA key", e))?);
    let mut p = ca_params();
    let not_before = today.yesterday().unwrap_or(today);
    let not_after = today
        .checked_add(jiff::Span::new().days(i64::from(VALIDITY_DAYS)))
        .map_err(|e| Error::Other(format!("cannot date the proxy's CA: {e}")))?;
    validity(&mut p, not_before, not_after);
    let cert = p
        .self_signed(&*key)
        .map_err(|e| rcgen_error("CA certificate", e))?;
    Ok(Stored {
        cert: cert.pem(),
        key: Secret::new(key.serialize_pem()),
        not_before,
        not_after,
    })
}

fn read(layout: &Layout) -> Result<Option<File>> {
    let path = file(layout);
    match std::fs::read(&path) {
        Ok(bytes) => {
            fsutil::check_private_file(&path)?;
            let bytes = zeroize::Zeroizing::new(bytes);
            let f: File = serde_json::from_slice(&bytes).map_err(|_| {
                Error::Other(format!(
                    "{} is not a proxy CA file airlock wrote: remove it (the proxy makes a new CA at its next start; sandboxes started before then need restarting)",
                    path.display()
                ))
            })?;
            if f.version != VERSION {
                return Err(Error::Other(format!(
                    "{} has format version {}, which this airlock does not know: use the airlock that wrote it, or remove the file (a new CA is made; sandboxes started before need restarting)",
                    path.display(),
                    f.version
                )));
            }
            Ok(Some(f))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("read", &path, e)),
    }
}

fn write(layout: &Layout, f: &File) -> Result<()> {
    let text = zeroize::Zeroizing::new(
        serde_json::to_vec_pretty(f)
            .map_err(|e| Error::Other(format!("cannot write the proxy's CA: {e}")))?,
    );
    fsutil::write_atomic(&file(layout), &text, 0o600)?;
    fsutil::write_atomic(&pem_file(layout), bundle_of(f).as_bytes(), 0o600)
}

fn bundle_of(f: &File) -> String {
    f.cas.iter().map(|c| c.cert.as_str()).collect()
}

/// The CAs, made or renewed as needed (under the lock): expired ones
/// dropped, a new one added when none exists or the newest has fewer than
/// [`RENEW_DAYS`] left.
fn load_or_renew(layout: &Layout, renew: bool) -> Result<File> {
    layout.ensure()?;
    fsutil::ensure_private_dir(&dir(layout))?;
    let today = today();
    let usable = |f: &File| {
        f.cas
            .last()
            .is_some_and(|c| days_left(c, today) >= if renew { RENEW_DAYS } else { 1 })
    };
    if let Some(f) = read(layout)?
        && usable(&f)
    {
        return Ok(f);
    }
    let _lock = FileLock::exclusive(&dir(layout).join("ca.lock"))?;
    // another process may have made it while we waited
    let mut f = read(layout)?.unwrap_or(File {
        version: VERSION,
        cas: Vec::new(),
    });
    if usable(&f) {
        return Ok(f);
    }
    f.cas.retain(|c| days_left(c, today) >= 1);
    f.cas.push(new_ca(today)?);
    write(layout, &f)?;
    tracing::info!(path = %file(layout).display(), "made a new proxy CA");
    Ok(f)
}

/// The CA certificates a sandbox trusts (PEM, oldest first): made if there
/// is none yet, never renewed here (the running proxy renews).
pub fn bundle_pem(layout: &Layout) -> Result<String> {
    Ok(bundle_of(&load_or_renew(layout, false)?))
}

/// What this process offers the sandboxes it plans (set once the proxy
/// runs: [`super::attach::url`]): the proxy's port, its layout, and the CA
/// bundle or why there is none.
struct Offer {
    layout: Layout,
    port: Option<u16>,
    bundle: std::result::Result<String, String>,
}

static OFFER: std::sync::RwLock<Option<Offer>> = std::sync::RwLock::new(None);

/// Offers `layout`'s CA certificates to the sandboxes this process plans
/// from now on, for the proxy listening on `port` (checked by a TLS
/// handshake before use; `None`: not checked). Codex with a ChatGPT
/// session then talks TLS to it. A CA that cannot be read is remembered
/// and reported by [`for_codex`].
pub fn offer_to_sandboxes(layout: &Layout, port: Option<u16>) {
    let bundle = bundle_pem(layout).map_err(|e| e.to_string());
    *OFFER.write().unwrap_or_else(|e| e.into_inner()) = Some(Offer {
        layout: layout.clone(),
        port,
        bundle,
    });
}

/// The CA certificates a Codex ChatGPT sandbox trusts: `None` when no
/// proxy was started by this process (a plan alone: plain HTTP as for
/// every agent), the bundle once the running proxy answered TLS with it on
/// 127.0.0.1 (not checked when it does not listen there), and a clear
/// refusal when there is no CA or the proxy does not speak TLS with it (a
/// proxy started by an older airlock).
pub fn for_codex() -> Result<Option<String>> {
    let (bundle, port, log) = match OFFER.read().unwrap_or_else(|e| e.into_inner()).as_ref() {
        None => return Ok(None),
        Some(o) => (o.bundle.clone(), o.port, o.layout.log()),
    };
    let refuse = |why: String| {
        Error::Other(format!(
            "--rotation proxy with a Codex ChatGPT session needs TLS from the proxy (Codex requires an https:// ChatGPT backend), and {why}"
        ))
    };
    let pem = bundle.map_err(|e| refuse(format!("the proxy's CA is not available: {e}")))?;
    let Some(port) = port else {
        return Ok(Some(pem));
    };
    super::tls::answers(port, &pem).map_err(|e| refuse(no_tls(port, &e, &log)))?;
    Ok(Some(pem))
}

/// Why the running proxy on `port` fails the TLS check, and what to do.
fn no_tls(port: u16, e: &str, log: &std::path::Path) -> String {
    format!(
        "the proxy running on port {port} does not answer TLS with airlock's CA ({e}): it was started by an older airlock, or could not use its CA when it started (its log says why: {}); stop it (the `airlock proxy` process in `ps`; `systemctl --user restart airlock-proxy` for the systemd unit; one started by `airlock run` also exits by itself once its last sandbox is gone) and run again",
        log.display()
    )
}

/// The private keys of the CA offered to sandboxes, as the lines of their
/// PEM bodies: what a leak scan looks for (`airlock verify --rotation
/// proxy`). Empty when none is offered.
pub fn offered_key_lines() -> Vec<String> {
    match OFFER.read().unwrap_or_else(|e| e.into_inner()).as_ref() {
        Some(o) => key_lines(&o.layout),
        None => Vec::new(),
    }
}

/// The lines of the PEM bodies of `layout`'s CA keys.
fn key_lines(layout: &Layout) -> Vec<String> {
    let Ok(Some(f)) = read(layout) else {
        return Vec::new();
    };
    f.cas
        .iter()
        .flat_map(|c| {
            c.key
                .expose()
                .lines()
                .filter(|l| !l.starts_with("-----") && l.len() >= 20)
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The proxy's TLS server identity: a fresh key and a certificate for
/// every name and address in `addresses` (plus [`LEAF_DNS`] and the fixed
/// loopback and slirp addresses) the CA may sign for, signed by the oldest
/// CA with at least [`SIGN_DAYS`] days left (else the newest). Makes or
/// renews the CA first.
pub fn server_identity(
    layout: &Layout,
    addresses: &[IpAddr],
) -> Result<(
    Vec<rustls::pki_types::CertificateDer<'static>>,
    rustls::pki_types::PrivateKeyDer<'static>,
)> {
    let f = load_or_renew(layout, true)?;
    let today = today();
    let ca = f
        .cas
        .iter()
        .find(|c| days_left(c, today) >= SIGN_DAYS)
        .or(f.cas.last())
        .ok_or_else(|| Error::Other("the proxy has no CA".into()))?;
    // a file that parses but whose key or certificate does not (edited by
    // hand, or half restored): the same fix as for a foreign file
    let damaged = |what: &str| {
        Error::Other(format!(
            "the proxy's CA {what} in {} is unreadable: remove the file (the proxy makes a new CA at its next start; sandboxes started before then need restarting)",
            file(layout).display()
        ))
    };
    let ca_key = Wiped(KeyPair::from_pem(ca.key.expose()).map_err(|_| damaged("key"))?);
    let issuer = Issuer::new(ca_params(), &*ca_key);
    let mut p = CertificateParams::default();
    p.distinguished_name = DistinguishedName::new();
    p.subject_alt_names = Vec::new();
    for d in LEAF_DNS {
        p.subject_alt_names.push(SanType::DnsName(
            (*d).try_into().map_err(|e| rcgen_error("certificate", e))?,
        ));
    }
    let mut ips: Vec<IpAddr> = LEAF_IPS.iter().filter_map(|a| a.parse().ok()).collect();
    ips.extend(addresses.iter().copied());
    ips.sort();
    ips.dedup();
    for ip in ips.into_iter().filter(|ip| permitted(*ip)) {
        p.subject_alt_names.push(SanType::IpAddress(ip));
    }
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    p.use_authority_key_identifier_extension = true;
    validity(&mut p, today.yesterday().unwrap_or(today), ca.not_after);
    let key = Wiped(KeyPair::generate().map_err(|e| rcgen_error("key", e))?);
    let leaf = p
        .signed_by(&*key, &issuer)
        .map_err(|e| rcgen_error("certificate", e))?;
    let ca_der = rustls_pemfile::certs(&mut ca.cert.as_bytes())
        .next()
        .and_then(|c| c.ok())
        .ok_or_else(|| damaged("certificate"))?;
    Ok((
        vec![leaf.der().clone(), ca_der],
        rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    ))
}

/// Whether the CA may sign for `ip` ([`PERMITTED_NETS`]).
pub fn permitted(ip: IpAddr) -> bool {
    PERMITTED_NETS
        .iter()
        .any(|(net, prefix)| match (net.parse::<IpAddr>(), ip) {
            (Ok(IpAddr::V4(n)), IpAddr::V4(a)) => {
                let m = u32::MAX.checked_shl(32 - u32::from(*prefix)).unwrap_or(0);
                u32::from(n) & m == u32::from(a) & m
            }
            (Ok(IpAddr::V6(n)), IpAddr::V6(a)) => {
                let m = u128::MAX.checked_shl(128 - u32::from(*prefix)).unwrap_or(0);
                u128::from(n) & m == u128::from(a) & m
            }
            _ => false,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> (tempfile::TempDir, Layout) {
        let d = tempfile::tempdir().unwrap();
        let l = Layout {
            dir: d.path().join("proxy"),
        };
        (d, l)
    }

    #[test]
    fn the_ca_is_made_once_private_and_reused() {
        use std::os::unix::fs::PermissionsExt;
        let (_d, l) = layout();
        let a = bundle_pem(&l).unwrap();
        let b = bundle_pem(&l).unwrap();
        assert_eq!(a, b);
        assert!(a.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(!a.contains("PRIVATE KEY"));
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&file(&l)), 0o600);
        assert_eq!(mode(&dir(&l)), 0o700);
        assert!(
            std::fs::read_to_string(file(&l))
                .unwrap()
                .contains("PRIVATE KEY")
        );
        assert_eq!(std::fs::read_to_string(pem_file(&l)).unwrap(), a);
        // the server identity comes from the same CA
        let (chain, _key) = server_identity(&l, &["172.17.0.1".parse().unwrap()]).unwrap();
        assert_eq!(chain.len(), 2);
        assert_eq!(bundle_pem(&l).unwrap(), a);
    }

    #[test]
    fn a_ca_close_to_its_end_is_renewed_and_both_are_trusted() {
        let (_d, l) = layout();
        bundle_pem(&l).unwrap();
        let mut f = read(&l).unwrap().unwrap();
        let t = today();
        f.cas[0].not_after = t.checked_add(jiff::Span::new().days(10)).unwrap();
        write(&l, &f).unwrap();
        // a sandbox's read does not renew; the proxy's start does
        assert_eq!(read(&l).unwrap().unwrap().cas.len(), 1);
        bundle_pem(&l).unwrap();
        assert_eq!(read(&l).unwrap().unwrap().cas.len(), 1);
        let (chain, _) = server_identity(&l, &[]).unwrap();
        let f = read(&l).unwrap().unwrap();
        assert_eq!(f.cas.len(), 2);
        assert_eq!(
            bundle_pem(&l).unwrap().matches("BEGIN CERTIFICATE").count(),
            2
        );
        // the older CA (which running sandboxes trust) still signs
        verify(&f.cas[0].cert, &chain, "localhost").unwrap();
        assert!(verify(&f.cas[1].cert, &chain, "localhost").is_err());
        // until it is about to end: then the newer one
        let mut f = f;
        f.cas[0].not_after = t;
        write(&l, &f).unwrap();
        let (chain, _) = server_identity(&l, &[]).unwrap();
        verify(&f.cas[1].cert, &chain, "localhost").unwrap();
        assert_eq!(read(&l).unwrap().unwrap().cas.len(), 2);
        // an expired one is dropped at the next renewal
        let mut f = f;
        f.cas[0].not_after = t.yesterday().unwrap();
        f.cas[1].not_after = t.checked_add(jiff::Span::new().days(5)).unwrap();
        write(&l, &f).unwrap();
        server_identity(&l, &[]).unwrap();
        assert_eq!(read(&l).unwrap().unwrap().cas.len(), 2);
    }

    use rustls::client::danger::ServerCertVerifier;

    /// Verifies `chain` for `name` with rustls' WebPKI verifier, trusting
    /// the CA bundle only.
    fn verify(
        bundle: &str,
        chain: &[rustls::pki_types::CertificateDer<'static>],
        name: &str,
    ) -> std::result::Result<(), rustls::Error> {
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_pemfile::certs(&mut bundle.as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        let v = rustls::client::WebPkiServerVerifier::builder_with_provider(
            std::sync::Arc::new(roots),
            std::sync::Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .unwrap();
        let name = rustls::pki_types::ServerName::try_from(name.to_owned()).unwrap();
        v.verify_server_cert(
            &chain[0],
            &chain[1..],
            &name,
            &[],
            rustls::pki_types::UnixTime::now(),
        )
        .map(|_| ())
    }

    #[test]
    fn the_proxy_certificate_verifies_and_a_stolen_key_cannot_sign_other_hosts() {
        let (_d, l) = layout();
        let bundle = bundle_pem(&l).unwrap();
        let (chain, _) = server_identity(&l, &["172.17.0.1".parse().unwrap()]).unwrap();
        for name in [
            "host.docker.internal",
            "host.containers.internal",
            "localhost",
            "127.0.0.1",
            "10.0.2.2",
            "172.17.0.1",
        ] {
            verify(&bundle, &chain, name).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        assert!(verify(&bundle, &chain, "chatgpt.com").is_err());
        // whoever holds the CA key signs a certificate for chatgpt.com (and
        // a public address): the name constraints make verifiers refuse it
        let f = read(&l).unwrap().unwrap();
        let issuer = Issuer::new(
            ca_params(),
            KeyPair::from_pem(f.cas[0].key.expose()).unwrap(),
        );
        for evil in ["chatgpt.com", "104.18.32.47"] {
            let mut p = CertificateParams::new(vec![evil.to_owned()]).unwrap();
            p.distinguished_name = DistinguishedName::new();
            p.use_authority_key_identifier_extension = true;
            validity(&mut p, today().yesterday().unwrap(), f.cas[0].not_after);
            let key = KeyPair::generate().unwrap();
            let cert = p.signed_by(&key, &issuer).unwrap();
            let e = verify(&bundle, &[cert.der().clone()], evil).unwrap_err();
            assert!(format!("{e:?}").contains("NameConstraint"), "{evil}: {e:?}");
        }
    }

    #[test]
    fn the_bundle_has_no_key_and_the_scan_lines_are_the_key() {
        let (_d, l) = layout();
        let pem = bundle_pem(&l).unwrap();
        assert!(!pem.contains("PRIVATE KEY"));
        let lines = key_lines(&l);
        assert!(!lines.is_empty());
        let stored = std::fs::read_to_string(file(&l)).unwrap();
        for line in &lines {
            assert!(stored.contains(line.as_str()));
            assert!(!pem.contains(line.as_str()));
        }
    }

    #[test]
    fn a_foreign_or_newer_file_is_refused_and_kept() {
        let (_d, l) = layout();
        fsutil::ensure_private_dir(&dir(&l)).unwrap();
        for text in [r#"{"version":2,"cas":[]}"#, "not json"] {
            fsutil::write_atomic(&file(&l), text.as_bytes(), 0o600).unwrap();
            let e = server_identity(&l, &[]).unwrap_err().to_string();
            assert!(e.contains("remove") && !e.contains("PRIVATE"), "{e}");
            assert_eq!(std::fs::read_to_string(file(&l)).unwrap(), text);
        }
    }

    #[test]
    fn a_damaged_key_or_certificate_says_to_remove_the_file() {
        let (_d, l) = layout();
        bundle_pem(&l).unwrap();
        let good = read(&l).unwrap().unwrap();
        let mut f = read(&l).unwrap().unwrap();
        f.cas[0].key = Secret::new("-----BEGIN PRIVATE KEY-----\nnot a key\n".into());
        write(&l, &f).unwrap();
        let e = server_identity(&l, &[]).unwrap_err().to_string();
        assert!(e.contains("CA key") && e.contains("remove the file"), "{e}");
        let mut f = good;
        f.cas[0].cert = "not a certificate".into();
        write(&l, &f).unwrap();
        let e = server_identity(&l, &[]).unwrap_err().to_string();
        assert!(
            e.contains("certificate") && e.contains("remove the file"),
            "{e}"
        );
        assert!(!e.contains("PRIVATE"), "{e}");
    }

    /// The refusal names the proxy's log and how to stop that proxy (it
    /// gave `airlock proxy --on-demand` as if that stopped it: it starts
    /// one, and fails as one already runs).
    #[test]
    fn a_proxy_without_tls_is_explained() {
        let m = no_tls(
            41000,
            "received corrupt message",
            std::path::Path::new("/s/proxy/proxy.log"),
        );
        assert!(
            m.contains("port 41000") && m.contains("/s/proxy/proxy.log"),
            "{m}"
        );
        assert!(m.contains("stop it (the `airlock proxy` process"), "{m}");
        assert!(!m.contains("--on-demand"), "{m}");
    }

    #[test]
    fn only_the_sandbox_side_ranges_are_permitted() {
        for ok in [
            "127.0.0.1",
            "10.0.2.2",
            "172.17.0.1",
            "10.88.0.1",
            "192.168.1.4",
            "::1",
            "fd00::1",
        ] {
            assert!(permitted(ok.parse().unwrap()), "{ok}");
        }
        for bad in ["8.8.8.8", "172.32.0.1", "2001:db8::1", "104.18.32.47"] {
            assert!(!permitted(bad.parse().unwrap()), "{bad}");
        }
    }
}
