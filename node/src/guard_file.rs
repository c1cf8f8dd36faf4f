//! `canon-node guard export|import`: moves a signing identity's double-sign guard between
//! machines as EIP-3076-shaped JSON. Both open the node's database, so RocksDB's lock refuses
//! them while a node runs on it: the guard is never changed under a signer.

use std::path::Path;
use std::sync::Arc;

use canon_engine::redundancy::signing_guard::{Interchange, SigningGuard};

use crate::config::{db_path, Validated};
use crate::storage::RocksStorage;

fn open_guard(v: &Validated, must_exist: bool) -> Result<SigningGuard, String> {
    let group = v.group.as_ref().ok_or_else(|| {
        "consensus_enabled: the guard belongs to single-sequencer mode; set consensus_enabled \
         to false and validator_secret_key as the node runs with"
            .to_string()
    })?;
    let cwd = std::env::current_dir().map_err(|e| format!("general_rocks_db_path: {e}"))?;
    let path = db_path(&v.settings, &cwd);
    if must_exist && !path.exists() {
        return Err(format!(
            "general_rocks_db_path: no database at {}; nothing was ever signed here",
            path.display()
        ));
    }
    let identity = group.identity.node_id();
    let storage = RocksStorage::open(&path, identity).map_err(|e| {
        let text = e.to_string();
        if text.contains("LOCK") || text.contains("lock") {
            format!(
                "general_rocks_db_path: {} is in use: a node is running on it; stop it first \
                 ({text})",
                path.display()
            )
        } else {
            format!("general_rocks_db_path: {text}")
        }
    })?;
    SigningGuard::open(Arc::new(storage), identity).map_err(|e| format!("guard: {e}"))
}

/// Writes the identity's guard as JSON to `out` (standard output without one).
pub fn export(v: &Validated, out: Option<&Path>) -> Result<(), String> {
    let guard = open_guard(v, true)?;
    let json = serde_json::to_string_pretty(&guard.export(v.chain.chain_id))
        .map_err(|e| format!("cannot encode the guard: {e}"))?;
    match out {
        Some(path) => {
            std::fs::write(path, json + "\n").map_err(|e| format!("--out {}: {e}", path.display()))
        }
        None => {
            println!("{json}");
            Ok(())
        }
    }
}

/// Raises the identity's guard to what `file` holds (never lowers it) and prints the result.
pub fn import(v: &Validated, file: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("{}: cannot read: {e}", file.display()))?;
    let interchange: Interchange = serde_json::from_str(&text)
        .map_err(|e| format!("{}: not a guard export: {e}", file.display()))?;
    let guard = open_guard(v, false)?;
    match guard
        .import(&interchange, v.chain.chain_id)
        .map_err(|e| format!("{}: {e}", file.display()))?
    {
        Some(mark) => println!(
            "guard of {}: height {}, round {}, block {}",
            guard.identity(),
            mark.height,
            mark.round,
            mark.block_hash
        ),
        None => println!("guard of {}: nothing signed", guard.identity()),
    }
    Ok(())
}
