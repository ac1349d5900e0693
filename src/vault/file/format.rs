//! The vault file's wire format, version 1 (specified in `docs/vault-format.md`).
//!
//! This module only turns bytes into checked structures and back; it knows
//! nothing about paths, locks or passphrase sources. Its errors
//! ([`FormatError`]) are mapped to [`crate::error::Error`] by the caller, which
//! knows the path.

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::XChaCha20Poly1305;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::vault::SecretBytes;

/// The first eight bytes of every vault file.
pub const MAGIC: [u8; 8] = *b"airlock\0";
/// The format version this build reads and writes.
pub const VERSION: u16 = 1;
/// Size of the fixed header.
pub const HEADER_LEN: usize = 128;
/// Size of the Poly1305 tag at the end of the body.
pub const TAG_LEN: usize = 16;
/// The smallest valid file: a header and an empty body's tag.
pub const MIN_FILE_LEN: usize = HEADER_LEN + TAG_LEN;
/// Files larger than this are refused as corrupt rather than read into memory.
pub const MAX_FILE_LEN: u64 = 64 << 20;
/// Salt length.
pub const SALT_LEN: usize = 16;
/// Length of the Argon2 output and of every subkey.
pub const KEY_LEN: usize = 32;

const KDF_ARGON2ID: u8 = 1;
const AEAD_XCHACHA20POLY1305: u8 = 1;
/// Bytes covered by the key check: magic through salt.
const KDF_PREFIX_LEN: usize = 40;
/// Bytes covered by the unkeyed checksum: everything before it.
const CHECKSUM_COVERS: usize = 96;
const INFO_CHECK: &[u8] = b"airlock vault v1 key check";
const INFO_BODY: &[u8] = b"airlock vault v1 body key";

/// Why bytes could not be read as a vault. Never contains secret material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormatError {
    /// Damaged, truncated, tampered with, or not a vault at all.
    Corrupt(String),
    /// A format version this build does not read.
    UnsupportedVersion(u16),
    /// The header is intact but the key does not pass the key check.
    WrongKey,
}

/// Argon2id cost parameters, stored in every header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_cost: u32,
    /// Number of passes.
    pub t_cost: u32,
    /// Number of lanes.
    pub p_cost: u32,
}

impl KdfParams {
    /// The parameters of new vaults: 64 MiB, 3 passes, 1 lane (RFC 9106
    /// §4, second recommended option, with one lane). About 220 ms on the
    /// reference machine; see `bench/README.md`.
    pub const DEFAULT: KdfParams = KdfParams {
        m_cost: 64 * 1024,
        t_cost: 3,
        p_cost: 1,
    };

    /// The cheapest parameters [`KdfParams::parse`] accepts for a new vault.
    pub const FLOOR: KdfParams = KdfParams {
        m_cost: 1024,
        t_cost: 1,
        p_cost: 1,
    };

    const MAX_M: u32 = 4 * 1024 * 1024;
    const MAX_T: u32 = 64;
    const MAX_P: u32 = 64;

    /// Checks the bounds a reader accepts (they stop a hostile header from
    /// asking for unbounded memory or time).
    pub fn check_bounds(&self) -> Result<(), String> {
        if !(1..=Self::MAX_P).contains(&self.p_cost) {
            return Err(format!("Argon2 lanes {} out of range 1..=64", self.p_cost));
        }
        if !(1..=Self::MAX_T).contains(&self.t_cost) {
            return Err(format!("Argon2 passes {} out of range 1..=64", self.t_cost));
        }
        if self.m_cost < 8 * self.p_cost || self.m_cost > Self::MAX_M {
            return Err(format!(
                "Argon2 memory {} KiB out of range {}..={}",
                self.m_cost,
                8 * self.p_cost,
                Self::MAX_M
            ));
        }
        Ok(())
    }

    /// Parses `m=<KiB>,t=<passes>,p=<lanes>` (any order; missing fields take
    /// the default) and checks it against [`KdfParams::FLOOR`] and the read
    /// bounds.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut p = KdfParams::DEFAULT;
        for part in s.split(',').map(str::trim).filter(|x| !x.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?} is not key=value"))?;
            let v: u32 = v
                .trim()
                .parse()
                .map_err(|_| format!("{:?} is not a whole number", v.trim()))?;
            match k.trim() {
                "m" => p.m_cost = v,
                "t" => p.t_cost = v,
                "p" => p.p_cost = v,
                other => return Err(format!("unknown parameter {other:?}: use m, t and p")),
            }
        }
        p.check_bounds()?;
        if p.m_cost < Self::FLOOR.m_cost || p.t_cost < Self::FLOOR.t_cost {
            return Err(format!(
                "m={},t={} is below the floor m={},t={}",
                p.m_cost,
                p.t_cost,
                Self::FLOOR.m_cost,
                Self::FLOOR.t_cost
            ));
        }
        Ok(p)
    }

    /// Derives the master key from a passphrase (the slow step).
    pub fn derive(&self, passphrase: &[u8], salt: &[u8; SALT_LEN]) -> Result<MasterKey, String> {
        let params = Params::new(self.m_cost, self.t_cost, self.p_cost, Some(KEY_LEN))
            .map_err(|e| format!("invalid Argon2 parameters: {e}"))?;
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let mut out = Zeroizing::new([0u8; KEY_LEN]);
        argon
            .hash_password_into(passphrase, salt, &mut out[..])
            .map_err(|e| format!("key derivation failed: {e}"))?;
        Ok(MasterKey(out))
    }
}

impl std::fmt::Display for KdfParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "m={},t={},p={}", self.m_cost, self.t_cost, self.p_cost)
    }
}

/// The Argon2id output. Zeroized on drop; never printed.
#[derive(Clone)]
pub struct MasterKey(Zeroizing<[u8; KEY_LEN]>);

impl MasterKey {
    /// Wraps key bytes (from the key cache).
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        MasterKey(Zeroizing::new(bytes))
    }

    /// The key bytes (for the key cache).
    pub fn expose(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// The subkeys derived from this master key.
    pub fn subkeys(&self) -> Keys {
        let hk = Hkdf::<Sha256>::new(None, &self.0[..]);
        let mut check = Zeroizing::new([0u8; KEY_LEN]);
        let mut body = Zeroizing::new([0u8; KEY_LEN]);
        // 32 bytes is far below HKDF-SHA256's limit of 255 * 32.
        hk.expand(INFO_CHECK, &mut check[..])
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        hk.expand(INFO_BODY, &mut body[..])
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        Keys {
            master: self.clone(),
            check,
            body,
        }
    }
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey([redacted])")
    }
}

/// The master key and its subkeys.
#[derive(Clone)]
pub struct Keys {
    master: MasterKey,
    check: Zeroizing<[u8; KEY_LEN]>,
    body: Zeroizing<[u8; KEY_LEN]>,
}

impl Keys {
    /// The master key these were derived from.
    pub fn master(&self) -> &MasterKey {
        &self.master
    }

    fn mac(&self) -> Hmac<Sha256> {
        <Hmac<Sha256> as KeyInit>::new_from_slice(&self.check[..])
            .expect("HMAC accepts keys of any length")
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new_from_slice(&self.body[..]).expect("the body key is 32 bytes")
    }
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys([redacted])")
    }
}

/// A parsed (and checksum-verified) header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The Argon2id parameters.
    pub params: KdfParams,
    /// The vault's salt.
    pub salt: [u8; SALT_LEN],
    /// `HMAC-SHA256(K_check, bytes 0..40)`.
    pub key_check: [u8; 32],
    /// The body nonce.
    pub nonce: [u8; 24],
}

impl Header {
    /// A header for a new vault with these keys (the nonce is chosen by [`seal`]).
    pub fn new(params: KdfParams, salt: [u8; SALT_LEN], keys: &Keys) -> Header {
        let mut h = Header {
            params,
            salt,
            key_check: [0; 32],
            nonce: [0; 24],
        };
        let mut mac = keys.mac();
        mac.update(&h.kdf_prefix());
        h.key_check.copy_from_slice(&mac.finalize().into_bytes());
        h
    }

    fn kdf_prefix(&self) -> [u8; KDF_PREFIX_LEN] {
        let mut b = [0u8; KDF_PREFIX_LEN];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..10].copy_from_slice(&VERSION.to_le_bytes());
        b[10] = KDF_ARGON2ID;
        b[11] = AEAD_XCHACHA20POLY1305;
        b[12..16].copy_from_slice(&self.params.m_cost.to_le_bytes());
        b[16..20].copy_from_slice(&self.params.t_cost.to_le_bytes());
        b[20..24].copy_from_slice(&self.params.p_cost.to_le_bytes());
        b[24..40].copy_from_slice(&self.salt);
        b
    }

    /// The 128 header bytes, checksum included.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[..KDF_PREFIX_LEN].copy_from_slice(&self.kdf_prefix());
        b[40..72].copy_from_slice(&self.key_check);
        b[72..96].copy_from_slice(&self.nonce);
        let sum = Sha256::digest(&b[..CHECKSUM_COVERS]);
        b[96..128].copy_from_slice(&sum);
        b
    }

    /// Whether `keys` pass the key check (constant-time comparison).
    pub fn key_matches(&self, keys: &Keys) -> bool {
        let mut mac = keys.mac();
        mac.update(&self.kdf_prefix());
        mac.verify_slice(&self.key_check).is_ok()
    }
}

fn corrupt(s: impl Into<String>) -> FormatError {
    FormatError::Corrupt(s.into())
}

/// Checks steps 2–7 of the reading procedure and returns the header and the
/// body (ciphertext and tag). No key is needed.
pub fn parse(bytes: &[u8]) -> Result<(Header, &[u8]), FormatError> {
    if bytes.is_empty() {
        return Err(corrupt("the file is empty"));
    }
    if bytes.len() as u64 > MAX_FILE_LEN {
        return Err(corrupt(format!(
            "the file is {} bytes, larger than any vault airlock writes",
            bytes.len()
        )));
    }
    if bytes.len() < MAGIC.len() || bytes[..MAGIC.len()] != MAGIC {
        return Err(corrupt(
            "it is not an airlock vault file (wrong magic bytes)",
        ));
    }
    if bytes.len() < 10 {
        return Err(corrupt(format!("truncated to {} bytes", bytes.len())));
    }
    let version = u16::from_le_bytes([bytes[8], bytes[9]]);
    if version == 0 {
        return Err(corrupt("format version 0 is not valid"));
    }
    if version != VERSION {
        return Err(FormatError::UnsupportedVersion(version));
    }
    if bytes.len() < MIN_FILE_LEN {
        return Err(corrupt(format!(
            "truncated to {} bytes (a vault has at least {MIN_FILE_LEN})",
            bytes.len()
        )));
    }
    let (head, body) = bytes.split_at(HEADER_LEN);
    let sum = Sha256::digest(&head[..CHECKSUM_COVERS]);
    if sum[..] != head[96..128] {
        return Err(corrupt("header checksum mismatch"));
    }
    if head[10] != KDF_ARGON2ID {
        return Err(corrupt(format!("unknown key-derivation id {}", head[10])));
    }
    if head[11] != AEAD_XCHACHA20POLY1305 {
        return Err(corrupt(format!("unknown cipher id {}", head[11])));
    }
    let u32_at = |o: usize| u32::from_le_bytes([head[o], head[o + 1], head[o + 2], head[o + 3]]);
    let params = KdfParams {
        m_cost: u32_at(12),
        t_cost: u32_at(16),
        p_cost: u32_at(20),
    };
    params.check_bounds().map_err(FormatError::Corrupt)?;
    let mut h = Header {
        params,
        salt: [0; SALT_LEN],
        key_check: [0; 32],
        nonce: [0; 24],
    };
    h.salt.copy_from_slice(&head[24..40]);
    h.key_check.copy_from_slice(&head[40..72]);
    h.nonce.copy_from_slice(&head[72..96]);
    Ok((h, body))
}

/// Steps 8–9: checks the key and decrypts the body. The plaintext is
/// zeroized on drop.
pub fn open(header: &Header, body: &[u8], keys: &Keys) -> Result<SecretBytes, FormatError> {
    if !header.key_matches(keys) {
        return Err(FormatError::WrongKey);
    }
    let aad = header.to_bytes();
    keys.cipher()
        .decrypt(
            &header.nonce.into(),
            Payload {
                msg: body,
                aad: &aad,
            },
        )
        .map(SecretBytes::new)
        .map_err(|_| {
            corrupt("the contents failed authentication: the file was modified or damaged")
        })
}

/// Encrypts `plaintext` under a fresh random nonce and returns the whole file.
/// `header` carries the parameters, salt and key check (its nonce is replaced).
pub fn seal(header: &Header, plaintext: &[u8], keys: &Keys) -> Result<Vec<u8>, String> {
    let mut h = header.clone();
    getrandom::fill(&mut h.nonce).map_err(|e| format!("no randomness from the OS: {e}"))?;
    let head = h.to_bytes();
    let ct = keys
        .cipher()
        .encrypt(
            &h.nonce.into(),
            Payload {
                msg: plaintext,
                aad: &head,
            },
        )
        .map_err(|_| "the vault contents are too large to encrypt".to_string())?;
    let mut out = Vec::with_capacity(HEADER_LEN + ct.len());
    out.extend_from_slice(&head);
    out.extend_from_slice(&ct);
    Ok(out)
}

/// A new random salt.
pub fn new_salt() -> Result<[u8; SALT_LEN], String> {
    let mut s = [0u8; SALT_LEN];
    getrandom::fill(&mut s).map_err(|e| format!("no randomness from the OS: {e}"))?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAST: KdfParams = KdfParams {
        m_cost: 1024,
        t_cost: 1,
        p_cost: 1,
    };

    fn keys(pass: &str, salt: &[u8; 16]) -> Keys {
        FAST.derive(pass.as_bytes(), salt).unwrap().subkeys()
    }

    fn sample() -> (Vec<u8>, [u8; 16]) {
        let salt = [7u8; 16];
        let k = keys("pw", &salt);
        let h = Header::new(FAST, salt, &k);
        (seal(&h, b"{\"records\":[]}", &k).unwrap(), salt)
    }

    #[test]
    fn round_trip_and_layout() {
        let (file, salt) = sample();
        assert_eq!(&file[..8], b"airlock\0");
        assert_eq!(&file[8..10], &[1, 0]);
        assert_eq!(file.len(), HEADER_LEN + 14 + TAG_LEN);
        let (h, body) = parse(&file).unwrap();
        assert_eq!(h.params, FAST);
        assert_eq!(h.salt, salt);
        let pt = open(&h, body, &keys("pw", &salt)).unwrap();
        assert_eq!(&pt[..], b"{\"records\":[]}");
    }

    #[test]
    fn every_write_uses_a_new_nonce_and_keeps_the_key_check() {
        let salt = [1u8; 16];
        let k = keys("pw", &salt);
        let h = Header::new(FAST, salt, &k);
        let a = seal(&h, b"x", &k).unwrap();
        let b = seal(&h, b"x", &k).unwrap();
        assert_ne!(a[72..96], b[72..96], "nonce reused");
        assert_eq!(
            a[..72],
            b[..72],
            "salt, params and key check must not change"
        );
    }

    #[test]
    fn wrong_key_is_not_corruption() {
        let (file, salt) = sample();
        let (h, body) = parse(&file).unwrap();
        assert_eq!(
            open(&h, body, &keys("other", &salt)).unwrap_err(),
            FormatError::WrongKey
        );
    }

    #[test]
    fn any_flipped_bit_is_corruption_never_wrong_key() {
        let (file, salt) = sample();
        let k = keys("pw", &salt);
        for i in 0..file.len() {
            let mut f = file.clone();
            f[i] ^= 0x10;
            let r = parse(&f).and_then(|(h, body)| open(&h, body, &k));
            match r {
                Err(FormatError::Corrupt(_)) => {}
                // Bytes 8..10 are the version: a change reads as a newer version.
                Err(FormatError::UnsupportedVersion(_)) if (8..10).contains(&i) => {}
                other => panic!("byte {i}: {other:?}"),
            }
        }
    }

    #[test]
    fn truncation_and_garbage_are_corruption() {
        let (file, salt) = sample();
        let k = keys("pw", &salt);
        for n in [0, 1, 8, 9, 10, 100, 128, 143, file.len() - 1] {
            let r = parse(&file[..n]).and_then(|(h, body)| open(&h, body, &k));
            assert!(matches!(r, Err(FormatError::Corrupt(_))), "{n}: {r:?}");
        }
        let mut longer = file.clone();
        longer.push(0);
        let (h, body) = parse(&longer).unwrap();
        assert!(matches!(open(&h, body, &k), Err(FormatError::Corrupt(_))));
        assert!(matches!(
            parse(b"{\"records\":[]}"),
            Err(FormatError::Corrupt(_))
        ));
    }

    #[test]
    fn versions() {
        let (mut file, _) = sample();
        file[8] = 2;
        assert_eq!(
            parse(&file).unwrap_err(),
            FormatError::UnsupportedVersion(2)
        );
        file[8] = 0;
        assert!(matches!(parse(&file), Err(FormatError::Corrupt(_))));
    }

    #[test]
    fn hostile_params_are_refused_before_deriving() {
        let salt = [3u8; 16];
        let k = keys("pw", &salt);
        let huge = KdfParams {
            m_cost: u32::MAX,
            t_cost: 1,
            p_cost: 1,
        };
        let file = seal(&Header::new(huge, salt, &k), b"x", &k).unwrap();
        assert!(matches!(parse(&file), Err(FormatError::Corrupt(_))));
    }

    #[test]
    fn params_parse_with_floor() {
        assert_eq!(
            KdfParams::parse("m=2048,t=2,p=1").unwrap(),
            KdfParams {
                m_cost: 2048,
                t_cost: 2,
                p_cost: 1
            }
        );
        assert_eq!(KdfParams::parse("t=4").unwrap().m_cost, 65536);
        assert!(KdfParams::parse("m=8,t=1,p=1").is_err());
        assert!(KdfParams::parse("m=4096,t=0").is_err());
        assert!(KdfParams::parse("m=lots").is_err());
        assert!(KdfParams::parse("x=1").is_err());
        assert!(KdfParams::DEFAULT.check_bounds().is_ok());
    }

    #[test]
    fn keys_never_print() {
        let k = keys("pw", &[0; 16]);
        assert_eq!(format!("{k:?}"), "Keys([redacted])");
        assert_eq!(format!("{:?}", k.master()), "MasterKey([redacted])");
    }
}
