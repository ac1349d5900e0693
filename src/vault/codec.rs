//! The one place where a [`Record`] is turned into bytes and back.
//!
//! Records are stored as JSON objects
//! `{"agent","account","method","secret","meta":{…}}`. Keyring backends store
//! one object per item; the encrypted file stores `{"records":[…]}` as its
//! plaintext. Output buffers are zeroized on drop; decoding errors never echo
//! the input.

use serde::{Deserialize, Serialize};

use super::{CredentialId, Metadata, Method, Record, SecretBytes};
use crate::error::{Error, Result};
use crate::secret::{Secret, serde_expose};

#[derive(Serialize, Deserialize)]
struct Stored {
    agent: String,
    account: String,
    method: Method,
    #[serde(with = "serde_expose")]
    secret: Secret,
    meta: Metadata,
}

#[derive(Serialize, Deserialize)]
struct StoredSet {
    records: Vec<Stored>,
}

fn to_stored(r: &Record) -> Stored {
    Stored {
        agent: r.id.agent.clone(),
        account: r.id.account.clone(),
        method: r.method,
        secret: r.secret.clone(),
        meta: r.meta.clone(),
    }
}

fn from_stored(s: Stored) -> Result<Record> {
    Ok(Record {
        id: CredentialId::new(&s.agent, &s.account)?,
        method: s.method,
        secret: s.secret,
        meta: s.meta,
    })
}

/// Never include serde's message: for a malformed document it can quote input.
fn decode_error(what: &str, e: serde_json::Error) -> Error {
    Error::Other(format!(
        "stored {what} is not a valid airlock record (line {}, column {})",
        e.line(),
        e.column()
    ))
}

/// Encodes one record.
pub fn encode_record(r: &Record) -> SecretBytes {
    SecretBytes::new(serde_json::to_vec(&to_stored(r)).expect("records always serialize"))
}

/// Decodes one record.
pub fn decode_record(bytes: &[u8]) -> Result<Record> {
    let s: Stored = serde_json::from_slice(bytes).map_err(|e| decode_error("record", e))?;
    from_stored(s)
}

/// Encodes a set of records (the encrypted file's plaintext).
pub fn encode_set(records: &[Record]) -> SecretBytes {
    let set = StoredSet {
        records: records.iter().map(to_stored).collect(),
    };
    SecretBytes::new(serde_json::to_vec(&set).expect("records always serialize"))
}

/// Decodes a set of records.
pub fn decode_set(bytes: &[u8]) -> Result<Vec<Record>> {
    let set: StoredSet =
        serde_json::from_slice(bytes).map_err(|e| decode_error("record set", e))?;
    set.records.into_iter().map(from_stored).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec() -> Record {
        Record {
            id: CredentialId::new("claude", "work").unwrap(),
            method: Method::SetupToken,
            secret: Secret::from("sk-ant-oat01-CANARY"),
            meta: Metadata::new("stdin"),
        }
    }

    #[test]
    fn round_trip() {
        let r = rec();
        assert_eq!(decode_record(&encode_record(&r)).unwrap(), r);
        let set = vec![r.clone(), r];
        assert_eq!(decode_set(&encode_set(&set)).unwrap(), set);
    }

    #[test]
    fn decode_errors_do_not_echo_input() {
        let e = decode_record(br#"{"agent":"claude","secret":"sk-ant-CANARY"#).unwrap_err();
        assert!(!e.to_string().contains("CANARY"), "{e}");
        let e = decode_record(
            br#"{"agent":"claude","account":"x","method":"bogus-CANARY","secret":"s","meta":{}}"#,
        )
        .unwrap_err();
        assert!(!e.to_string().contains("CANARY"), "{e}");
    }
}
