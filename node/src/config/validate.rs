//! Checking the layered settings and turning them into what the node runs with: keys parsed,
//! peers and boot nodes named, the role's requirements met; every refusal names its key.

use canon_engine::chain::block::ChainSpec;
use canon_engine::ids::parse_hex_fixed;
use canon_engine::keys::SecretKey;
use canon_engine::policy::fence::MIN_FENCED_GROUP;
use canon_engine::NodeId;

use super::{err, ConfigError, NodeRole, Settings};
use crate::secret::{read_secret_file, SecretText};

#[derive(Clone, Debug)]
pub struct Validated {
    pub settings: Settings,
    pub key: SecretKey,
    pub node_id: NodeId,
    pub peers: Vec<NodeId>,
    pub boot_nodes: Vec<(NodeId, String)>,
    pub chain: ChainSpec,
    /// Single-sequencer mode (`consensus_enabled: false` on a main node): the group's settings.
    pub group: Option<GroupSettings>,
    /// `l1_settlement_address`, parsed.
    pub l1_settlement: Option<alloy_primitives::Address>,
    /// The account the batcher pays L1 from; `None`: anvil's public development account.
    pub batcher_l1_key: Option<SecretKey>,
    /// What JSON-RPC clients must present; `None`: any client is served.
    pub client_token: Option<crate::client_auth::ClientToken>,
    /// What admin requests must present; `None`: no admin interface.
    pub admin_token: Option<crate::client_auth::ClientToken>,
}

/// A member of a single-sequencer group.
#[derive(Clone, Debug)]
pub struct GroupSettings {
    /// The shared signing identity.
    pub identity: SecretKey,
    pub level: i64,
    pub max_missed_rounds: u64,
    pub fencing: bool,
}

pub use canon_engine::net::p2p::address_label;

/// A boot node: `enode://<128 hex id>@host:port`, or `host:port` alone for a peer whose network
/// identity is new at every start (a member of a single-sequencer group); the latter is named by
/// its [`address_label`].
pub fn parse_boot_node(s: &str) -> Result<(NodeId, String), String> {
    if s.trim().starts_with("enode://") {
        return parse_enode(s);
    }
    let addr = s.trim();
    match addr.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
            Ok((address_label(addr), addr.to_string()))
        }
        _ => Err(format!(
            "{s:?} is neither enode://<id>@host:port nor host:port"
        )),
    }
}

/// The key a setting gives as hex (`key`) or as a file (`file_key`), refusing both; the file
/// must be readable by its owner only. Errors name the setting, never the key.
fn secret_key(
    key: &str,
    text: Option<&SecretText>,
    file_key: &str,
    file: Option<&std::path::Path>,
) -> Result<Option<SecretKey>, ConfigError> {
    let (named, text) = match (text, file) {
        (Some(_), Some(_)) => {
            return Err(err(
                key,
                format!("set either {key} or {file_key}, not both"),
            ))
        }
        (Some(t), None) => (key, t.clone()),
        (None, Some(path)) => (
            file_key,
            read_secret_file(path).map_err(|e| err(file_key, e))?,
        ),
        (None, None) => return Ok(None),
    };
    SecretKey::from_hex(text.expose())
        .map(Some)
        .map_err(|e| err(named, format!("not a 32-byte hex secp256k1 key ({e})")))
}

fn validator_key(s: &Settings) -> Result<SecretKey, ConfigError> {
    secret_key(
        "validator_secret_key",
        s.validator_secret_key.as_ref(),
        "validator_secret_key_file",
        s.validator_secret_key_file.as_deref(),
    )?
    .ok_or_else(|| {
        err(
            "validator_secret_key",
            "single-sequencer mode (consensus_enabled: false) signs every block with the \
             group's identity; set validator_secret_key (or VALIDATOR_SECRET_KEY) or \
             validator_secret_key_file",
        )
    })
}

/// Parses `enode://<128 hex>@host:port`.
pub fn parse_enode(s: &str) -> Result<(NodeId, String), String> {
    let rest = s
        .trim()
        .strip_prefix("enode://")
        .ok_or_else(|| format!("{s:?} does not start with enode://"))?;
    let (id, addr) = rest
        .split_once('@')
        .ok_or_else(|| format!("{s:?} has no @host:port"))?;
    let id = parse_hex_fixed::<64>(id)
        .map(NodeId)
        .map_err(|e| format!("{s:?}: node id: {e}"))?;
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| format!("{s:?}: address {addr:?} has no port"))?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(format!("{s:?}: address {addr:?} is not host:port"));
    }
    Ok((id, addr.to_string()))
}

impl Settings {
    pub fn validate(self) -> Result<Validated, ConfigError> {
        // The dev key is the default, so a key file may be set only with the default left.
        let network_text = match &self.network_secret_key_file {
            Some(_) if self.network_secret_key.expose() == super::DEV_SECRET_KEY => None,
            _ => Some(&self.network_secret_key),
        };
        let key = secret_key(
            "network_secret_key",
            network_text,
            "network_secret_key_file",
            self.network_secret_key_file.as_deref(),
        )?
        .ok_or_else(|| err("network_secret_key", "unset"))?;
        let node_id = key.node_id();
        let mut peers = Vec::new();
        for (i, p) in self.consensus_peer_ids.iter().enumerate() {
            let id = p
                .parse::<NodeId>()
                .map_err(|e| err("consensus_peer_ids", format!("entry {i} ({p:?}): {e}")))?;
            peers.push(id);
        }
        if peers.is_empty() {
            if self.general_node_role == NodeRole::External {
                return Err(err(
                    "consensus_peer_ids",
                    "an external node accepts blocks only from these proposers; list the consensus nodes' ids",
                ));
            }
            peers.push(node_id);
        }
        if self.general_node_role == NodeRole::Main
            && self.consensus_enabled
            && self.consensus_bootstrap
            && !peers.contains(&node_id)
        {
            return Err(err(
                "consensus_peer_ids",
                format!(
                    "must contain this node's id {node_id} (derived from network_secret_key):                      it names the genesis members; a node joining a running chain sets                      consensus_bootstrap: false and is added with canon-node admin add-learner"
                ),
            ));
        }
        let mut boot_nodes = Vec::new();
        for b in &self.network_boot_nodes {
            boot_nodes.push(parse_boot_node(b).map_err(|e| err("network_boot_nodes", e))?);
        }
        let single_sequencer = self.general_node_role == NodeRole::Main && !self.consensus_enabled;
        let group = if single_sequencer {
            if self.redundancy_max_missed_rounds == 0 {
                return Err(err("redundancy_max_missed_rounds", "must be above 0"));
            }
            let machines = boot_nodes.len() + 1;
            if self.redundancy_fencing && machines < MIN_FENCED_GROUP {
                return Err(err(
                    "redundancy_fencing",
                    format!(
                        "needs {MIN_FENCED_GROUP} or more machines in the group, and this one \
                         knows {machines} (itself and {} in network_boot_nodes): list every \
                         other member there, or turn fencing off",
                        boot_nodes.len()
                    ),
                ));
            }
            Some(GroupSettings {
                identity: validator_key(&self)?,
                level: self.redundancy_level,
                max_missed_rounds: self.redundancy_max_missed_rounds,
                fencing: self.redundancy_fencing,
            })
        } else {
            if self.redundancy_fencing {
                return Err(err(
                    "redundancy_fencing",
                    "is set, but fencing is single-sequencer mode's: set consensus_enabled to \
                     false on a main node, or remove it",
                ));
            }
            if self.redundancy_level != 0 {
                return Err(err(
                    "redundancy_level",
                    format!(
                        "{} is set, but hot standbys are single-sequencer mode's: set \
                         consensus_enabled to false on a main node, or remove it",
                        self.redundancy_level
                    ),
                ));
            }
            None
        };
        if self.consensus_election_timeout_min >= self.consensus_election_timeout_max {
            return Err(err(
                "consensus_election_timeout_min",
                format!(
                    "{} ms must be below consensus_election_timeout_max ({} ms)",
                    self.consensus_election_timeout_min, self.consensus_election_timeout_max
                ),
            ));
        }
        if self.consensus_heartbeat_interval == 0
            || self.consensus_heartbeat_interval >= self.consensus_election_timeout_min
        {
            return Err(err(
                "consensus_heartbeat_interval",
                format!(
                    "{} ms must be above 0 and below consensus_election_timeout_min ({} ms)",
                    self.consensus_heartbeat_interval, self.consensus_election_timeout_min
                ),
            ));
        }
        if self.sequencer_block_time == 0 {
            return Err(err("sequencer_block_time", "must be above 0 ms"));
        }
        for (name, addr) in [
            ("status_server_address", &self.status_server_address),
            ("rpc_address", &self.rpc_address),
        ] {
            addr.parse::<std::net::SocketAddr>()
                .map_err(|e| err(name, format!("{addr:?} is not ip:port: {e}")))?;
        }
        self.network_address
            .parse::<std::net::IpAddr>()
            .map_err(|e| {
                err(
                    "network_address",
                    format!("{:?} is not an IP address: {e}", self.network_address),
                )
            })?;
        if self.batcher_blocks_per_batch == 0 {
            return Err(err("batcher_blocks_per_batch", "must be above 0"));
        }
        if self.batcher_enabled && self.redundancy_max_missed_rounds == 0 {
            return Err(err(
                "redundancy_max_missed_rounds",
                "must be above 0 (a standby batcher counts batch rounds by it)",
            ));
        }
        if self.batcher_enabled && self.redundancy_max_missed_rounds > u64::from(u32::MAX) {
            return Err(err("redundancy_max_missed_rounds", "is too large"));
        }
        let chain = crate::genesis::chain_spec(
            self.application,
            self.genesis_chain_id,
            &self.genesis_alloc,
            self.batcher_blocks_per_batch,
        )
        .map_err(|e| err("genesis_alloc", e))?;
        if self.sequencer_max_block_transactions == 0 {
            return Err(err("sequencer_max_block_transactions", "must be above 0"));
        }
        if self.sequencer_max_blocks_in_flight == 0 {
            return Err(err("sequencer_max_blocks_in_flight", "must be at least 1"));
        }
        if self.consensus_snapshot_interval_entries == 0 {
            return Err(err(
                "consensus_snapshot_interval_entries",
                "must be at least 1",
            ));
        }
        let l1_settlement = match &self.l1_settlement_address {
            None => None,
            Some(a) => Some(a.trim().parse::<alloy_primitives::Address>().map_err(|e| {
                err(
                    "l1_settlement_address",
                    format!("{a:?} is not a 20-byte 0x address: {e}"),
                )
            })?),
        };
        let batcher_l1_key = secret_key(
            "batcher_l1_secret_key",
            self.batcher_l1_secret_key.as_ref(),
            "batcher_l1_secret_key_file",
            self.batcher_l1_secret_key_file.as_deref(),
        )?;
        if self.rpc_max_transactions_per_call == 0
            || self.rpc_max_transactions_per_call > canon_engine::net::wire::MAX_SUBMIT_BATCH
        {
            return Err(err(
                "rpc_max_transactions_per_call",
                format!(
                    "{} is not between 1 and {} (what one forward to the leader carries)",
                    self.rpc_max_transactions_per_call,
                    canon_engine::net::wire::MAX_SUBMIT_BATCH
                ),
            ));
        }
        for (key, value) in [
            ("rpc_max_connections", self.rpc_max_connections),
            ("rpc_max_request_bytes", self.rpc_max_request_bytes),
            ("rpc_max_batch_calls", self.rpc_max_batch_calls),
        ] {
            if value == 0 {
                return Err(err(key, "must be at least 1"));
            }
        }
        let client_token = match &self.rpc_auth_token_file {
            Some(path) => Some(
                crate::client_auth::ClientToken::read(path)
                    .map_err(|e| err("rpc_auth_token_file", e))?,
            ),
            None if self.application == crate::genesis::Application::Kv => {
                return Err(err(
                    "rpc_auth_token_file",
                    "application kv takes writes from any client that reaches rpc_address, \
                     unsigned: set rpc_auth_token_file to a file only this user can read that \
                     holds a secret token (for one: `head -c 32 /dev/urandom | xxd -p -c 64 > \
                     token && chmod 600 token`)",
                ))
            }
            None => None,
        };
        let admin_token = match &self.admin_token_file {
            Some(path) => Some(
                crate::client_auth::ClientToken::read(path)
                    .map_err(|e| err("admin_token_file", e))?,
            ),
            None => None,
        };
        Ok(Validated {
            admin_token,
            client_token,
            l1_settlement,
            batcher_l1_key,
            chain,
            settings: self,
            key,
            node_id,
            peers,
            boot_nodes,
            group,
        })
    }
}
