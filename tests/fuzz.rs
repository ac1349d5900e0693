//! Property-based fuzzing of every parser that takes outside input (issue
//! 14, "Hostile input to every parser"): the agents' credential documents,
//! JWTs, the sync engine's session parser, the shared-directory reader, the
//! vault file and record codec, `.airlock.toml`, `config.toml`, the sync
//! status and registry files, the other tools' files `airlock import`
//! reads, secret references, the proxy's grants file and the user's
//! `devcontainer.json`.
//!
//! Inputs are structured: mutations of valid fixtures (`tests/fixtures/`)
//! at the JSON/TOML level (a field removed, retyped, replaced by a canary
//! secret) and at the byte level (truncated, flipped, spliced), plus
//! arbitrary bytes. Properties: no panic; a rejection is a typed error whose
//! message never holds a secret from the input (the fixtures' canary);
//! valid inputs round-trip where that applies.
//!
//! Cases per parser: `AIRLOCK_FUZZ_CASES` (256 by default, what CI runs);
//! `scripts/fuzz.sh` runs 100,000 per parser. Each parser prints
//! `fuzz <parser>: <cases> cases, <failures> failures`. A failure is shrunk
//! to a minimal input, its seed saved in
//! `tests/fixtures/fuzz/<parser>.proptest-regressions` (replayed first on
//! every run) and the test fails; the bugs found are kept as exact inputs in
//! [`found_by_fuzzing`].

use std::path::Path;

use airlock::agents::jwt;
use airlock::sync::credential::{self, AgentKind, SHARED_MAX};
use airlock::vault::codec;
use airlock::vault::file::format::{self, KdfParams, MasterKey};
use airlock::vault::{CredentialId, Metadata, Method, Record};
use airlock::{Secret, config::Config, project::ProjectFile};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{
    Config as PtConfig, FileFailurePersistence, TestCaseError, TestRunner,
};
use serde_json::{Map, Value, json};

/// The marker every fixture secret carries (tests/fixtures/agents/README.md).
const CANARY: &str = "x7Q2zV9";

fn cases() -> u32 {
    std::env::var("AIRLOCK_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(256)
}

/// Runs `check` on `cases()` inputs from `strategy`, prints the figures and
/// fails (with the shrunk input) on the first property violation.
fn fuzz<S>(name: &str, strategy: S, check: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S: Strategy,
    S::Value: std::fmt::Debug,
{
    let n = cases();
    let mut runner = TestRunner::new(PtConfig {
        cases: n,
        // one seed file per parser: a seed replays its own parser's input
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(Box::leak(
            format!(
                "{}/tests/fixtures/fuzz/{}.proptest-regressions",
                env!("CARGO_MANIFEST_DIR"),
                name.replace(|c: char| !c.is_ascii_alphanumeric(), "-")
            )
            .into_boxed_str(),
        )))),
        max_shrink_iters: 4096,
        ..PtConfig::default()
    });
    let result = runner.run(&strategy, check);
    eprintln!(
        "fuzz {name}: {n} cases, {} failures",
        u32::from(result.is_err())
    );
    if let Err(e) = result {
        panic!("fuzz {name}: {e}");
    }
}

/// The message quotes no secret-looking word holding the fixtures' canary
/// (a short plain name such as `x7Q2zV9` may be echoed: it says what to fix).
fn no_canary(what: &str, msg: &str) -> Result<(), TestCaseError> {
    let leaked = msg
        .split(|c: char| !(c.is_ascii_alphanumeric() || "._/-+=".contains(c)))
        .any(|w| w.contains(CANARY) && airlock::secret::looks_like_secret(w));
    prop_assert!(!leaked, "{what}: the error message quotes a secret: {msg}");
    Ok(())
}

fn fixture(rel: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/agents")
        .join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn fixture_doc(rel: &str) -> Value {
    serde_json::from_str(&fixture(rel)).unwrap()
}

// ---- generators ----

/// Any JSON value, small and nested; strings sometimes carry the canary.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        // floats that print exactly (serde_json does not round-trip every f64)
        any::<i32>().prop_map(|i| json!(f64::from(i) / 4.0)),
        Just(json!(u64::MAX)),
        Just(json!(-1)),
        Just(json!(0)),
        ".{0,12}".prop_map(Value::String),
        "[a-z:._-]{0,8}".prop_map(|s| Value::String(format!("sk-{CANARY}-{s}"))),
        Just(Value::String(String::new())),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z_]{1,10}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// The paths (object keys, array indices) of every value inside `v`.
fn paths(v: &Value, here: &mut Vec<Value>, out: &mut Vec<Vec<Value>>) {
    match v {
        Value::Object(m) => {
            for (k, c) in m {
                here.push(json!(k));
                out.push(here.clone());
                paths(c, here, out);
                here.pop();
            }
        }
        Value::Array(a) => {
            for (i, c) in a.iter().enumerate() {
                here.push(json!(i));
                out.push(here.clone());
                paths(c, here, out);
                here.pop();
            }
        }
        _ => {}
    }
}

#[derive(Debug, Clone)]
enum Edit {
    Remove,
    Replace(Value),
    Keep,
}

/// Applies `edit` at the path chosen by `at` (a removal in an array
/// replaces the element with null).
fn edit(mut doc: Value, at: Index, e: Edit) -> Value {
    let mut all = Vec::new();
    paths(&doc, &mut Vec::new(), &mut all);
    if all.is_empty() {
        return doc;
    }
    let path = &all[at.index(all.len())];
    let (last, parent) = path.split_last().unwrap();
    let mut cur = &mut doc;
    for seg in parent {
        cur = match seg {
            Value::String(k) => cur.get_mut(k.as_str()),
            Value::Number(i) => cur.get_mut(i.as_u64().unwrap() as usize),
            _ => None,
        }
        .unwrap();
    }
    match (cur, last, e) {
        (_, _, Edit::Keep) => {}
        (Value::Object(m), Value::String(k), Edit::Remove) => {
            m.remove(k);
        }
        (Value::Object(m), Value::String(k), Edit::Replace(v)) => {
            m.insert(k.clone(), v);
        }
        (Value::Array(a), Value::Number(i), e) => {
            let i = i.as_u64().unwrap() as usize;
            a[i] = match e {
                Edit::Replace(v) => v,
                _ => Value::Null,
            };
        }
        _ => {}
    }
    doc
}

/// Byte-level damage: truncation, a flipped byte, a splice of random bytes.
fn damage(bytes: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let len = bytes.len();
    let b1 = bytes.clone();
    let b2 = bytes.clone();
    let b3 = bytes.clone();
    prop_oneof![
        2 => Just(bytes),
        1 => (0..=len).prop_map(move |n| b1[..n].to_vec()),
        1 => (any::<Index>(), any::<u8>()).prop_map(move |(i, x)| {
            let mut b = b2.clone();
            if !b.is_empty() {
                let i = i.index(b.len());
                b[i] ^= x | 1;
            }
            b
        }),
        1 => (any::<Index>(), prop::collection::vec(any::<u8>(), 0..12)).prop_map(move |(i, x)| {
            let mut b = b3.clone();
            let i = i.index(b.len() + 1);
            b.splice(i..i, x);
            b
        }),
    ]
}

/// Mutations of a valid JSON document: up to three edits, then byte damage,
/// or arbitrary bytes.
fn mutated_json(base: Value) -> impl Strategy<Value = Vec<u8>> {
    let edits = prop::collection::vec(
        (
            any::<Index>(),
            prop_oneof![
                Just(Edit::Keep),
                Just(Edit::Remove),
                json_value().prop_map(Edit::Replace),
            ],
        ),
        0..3,
    );
    prop_oneof![
        8 => edits
            .prop_map(move |es| {
                let d = es.into_iter().fold(base.clone(), |d, (at, e)| edit(d, at, e));
                serde_json::to_vec_pretty(&d).unwrap()
            })
            .prop_flat_map(damage),
        1 => prop::collection::vec(any::<u8>(), 0..64),
        1 => json_value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
    ]
}

/// Mutations of a valid TOML text: line-level edits (a line removed,
/// duplicated, a value replaced by another type or a canary string) and
/// byte damage, or arbitrary text.
fn mutated_toml(base: &'static str) -> impl Strategy<Value = String> {
    let values = prop_oneof![
        Just(format!("\"sk-ant-{CANARY}\"")),
        Just(format!("[\"{CANARY}\"]")),
        Just(format!("{{ k = \"{CANARY}\" }}")),
        Just("true".to_string()),
        Just("-1".to_string()),
        Just("18446744073709551616".to_string()),
        Just("1979-05-27T07:32:00Z".to_string()),
        "[a-z]{0,6}".prop_map(|s| format!("\"{s}\"")),
    ];
    let lines: Vec<String> = base.lines().map(str::to_owned).collect();
    let n = lines.len();
    prop_oneof![
        6 => (any::<Index>(), 0..4u8, values).prop_map(move |(i, op, val)| {
            let mut l = lines.clone();
            let i = i.index(n);
            match op {
                0 => {
                    l.remove(i);
                }
                1 => l.insert(i, l[i].clone()),
                2 => {
                    if let Some((k, _)) = l[i].split_once('=') {
                        l[i] = format!("{k}= {val}");
                    }
                }
                _ => l.insert(i, format!("zz_unknown = {val}")),
            }
            l.join("\n")
        })
        .prop_flat_map(|s| damage(s.into_bytes()))
        .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        1 => ".{0,64}",
    ]
}

// ---- the agents' credential documents ----

type DocParser = fn(&str, &str) -> airlock::Result<Map<String, Value>>;

fn agent_doc(name: &str, rel: &'static [&'static str], parse: DocParser) {
    let bases: Vec<Value> = rel.iter().map(|r| fixture_doc(r)).collect();
    let strat = prop::sample::select(bases).prop_flat_map(mutated_json);
    fuzz(name, strat, |bytes| {
        let text = String::from_utf8_lossy(&bytes);
        match parse(&text, "the fuzzed file") {
            Ok(doc) => {
                // round trip: what was accepted is accepted again as written
                let again = serde_json::to_string(&doc).unwrap();
                let doc2 = parse(&again, "the fuzzed file");
                prop_assert!(doc2.is_ok(), "not accepted after a round trip");
                prop_assert_eq!(doc2.unwrap(), doc);
            }
            Err(e) => no_canary(name, &e.to_string())?,
        }
        Ok(())
    });
}

#[test]
fn claude_credentials() {
    agent_doc(
        "claude .credentials.json",
        &[
            "claude/credentials-max.json",
            "claude/credentials-minimal.json",
            "claude/credentials-lapsed.json",
        ],
        |t, w| airlock::agents::claude::capture::parse_document(t, w).map(|(d, _)| d),
    );
}

#[test]
fn codex_auth_json() {
    agent_doc(
        "codex auth.json",
        &[
            "codex/auth-chatgpt.json",
            "codex/auth-chatgpt-lapsed.json",
            "codex/auth-apikey.json",
            "codex/auth-apikey-no-mode.json",
        ],
        |t, w| airlock::agents::codex::capture::parse_document(t, w).map(|(d, _)| d),
    );
}

#[test]
fn gemini_oauth_creds() {
    agent_doc(
        "gemini oauth_creds.json",
        &[
            "gemini/oauth_creds.json",
            "gemini/oauth_creds-no-refresh-expired.json",
            "gemini/session-wrapper.json",
        ],
        |t, w| {
            airlock::agents::gemini::capture::parse_document(t, w)?;
            Ok(serde_json::from_str::<Map<String, Value>>(t).unwrap_or_default())
        },
    );
}

/// The sync engine's parser of a session file, for each agent: a typed
/// [`credential::Rejection`], and an accepted session keeps its expiry and
/// fingerprint through a merge into an empty file.
#[test]
fn sync_session_documents() {
    let bases = vec![
        (
            AgentKind::Claude,
            fixture_doc("claude/credentials-max.json"),
        ),
        (AgentKind::Codex, fixture_doc("codex/auth-chatgpt.json")),
        (AgentKind::Gemini, fixture_doc("gemini/oauth_creds.json")),
    ];
    let strat = prop::sample::select(bases).prop_flat_map(|(k, d)| (Just(k), mutated_json(d)));
    fuzz("sync session (3 agents)", strat, |(kind, bytes)| {
        match credential::parse(kind, &bytes) {
            Ok(p) => {
                let merged = p.merge_into(None);
                let q = credential::parse(kind, &merged);
                prop_assert!(q.is_ok(), "a merged session does not parse");
                let q = q.unwrap();
                prop_assert_eq!(q.expiry, p.expiry);
                prop_assert_eq!(q.fingerprint, p.fingerprint);
            }
            Err(r) => no_canary("sync session", &r.to_string())?,
        }
        Ok(())
    });
}

// ---- JWT ----

#[test]
fn jwt_claims() {
    let token = prop_oneof![
        // a valid token of arbitrary claims, damaged
        prop::collection::btree_map("[a-z]{1,6}", json_value(), 0..4)
            .prop_map(|m| jwt::fake(&Value::Object(m.into_iter().collect())))
            .prop_flat_map(|t| damage(t.into_bytes()))
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        "[A-Za-z0-9_.=+/-]{0,40}",
        ".{0,40}",
    ];
    fuzz("jwt claims", token, |t| {
        match jwt::claims(&t) {
            Ok(c) => {
                // round trip: the claims survive re-encoding
                prop_assert_eq!(
                    jwt::claims(&jwt::fake(&Value::Object(c.clone()))).unwrap(),
                    c.clone()
                );
                let _ = jwt::expiry(&c);
                let _ = jwt::email(&c);
            }
            Err(e) => {
                let msg = e.to_string();
                prop_assert!(t.len() < 8 || !msg.contains(&t), "{msg}");
            }
        }
        Ok(())
    });
}

// ---- the vault file and its records ----

fn record(secret: &str) -> Record {
    Record {
        id: CredentialId::new("claude", "work").unwrap(),
        method: Method::SetupToken,
        secret: Secret::from(secret),
        meta: Metadata::new("stdin"),
    }
}

#[test]
fn vault_file_header_and_body() {
    let keys = MasterKey::from_bytes([7; 32]).subkeys();
    let header = format::Header::new(KdfParams::DEFAULT, [3; 16], &keys);
    let plain = codec::encode_set(&[record(&format!("sk-ant-oat01-{CANARY}"))]);
    let sealed = format::seal(&header, &plain[..], &keys).unwrap();
    let strat = prop_oneof![
        8 => damage(sealed.clone()),
        1 => prop::collection::vec(any::<u8>(), 0..160),
    ];
    fuzz("vault file", strat, |bytes| {
        match format::parse(&bytes) {
            Ok((h, body)) => match format::open(&h, body, &keys) {
                Ok(p) => {
                    // only the intact file opens, and to what was sealed
                    prop_assert_eq!(&bytes, &sealed);
                    prop_assert_eq!(&p[..], &plain[..]);
                }
                Err(e) => no_canary("vault file", &format!("{e:?}"))?,
            },
            Err(e) => no_canary("vault file", &format!("{e:?}"))?,
        }
        Ok(())
    });
}

#[test]
fn vault_records() {
    let one = serde_json::from_slice::<Value>(
        &codec::encode_record(&record(&format!("sk-ant-oat01-{CANARY}")))[..],
    )
    .unwrap();
    let set = serde_json::from_slice::<Value>(
        &codec::encode_set(&[record(&format!("sk-{CANARY}-a")), record("b")])[..],
    )
    .unwrap();
    let strat = prop::sample::select(vec![one, set]).prop_flat_map(mutated_json);
    fuzz("vault records", strat, |bytes| {
        match codec::decode_record(&bytes) {
            Ok(r) => prop_assert_eq!(
                codec::decode_record(&codec::encode_record(&r)[..]).unwrap(),
                r
            ),
            Err(e) => no_canary("vault record", &e.to_string())?,
        }
        match codec::decode_set(&bytes) {
            Ok(rs) => prop_assert_eq!(codec::decode_set(&codec::encode_set(&rs)[..]).unwrap(), rs),
            Err(e) => no_canary("vault record set", &e.to_string())?,
        }
        Ok(())
    });
}

// ---- configuration files ----

const PROJECT: &str = r#"agents = ["claude:work", "codex", "gemini"]
workdir = "/workspace"
aliases = true
require_auth = false
host_configs = true

[accounts]
claude = "work"
codex = "default"
"#;

const CONFIG: &str = r#"[vault]
backend = "file"
key_cache_seconds = 0

[status]
expiring_days = 30

[agents.claude]
account = "work"
secret_file = "/run/secrets/c"
method = "token"

[agents.custom.aider]
api_key_env = "OPENAI_API_KEY"
"#;

#[test]
fn project_file() {
    assert!(
        ProjectFile::parse(PROJECT).is_ok(),
        "{:?}",
        ProjectFile::parse(PROJECT)
    );
    fuzz(".airlock.toml", mutated_toml(PROJECT), |text| {
        match ProjectFile::parse(&text) {
            // the checks hold on what is accepted
            Ok(p) => prop_assert!(p.workdir.is_none_or(|w| w.starts_with('/'))),
            Err(e) => no_canary(".airlock.toml", &e)?,
        }
        Ok(())
    });
}

#[test]
fn config_file() {
    assert!(Config::parse(CONFIG).is_ok(), "{:?}", Config::parse(CONFIG));
    fuzz("config.toml", mutated_toml(CONFIG), |text| {
        if let Err(e) = Config::parse(&text) {
            no_canary("config.toml", &e)?;
        }
        Ok(())
    });
}

// ---- sync state files ----

#[test]
fn sync_status_and_registry_files() {
    let status = serde_json::to_value(airlock::sync::SyncStatus {
        direction: Some("to-truth".into()),
        last_rejected: Some("the file is empty".into()),
        ..Default::default()
    })
    .unwrap();
    let entry = serde_json::to_value(airlock::sync::SandboxEntry {
        sandbox: "sb1".into(),
        spec: airlock::sync::AccountSpec {
            agent: "claude".into(),
            account: "work".into(),
            truth: airlock::sync::Truth::HostFile {
                path: "/home/u/.claude/.credentials.json".into(),
            },
            shared_dir: "/run/airlock/sync/claude-work".into(),
            broker: false,
        },
        pid: Some(42),
        registered_at: "2026-11-22T10:00:00Z".parse().unwrap(),
    })
    .unwrap();
    let strat = prop::sample::select(vec![status, entry]).prop_flat_map(mutated_json);
    let dir = tempfile::tempdir().unwrap();
    let layout = airlock::sync::Layout {
        state: dir.path().join("state"),
        runtime: dir.path().join("run"),
    };
    fuzz("sync status/registry", strat, |bytes| {
        std::fs::create_dir_all(layout.accounts_dir()).unwrap();
        std::fs::write(layout.accounts_dir().join("claude-work.json"), &bytes).unwrap();
        let _ = airlock::sync::engine::read_status(&layout.accounts_dir(), "claude-work");
        let _ = serde_json::from_slice::<airlock::sync::registry::SandboxEntry>(&bytes);
        Ok(())
    });
}

/// The shared-directory reader: whatever a sandbox writes (sizes around the
/// cap included) is read back exactly or refused as too large, and what is
/// read parses (or not) without a panic.
#[test]
fn shared_dir_files() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(".credentials.json");
    let base = fixture_doc("claude/credentials-max.json");
    let strat = prop_oneof![
        8 => mutated_json(base),
        1 => (SHARED_MAX - 2..SHARED_MAX + 3).prop_map(|n| vec![b' '; n as usize]),
    ];
    fuzz("shared-dir reader", strat, |bytes| {
        std::fs::write(&file, &bytes).unwrap();
        match credential::read_shared(&file).unwrap() {
            Some(Ok(b)) => {
                prop_assert!(bytes.len() as u64 <= SHARED_MAX);
                prop_assert_eq!(&b[..], &bytes[..]);
                if let Err(r) = credential::parse(AgentKind::Claude, &b) {
                    no_canary("shared-dir reader", &r.to_string())?;
                }
            }
            Some(Err(r)) => {
                prop_assert!(bytes.len() as u64 > SHARED_MAX, "refused: {r}");
                prop_assert_eq!(r, credential::Rejection::TooLarge);
            }
            None => prop_assert!(false, "the file is there"),
        }
        Ok(())
    });
}

// ---- other tools' files (`airlock import`) ----

fn import_fixture(rel: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/import")
        .join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Scans `file` as `tool`'s, holding `bytes`: no panic, and a rejection
/// quotes no secret.
fn import_case(
    tool: airlock::import::Tool,
    dir: &Path,
    file: &Path,
    bytes: &[u8],
) -> Result<(), TestCaseError> {
    std::fs::write(file, bytes).unwrap();
    let config = Config::default();
    let scan = airlock::import::Scan {
        config: &config,
        env: airlock::agents::HostEnv {
            home: dir.to_path_buf(),
            vars: Default::default(),
        },
        from: Some(file.to_path_buf()),
        account: "default".into(),
        secrets_map: None,
        now: jiff::Timestamp::now(),
    };
    if let Err(e) = airlock::import::scan(tool, &scan) {
        no_canary(tool.name(), &e.to_string())?;
    }
    Ok(())
}

/// forage's token file and caw's manifest: JSON mutations of the fixtures.
#[test]
fn import_json_files() {
    use airlock::import::Tool;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("input.json");
    for (tool, rel) in [
        (Tool::Forage, "forage/valid/tokens/claude-oauth.json"),
        (Tool::Caw, "caw/manifest.json"),
    ] {
        let base: Value = serde_json::from_str(&import_fixture(rel)).unwrap();
        fuzz(
            &format!("import {}", tool.name()),
            mutated_json(base),
            |bytes| import_case(tool, dir.path(), &file, &bytes),
        );
    }
}

/// cloister's YAML config: line edits (a line removed, duplicated, a value
/// replaced by a canary or another type) and byte damage.
#[test]
fn import_cloister_yaml() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.yaml");
    let lines: Vec<String> = import_fixture("cloister/config.yaml")
        .lines()
        .map(str::to_owned)
        .collect();
    let n = lines.len();
    let values = prop_oneof![
        Just(format!("\"sk-ant-oat01-{CANARY}\"")),
        Just(format!("sk-ant-api03-{CANARY}")),
        Just(format!("[\"{CANARY}\"]")),
        Just("{ a: 1 }".to_string()),
        Just("~".to_string()),
        "[a-z_]{0,8}".prop_map(|s| s),
    ];
    let strat = prop_oneof![
        6 => (any::<Index>(), 0..4u8, values).prop_map(move |(i, op, val)| {
            let mut l = lines.clone();
            let i = i.index(n);
            match op {
                0 => {
                    l.remove(i);
                }
                1 => l.insert(i, l[i].clone()),
                2 => {
                    if let Some((k, _)) = l[i].split_once(':') {
                        l[i] = format!("{k}: {val}");
                    }
                }
                _ => l.insert(i, format!("    zz_unknown: {val}")),
            }
            l.join("\n").into_bytes()
        })
        .prop_flat_map(damage),
        1 => prop::collection::vec(any::<u8>(), 0..64),
    ];
    fuzz("import cloister", strat, |bytes| {
        import_case(airlock::import::Tool::Cloister, dir.path(), &file, &bytes)
    });
}

// ---- secret references, the proxy's grants, devcontainer.json ----

/// A secret reference (`file:`, `env:`, `cmd:`) as written in config.toml
/// or given to `airlock auth --ref`: arbitrary text, and text with a
/// credential pasted in by mistake. No panic; a refusal never quotes the
/// credential.
#[test]
fn secret_references() {
    let home = Path::new("/home/u");
    let word = prop_oneof![
        Just(format!("sk-ant-oat01-{CANARY}abcdefghijklmnop")),
        Just(format!("AIza{CANARY}abcdefghijklmnopqrstuvwxyz12")),
        Just(format!("sk-proj-{CANARY}ABCDEFGHIJKLMNOPQRSTU")),
        "[ -~]{0,12}",
    ];
    let strat = prop_oneof![
        3 => (
            prop_oneof![Just("file:"), Just("env:"), Just("cmd:"), Just(""), Just("FILE:")],
            prop::collection::vec(word, 0..4),
            prop_oneof![Just(" "), Just("'"), Just("\""), Just("/"), Just("~/")],
        )
            .prop_map(|(p, words, sep)| format!("{p}{}", words.join(sep))),
        1 => "\\PC{0,40}",
    ];
    fuzz("secret reference", strat, |text| {
        match airlock::secretref::Reference::parse(&text, home) {
            Ok(r) => {
                // a reference that parses is shown in status: never a credential
                let shown = r.to_string();
                let leaked = shown
                    .split(|c: char| !(c.is_ascii_alphanumeric() || "._+=-".contains(c)))
                    .any(|w| w.contains(CANARY) && airlock::secret::looks_like_secret(w));
                prop_assert!(
                    !leaked,
                    "accepted a reference holding a credential: {shown}"
                );
            }
            Err(e) => no_canary("secret reference", &e.to_string())?,
        }
        Ok(())
    });
}

/// The proxy's grants file (`<state>/proxy/grants.json`): JSON mutations of
/// a valid one and byte damage. No panic; a bad file is an error naming the
/// file, never a crash of the proxy.
#[test]
fn proxy_grants_file() {
    use airlock::proxy::registry::{self, Layout};
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout {
        dir: dir.path().join("proxy"),
    };
    layout.ensure().unwrap();
    let base = json!({"version": 1, "grants": [{
        "sandbox": "0123456789abcdef", "agent": "claude", "account": "default",
        "method": "setup-token", "placeholder_sha256": "ab".repeat(32),
        "truth": {"kind": "vault", "id": {"agent": "claude", "account": "default"}},
        "container": "c0ffee", "engine": "docker", "created": "2026-12-04T00:00:00Z"
    }]});
    fuzz("proxy grants", mutated_json(base), |bytes| {
        std::fs::write(layout.grants(), &bytes).unwrap();
        match registry::load(&layout) {
            Ok(grants) => {
                for g in &grants {
                    // a lookup by any placeholder is safe
                    let _ = registry::lookup(std::slice::from_ref(g), "sk-ant-oat01-x");
                }
            }
            Err(e) => no_canary("proxy grants", &e.to_string())?,
        }
        Ok(())
    });
}

/// A project's `devcontainer.json` (JSONC, the user's file that `airlock
/// devcontainer --write` merges into): mutations and byte damage. No panic;
/// a merge either succeeds with valid JSONC that keeps airlock's keys, or
/// stops with a usage error.
#[test]
fn devcontainer_json() {
    use airlock::cluster::devcontainer::{Fragment, merge};
    let base = json!({
        "name": "dev", "image": "img",
        "runArgs": ["--rm", "--network=none"],
        "containerEnv": {"A": "1"},
        "remoteEnv": {"B": "2"},
        "customizations": {"vscode": {"extensions": ["x"]}}
    });
    let frag = Fragment::new(
        &airlock::plan::SandboxPlan::default(),
        &["--mount".into(), "type=bind,src=/a,dst=/b".into()],
        vec!["true".into()],
    );
    let strat = prop_oneof![
        4 => mutated_json(base),
        1 => prop::collection::vec(any::<u8>(), 0..64),
        1 => Just(b"// a comment\n{ \"image\": \"img\", /* here */ }\n".to_vec()),
    ];
    fuzz("devcontainer.json", strat, |bytes| {
        let Ok(text) = String::from_utf8(bytes) else {
            return Ok(());
        };
        match merge(&text, &frag) {
            Ok(out) => {
                let again = merge(&out, &frag);
                prop_assert!(again.is_ok(), "the merged file merges again: {again:?}");
                prop_assert_eq!(again.unwrap(), out, "merging is idempotent");
            }
            Err(e) => no_canary("devcontainer.json", &e.to_string())?,
        }
        Ok(())
    });
}

/// The inputs fuzzing found that made an error message quote a secret
/// (fixed: TOML errors no longer quote values, and a name or work dir that
/// looks like a credential is not shown; a secret reference holding a
/// credential is refused without quoting it; the grants file's errors give
/// a line and column only).
#[test]
fn found_by_fuzzing() {
    let project = [
        "agents = \"sk-ant-x7Q2zV9\"\n",
        "workdir = \"sk-ant-x7Q2zV9\"\n",
        "[accounts]\nclaude = \"sk-ant-x7Q2zV9\"\n",
        "agents = [\"claude:sk-ant-x7Q2zV9\"]\n",
        "aliases = \"sk-ant-x7Q2zV9\"\n",
        "[accounts]\nclaude = \"{sk-ant-x7Q2zV9\"\n",
    ];
    for text in project {
        let e = ProjectFile::parse(text).unwrap_err();
        assert!(!e.contains(CANARY), "{text}: {e}");
    }
    for text in [
        "[vault]\nbackend = \"sk-ant-x7Q2zV9\"\n",
        "[status]\nexpiring_days = \"sk-ant-x7Q2zV9\"\n",
        "[agents.claude]\nmethod = \"sk-ant-x7Q2zV9\"\n",
    ] {
        let e = Config::parse(text).unwrap_err();
        assert!(!e.contains(CANARY), "{text}: {e}");
    }
    // secret references holding a credential were accepted (and shown by
    // `status`), or quoted in the refusal
    let home = Path::new("/home/u");
    for text in [
        "file:/sk-ant-oat01-x7Q2zV9abcdefghijklmnop/sk-ant-oat01-x7Q2zV9abcdefghijklmnop",
        "file:A/sk-ant-oat01-x7Q2zV9abcdefghijklmnop/sk-ant-oat01-x7Q2zV9abcdefghijklmnop",
        "cmd:/sk-ant-oat01-x7Q2zV9abcdefghijklmnop",
        "env:AIzax7Q2zV9abcdefghijklmnopqrstuvwxyz12",
        "cmd:%''sk-ant-oat01-x7Q2zV9abcdefghijklmnop",
    ] {
        let e = airlock::secretref::Reference::parse(text, home)
            .unwrap_err()
            .to_string();
        assert!(!e.contains(CANARY), "{text}: {e}");
    }
    // a damaged grants file's error quoted a value from it
    let dir = tempfile::tempdir().unwrap();
    let layout = airlock::proxy::registry::Layout {
        dir: dir.path().join("proxy"),
    };
    layout.ensure().unwrap();
    std::fs::write(layout.grants(), b"{\"version\":\"sk-x7Q2zV9-\"}").unwrap();
    let e = airlock::proxy::registry::load(&layout)
        .unwrap_err()
        .to_string();
    assert!(!e.contains(CANARY), "{e}");
}
