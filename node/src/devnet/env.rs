//! The environment each devnet process starts with: ports, keys and the seed's settings for
//! consensus nodes, external nodes and single-sequencer group members, and the key-value
//! application's settings with a fresh client token.

use std::path::{Path, PathBuf};

use canon_engine::keys::{derived_key, SecretKey, SEED_SECRET_KEYS};
use canon_engine::NodeId;

pub const MAX_NODES: usize = 10;

/// One node's ports: the seed's defaults (3050 RPC, 3060 p2p, 3071 status, 3312 Prometheus;
/// 3090 admin) plus the node's index, plus an optional offset for running beside other
/// clusters.
#[derive(Clone, Copy, Debug)]
pub struct Ports {
    pub rpc: u16,
    pub p2p: u16,
    pub status: u16,
    pub prometheus: u16,
    pub admin: u16,
}

impl Ports {
    pub fn of(i: usize, offset: u16) -> Ports {
        let i = i as u16;
        Ports {
            rpc: 3050 + i + offset,
            p2p: 3060 + i + offset,
            status: 3071 + i + offset,
            prometheus: 3312 + i + offset,
            admin: 3090 + i + offset,
        }
    }
}

/// What every devnet process sets for its port slot: loopback p2p, status, RPC and Prometheus
/// ports, and its database under the devnet directory.
fn slot_env(p: Ports, db: PathBuf) -> Vec<(String, String)> {
    [
        ("NETWORK_ENABLED", "true".to_string()),
        ("NETWORK_ADDRESS", "127.0.0.1".into()),
        ("NETWORK_PORT", p.p2p.to_string()),
        ("STATUS_SERVER_ADDRESS", format!("127.0.0.1:{}", p.status)),
        ("RPC_ADDRESS", format!("127.0.0.1:{}", p.rpc)),
        // Up only where an admin token is set (ADMIN_TOKEN_FILE).
        ("ADMIN_ADDRESS", format!("127.0.0.1:{}", p.admin)),
        ("OBSERVABILITY_PROMETHEUS_PORT", p.prometheus.to_string()),
        ("GENERAL_ROCKS_DB_PATH", db.display().to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn with_slot(p: Ports, db: PathBuf, own: &[(&str, String)]) -> Vec<(String, String)> {
    let mut env = slot_env(p, db);
    env.extend(own.iter().map(|(k, v)| (k.to_string(), v.clone())));
    env
}

/// External node `e`'s key: public and derived, like every devnet key beyond the seed's.
pub fn external_key(e: usize) -> SecretKey {
    derived_key("canon/devnet-external", e)
}

/// The seed-style environment of external node `e` of a devnet with `n` consensus nodes: it
/// takes the next port slot after the consensus nodes and downloads from all of them.
pub fn external_env(e: usize, n: usize, offset: u16, dir: &Path) -> Vec<(String, String)> {
    let consensus = node_env(0, n, offset, dir, 0);
    let get = |k: &str| {
        consensus
            .iter()
            .find(|(name, _)| name == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let p = Ports::of(n + e, offset);
    with_slot(
        p,
        dir.join(format!("external-{e}")),
        &[
            ("GENERAL_NODE_ROLE", "external".to_string()),
            (
                "NETWORK_SECRET_KEY",
                hex::encode(external_key(e).to_bytes()),
            ),
            ("NETWORK_BOOT_NODES", get("NETWORK_BOOT_NODES")),
            ("CONSENSUS_PEER_IDS__JSON", get("CONSENSUS_PEER_IDS__JSON")),
            ("BATCHER_ENABLED", "false".into()),
            ("PROVER_API_ENABLED", "false".into()),
            (
                "GENERAL_MAIN_NODE_RPC_URL",
                format!("http://127.0.0.1:{}", Ports::of(0, offset).rpc),
            ),
        ],
    )
}

pub fn node_key(i: usize) -> SecretKey {
    SEED_SECRET_KEYS
        .get(i)
        .and_then(|k| SecretKey::from_hex(k).ok())
        .unwrap_or_else(|| derived_key("canon/devnet-node", i))
}

fn enode(id: &NodeId, port: u16) -> String {
    format!(
        "enode://{}@127.0.0.1:{port}",
        id.to_string().trim_start_matches("0x")
    )
}

/// The seed-style environment of consensus node `i` of `n`: node 0 is the main batcher, and
/// nodes 1..=`batcher_standbys` are standby batchers at levels 1, 2, ..., each paying L1 from
/// its own anvil development account.
pub fn node_env(
    i: usize,
    n: usize,
    offset: u16,
    dir: &Path,
    batcher_standbys: usize,
) -> Vec<(String, String)> {
    let ids: Vec<NodeId> = (0..n).map(|j| node_key(j).node_id()).collect();
    let boot: Vec<String> = ids
        .iter()
        .enumerate()
        .map(|(j, id)| enode(id, Ports::of(j, offset).p2p))
        .collect();
    let peers: Vec<String> = ids.iter().map(|id| id.to_string()).collect();
    let batcher = if i <= batcher_standbys {
        "true"
    } else {
        "false"
    };
    let mut own = vec![];
    if i > 0 && i <= batcher_standbys {
        own.push(("BATCHER_REDUNDANCY_LEVEL", i.to_string()));
        if let Some(k) = crate::l1::ANVIL_DEV_KEYS.get(i) {
            own.push(("BATCHER_L1_SECRET_KEY", k.to_string()));
        }
    }
    let mut env = with_slot(
        Ports::of(i, offset),
        dir.join(format!("node-{i}")),
        &[
            ("NETWORK_SECRET_KEY", hex::encode(node_key(i).to_bytes())),
            ("NETWORK_BOOT_NODES", boot.join(",")),
            ("CONSENSUS_ENABLED", "true".into()),
            ("CONSENSUS_BOOTSTRAP", "true".into()),
            (
                "CONSENSUS_PEER_IDS__JSON",
                serde_json::to_string(&peers).unwrap_or_default(),
            ),
            ("BATCHER_ENABLED", batcher.into()),
            (
                "PROVER_API_ENABLED",
                (if i == 0 { "true" } else { "false" }).into(),
            ),
        ],
    );
    env.extend(own.into_iter().map(|(k, v)| (k.to_string(), v)));
    env
}

/// The single-sequencer devnet's shared signing identity: public and derived, for local use only.
pub fn identity_key() -> SecretKey {
    derived_key("canon/devnet-identity", 0)
}

/// The environment of member `i` (at `RedundancyLevel` i) of a single-sequencer group of
/// `members`: it knows the others by address only, since their network identities are new at
/// every start.
pub fn member_env(
    i: usize,
    members: usize,
    offset: u16,
    dir: &Path,
    genesis_timestamp_ms: u64,
) -> Vec<(String, String)> {
    let others: Vec<String> = (0..members)
        .filter(|j| *j != i)
        .map(|j| format!("127.0.0.1:{}", Ports::of(j, offset).p2p))
        .collect();
    with_slot(
        Ports::of(i, offset),
        dir.join(format!("member-{i}")),
        &[
            ("GENERAL_NODE_ROLE", "main".to_string()),
            ("CONSENSUS_ENABLED", "false".into()),
            ("NETWORK_BOOT_NODES", others.join(",")),
            (
                "VALIDATOR_SECRET_KEY",
                hex::encode(identity_key().to_bytes()),
            ),
            ("REDUNDANCY_LEVEL", i.to_string()),
            ("GENESIS_TIMESTAMP_MS", genesis_timestamp_ms.to_string()),
            ("BATCHER_ENABLED", "false".into()),
            ("PROVER_API_ENABLED", "false".into()),
        ],
    )
}

/// External node `e` following a group of `members`: it downloads from every member (by
/// address) and accepts blocks signed by the identity only.
pub fn group_external_env(
    e: usize,
    members: usize,
    offset: u16,
    dir: &Path,
) -> Vec<(String, String)> {
    let mut env = external_env(e, members, offset, dir);
    let boot: Vec<String> = (0..members)
        .map(|j| format!("127.0.0.1:{}", Ports::of(j, offset).p2p))
        .collect();
    let proposers =
        serde_json::to_string(&[identity_key().node_id().to_string()]).unwrap_or_default();
    for (k, v) in env.iter_mut() {
        match k.as_str() {
            "NETWORK_BOOT_NODES" => *v = boot.join(","),
            "CONSENSUS_PEER_IDS__JSON" => *v = proposers.clone(),
            "GENERAL_MAIN_NODE_RPC_URL" => {
                *v = format!("http://127.0.0.1:{}", Ports::of(0, offset).rpc)
            }
            _ => {}
        }
    }
    env
}

/// Round 0 of a group devnet: kept in its directory, so a devnet restarted on the same data
/// keeps counting the same rounds.
pub(super) fn group_genesis_ms(dir: &Path) -> Result<u64, String> {
    let path = dir.join("genesis_timestamp_ms");
    match std::fs::read_to_string(&path) {
        Ok(text) => text
            .trim()
            .parse()
            .map_err(|e| format!("{}: {e}", path.display())),
        Err(_) => {
            let now = crate::metrics::now_ms();
            std::fs::write(&path, now.to_string())
                .map_err(|e| format!("{}: {e}", path.display()))?;
            Ok(now)
        }
    }
}

/// The settings that make every node run the key-value application, with a fresh client
/// token in `dir/client-token` (readable by this user only) that clients must present.
pub fn kv_env(dir: &Path) -> Result<Vec<(String, String)>, String> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = dir.join("client-token");
    let token = hex::encode(rand::random::<[u8; 32]>());
    let _ = std::fs::remove_file(&path);
    let mut file = std::fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    writeln!(file, "{token}").map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(vec![
        ("APPLICATION".into(), "kv".into()),
        ("RPC_AUTH_TOKEN_FILE".into(), path.display().to_string()),
    ])
}
