//! openraft 0.9 glue: the type config whose entry payload is a whole block or a batcher claim, the log store and
//! state machine over the [`Storage`](crate::storage::Storage) seam, and the network over the
//! [`Transport`](crate::net::transport::Transport) seam.

// openraft dictates `StorageError` (about 400 bytes) as the error of every storage call.
#![allow(clippy::result_large_err)]

pub mod log_store;
pub mod network;
mod recent;
pub mod state_machine;
pub mod types;
