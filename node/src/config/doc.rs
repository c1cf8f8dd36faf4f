//! Every setting, what it means, its environment name and its default: the table
//! `canon-node settings` prints and the README carries. A test holds the table to the
//! [`Settings`] type (a setting without a line here, or a line without a setting, fails it)
//! and the README to the table, so neither can drift.

use serde_yaml_ng::Value;

use super::Settings;

/// (setting, meaning, the default as said when the value alone says too little).
pub const SETTINGS_DOC: &[(&str, &str, Option<&str>)] = &[
    ("network_enabled", "Serve and dial peers over p2p (a single-node dev chain needs none).", None),
    ("network_secret_key", "This node's network key, 32-byte hex: its node id and Raft id derive from it.", Some("the public dev key")),
    ("network_secret_key_file", "A file holding `network_secret_key` instead, readable by its owner only.", None),
    ("network_address", "The address p2p listens on (peers must reach it; the channel is authenticated).", None),
    ("network_port", "The port p2p listens on.", None),
    ("network_boot_nodes", "Peers to dial, `enode://<id>@host:port` (comma separated in the environment); a group member's fellow members as `host:port`.", None),
    ("network_max_connections", "Authenticated p2p connections in all; more are closed at once.", None),
    ("network_max_connections_per_peer", "Authenticated p2p connections per peer id; a newer one closes that peer's oldest.", None),
    ("network_max_handshakes", "p2p connections still in their handshake; more are closed at once.", None),
    ("network_max_handshakes_per_address", "p2p connections in their handshake from one address, so one silent host cannot lock out the rest.", None),
    ("network_handshake_timeout_ms", "A p2p handshake must finish within this.", None),
    ("network_max_requests_per_connection", "Requests answered at once per p2p connection; more wait (back-pressure on the peer). A frame is at most 16 MiB, by protocol.", None),
    ("consensus_enabled", "Take part in Raft; `false` on a main node is single-sequencer mode (a redundancy group).", None),
    ("consensus_bootstrap", "Initialise the cluster from `consensus_peer_ids` when the database is empty; `false` on a node joining a running chain (the leader adds it: `canon-node admin add-learner`).", None),
    ("consensus_peer_ids", "The genesis members' ids, `0x`-prefixed (JSON through `__JSON`); empty: this node alone. Later membership changes go through `canon-node admin`; every node of a chain lists the same ids here.", None),
    ("consensus_election_timeout_min", "Milliseconds without a leader before asking for votes: a fresh draw between min and max.", None),
    ("consensus_election_timeout_max", "See `consensus_election_timeout_min`.", None),
    ("consensus_heartbeat_interval", "Milliseconds between a leader's heartbeats, and the time each AppendEntries has to come back.", None),
    ("consensus_snapshot_interval_entries", "A Raft snapshot of the applied state every this many log entries.", None),
    ("consensus_log_keep_entries", "Log entries kept behind the snapshot: a follower lagging by fewer catches up by replication.", None),
    ("sequencer_block_time", "Milliseconds between the leader's blocks (a group's round length).", None),
    ("sequencer_max_block_transactions", "The most transactions in one block.", None),
    ("sequencer_max_blocks_in_flight", "The leader's proposals waiting for canonization at once, each built on the last.", None),
    ("sequencer_mempool_capacity", "The most transactions the mempool holds; a full pool refuses newcomers and never evicts what it accepted.", None),
    ("sequencer_mempool_per_sender", "The most pending transactions of one ledger sender, so one sender cannot fill the pool.", None),
    ("batcher_enabled", "Run the L1 batcher (the node at `batcher_redundancy_level` 0 holds the role).", None),
    ("batcher_blocks_per_batch", "Blocks per L1 batch; every consensus node must agree.", None),
    ("batcher_batch_timeout_ms", "Close the open batch once this old, in milliseconds (0: only by count).", None),
    ("batcher_redundancy_level", "This node's place in the batcher's takeover order (0: the main batcher).", None),
    ("batcher_l1_secret_key", "The L1 account the batcher pays from, 32-byte hex.", Some("unset: anvil's first public account")),
    ("batcher_l1_secret_key_file", "A file holding `batcher_l1_secret_key` instead, readable by its owner only.", None),
    ("l1_settlement_address", "The settlement contract (`canon-node l1 deploy` prints it); no batches without it.", None),
    ("general_l1_rpc_url", "The L1 JSON-RPC endpoint.", None),
    ("prover_api_enabled", "Accepted from the seed's configurations; canon has no prover API, so it changes nothing.", None),
    ("status_server_enabled", "Serve `GET /status`.", None),
    ("status_server_address", "Where `/status` listens.", None),
    ("http_max_connections", "Connections the status and metrics servers each serve at once; the next wait.", None),
    ("http_max_connections_per_ip", "Connections the status and metrics servers each hold from one address; more are closed at once.", None),
    ("http_header_timeout_ms", "A status or metrics connection that takes longer to send a request's headers, or idles longer between requests, is closed.", None),
    ("rpc_address", "Where JSON-RPC listens.", None),
    ("rpc_max_connections", "JSON-RPC connections served at once; the next wait for one to close.", None),
    ("rpc_max_connections_per_ip", "JSON-RPC connections from one address; more are closed at once.", None),
    ("rpc_max_requests_per_second_per_ip", "JSON-RPC requests per second from one address (bursts of as many); more are answered HTTP 429.", None),
    ("rpc_max_request_bytes", "The largest JSON-RPC request body; a larger one is refused (HTTP 413).", None),
    ("rpc_max_batch_calls", "Calls in one JSON-RPC batch (an array of calls); a larger batch is refused whole.", None),
    ("rpc_max_transactions_per_call", "Transactions in one `canon_sendTransactions(AndWait)` call, at most 10,000 (what one forward to the leader carries).", None),
    ("rpc_first_request_timeout_ms", "A JSON-RPC connection that takes longer to send a request's headers, or idles longer between requests, is closed (slow clients).", None),
    ("rpc_auth_token_file", "A file (owner-only) holding the token every JSON-RPC call must present; required with `application: kv`.", None),
    ("admin_address", "Where the admin interface listens (`canon-node admin`: add a learner, promote it, remove a member).", None),
    ("admin_token_file", "A file (owner-only) holding the token every admin request must present; unset, the admin interface is off.", None),
    ("observability_prometheus_address", "The address `/metrics` listens on.", None),
    ("observability_prometheus_port", "The port `/metrics` listens on.", None),
    ("general_rocks_db_path", "The node's database directory.", None),
    ("general_node_role", "`main` (consensus, or a group member) or `external` (downloads and replays blocks).", None),
    ("general_main_node_rpc_url", "Accepted from the seed's configurations; external nodes download from `network_boot_nodes`, so it changes nothing.", None),
    ("external_verify_every_signature", "An external node recovers every transaction's signature instead of trusting the commit certificate.", None),
    ("application", "What the chain runs: `ledger` or `kv`; every node of a chain must run the same.", None),
    ("genesis_chain_id", "Part of every block's genesis parent hash: chains with different ids never agree.", None),
    ("genesis_alloc", "The ledger's funded accounts at height 0, `0x<address>:<balance>` (comma separated in the environment).", Some("the public dev accounts (`canon-node dev-accounts`)")),
    ("genesis_timestamp_ms", "Wall-clock milliseconds at which a group's round 0 starts; every member must agree.", None),
    ("redundancy_level", "A group member's place in the takeover order (the seed's `RedundancyLevel`; also from `--prefs`): 0 signs, L > 0 after L x `redundancy_max_missed_rounds` rounds; negative or above 1000 never signs.", None),
    ("redundancy_max_missed_rounds", "Rounds per level a standby waits before it signs (also batch rounds per level for a standby batcher).", None),
    ("redundancy_fencing", "Sign only what a majority of the group chose (3 or more members, all set alike).", None),
    ("validator_secret_key", "The group's shared signing identity, 32-byte hex (single-sequencer mode).", None),
    ("validator_secret_key_file", "A file holding `validator_secret_key` instead, readable by its owner only.", None),
];

fn shown(value: &Value) -> String {
    match value {
        Value::Null => "unset".into(),
        Value::Bool(b) => format!("`{b}`"),
        Value::Number(n) => format!("`{n}`"),
        Value::String(s) => format!("`{s}`"),
        Value::Sequence(s) if s.is_empty() => "none".into(),
        Value::Sequence(s) => format!("{} entries", s.len()),
        other => format!("`{other:?}`"),
    }
}

/// The settings as a Markdown table: setting, environment name, default, meaning.
pub fn settings_table() -> String {
    let defaults = match serde_yaml_ng::to_value(Settings::default().redacted()) {
        Ok(Value::Mapping(m)) => m,
        _ => Default::default(),
    };
    let mut out =
        String::from("| Setting | Environment | Default | Meaning |\n|---|---|---|---|\n");
    for (key, meaning, default) in SETTINGS_DOC {
        let default = match default {
            Some(d) => d.to_string(),
            None => defaults.get(*key).map(shown).unwrap_or_default(),
        };
        out.push_str(&format!(
            "| `{key}` | `{}` | {default} | {meaning} |\n",
            key.to_ascii_uppercase()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    const BEGIN: &str = "<!-- settings:begin (generated: canon-node settings) -->\n";
    const END: &str = "<!-- settings:end -->";

    #[test]
    fn every_setting_has_one_line_and_every_line_a_setting() {
        let Ok(Value::Mapping(m)) = serde_yaml_ng::to_value(Settings::default()) else {
            panic!("settings serialise to a mapping");
        };
        let fields: BTreeSet<String> = m
            .keys()
            .filter_map(|k| k.as_str().map(str::to_string))
            .collect();
        let documented: Vec<String> = SETTINGS_DOC.iter().map(|(k, _, _)| k.to_string()).collect();
        let unique: BTreeSet<String> = documented.iter().cloned().collect();
        assert_eq!(unique.len(), documented.len(), "a setting documented twice");
        let missing: Vec<_> = fields.difference(&unique).collect();
        let extra: Vec<_> = unique.difference(&fields).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "undocumented settings {missing:?}; documented but not settings {extra:?}"
        );
    }

    /// The README's settings table is this table. `CANON_README=update cargo test -p
    /// canon-node --lib readme` rewrites it.
    #[test]
    fn the_readme_carries_the_table() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
        let readme = std::fs::read_to_string(&path).expect("README.md");
        let (Some(start), Some(end)) = (readme.find(BEGIN), readme.find(END)) else {
            panic!("README.md has no settings markers ({BEGIN:?} ... {END:?})");
        };
        let inside = &readme[start + BEGIN.len()..end];
        let table = settings_table();
        if inside != table {
            if std::env::var("CANON_README").as_deref() == Ok("update") {
                let updated = format!("{}{BEGIN}{table}{}", &readme[..start], &readme[end..]);
                std::fs::write(&path, updated).expect("write README.md");
                return;
            }
            panic!(
                "README.md's settings table is stale: run `CANON_README=update cargo test -p \
                 canon-node --lib readme`"
            );
        }
    }

    #[test]
    fn secrets_never_show_as_defaults() {
        let table = settings_table();
        assert!(!table.contains(super::super::DEV_SECRET_KEY), "{table}");
        assert!(
            table.contains("| `network_secret_key` | `NETWORK_SECRET_KEY` | the public dev key |")
        );
    }
}
