//! Connections counted per address: a place in an address's count, given back when dropped.
//! What keeps one host from taking every slot (the p2p listener's handshakes, the node's HTTP
//! servers).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::sync::lock;

/// Open connections per address (the host part of the remote socket address).
pub type AddressCounts = Arc<Mutex<BTreeMap<String, usize>>>;

/// The host part of "ip:port" (or of "[v6]:port").
pub fn host_of(remote: &str) -> &str {
    remote.rsplit_once(':').map_or(remote, |(host, _)| host)
}

/// One connection's place in its address's count.
pub struct AddressSlot {
    counts: AddressCounts,
    address: String,
}

impl AddressSlot {
    /// A place for a connection from `remote` ("ip:port"), if its address holds fewer than
    /// `limit`.
    pub fn take(counts: &AddressCounts, remote: &str, limit: usize) -> Option<AddressSlot> {
        let address = host_of(remote).to_string();
        let mut map = lock(counts);
        let n = map.entry(address.clone()).or_default();
        if *n >= limit {
            return None;
        }
        *n += 1;
        Some(AddressSlot {
            counts: counts.clone(),
            address,
        })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut map = lock(&self.counts);
        if let Some(n) = map.get_mut(&self.address) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.address);
            }
        }
    }
}
