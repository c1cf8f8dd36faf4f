//! `canon-node devnet` itself: an L1 (anvil and the settlement contract) when wanted, the
//! nodes, the live table every second, and everything stopped on Ctrl-C or SIGTERM.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use canon_engine::keys::SecretKey;

use super::{identity_key, kv_env, node_key, Devnet};
use crate::genesis::Application;

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
