//! The clock seam: a node's local wall time, used only for block timestamps. The simulator gives
//! each node its own skew; Raft timers use the runtime's monotonic time instead.

pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch as this node believes it.
    fn now_ms(&self) -> u64;
}
