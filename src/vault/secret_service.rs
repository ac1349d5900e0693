//! Linux Secret Service backend (GNOME Keyring, KWallet, KeePassXC, …).
//!
//! Talks D-Bus in pure Rust (the `secret-service` crate over `zbus`; no
//! libdbus). Each record is one item in the user's default collection
//! (normally the "login" keyring):
//!
//! | property | value |
//! |---|---|
//! | label | `airlock: claude (work)` |
//! | attributes | `application=airlock`, `airlock-agent=claude`, `airlock-account=work` |
//! | secret | the record as [`codec::encode_record`] JSON, content type `application/json` |
//!
//! One item per record makes concurrent writers of different accounts
//! independent, and listing is a search on `application=airlock`: there is
//! no index to keep in step. Items of other applications are never touched.
//!
//! A locked collection is unlocked when the service can do so without asking
//! the user; when it would need a password prompt, the prompt is dismissed
//! and the operation fails with [`Error::Backend`] saying how to unlock it.
//!
//! Inspect what airlock stored with `secret-tool search --all application airlock`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use secret_service::EncryptionType;
use secret_service::blocking::{Item, SecretService};
use zbus::zvariant::OwnedObjectPath;

use super::{Backend, BackendKind, CredentialId, Record, SecretBytes, codec, validate_name};
use crate::error::{Error, Result};
use crate::fsutil::{self, FileLock};
use crate::paths::Paths;

/// The well-known bus name of a Secret Service.
const SERVICE_NAME: &str = "org.freedesktop.secrets";
const SERVICE_PATH: &str = "/org/freedesktop/secrets";
const SERVICE_IFACE: &str = "org.freedesktop.Secret.Service";
const PROMPT_IFACE: &str = "org.freedesktop.Secret.Prompt";

/// Attribute naming the owning application; every airlock item has `airlock`.
pub const ATTR_APPLICATION: &str = "application";
/// Attribute holding the agent name.
pub const ATTR_AGENT: &str = "airlock-agent";
/// Attribute holding the account name.
pub const ATTR_ACCOUNT: &str = "airlock-account";
/// The value of [`ATTR_APPLICATION`] on airlock's items.
pub const APPLICATION: &str = "airlock";

/// How long [`probe`] waits for the session bus to answer.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(300);

/// How long one D-Bus call may take before the operation fails.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

const NAME: &str = "secret-service";

/// Checks quickly whether a Secret Service is running on the session bus;
/// `Err` says why not. Used for automatic backend selection at every start,
/// so it never waits longer than [`PROBE_TIMEOUT`] and never starts
/// (D-Bus-activates) a keyring daemon: a daemon started that way on a
/// headless host would have no unlocked keyring to store into.
pub fn probe() -> std::result::Result<(), String> {
    let explicit = std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some_and(|v| !v.is_empty());
    let default_bus = std::env::var_os("XDG_RUNTIME_DIR")
        .map(|d| Path::new(&d).join("bus"))
        .is_some_and(|p| p.exists());
    if !explicit && !default_bus {
        return Err("no D-Bus session bus: DBUS_SESSION_BUS_ADDRESS is not set".into());
    }
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    // A bus that accepts the connection but never answers must not hang
    // airlock: the check runs on its own thread and is abandoned on timeout.
    let spawned = std::thread::Builder::new()
        .name("airlock-probe-dbus".into())
        .spawn(move || {
            let _ = tx.send(name_has_owner());
        });
    if let Err(e) = spawned {
        return Err(format!("could not start the D-Bus check: {e}"));
    }
    match rx.recv_timeout(PROBE_TIMEOUT) {
        Ok(r) => r,
        Err(_) => Err(format!(
            "the D-Bus session bus did not answer within {} ms",
            PROBE_TIMEOUT.as_millis()
        )),
    }
}

fn name_has_owner() -> std::result::Result<(), String> {
    let conn = zbus::blocking::connection::Builder::session()
        .and_then(|b| b.method_timeout(PROBE_TIMEOUT).build())
        .map_err(|e| format!("cannot connect to the D-Bus session bus: {e}"))?;
    let dbus = zbus::blocking::fdo::DBusProxy::new(&conn)
        .map_err(|e| format!("the D-Bus session bus misbehaves: {e}"))?;
    let name =
        zbus::names::BusName::try_from(SERVICE_NAME).map_err(|e| format!("internal error: {e}"))?;
    match dbus.name_has_owner(name) {
        Ok(true) => Ok(()),
        Ok(false) => Err(format!(
            "no Secret Service is running on the session bus ({SERVICE_NAME} has no owner)"
        )),
        Err(e) => Err(format!("the D-Bus session bus did not answer: {e}")),
    }
}

/// Records stored as Secret Service items, one item per record.
pub struct SecretServiceBackend {
    ss: Mutex<SecretService<'static>>,
    conn: zbus::blocking::Connection,
    lock_dir: Option<PathBuf>,
}

impl std::fmt::Debug for SecretServiceBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretServiceBackend")
            .field("lock_dir", &self.lock_dir)
            .finish_non_exhaustive()
    }
}

impl SecretServiceBackend {
    /// Connects to the Secret Service on the session bus. Writes (`put`,
    /// `remove`, `update`) are serialized across processes with a lock file in airlock's
    /// runtime directory.
    pub fn connect() -> Result<Self> {
        let lock_dir = Paths::from_env().ok().map(|p| p.runtime_dir);
        Self::connect_with_lock_dir(lock_dir)
    }

    /// Like [`connect`](Self::connect), with the directory that holds the
    /// write lock (`None`: no locking, so concurrent `update`s of one record
    /// may lose changes).
    pub fn connect_with_lock_dir(lock_dir: Option<PathBuf>) -> Result<Self> {
        let conn = zbus::blocking::connection::Builder::session()
            .and_then(|b| b.method_timeout(CALL_TIMEOUT).build())
            .map_err(|e| {
                backend_error(
                    format!("cannot connect to the D-Bus session bus: {e}"),
                    "start a desktop session (or `dbus-run-session`), or set AIRLOCK_KEYRING_BACKEND=file",
                )
            })?;
        let ss = SecretService::connect_with_existing(EncryptionType::Dh, conn.clone()).map_err(
            |e| {
                backend_error(
                    format!("no Secret Service answered on the session bus: {e}"),
                    "start gnome-keyring-daemon or KWallet, or set AIRLOCK_KEYRING_BACKEND=file",
                )
            },
        )?;
        Ok(SecretServiceBackend {
            ss: Mutex::new(ss),
            conn,
            lock_dir,
        })
    }

    fn service(&self) -> MutexGuard<'_, SecretService<'static>> {
        // The guarded value is a connection handle: a panic elsewhere cannot
        // leave it half-updated.
        self.ss.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Unlocks `paths` if the service can do it without a prompt.
    fn unlock(&self, paths: Vec<OwnedObjectPath>) -> Result<()> {
        if paths.is_empty() {
            return Ok(());
        }
        let reply = self
            .conn
            .call_method(
                Some(SERVICE_NAME),
                SERVICE_PATH,
                Some(SERVICE_IFACE),
                "Unlock",
                &(paths,),
            )
            .map_err(|e| ss_error("unlock the keyring", e))?;
        let (_unlocked, prompt): (Vec<OwnedObjectPath>, OwnedObjectPath) =
            reply.body().deserialize().map_err(|e| {
                backend_error(
                    format!("the Secret Service sent an unexpected Unlock reply: {e}"),
                    "set AIRLOCK_KEYRING_BACKEND=file",
                )
            })?;
        if prompt.as_str() == "/" {
            return Ok(());
        }
        // A password prompt would be needed: do not leave it waiting.
        let _ = self.conn.call_method(
            Some(SERVICE_NAME),
            prompt.as_str(),
            Some(PROMPT_IFACE),
            "Dismiss",
            &(),
        );
        Err(backend_error(
            "the keyring holding airlock's items is locked and unlocking it needs your password",
            "unlock it (log in to the desktop, or open \"Passwords and Keys\", or run `gnome-keyring-daemon --unlock` and type the password), or set AIRLOCK_KEYRING_BACKEND=file",
        ))
    }

    /// Items matching `attrs`, unlocked.
    fn find<'s>(
        &self,
        ss: &'s SecretService<'static>,
        attrs: HashMap<&str, &str>,
    ) -> Result<Vec<Item<'s>>> {
        let found = ss
            .search_items(attrs)
            .map_err(|e| ss_error("search the keyring", e))?;
        let locked: Vec<OwnedObjectPath> =
            found.locked.iter().map(|i| i.item_path.clone()).collect();
        self.unlock(locked)?;
        let mut items = found.unlocked;
        items.extend(found.locked);
        Ok(items)
    }

    /// Reads and decodes one item; checks it really is the record its
    /// attributes say.
    fn read(&self, item: &Item<'_>, expect: Option<&CredentialId>) -> Result<Record> {
        let bytes = SecretBytes::new(
            item.get_secret()
                .map_err(|e| ss_error("read an item from the keyring", e))?,
        );
        let corrupt = |detail: String| Error::Corrupt {
            path: PathBuf::from(format!("Secret Service item {}", item.item_path.as_str())),
            detail,
        };
        let record = codec::decode_record(&bytes).map_err(|e| corrupt(e.to_string()))?;
        if let Some(id) = expect
            && record.id != *id
        {
            return Err(corrupt(format!(
                "its attributes say {id} but it holds {}",
                record.id
            )));
        }
        Ok(record)
    }

    fn put_unlocked(&self, record: Record) -> Result<()> {
        // The fields are public: re-check what becomes attribute values.
        validate_name("agent", &record.id.agent)?;
        validate_name("account", &record.id.account)?;
        let ss = self.service();
        let collection = ss.get_default_collection().map_err(|e| {
            backend_error(
                format!("there is no default keyring to store into: {e}"),
                "create a login keyring (\"Passwords and Keys\", or `gnome-keyring-daemon --unlock` on a headless host), or set AIRLOCK_KEYRING_BACKEND=file",
            )
        })?;
        if collection
            .is_locked()
            .map_err(|e| ss_error("inspect the default keyring", e))?
        {
            self.unlock(vec![collection.collection_path.clone()])?;
        }
        let bytes = codec::encode_record(&record);
        collection
            .create_item(
                &label(&record.id),
                id_attrs(&record.id),
                &bytes,
                true,
                "application/json",
            )
            .map_err(|e| ss_error("store an item in the keyring", e))?;
        Ok(())
    }

    fn remove_unlocked(&self, id: &CredentialId) -> Result<bool> {
        let ss = self.service();
        let items = self.find(&ss, id_attrs(id))?;
        for item in &items {
            item.delete()
                .map_err(|e| ss_error("delete an item from the keyring", e))?;
        }
        Ok(!items.is_empty())
    }

    /// Serializes writers across processes (see [`Backend::update`]).
    fn write_lock(&self) -> Result<Option<FileLock>> {
        let Some(dir) = &self.lock_dir else {
            return Ok(None);
        };
        fsutil::ensure_private_dir(dir)?;
        FileLock::exclusive(&dir.join("secret-service.lock")).map(Some)
    }
}

/// An item of another application, read for `airlock import`.
#[derive(Debug)]
pub struct ForeignItem {
    /// The item's D-Bus object path (its collection is the path's parent).
    pub path: String,
    /// Its attributes.
    pub attributes: HashMap<String, String>,
    /// Its secret.
    pub secret: SecretBytes,
}

impl SecretServiceBackend {
    /// The items of any collection whose attributes include `attrs`: another
    /// application's items, read only (nothing is created, changed or
    /// deleted), for `airlock import`.
    pub fn read_foreign(&self, attrs: HashMap<&str, &str>) -> Result<Vec<ForeignItem>> {
        let ss = self.service();
        let mut out = Vec::new();
        for item in self.find(&ss, attrs)? {
            let attributes = item
                .get_attributes()
                .map_err(|e| ss_error("read item attributes", e))?;
            let secret = SecretBytes::new(
                item.get_secret()
                    .map_err(|e| ss_error("read an item from the keyring", e))?,
            );
            out.push(ForeignItem {
                path: item.item_path.as_str().to_owned(),
                attributes,
                secret,
            });
        }
        Ok(out)
    }
}

fn backend_error(detail: impl Into<String>, fix: impl Into<String>) -> Error {
    Error::Backend {
        backend: NAME.into(),
        detail: detail.into(),
        fix: fix.into(),
    }
}

fn ss_error(what: &str, e: impl std::fmt::Display) -> Error {
    backend_error(
        format!("could not {what}: {e}"),
        "check that the keyring daemon is running and unlocked (`secret-tool search --all application airlock`), or set AIRLOCK_KEYRING_BACKEND=file",
    )
}

fn id_attrs(id: &CredentialId) -> HashMap<&str, &str> {
    HashMap::from([
        (ATTR_APPLICATION, APPLICATION),
        (ATTR_AGENT, id.agent.as_str()),
        (ATTR_ACCOUNT, id.account.as_str()),
    ])
}

/// The label shown in keyring managers: `airlock: claude (work)`.
pub fn label(id: &CredentialId) -> String {
    format!("airlock: {} ({})", id.agent, id.account)
}

impl Backend for SecretServiceBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::SecretService
    }

    fn location(&self) -> String {
        "Secret Service on the D-Bus session bus (default collection), items with application=airlock"
            .into()
    }

    fn get(&self, id: &CredentialId) -> Result<Option<Record>> {
        let ss = self.service();
        let items = self.find(&ss, id_attrs(id))?;
        // `put` replaces in place, so there is one item; should a user have
        // copied one into another collection, the newest wins.
        let newest = items.iter().max_by_key(|i| i.get_modified().unwrap_or(0));
        match newest {
            Some(item) => self.read(item, Some(id)).map(Some),
            None => Ok(None),
        }
    }

    fn put(&self, record: Record) -> Result<()> {
        let _guard = self.write_lock()?;
        self.put_unlocked(record)
    }

    fn remove(&self, id: &CredentialId) -> Result<bool> {
        let _guard = self.write_lock()?;
        self.remove_unlocked(id)
    }

    fn list(&self) -> Result<Vec<Record>> {
        let ss = self.service();
        let items = self.find(&ss, HashMap::from([(ATTR_APPLICATION, APPLICATION)]))?;
        let mut newest: std::collections::BTreeMap<CredentialId, (u64, Record)> =
            Default::default();
        for item in &items {
            let attrs = item
                .get_attributes()
                .map_err(|e| ss_error("read item attributes", e))?;
            let (Some(agent), Some(account)) = (attrs.get(ATTR_AGENT), attrs.get(ATTR_ACCOUNT))
            else {
                // `application=airlock` alone: not one of ours (another
                // program that happens to use the same attribute value).
                continue;
            };
            let Ok(id) = CredentialId::new(agent, account) else {
                continue;
            };
            let record = self.read(item, Some(&id))?;
            let modified = item.get_modified().unwrap_or(0);
            if newest.get(&id).is_none_or(|(m, _)| modified >= *m) {
                newest.insert(id, (modified, record));
            }
        }
        Ok(newest.into_values().map(|(_, r)| r).collect())
    }

    fn update(
        &self,
        id: &CredentialId,
        f: &mut dyn FnMut(Option<Record>) -> Result<Option<Record>>,
    ) -> Result<()> {
        let _guard = self.write_lock()?;
        let current = self.get(id)?;
        match f(current)? {
            Some(r) => {
                if r.id != *id {
                    return Err(Error::Other(format!(
                        "internal error: an update of {id} returned a record for {}",
                        r.id
                    )));
                }
                self.put_unlocked(r)
            }
            None => self.remove_unlocked(id).map(|_| ()),
        }
    }
}
