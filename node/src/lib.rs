//! canon-node: the production shell around canon-engine.

pub mod client_auth;
pub mod config;
pub mod genesis;
pub mod verifier;

#[cfg(feature = "production")]
pub mod check_db;
#[cfg(feature = "production")]
pub mod client;
#[cfg(feature = "production")]
pub mod context;
#[cfg(feature = "production")]
pub mod devnet;
#[cfg(feature = "production")]
pub mod event_log;
#[cfg(feature = "production")]
pub mod guard_file;
#[cfg(feature = "production")]
pub mod http;
#[cfg(feature = "production")]
pub mod l1;
#[cfg(feature = "production")]
pub mod load;
#[cfg(feature = "production")]
pub mod metrics;
#[cfg(feature = "production")]
pub mod p2p;
#[cfg(feature = "production")]
pub mod rpc;
#[cfg(feature = "production")]
pub mod service;
#[cfg(feature = "production")]
pub mod storage;
#[cfg(feature = "production")]
pub mod verify_block;
