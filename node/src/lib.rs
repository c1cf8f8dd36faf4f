//! canon-node: the production shell around canon-engine.

pub mod config;
#[cfg(feature = "production")]
pub mod storage;
