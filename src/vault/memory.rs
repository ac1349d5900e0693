//! An in-memory backend for tests and examples.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::{Backend, BackendKind, CredentialId, Record};
use crate::error::Result;

/// Records kept in a map; gone when dropped.
#[derive(Debug, Default)]
pub struct MemoryBackend {
    records: Mutex<BTreeMap<CredentialId, Record>>,
}

impl MemoryBackend {
    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<CredentialId, Record>> {
        // A panic while holding the lock cannot leave a half-written map:
        // every operation below is a single insert or remove.
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Backend for MemoryBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Memory
    }
    fn location(&self) -> String {
        "memory".into()
    }
    fn get(&self, id: &CredentialId) -> Result<Option<Record>> {
        Ok(self.map().get(id).cloned())
    }
    fn put(&self, record: Record) -> Result<()> {
        self.map().insert(record.id.clone(), record);
        Ok(())
    }
    fn remove(&self, id: &CredentialId) -> Result<bool> {
        Ok(self.map().remove(id).is_some())
    }
    fn list(&self) -> Result<Vec<Record>> {
        Ok(self.map().values().cloned().collect())
    }
    fn update(
        &self,
        id: &CredentialId,
        f: &mut dyn FnMut(Option<Record>) -> Result<Option<Record>>,
    ) -> Result<()> {
        let mut m = self.map();
        match f(m.get(id).cloned())? {
            Some(r) => {
                m.insert(id.clone(), r);
            }
            None => {
                m.remove(id);
            }
        }
        Ok(())
    }
    fn persistent(&self) -> bool {
        false
    }
}
