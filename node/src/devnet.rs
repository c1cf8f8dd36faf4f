//! `canon-node devnet`: a real local cluster as child processes of this binary, configured
//! exactly as the seed document configures its three nodes (same keys, env names and port
//! scheme), with a live status table until Ctrl-C.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use canon_engine::keys::{derived_key, SecretKey, SEED_SECRET_KEYS};
use canon_engine::NodeId;

use crate::client::NodeClient;
use crate::client_auth::ClientToken;
use crate::genesis::Application;
use crate::http::{NodeKind, StatusView};

pub const MAX_NODES: usize = 10;

/// One node's ports: the seed's defaults (3050 RPC, 3060 p2p, 3071 status, 3312 Prometheus)
/// plus the node's index, plus an optional offset for running beside other clusters.
#[derive(Clone, Copy, Debug)]
pub struct Ports {
    pub rpc: u16,
    pub p2p: u16,
    pub status: u16,
    pub prometheus: u16,
}

impl Ports {
    pub fn of(i: usize, offset: u16) -> Ports {
        let i = i as u16;
        Ports {
            rpc: 3050 + i + offset,
            p2p: 3060 + i + offset,
            status: 3071 + i + offset,
            prometheus: 3312 + i + offset,
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
fn group_genesis_ms(dir: &Path) -> Result<u64, String> {
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

pub struct Devnet {
    pub dir: PathBuf,
    /// Consensus nodes (or group members) are `0..consensus`; external nodes follow.
    pub consensus: usize,
    /// A single-sequencer group (member `i` at level `i`) with this round 0, instead of Raft.
    pub group_genesis_ms: Option<u64>,
    pub offset: u16,
    pub children: Vec<Option<Child>>,
    pub clients: Vec<NodeClient>,
    /// Set on every node after the seed-style environment (e.g. `SEQUENCER_BLOCK_TIME`).
    pub extra_env: Vec<(String, String)>,
    /// A single-sequencer group runs fenced (`REDUNDANCY_FENCING` on every member).
    pub fenced: bool,
    /// Raft mode: nodes 1..=this run standby batchers.
    pub batcher_standbys: usize,
    /// (from, to) -> port: node `from` dials node `to` at this loopback port instead of `to`'s
    /// own (a test's proxy on that link). Read when a node starts.
    pub routes: std::collections::BTreeMap<(usize, usize), u16>,
    /// The client token the nodes ask for (`RPC_AUTH_TOKEN_FILE` in `extra_env`), which
    /// [`Devnet::clients`] present.
    pub token: Option<ClientToken>,
    ids: Vec<NodeId>,
    exe: PathBuf,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Raft,
    Group,
    FencedGroup,
}

impl Devnet {
    /// Starts `n` nodes of `exe` (this binary) with logs in `dir/node-<i>.log`.
    pub fn start(exe: &Path, n: usize, dir: &Path, offset: u16) -> Result<Devnet, String> {
        Self::start_with(exe, n, 0, dir, offset, Vec::new())
    }

    /// `n` consensus nodes and `externals` external nodes.
    pub fn start_with(
        exe: &Path,
        n: usize,
        externals: usize,
        dir: &Path,
        offset: u16,
        extra_env: Vec<(String, String)>,
    ) -> Result<Devnet, String> {
        Self::start_mode(exe, n, externals, dir, offset, extra_env, Mode::Raft, 0)
    }

    /// `n` consensus nodes of which nodes 1..=`batcher_standbys` run standby batchers (levels
    /// 1, 2, ...) behind node 0's, and `externals` external nodes.
    pub fn start_with_batchers(
        exe: &Path,
        n: usize,
        batcher_standbys: usize,
        externals: usize,
        dir: &Path,
        offset: u16,
        extra_env: Vec<(String, String)>,
    ) -> Result<Devnet, String> {
        if batcher_standbys >= n.max(1) || batcher_standbys >= crate::l1::ANVIL_DEV_KEYS.len() {
            return Err(format!(
                "--batcher-standbys ({batcher_standbys}) must be below --nodes ({n}) and at most {}",
                crate::l1::ANVIL_DEV_KEYS.len() - 1
            ));
        }
        Self::start_mode(
            exe,
            n,
            externals,
            dir,
            offset,
            extra_env,
            Mode::Raft,
            batcher_standbys,
        )
    }

    /// A single-sequencer group: the main (level 0) and `standbys` hot standbys at levels
    /// 1..=standbys sharing one identity, and `externals` external nodes following them;
    /// `fenced`: with `redundancy_fencing`.
    pub fn start_group(
        exe: &Path,
        standbys: usize,
        externals: usize,
        dir: &Path,
        offset: u16,
        extra_env: Vec<(String, String)>,
        fenced: bool,
    ) -> Result<Devnet, String> {
        let mode = if fenced {
            Mode::FencedGroup
        } else {
            Mode::Group
        };
        Self::start_mode(
            exe,
            standbys + 1,
            externals,
            dir,
            offset,
            extra_env,
            mode,
            0,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn start_mode(
        exe: &Path,
        n: usize,
        externals: usize,
        dir: &Path,
        offset: u16,
        extra_env: Vec<(String, String)>,
        mode: Mode,
        batcher_standbys: usize,
    ) -> Result<Devnet, String> {
        let group = mode != Mode::Raft;
        if group && n + externals > MAX_NODES {
            return Err(format!(
                "--standbys ({}) + 1 + --external ({externals}) must be at most {MAX_NODES}",
                n - 1
            ));
        }
        if n == 0 || n + externals > MAX_NODES {
            return Err(format!(
                "--nodes ({n}) must be at least 1 and --nodes + --external ({}) at most {MAX_NODES}",
                n + externals
            ));
        }
        let total = n + externals;
        if offset > 60_000 {
            return Err(format!("--port-offset {offset} pushes ports past 65535"));
        }
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("--dir {}: cannot create: {e}", dir.display()))?;
        let dir = dir
            .canonicalize()
            .map_err(|e| format!("--dir {}: {e}", dir.display()))?;
        let group_genesis_ms = if group {
            Some(group_genesis_ms(&dir)?)
        } else {
            None
        };
        let token = extra_env
            .iter()
            .find(|(k, _)| k == "RPC_AUTH_TOKEN_FILE")
            .map(|(_, path)| ClientToken::read(Path::new(path)))
            .transpose()?;
        let mut net = Devnet {
            group_genesis_ms,
            clients: (0..total)
                .map(|i| {
                    let p = Ports::of(i, offset);
                    NodeClient::new(
                        &format!("127.0.0.1:{}", p.rpc),
                        &format!("127.0.0.1:{}", p.status),
                        Duration::from_millis(800),
                    )
                    .with_token(token.clone())
                })
                .collect(),
            ids: (0..total)
                .map(|i| {
                    if i < n {
                        node_key(i).node_id()
                    } else {
                        external_key(i - n).node_id()
                    }
                })
                .collect(),
            children: (0..total).map(|_| None).collect(),
            consensus: n,
            extra_env,
            fenced: mode == Mode::FencedGroup,
            batcher_standbys,
            routes: Default::default(),
            token,
            dir,
            offset,
            exe: exe.to_path_buf(),
        };
        for i in 0..total {
            net.start_node(i)?;
        }
        Ok(net)
    }

    pub fn size(&self) -> usize {
        self.children.len()
    }

    pub fn log_path(&self, i: usize) -> PathBuf {
        if i < self.consensus && self.group_genesis_ms.is_some() {
            self.dir.join(format!("member-{i}.log"))
        } else if i < self.consensus {
            self.dir.join(format!("node-{i}.log"))
        } else {
            self.dir
                .join(format!("external-{}.log", i - self.consensus))
        }
    }

    /// `n0`, `n1`, ... for consensus nodes, `x0`, `x1`, ... for external nodes.
    pub fn name(&self, i: usize) -> String {
        if i < self.consensus && self.group_genesis_ms.is_some() {
            format!("m{i}")
        } else if i < self.consensus {
            format!("n{i}")
        } else {
            format!("x{}", i - self.consensus)
        }
    }

    pub fn start_node(&mut self, i: usize) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(i))
            .map_err(|e| format!("{}: {e}", self.log_path(i).display()))?;
        let err = log
            .try_clone()
            .map_err(|e| format!("{}: {e}", self.log_path(i).display()))?;
        let (n, dir) = (self.consensus, &self.dir);
        let env = match (self.group_genesis_ms, i < n) {
            (None, true) => node_env(i, n, self.offset, dir, self.batcher_standbys),
            (None, false) => external_env(i - n, n, self.offset, dir),
            (Some(genesis), true) => {
                let mut env = member_env(i, n, self.offset, dir, genesis);
                if self.fenced {
                    env.push(("REDUNDANCY_FENCING".into(), "true".into()));
                }
                env
            }
            (Some(_), false) => group_external_env(i - n, n, self.offset, dir),
        };
        let env = self.routed(i, env);
        let child = Command::new(&self.exe)
            .envs(env)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .envs(self.extra_env.iter().cloned())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.exe.display()))?;
        self.children[i] = Some(child);
        Ok(())
    }

    /// `env` with node `i`'s boot nodes sent through [`Devnet::routes`].
    fn routed(&self, i: usize, mut env: Vec<(String, String)>) -> Vec<(String, String)> {
        for (_, v) in env.iter_mut().filter(|(k, _)| k == "NETWORK_BOOT_NODES") {
            for (&(from, to), &port) in &self.routes {
                if from == i {
                    let direct = format!("@127.0.0.1:{},", Ports::of(to, self.offset).p2p);
                    let routed = format!("@127.0.0.1:{port},");
                    *v = format!("{v},")
                        .replace(&direct, &routed)
                        .trim_end_matches(',')
                        .to_string();
                }
            }
        }
        env
    }

    /// `kill -9`: no shutdown, no flush.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.children[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends `signal` and leaves the process be (SIGSTOP freezes a node the way a long pause
    /// does; SIGCONT wakes it with its view of the world as it was).
    pub fn signal(&self, i: usize, signal: nix::sys::signal::Signal) {
        if let Some(c) = &self.children[i] {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.id() as i32), signal);
        }
    }

    /// SIGTERM, then SIGKILL after `grace`; the exit status if it stopped by itself.
    pub fn stop(&mut self, i: usize, grace: Duration) -> Option<std::process::ExitStatus> {
        self.signal_and_wait(i, nix::sys::signal::Signal::SIGTERM, grace)
    }

    /// Sends `signal`, waits up to `grace` for the exit, then SIGKILLs.
    pub fn signal_and_wait(
        &mut self,
        i: usize,
        signal: nix::sys::signal::Signal,
        grace: Duration,
    ) -> Option<std::process::ExitStatus> {
        let mut c = self.children[i].take()?;
        let pid = nix::unistd::Pid::from_raw(c.id() as i32);
        let _ = nix::sys::signal::kill(pid, signal);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = c.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        let _ = c.wait();
        None
    }

    pub fn stop_all(&mut self) {
        for i in 0..self.size() {
            let _ = self.stop(i, Duration::from_secs(10));
        }
    }

    /// Each node's status, or why there is none.
    pub fn statuses(&mut self) -> Vec<Result<StatusView, String>> {
        (0..self.size())
            .map(|i| {
                if let Some(c) = self.children[i].as_mut() {
                    if let Ok(Some(code)) = c.try_wait() {
                        return Err(format!(
                            "exited ({code}); see {}",
                            self.log_path(i).display()
                        ));
                    }
                } else {
                    return Err("stopped".into());
                }
                self.clients[i].status().map_err(|e| e.to_string())
            })
            .collect()
    }

    pub fn index_of(&self, id: &NodeId) -> Option<usize> {
        self.ids.iter().position(|x| x == id)
    }

    pub fn table(&mut self) -> String {
        if self.group_genesis_ms.is_some() {
            return self.group_table();
        }
        let rows = self.statuses();
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<5} {:<10} {:<7} {:>6} {:>8} {:<12} {:>5} {:>7} {:>5} {:>7} {:>5}  batcher",
            "node",
            "role",
            "leader",
            "term",
            "height",
            "head",
            "peers",
            "mempool",
            "lag",
            "sealed",
            "on L1",
        );
        for (i, row) in rows.iter().enumerate() {
            match row {
                Ok(s) => {
                    let leader = s
                        .current_leader
                        .and_then(|l| self.index_of(&l))
                        .map(|l| self.name(l))
                        .unwrap_or_else(|| "-".into());
                    let head = s.head_hash.to_string();
                    let role = if s.role == NodeKind::External {
                        "external".to_string()
                    } else {
                        s.raft_state.name().to_lowercase()
                    };
                    let lag = s.lag.map(|l| l.to_string()).unwrap_or_else(|| "-".into());
                    // L1 batches: sealed here, and (the batcher) on L1.
                    let sealed = s
                        .batcher
                        .as_ref()
                        .map(|b| b.last_sealed.to_string())
                        .unwrap_or_else(|| "-".into());
                    let on_l1 = s
                        .batcher
                        .as_ref()
                        .and_then(|b| b.last_committed_l1)
                        .map(|n| n.to_string())
                        .unwrap_or_else(|| "-".into());
                    // The batcher role: this node's part in it, and the epoch Raft agreed.
                    let batcher = s
                        .batcher
                        .as_ref()
                        .map(|b| match (b.role.name(), b.level) {
                            ("attester", _) => "-".to_string(),
                            (r, Some(l)) => format!("{r} L{l} e{}", b.epoch),
                            (r, None) => format!("{r} e{}", b.epoch),
                        })
                        .unwrap_or_else(|| "-".into());
                    let _ = writeln!(
                        out,
                        "{:<5} {:<10} {:<7} {:>6} {:>8} {:<12} {:>5} {:>7} {:>5} {:>7} {:>5}  {}",
                        self.name(i),
                        role,
                        leader,
                        s.term,
                        s.last_canonized_height,
                        &head[..head.len().min(12)],
                        s.connected_peers.len(),
                        s.mempool_size,
                        lag,
                        sealed,
                        on_l1,
                        batcher
                    );
                }
                Err(e) => {
                    let _ = writeln!(out, "{:<5} {e}", self.name(i));
                }
            }
        }
        out
    }
}

impl Devnet {
    /// The single-sequencer view: who signs, who stands by and how close each is to stepping in.
    fn group_table(&mut self) -> String {
        let rows = self.statuses();
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<5} {:<13} {:>5} {:>6} {:>8} {:>12} {:>6} {:<12} {:>5} {:>7}",
            "node",
            "mode",
            "level",
            "signer",
            "height",
            "round",
            "missed",
            "head",
            "peers",
            "mempool"
        );
        for (i, row) in rows.iter().enumerate() {
            let s = match row {
                Ok(s) => s,
                Err(e) => {
                    let _ = writeln!(out, "{:<5} {e}", self.name(i));
                    continue;
                }
            };
            let head = s.head_hash.to_string();
            let dash = || "-".to_string();
            let (mode, level, signer, round, missed) = match &s.redundancy {
                Some(g) => (
                    g.mode.name().to_string(),
                    g.level.to_string(),
                    g.active_signer_level.map_or_else(dash, |l| l.to_string()),
                    g.round.map_or_else(dash, |r| r.to_string()),
                    g.missed_rounds.to_string(),
                ),
                None => (s.role.name().to_string(), dash(), dash(), dash(), dash()),
            };
            let _ = writeln!(
                out,
                "{:<5} {:<13} {:>5} {:>6} {:>8} {:>12} {:>6} {:<12} {:>5} {:>7}",
                self.name(i),
                mode,
                level,
                signer,
                s.last_applied_height,
                round,
                missed,
                &head[..head.len().min(12)],
                s.connected_peers.len(),
                s.mempool_size,
            );
        }
        out
    }
}

impl Drop for Devnet {
    fn drop(&mut self) {
        for c in self.children.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The `devnet` command: start, show the table every second, stop everything on Ctrl-C.
/// `standbys`: a single-sequencer group (main + that many hot standbys) instead of `n` Raft nodes.
/// Starts anvil (0.25 s blocks, as in the seed) on 8545 + `offset` and deploys the settlement
/// contract with consensus nodes `0..n` registered; returns the process (killed when dropped)
/// and the environment that points the nodes at it. Without anvil installed, says how to get it
/// and goes on without an L1.
async fn start_l1(
    n: usize,
    dir: &Path,
    offset: u16,
) -> Result<(Option<crate::l1::AnvilProcess>, Vec<(String, String)>), String> {
    if let Err(e) = crate::l1::find_anvil() {
        eprintln!("devnet: no L1 ({e}); batches are sealed and attested but not committed");
        return Ok((None, Vec::new()));
    }
    let port = 8545u16
        .checked_add(offset)
        .ok_or_else(|| format!("--port-offset {offset} pushes anvil's port past 65535"))?;
    std::fs::create_dir_all(dir).map_err(|e| format!("--dir {}: {e}", dir.display()))?;
    let log = dir.join("anvil.log");
    let anvil = crate::l1::AnvilProcess::start(port, Some(0.25), Some(&log))?;
    let key = SecretKey::from_hex(crate::l1::ANVIL_DEV_KEY).map_err(|e| e.to_string())?;
    let l1 = crate::l1::L1::connect(&anvil.url, &key).map_err(|e| e.to_string())?;
    l1.wait_ready(Duration::from_secs(20)).await.map_err(|e| {
        format!(
            "anvil on port {port} did not answer ({e}); is the port taken? see {}",
            log.display()
        )
    })?;
    let validators = (0..n)
        .map(|i| canon_engine::settlement::batch::address_of(&node_key(i).node_id()))
        .collect();
    let address = l1.deploy(validators).await.map_err(|e| e.to_string())?;
    eprintln!(
        "devnet: L1 anvil at {} (log {}), settlement contract {address}",
        anvil.url,
        log.display()
    );
    let env = vec![
        ("GENERAL_L1_RPC_URL".to_string(), anvil.url.clone()),
        ("L1_SETTLEMENT_ADDRESS".to_string(), address.to_string()),
    ];
    Ok((Some(anvil), env))
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

/// What `canon-node devnet` starts.
pub struct Plan {
    /// Consensus nodes (Raft mode).
    pub nodes: usize,
    /// Single-sequencer mode instead of Raft: a main and this many hot standbys.
    pub standbys: Option<usize>,
    pub fenced: bool,
    pub externals: usize,
    pub dir: PathBuf,
    pub offset: u16,
    pub no_l1: bool,
    pub batcher_standbys: usize,
    pub app: Application,
}

pub async fn run(plan: Plan) -> Result<(), String> {
    let Plan {
        nodes: n,
        standbys,
        fenced,
        externals,
        ref dir,
        offset,
        no_l1,
        batcher_standbys,
        app,
    } = plan;
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
    let (_anvil, mut l1_env) = if standbys.is_none() && !no_l1 {
        start_l1(n, dir, offset).await?
    } else {
        (None, Vec::new())
    };
    let app_env = match app {
        Application::Ledger => Vec::new(),
        Application::Kv => kv_env(dir)?,
    };
    l1_env.extend(app_env.iter().cloned());
    let net = match standbys {
        Some(k) => Devnet::start_group(&exe, k, externals, dir, offset, app_env, fenced)?,
        None => Devnet::start_with_batchers(
            &exe,
            n,
            batcher_standbys.min(n.saturating_sub(1)),
            externals,
            dir,
            offset,
            l1_env,
        )?,
    };
    let dir_shown = net.dir.display().to_string();
    if app == Application::Kv {
        eprintln!(
            "devnet: application kv; clients send `Authorization: Bearer <token>` with the \
             token in {dir_shown}/client-token (`canon-node load --app kv --token-file \
             {dir_shown}/client-token`)"
        );
    }
    let net = std::sync::Arc::new(std::sync::Mutex::new(net));
    let tty = std::io::stdout().is_terminal();
    match standbys {
        Some(k) => eprintln!(
            "devnet: single-sequencer group (main + {k} standbys sharing identity {}{}) and \
             {externals} external nodes, data and logs in {dir_shown}; Ctrl-C stops them all",
            identity_key().node_id(),
            if fenced { ", fenced" } else { "" }
        ),
        None => eprintln!(
            "devnet: {n} consensus and {externals} external nodes, data and logs in {dir_shown}; Ctrl-C stops them all"
        ),
    }
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| format!("cannot listen for SIGTERM: {e}"))?;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
            _ = tick.tick() => {
                let net = net.clone();
                let table = tokio::task::spawn_blocking(move || {
                    canon_engine::sync::lock(&net).table()
                })
                .await
                .unwrap_or_default();
                if tty {
                    print!("\x1b[2J\x1b[H{table}");
                } else {
                    println!("{table}");
                }
            }
        }
    }
    eprintln!("devnet: stopping");
    tokio::task::spawn_blocking(move || canon_engine::sync::lock(&net).stop_all())
        .await
        .map_err(|e| e.to_string())?;
    eprintln!("devnet: stopped");
    Ok(())
}
