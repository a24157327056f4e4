//! The live MQTT connections of each device through the broker's front, so that rotating a
//! device's password or retiring it closes the connections it has open.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use shiki_proto::DeviceId;
use tokio::sync::oneshot;

/// A connection's id and what closes it.
type Closer = (u64, oneshot::Sender<()>);

/// Live connections by device.
#[derive(Debug, Default)]
pub struct DeviceSessions {
    live: Mutex<HashMap<DeviceId, Vec<Closer>>>,
    next: AtomicU64,
}

/// One live connection; it leaves [`DeviceSessions`] when dropped.
#[derive(Debug)]
pub struct Session<'a> {
    sessions: &'a DeviceSessions,
    device: DeviceId,
    id: u64,
}

impl DeviceSessions {
    /// Records a connection of `device`; the receiver fires when [`DeviceSessions::close`]
    /// is called for it.
    pub fn open(&self, device: &DeviceId) -> (Session<'_>, oneshot::Receiver<()>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(device.clone())
            .or_default()
            .push((id, tx));
        let session = Session {
            sessions: self,
            device: device.clone(),
            id,
        };
        (session, rx)
    }

    /// Closes every live connection of `device`; returns how many there were.
    pub fn close(&self, device: &DeviceId) -> usize {
        let closed = self
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(device)
            .unwrap_or_default();
        let n = closed.len();
        for (_, tx) in closed {
            let _ = tx.send(());
        }
        n
    }

    /// Devices with at least one live connection.
    pub fn connected(&self) -> usize {
        self.live.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        let mut live = self.sessions.live.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(list) = live.get_mut(&self.device) {
            list.retain(|(id, _)| *id != self.id);
            if list.is_empty() {
                live.remove(&self.device);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closing_a_device_fires_each_of_its_connections_and_dropping_forgets_them() {
        let s = DeviceSessions::default();
        let (a, b) = (
            DeviceId::new("a").expect("id"),
            DeviceId::new("b").expect("id"),
        );
        let (first, mut first_rx) = s.open(&a);
        let (_second, mut second_rx) = s.open(&a);
        let (_other, mut other_rx) = s.open(&b);
        assert_eq!(s.connected(), 2);
        drop(first);
        assert!(first_rx.try_recv().is_err());
        assert_eq!(s.close(&a), 1);
        assert_eq!(second_rx.try_recv(), Ok(()));
        assert!(other_rx.try_recv().is_err());
        assert_eq!(s.connected(), 1);
    }
}
