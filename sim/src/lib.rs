//! canon-sim: the deterministic simulator. A madsim cluster of real engine nodes, our own
//! network and disk faults, an invariant checker that watches every event, and a trace whose
//! hash is the run's fingerprint.

pub mod checker;
pub mod client;
pub mod cluster;
pub mod explore;
pub mod external;
pub mod group;
pub mod host;
pub mod kv_client;
pub mod l1;
pub mod l1_weather;
pub mod liar;
pub mod linearizable;
pub mod lying_peer;
pub mod minimize;
pub mod net;
pub mod observer;
pub mod runtime;
pub mod scenario;
pub mod scenarios;
pub mod schedule;
pub mod sweep;
pub mod timeline;
pub mod trace;
