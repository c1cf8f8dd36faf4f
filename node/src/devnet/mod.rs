//! `canon-node devnet`: a real local cluster as child processes of this binary, configured
//! exactly as the seed document configures its three nodes (same keys, env names and port
//! scheme), with a live status table until Ctrl-C.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use canon_engine::NodeId;

use crate::client::NodeClient;
use crate::client_auth::ClientToken;
use crate::http::StatusView;

mod env;
mod run;
mod table;

pub use env::*;
pub use run::{run, Plan};

/// A running devnet: its processes, a client for each, and what starting one again needs.
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
            Some(env::group_genesis_ms(&dir)?)
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
        // The children inherit RUST_LOG when set; otherwise each uses the node's own default
        // filter, which keeps openraft's per-request errors out.
        let child = Command::new(&self.exe)
            .envs(env)
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
}

impl Drop for Devnet {
    fn drop(&mut self) {
        for c in self.children.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
