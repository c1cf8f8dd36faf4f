//! The faults scenarios drive on a cluster: crashes (clean, power loss, torn), clock jumps,
//! failing and lying disks, wiped disks, restarts, and peers that serve lies.

use std::sync::atomic::Ordering;
use std::time::Duration;

use canon_engine::storage::Column;
use rand::Rng;

use super::SimCluster;
use crate::lying_peer::ServingLie;

impl SimCluster {
    /// Crashes node `i`: its tasks die and its disk keeps synced data plus a random prefix of
    /// what was buffered. Half the crashes are power losses: the host's connections vanish
    /// without a word and its peers stay half-open until they give up on them or it comes back.
    pub fn crash(&mut self, i: usize) {
        if !self.is_up(i) {
            return;
        }
        let power_loss = self.rng.gen_bool(0.5);
        let pending = self.slots[i].disk.pending_batches();
        let keep = if pending == 0 {
            0
        } else {
            self.rng.gen_range(0..=pending)
        };
        self.crash_keeping(i, power_loss, keep);
    }

    /// [`SimCluster::crash`] with its choices made: a power loss or not, and `keep_permille`
    /// thousandths of the unsynced writes surviving (rounded down). Nothing if `i` is down.
    pub fn crash_as(&mut self, i: usize, power_loss: bool, keep_permille: u16) {
        if !self.is_up(i) {
            self.note(format!("fault: crash n{i} (already down)"));
            return;
        }
        let pending = self.slots[i].disk.pending_batches();
        let keep = pending * usize::from(keep_permille.min(1_000)) / 1_000;
        self.crash_keeping(i, power_loss, keep);
    }

    fn crash_keeping(&mut self, i: usize, power_loss: bool, keep: usize) {
        if power_loss {
            self.net.set_powered(i, false);
        }
        self.handle.kill(self.slots[i].handle.id());
        let lost = self.slots[i].disk.crash(keep);
        let slot = &mut self.slots[i];
        *canon_engine::sync::lock(&slot.live) = None;
        slot.up = false;
        let how = if power_loss { "power loss" } else { "process" };
        self.note(format!(
            "fault: crash n{i} ({how}; {lost} unsynced batches lost)"
        ));
    }

    /// Node `i` loses power in the middle of a write: `keep_permille` thousandths of its
    /// buffered batches reach the platter, then the first `torn_ops` operations of the next.
    pub fn crash_torn(&mut self, i: usize, keep_permille: u16, torn_ops: usize) {
        if !self.is_up(i) {
            self.note(format!("fault: crash-torn n{i} (already down)"));
            return;
        }
        self.net.set_powered(i, false);
        self.handle.kill(self.slots[i].handle.id());
        let pending = self.slots[i].disk.pending_batches();
        let keep = pending * usize::from(keep_permille.min(1_000)) / 1_000;
        let lost = self.slots[i].disk.crash_torn(keep, torn_ops);
        let slot = &mut self.slots[i];
        *canon_engine::sync::lock(&slot.live) = None;
        slot.up = false;
        self.note(format!(
            "fault: crash n{i} (power loss mid-write; {lost} unsynced batches lost, the first {torn_ops} operations of one kept)"
        ));
    }

    /// Node `i`'s wall clock jumps by `delta_ms` (NTP step, VM pause, operator error).
    pub fn jump_clock(&mut self, i: usize, delta_ms: i64) {
        self.slots[i].skew_ms.fetch_add(delta_ms, Ordering::Relaxed);
        self.note(format!("fault: n{i} clock jumps {delta_ms:+} ms"));
    }

    /// Node `i`'s disk fails every write until [`SimCluster::heal_disks`].
    pub fn fail_disk_writes(&mut self, i: usize) {
        self.slots[i]
            .disk
            .set_write_fault(Some(format!("injected fault: n{i} disk write failed")));
        self.note(format!("fault: n{i} disk writes fail"));
    }

    /// Bit rot on node `i`'s disk: bit `bit` of the `nth` record of `column` flips at rest.
    pub fn rot(&mut self, i: usize, column: Column, nth: usize, bit: u32) {
        match self.slots[i].disk.flip_at_rest(column, nth, bit) {
            Some(key) => self.note(format!(
                "fault: n{i} disk rots the {} record at 0x{} (bit {bit})",
                column.name(),
                hex::encode(key)
            )),
            None => self.note(format!("fault: n{i} disk rot: no {} record", column.name())),
        }
    }

    /// Node `i`'s disk returns the next `column` record it reads with bit `bit` flipped.
    pub fn flip_next_read(&mut self, i: usize, column: Column, bit: u32) {
        self.slots[i].disk.flip_next_read(column, bit);
        self.note(format!(
            "fault: n{i} disk flips bit {bit} of the next {} record read",
            column.name()
        ));
    }

    /// Node `i`'s disk puts the next `column` record under another key.
    pub fn misdirect_next_put(&mut self, i: usize, column: Column, xor: u8) {
        self.slots[i].disk.misdirect_next_put(column, xor);
        self.note(format!(
            "fault: n{i} disk misdirects the next {} write (key xor {xor})",
            column.name()
        ));
    }

    /// Node `i`'s disk stalls: each of its next `writes` synced writes waits `ms` first.
    pub fn slow_fsync(&mut self, i: usize, writes: u32, ms: u64) {
        self.slots[i]
            .disk
            .stall_synced_writes(writes, Duration::from_millis(ms));
        self.note(format!(
            "fault: n{i} disk stalls its next {writes} synced writes {ms} ms each"
        ));
    }

    pub fn slow_reads(&mut self, i: usize, reads: u32, ms: u64) {
        self.slots[i]
            .disk
            .stall_reads(reads, Duration::from_millis(ms));
        self.note(format!(
            "fault: n{i} disk slows its next {reads} reads {ms} ms each"
        ));
    }

    pub fn heal_disks(&mut self) {
        for slot in &self.slots {
            slot.disk.set_write_fault(None);
            slot.disk.stall_synced_writes(0, Duration::ZERO);
            slot.disk.stall_reads(0, Duration::ZERO);
        }
        self.note("fault: heal disks");
    }

    /// Sabotage: node `i`'s disk loses even synced data (a lying fsync) before it restarts.
    pub fn wipe_disk(&mut self, i: usize) {
        self.slots[i].disk.lose_everything();
        self.note(format!("sabotage: n{i}'s disk lost synced data"));
    }

    pub fn restart(&mut self, i: usize) {
        if self.is_up(i) {
            return;
        }
        if self.is_out(i) {
            self.note(format!("fault: restart n{i} (gone for good: stays down)"));
            return;
        }
        self.net.set_powered(i, true);
        self.handle.restart(self.slots[i].handle.id());
        self.slots[i].up = true;
        self.note(format!("fault: restart n{i}"));
    }

    /// From now on node `i` tells `lie` in every block range it serves (`None`: it stops).
    pub fn lie_when_serving(&mut self, i: usize, lie: Option<ServingLie>) {
        *canon_engine::sync::lock(&self.slots[i].serving_lie) = lie;
        self.observer
            .lock()
            .checker
            .expect_serving_lies_from(self.slots[i].key.node_id());
        self.note(format!("fault: n{i} serves blocks with a lie: {lie:?}"));
    }
}
