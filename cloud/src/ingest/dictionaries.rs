//! The point dictionaries of compact telemetry (protocol version 2), per device.
//!
//! An edge sends its dictionary's names in the first compact batch of each connection, in
//! every backlog batch and at least hourly; other batches name it by id. The ingest keeps
//! what it learned (from those batches and from each device's `catalog`, whose point order
//! is the edge's dictionary) and, for an id it has not seen (after a restart), looks at the
//! device's stored catalog.

use std::collections::HashMap;
use std::sync::Mutex;

use shiki_proto::{DeviceId, PointDictionary};

use crate::store::Store;

/// Dictionaries kept per device (the catalog's and a few batch-local ones).
const PER_DEVICE: usize = 4;

/// Distinct dictionaries shared between devices (a fleet has a few point lists; past this
/// many, further ones are kept per device only).
const SHARED: usize = 10_000;

#[derive(Debug, Default)]
pub(super) struct Dictionaries {
    by_device: Mutex<HashMap<DeviceId, Vec<PointDictionary>>>,
    /// One copy of each point list, by id, for the devices that use it. A device's own
    /// list is used instead when its names differ under the same id (an id is a 64-bit
    /// hash a device could collide on purpose: it must never change another's names).
    shared: Mutex<HashMap<String, PointDictionary>>,
}

impl Dictionaries {
    /// The shared copy of `dict` when one with the same names exists (or is added now).
    fn interned(&self, dict: PointDictionary) -> PointDictionary {
        let mut shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        match shared.get(dict.id()) {
            Some(d) if d.names() == dict.names() => d.clone(),
            Some(_) => dict,
            None if shared.len() < SHARED => {
                shared.insert(dict.id().to_owned(), dict.clone());
                dict
            }
            None => dict,
        }
    }

    /// Remembers `dict` for `device` (most recent first, at most [`PER_DEVICE`]).
    pub(super) fn learn(&self, device: &DeviceId, dict: PointDictionary) {
        let dict = self.interned(dict);
        let mut map = self.by_device.lock().unwrap_or_else(|e| e.into_inner());
        let list = map.entry(device.clone()).or_default();
        list.retain(|d| d.id() != dict.id());
        list.insert(0, dict);
        list.truncate(PER_DEVICE);
    }

    /// The dictionary `id` of `device`: one learned, or the device's stored catalog's.
    pub(super) fn find(
        &self,
        store: &std::sync::Arc<dyn Store>,
        device: &DeviceId,
        id: &str,
    ) -> Option<PointDictionary> {
        {
            let map = self.by_device.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(d) = map
                .get(device)
                .and_then(|l| l.iter().find(|d| d.id() == id))
            {
                return Some(d.clone());
            }
        }
        let catalog = match store.device(device) {
            Ok(snapshot) => snapshot?.catalog?,
            Err(error) => {
                tracing::warn!(device_id = %device, %error, "cannot read the stored catalog for a point dictionary");
                return None;
            }
        };
        let dict = PointDictionary::from_catalog(&catalog);
        if dict.id() != id {
            return None;
        }
        self.learn(device, dict.clone());
        Some(dict)
    }
}
