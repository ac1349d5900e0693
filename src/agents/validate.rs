//! Shared checks for credentials coming into airlock: token shapes, JSON
//! documents, and the files they are read from.
//!
//! Every function here returns [`Error::Invalid`] (exit code 7) with a
//! message that names the input and says what to do, and never quotes the
//! input itself: serde's messages can contain fragments of the document, so
//! only positions (line, column) are reported.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::secret::Secret;
use crate::vault::{Method, Record};

/// Files larger than this are not credentials.
pub const MAX_INPUT_BYTES: u64 = 1024 * 1024;

/// The longest single token airlock accepts.
pub const MAX_TOKEN_BYTES: usize = 8192;

/// A credential that passed validation, ready to be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validated {
    /// How it will be stored.
    pub method: Method,
    /// What goes into [`Record::secret`]: the trimmed token, or the whole
    /// JSON document (see `docs/agents.md` for each agent's payload).
    pub payload: Secret,
    /// When it stops working, when known. For sessions this is the access
    /// token's expiry (see [`Validated::refreshable`]).
    pub expires_at: Option<Timestamp>,
    /// Sessions only: whether a refresh token is present, so a lapsed access
    /// token can be renewed by the agent.
    pub refreshable: bool,
    /// Non-secret settings stored in [`crate::vault::Metadata::settings`].
    pub settings: BTreeMap<String, String>,
    /// Non-secret facts for display (a subscription type, an e-mail).
    pub detail: Option<String>,
    /// Problems that did not stop the capture (permissions, symlinks, …).
    pub warnings: Vec<String>,
}

impl Validated {
    /// A validated value with no expiry, settings or warnings.
    pub fn new(method: Method, payload: Secret) -> Self {
        Validated {
            method,
            payload,
            expires_at: None,
            refreshable: false,
            settings: BTreeMap::new(),
            detail: None,
            warnings: Vec::new(),
        }
    }

    /// Takes a session's facts (expiry, refresh token, detail, warnings).
    pub fn with_session(mut self, info: SessionInfo) -> Self {
        self.expires_at = info.expires_at;
        self.refreshable = info.refreshable;
        self.detail = info.detail;
        self.warnings = info.warnings;
        self
    }

    /// Puts `first` (warnings about where the value was read from) before
    /// the validation's own warnings.
    pub fn prepend_warnings(&mut self, mut first: Vec<String>) {
        first.append(&mut self.warnings);
        self.warnings = first;
    }

    /// The unsaved record for `id`, from `source` (see
    /// [`crate::vault::Metadata::source`]), created at `now`.
    pub fn into_record(
        self,
        id: crate::vault::CredentialId,
        source: String,
        now: Timestamp,
    ) -> Record {
        let mut meta = crate::vault::Metadata::new(source);
        meta.created_at = now;
        meta.updated_at = now;
        meta.expires_at = self.expires_at;
        meta.settings = self.settings;
        Record {
            id,
            method: self.method,
            secret: self.payload,
            meta,
        }
    }
}

/// Facts read from a stored session document.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionInfo {
    /// When the access token lapses, when the document says.
    pub expires_at: Option<Timestamp>,
    /// Whether the document holds a refresh token.
    pub refreshable: bool,
    /// Whether the agent's refresh tokens are single-use (Claude, Codex), so
    /// that copies of the session must not all refresh.
    pub rotates: bool,
    /// Non-secret facts for display (a subscription type, an e-mail).
    pub detail: Option<String>,
    /// Problems that do not make the document unusable.
    pub warnings: Vec<String>,
}

/// A login found on the host, validated into an unsaved record.
#[derive(Debug, Clone)]
pub struct HostLogin {
    /// The record that `airlock auth <agent> --from-host` would store.
    pub record: Record,
    /// Where it was found, for humans (a path, or a keychain item).
    pub location: String,
    /// When the host file was last modified, if known.
    pub modified: Option<Timestamp>,
    /// Whether a refresh token is present (sessions).
    pub refreshable: bool,
    /// Non-secret facts for display.
    pub detail: Option<String>,
    /// Problems that did not stop the read.
    pub warnings: Vec<String>,
}

impl HostLogin {
    /// Builds the host login from a validated payload read at `location`.
    pub fn from_validated(
        agent: &str,
        mut v: Validated,
        location: String,
        modified: Option<Timestamp>,
    ) -> Result<Self> {
        let id = crate::vault::CredentialId::new(agent, crate::vault::DEFAULT_ACCOUNT)?;
        let refreshable = v.refreshable;
        let detail = v.detail.clone();
        let warnings = std::mem::take(&mut v.warnings);
        let source = format!("host:{location}");
        Ok(HostLogin {
            record: v.into_record(id, source, Timestamp::now()),
            location,
            modified,
            refreshable,
            detail,
            warnings,
        })
    }
}

/// Builds the [`Error::Invalid`] for `what` (which names the input, e.g.
/// "the claude setup-token from stdin").
pub fn invalid(what: &str, problem: impl std::fmt::Display, fix: impl Into<String>) -> Error {
    Error::invalid(format!("{what} {problem}"), fix)
}

/// Checks that `value` (already trimmed) is one plausible token: non-empty,
/// one line, printable ASCII without spaces, not quoted, not a `NAME=value`
/// assignment, not a JSON document.
pub fn check_token_text(what: &str, value: &str, fix: &str) -> Result<()> {
    if value.is_empty() {
        return Err(invalid(what, "is empty", fix));
    }
    if value.len() > MAX_TOKEN_BYTES {
        return Err(invalid(
            what,
            format!("is {} bytes long, too long to be a token", value.len()),
            fix,
        ));
    }
    if value.starts_with('{') || value.starts_with('[') {
        return Err(invalid(
            what,
            "is a JSON document, not a token",
            "to store an agent's login file use --method session (or --from-host); otherwise give only the token",
        ));
    }
    let lines = value.lines().count();
    if lines > 1 {
        return Err(invalid(
            what,
            format!("spans {lines} lines, but a token is a single line"),
            "give only the token, without the surrounding text",
        ));
    }
    let quoted = |q: char| value.len() >= 2 && value.starts_with(q) && value.ends_with(q);
    if quoted('"') || quoted('\'') {
        return Err(invalid(
            what,
            "is wrapped in quotes",
            "remove the quotes and give only the token",
        ));
    }
    // The part before `=` is not echoed: in a token with `=` padding it
    // would be most of the secret.
    if shell_assignment(value) {
        return Err(invalid(
            what,
            "looks like a shell assignment (NAME=value)",
            "give only the value after the `=` (or name the variable with --from-env)",
        ));
    }
    if value.chars().any(char::is_whitespace) {
        return Err(invalid(
            what,
            "contains spaces",
            "a token has no spaces: copy it again, in one piece",
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid(
            what,
            "contains control characters",
            "copy the token again as plain text",
        ));
    }
    if !value.is_ascii() {
        return Err(invalid(
            what,
            "contains non-ASCII characters (a copy from a rich-text page can add them)",
            "copy the token again as plain text",
        ));
    }
    Ok(())
}

/// Names a token that belongs somewhere else, so the message can point the
/// user at the right agent or method: `(description, suggestion)`.
pub fn foreign_token(value: &str) -> Option<(&'static str, &'static str)> {
    const KNOWN: [(&str, &str, &str); 7] = [
        (
            "sk-ant-oat01-",
            "a Claude setup-token",
            "store it with `airlock auth claude --method token`",
        ),
        (
            "sk-ant-ort01-",
            "a Claude refresh token, which cannot be used on its own",
            "run `claude setup-token` and use the sk-ant-oat01-… token it prints",
        ),
        (
            "sk-ant-api03-",
            "an Anthropic API key",
            "store it with `airlock auth claude --method api-key`",
        ),
        (
            "sk-ant-",
            "an Anthropic credential",
            "store it with `airlock auth claude`",
        ),
        (
            "sk-",
            "an OpenAI API key",
            "store it with `airlock auth codex --method api-key`",
        ),
        (
            "AIza",
            "a Google (Gemini) API key",
            "store it with `airlock auth gemini --method api-key`",
        ),
        (
            "ya29.",
            "a short-lived Google access token",
            "log in with `gemini` on this machine, then run `airlock auth gemini --from-host`",
        ),
    ];
    KNOWN
        .iter()
        .find(|(p, _, _)| value.starts_with(p))
        .map(|(_, d, s)| (*d, *s))
}

/// Whether `value` looks like `NAME=…` or `export NAME=…` with an
/// environment-variable-like `NAME` (uppercase letters, digits, `_`).
fn shell_assignment(value: &str) -> bool {
    let (export, v) = match value.strip_prefix("export ") {
        Some(rest) => (true, rest.trim_start()),
        None => (false, value),
    };
    let Some((name, _)) = v.split_once('=') else {
        return false;
    };
    let upper = !name.is_empty()
        && name.starts_with(|c: char| c.is_ascii_uppercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    upper || (export && !name.is_empty())
}

/// Checks `value` against a token `prefix` and the characters tokens use
/// (`A-Z a-z 0-9 _ -`), after [`check_token_text`]. `min_len` catches
/// truncated pastes.
pub fn check_token_shape(
    what: &str,
    value: &str,
    prefix: &str,
    min_len: usize,
    fix: &str,
) -> Result<()> {
    check_token_text(what, value, fix)?;
    if !value.starts_with(prefix) {
        return Err(invalid(
            what,
            format!("does not start with {prefix}"),
            fix.to_owned(),
        ));
    }
    if let Some(bad) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        let shown = if bad.is_ascii_punctuation() {
            format!("{bad:?}")
        } else {
            "an unexpected character".into()
        };
        return Err(invalid(
            what,
            format!("contains {shown}, which never appears in {prefix}… tokens"),
            "copy the token again, in one piece",
        ));
    }
    if value.len() < min_len {
        return Err(invalid(
            what,
            format!(
                "is only {} characters long, so it looks truncated ({prefix}… tokens have at least {min_len})",
                value.len()
            ),
            "copy the whole token again",
        ));
    }
    Ok(())
}

/// Parses `text` as a JSON object. `fix` is the advice for an empty or
/// truncated document (usually: log in again).
pub fn parse_json_object(what: &str, text: &str, fix: &str) -> Result<Map<String, Value>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim().is_empty() {
        return Err(invalid(
            what,
            "is empty, which is what an interrupted login leaves behind",
            fix,
        ));
    }
    if text.chars().all(|c| c == '\0' || c.is_whitespace()) {
        return Err(invalid(
            what,
            "holds only NUL bytes, which is what a crash while writing leaves behind",
            fix,
        ));
    }
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(other) => Err(invalid(
            what,
            format!("is JSON but a {}, not an object", json_kind(&other)),
            fix,
        )),
        Err(e) if e.classify() == serde_json::error::Category::Eof => Err(invalid(
            what,
            format!(
                "is truncated: the JSON ends early (line {}, column {}), a known result of an interrupted login",
                e.line(),
                e.column()
            ),
            fix,
        )),
        Err(e) => Err(invalid(
            what,
            format!(
                "is not valid JSON (error at line {}, column {})",
                e.line(),
                e.column()
            ),
            fix,
        )),
    }
}

/// The error for a field of the wrong JSON type, such as "has a refresh
/// token that is a number, not a string" (`field` and `expected` carry
/// their articles).
pub fn wrong_type(what: &str, field: &str, found: &Value, expected: &str, fix: &str) -> Error {
    invalid(
        what,
        format!("has {field} that is a {}, not {expected}", json_kind(found)),
        fix,
    )
}

/// An optional string field: absent or `null` is `None`; any other type is
/// an error naming `field` (with its article).
pub fn optional_str<'a>(
    doc: &'a Map<String, Value>,
    key: &str,
    field: &str,
    what: &str,
    fix: &str,
) -> Result<Option<&'a str>> {
    match doc.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(wrong_type(what, field, other, "a string", fix)),
    }
}

/// An optional epoch-milliseconds field (`expiresAt`, `expiry_date`):
/// absent or `null` is `None`; a non-positive or non-numeric value is an
/// error.
pub fn millis_field(
    doc: &Map<String, Value>,
    key: &str,
    what: &str,
    fix: &str,
) -> Result<Option<Timestamp>> {
    match doc.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v @ Value::Number(_)) => match millis(v) {
            Some(t) if t.as_millisecond() > 0 => Ok(Some(t)),
            _ => Err(invalid(
                what,
                format!("has an {key} that is not a time in milliseconds since 1970"),
                fix,
            )),
        },
        Some(other) => Err(wrong_type(
            what,
            &format!("an {key}"),
            other,
            "a number of milliseconds",
            fix,
        )),
    }
}

/// "string", "number", … for messages.
pub fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Epoch milliseconds (integer or float) as a timestamp.
pub fn millis(v: &Value) -> Option<Timestamp> {
    let ms = v
        .as_i64()
        .or_else(|| v.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))?;
    Timestamp::from_millisecond(ms).ok()
}

/// A file read for capture, with the warnings its metadata raised.
#[derive(Debug)]
pub struct FileInput {
    /// The contents (UTF-8, not trimmed).
    pub text: Secret,
    /// When the file was last modified.
    pub modified: Option<Timestamp>,
    /// Permission and symlink warnings.
    pub warnings: Vec<String>,
}

/// Reads a credential file carefully: refuses directories, anything else
/// that is not a regular file (or a symbolic link to one), empty (0-byte),
/// oversized and non-UTF-8 files; warns about symlinks and permissions that
/// let other users read it. `empty_fix` says what to do about an empty file.
///
/// For files read on every use (a configured `secret_file`, the agents' own
/// login files), so it never blocks: a FIFO with no writer would hang, and
/// `/dev/zero` would never end. The type is checked with `stat`, the file
/// opened with `O_NONBLOCK` (opening a FIFO never waits) and checked again
/// with `fstat` on the opened descriptor, so swapping the path in between
/// changes nothing; at most [`MAX_INPUT_BYTES`] are read.
pub fn read_input_file(path: &Path, empty_fix: &str) -> Result<FileInput> {
    read_path(path, empty_fix, false)
}

/// Like [`read_input_file`], but pipes and character devices are read too,
/// up to [`MAX_INPUT_BYTES`]: for `airlock auth --from-file`, given once by
/// hand, where `<(sops -d …)` and `/dev/stdin` are pipes. A directory is
/// still refused, and `/dev/zero` stops at the size limit. A named pipe
/// (FIFO) is read like `cat` reads it: once something writes to it.
pub fn read_input_stream(path: &Path, empty_fix: &str) -> Result<FileInput> {
    read_path(path, empty_fix, true)
}

fn read_path(path: &Path, empty_fix: &str, streams: bool) -> Result<FileInput> {
    let what = format!("the file {}", path.display());
    let mut warnings = Vec::new();
    let lmd = std::fs::symlink_metadata(path).map_err(|e| file_error(&what, path, e))?;
    let md = std::fs::metadata(path).map_err(|e| file_error(&what, path, e))?;
    // `<(command)` is a symlink to a pipe: nothing to warn about there.
    if lmd.file_type().is_symlink() && md.is_file() {
        let target = std::fs::read_link(path)
            .map(|t| t.display().to_string())
            .unwrap_or_else(|_| "?".into());
        warnings.push(format!(
            "{} is a symbolic link (to {target}); airlock read the file it points to",
            path.display()
        ));
    }
    if md.is_dir() {
        return Err(invalid(
            &what,
            "is a directory",
            "give the path of the credential file itself",
        ));
    }
    if !streams && !md.is_file() {
        return Err(not_regular(&what, &md.file_type()));
    }
    if md.is_file() {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = md.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                let who = if mode & 0o004 != 0 {
                    "is readable by every user"
                } else {
                    "can be read by other users"
                };
                warnings.push(format!(
                    "{} {who} (mode {mode:04o}): run chmod 600 '{}'",
                    path.display(),
                    path.display()
                ));
            }
        }
        if md.len() == 0 {
            return Err(invalid(
                &what,
                "is empty (0 bytes), which is what an interrupted login leaves behind",
                empty_fix,
            ));
        }
        if md.len() > MAX_INPUT_BYTES {
            return Err(too_large(&what, md.len()));
        }
    }
    let modified = md.modified().ok().and_then(|t| Timestamp::try_from(t).ok());
    let file = if streams {
        std::fs::File::open(path).map_err(|e| file_error(&what, path, e))?
    } else {
        open_regular(path, &what)?
    };
    let text = read_limited(file, &what, empty_fix)?;
    Ok(FileInput {
        text,
        modified,
        warnings,
    })
}

/// Opens `path` for reading without ever blocking (`O_NONBLOCK`, which
/// regular files ignore; `O_NOCTTY`), and refuses it unless the opened
/// descriptor is a regular file of at most [`MAX_INPUT_BYTES`].
fn open_regular(path: &Path, what: &str) -> Result<std::fs::File> {
    let mut opts = std::fs::OpenOptions::new();
    opts.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY);
    }
    let file = opts.open(path).map_err(|e| file_error(what, path, e))?;
    let md = file.metadata().map_err(|e| file_error(what, path, e))?;
    if md.is_dir() {
        return Err(invalid(
            what,
            "is a directory",
            "give the path of the credential file itself",
        ));
    }
    if !md.is_file() {
        return Err(not_regular(what, &md.file_type()));
    }
    if md.len() > MAX_INPUT_BYTES {
        return Err(too_large(what, md.len()));
    }
    Ok(file)
}

fn too_large(what: &str, len: u64) -> Error {
    invalid(
        what,
        format!(
            "is {len} bytes, too large to be a credential (the limit is {MAX_INPUT_BYTES} bytes)"
        ),
        "check the path",
    )
}

/// The error for a FIFO, device or socket where a regular file must be.
fn not_regular(what: &str, ft: &std::fs::FileType) -> Error {
    let kind = {
        #[cfg(unix)]
        {
            use std::os::unix::fs::FileTypeExt;
            if ft.is_fifo() {
                "a named pipe (FIFO)"
            } else if ft.is_char_device() {
                "a character device"
            } else if ft.is_block_device() {
                "a block device"
            } else if ft.is_socket() {
                "a socket"
            } else {
                "an unusual kind of file"
            }
        }
        #[cfg(not(unix))]
        {
            let _ = ft;
            "not a regular file"
        }
    };
    invalid(
        what,
        format!(
            "is {kind}, not a regular file: airlock reads this file every time it is used, and a pipe or device could block it or never end"
        ),
        "point it at a regular file holding the credential (sops-nix, agenix and Docker secrets write one); to store a secret from a pipe once, use `airlock auth AGENT --from-file PATH`",
    )
}

/// Reads at most [`MAX_INPUT_BYTES`] from `r` as UTF-8 text.
pub fn read_limited(r: impl Read, what: &str, empty_fix: &str) -> Result<Secret> {
    let mut buf = zeroize::Zeroizing::new(Vec::new());
    r.take(MAX_INPUT_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|e| invalid(what, format!("could not be read ({e})"), "check the input"))?;
    if buf.len() as u64 > MAX_INPUT_BYTES {
        return Err(invalid(
            what,
            format!("is larger than {MAX_INPUT_BYTES} bytes, too large to be a credential"),
            "check the input",
        ));
    }
    if buf.is_empty() {
        return Err(invalid(what, "is empty", empty_fix));
    }
    Secret::from_utf8(std::mem::take(&mut *buf)).map_err(|_| {
        invalid(
            what,
            "is not UTF-8 text (a binary or differently encoded file?)",
            "give a plain-text token or the agent's JSON file",
        )
    })
}

fn file_error(what: &str, path: &Path, e: std::io::Error) -> Error {
    match e.kind() {
        std::io::ErrorKind::NotFound => invalid(what, "does not exist", "check the path"),
        std::io::ErrorKind::PermissionDenied => invalid(
            what,
            "cannot be read (permission denied)",
            format!("check the owner and permissions of {}", path.display()),
        ),
        _ => invalid(what, format!("cannot be read ({e})"), "check the path"),
    }
}

/// `path` with the home directory shown as `~`, for messages.
pub fn tilde(path: &Path, home: &Path) -> String {
    match path.strip_prefix(home) {
        Ok(rest) => format!("~/{}", rest.display()),
        Err(_) => path.display().to_string(),
    }
}

/// The first existing file among `candidates`.
pub fn first_existing(candidates: &[PathBuf]) -> Option<PathBuf> {
    candidates
        .iter()
        .find(|p| std::fs::symlink_metadata(p).is_ok())
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `f` on another thread and fails (instead of hanging) if it
    /// takes more than five seconds.
    fn promptly<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(std::time::Duration::from_secs(5))
            .expect("reading the file blocked")
    }

    fn message(r: Result<FileInput>) -> String {
        match r {
            Ok(_) => panic!("read"),
            Err(e) => {
                assert_eq!(e.exit_code(), crate::error::ExitCode::Invalid, "{e}");
                e.to_string()
            }
        }
    }

    #[cfg(unix)]
    #[test]
    fn files_read_on_every_use_must_be_regular_files() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        // A FIFO with no writer: refused at once, not waited on.
        let f = fifo.clone();
        let e = message(promptly(move || read_input_file(&f, "x")));
        assert!(
            e.contains("is a named pipe (FIFO), not a regular file"),
            "{e}"
        );
        // Also through a symbolic link.
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&fifo, &link).unwrap();
        let e = message(promptly(move || read_input_file(&link, "x")));
        assert!(e.contains("named pipe"), "{e}");
        // Devices that never end.
        for dev in ["/dev/zero", "/dev/urandom"] {
            let e = message(promptly(move || read_input_file(Path::new(dev), "x")));
            assert!(e.contains("is a character device"), "{e}");
        }
        let e = message(read_input_file(dir.path(), "x"));
        assert!(e.contains("is a directory"), "{e}");
        // A regular file, and a symbolic link to one, are read.
        let file = dir.path().join("token");
        std::fs::write(&file, "abc").unwrap();
        let link = dir.path().join("token-link");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert_eq!(read_input_file(&file, "x").unwrap().text.expose(), "abc");
        let f = read_input_file(&link, "x").unwrap();
        assert_eq!(f.text.expose(), "abc");
        assert!(f.warnings.iter().any(|w| w.contains("symbolic link")));
        // Too large.
        std::fs::write(&file, vec![b'a'; MAX_INPUT_BYTES as usize + 1]).unwrap();
        let e = message(read_input_file(&file, "x"));
        assert!(e.contains("too large to be a credential"), "{e}");
    }

    #[cfg(unix)]
    #[test]
    fn opening_checks_the_descriptor_not_the_path() {
        // What `open_regular` sees after the path was swapped: a FIFO is
        // refused without blocking, a device too.
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = promptly(move || open_regular(&fifo, "the file f").map(|_| ()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("named pipe"), "{e}");
        let e = open_regular(Path::new("/dev/zero"), "the file f")
            .unwrap_err()
            .to_string();
        assert!(e.contains("character device"), "{e}");
    }

    #[cfg(unix)]
    #[test]
    fn streams_are_read_up_to_the_limit() {
        // `--from-file /dev/zero` stops at the limit.
        let e = message(promptly(|| read_input_stream(Path::new("/dev/zero"), "x")));
        assert!(e.contains("too large to be a credential"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let e = message(read_input_stream(dir.path(), "x"));
        assert!(e.contains("is a directory"), "{e}");
        // A pipe with a writer is read.
        let (r, mut w) = std::io::pipe().unwrap();
        use std::io::Write;
        w.write_all(b"abc").unwrap();
        drop(w);
        use std::os::fd::AsRawFd;
        let path = PathBuf::from(format!("/proc/self/fd/{}", r.as_raw_fd()));
        assert_eq!(read_input_stream(&path, "x").unwrap().text.expose(), "abc");
        drop(r);
    }

    fn msg(r: Result<impl std::fmt::Debug>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn token_text_checks() {
        let w = "the token";
        assert!(msg(check_token_text(w, "", "f")).contains("is empty"));
        assert!(msg(check_token_text(w, "a\nb", "f")).contains("2 lines"));
        assert!(msg(check_token_text(w, "\"abc\"", "f")).contains("quotes"));
        assert!(msg(check_token_text(w, "export X_Y=abc", "f")).contains("shell assignment"));
        assert!(
            msg(check_token_text(w, "OPENAI_API_KEY=sk-abc", "f")).contains("shell assignment")
        );
        // Base64 padding is not an assignment, and the token is never echoed.
        let e = msg(check_token_shape(w, "AIzaSECRETabc=", "AIza", 5, "f"));
        assert!(e.contains("'='"), "{e}");
        assert!(!e.contains("SECRET"), "{e}");
        assert!(msg(check_token_text(w, "ab c", "f")).contains("spaces"));
        assert!(msg(check_token_text(w, "ab\u{7}c", "f")).contains("control"));
        assert!(msg(check_token_text(w, "abé", "f")).contains("non-ASCII"));
        assert!(msg(check_token_text(w, "{\"a\":1}", "f")).contains("JSON"));
        assert!(check_token_text(w, "sk-ant-oat01-abc", "f").is_ok());
    }

    #[test]
    fn json_errors_never_quote_input() {
        let e = msg(parse_json_object(
            "the file",
            "{\"secretvalue\": tru",
            "relogin",
        ));
        assert!(e.contains("truncated"), "{e}");
        assert!(!e.contains("secretvalue"), "{e}");
        let e = msg(parse_json_object("the file", "{\"secretvalue\" 1}", "x"));
        assert!(e.contains("not valid JSON"), "{e}");
        assert!(!e.contains("secretvalue"));
        assert!(msg(parse_json_object("f", "[1]", "x")).contains("array"));
        assert!(msg(parse_json_object("f", "\0\0\0", "x")).contains("NUL"));
        assert!(parse_json_object("f", "\u{feff}{}", "x").is_ok());
    }

    #[test]
    fn millis_accepts_integers_and_floats() {
        assert_eq!(
            millis(&serde_json::json!(1_795_267_240_000i64))
                .unwrap()
                .as_second(),
            1_795_267_240
        );
        assert!(millis(&serde_json::json!(1.7e12)).is_some());
        assert!(millis(&serde_json::json!("x")).is_none());
    }
}
