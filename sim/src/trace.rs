//! The trace of a run: every event and fault, hashed in order. Same seed, same hash.

use std::collections::VecDeque;

use alloy_primitives::Keccak256;

const KEEP_RECENT: usize = 40;

pub struct Trace {
    /// Echo every line to stderr as it is recorded (`canon-sim run --trace`).
    pub echo: bool,
    hasher: Keccak256,
    lines: u64,
    recent: VecDeque<String>,
}

impl Default for Trace {
    fn default() -> Self {
        Trace {
            echo: std::env::var_os("CANON_SIM_TRACE").is_some(),
            hasher: Keccak256::new(),
            lines: 0,
            recent: VecDeque::with_capacity(KEEP_RECENT),
        }
    }
}

impl Trace {
    pub fn record(&mut self, line: String) {
        self.hasher.update(line.as_bytes());
        self.hasher.update(b"\n");
        self.lines += 1;
        if self.echo {
            eprintln!("{line}");
        }
        if self.recent.len() == KEEP_RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(line);
    }

    /// The first 8 bytes of the running keccak, as 16 hex digits.
    pub fn hash16(&self) -> String {
        let digest = self.hasher.clone().finalize();
        hex::encode(&digest[..8])
    }

    pub fn lines(&self) -> u64 {
        self.lines
    }

    pub fn recent(&self) -> Vec<String> {
        self.recent.iter().cloned().collect()
    }
}
