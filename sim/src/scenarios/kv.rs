//! The key-value application's scenarios: concurrent clients through leader changes,
//! partitions, crashes and clock jumps, every operation recorded and the history checked for
//! linearizability (`crate::linearizable`).

use std::collections::BTreeMap;
use std::time::Duration;

use canon_engine::app::kv::{KvApp, KvOutcome, KvTx};
use canon_engine::app::App;

use super::common::{at, heal_and_check, sleep_ms, HEAL_BOUND, PROGRESS_BLOCKS};
use crate::cluster::{ClusterConfig, SimApp, SimCluster};
use crate::kv_client::{spawn_kv_clients, KvHistory};
use crate::linearizable::{self, KvReturn, Operation};
use crate::scenario::{Ctx, ScenarioFuture};
use crate::schedule::exec::check_fits;
use crate::schedule::{draw_chaos, draw_kv_linearizable, execute, ChaosMix, SpareDraw, Weights};

const KV_CLIENTS: usize = 5;
/// Few keys, so operations on one key overlap often.
const KV_KEYS: usize = 3;
const FAULT_SECS: u64 = 20;
const CHAOS_SECS: u64 = 40;
/// Fewest operations a history must hold. Chaos keeps the cluster without a quorum much of the
/// time, and its clients spend it waiting out timeouts (38 operations was the fewest of 1,000
/// seeds under an earlier fault plan); the faults of `kv-linearizable` leave a quorum most of
/// the time.
const FEWEST_OPERATIONS: usize = 50;
const FEWEST_OPERATIONS_CHAOS: usize = 20;
/// Long enough for every open operation to finish or time out.
const DRAIN_MS: u64 = 3_000;

fn kv_cluster(ctx: &Ctx) -> SimCluster {
    ctx.cluster(ClusterConfig {
        app: SimApp::Kv,
        // No L1 in these scenarios: the batcher has nothing to say about reads.
        batchers: Vec::new(),
        ..ClusterConfig::default()
    })
}

/// Stops the clients, lets open operations end, heals, and checks the history, which must hold
/// at least `at_least` operations to mean anything.
async fn check_history(
    c: &mut SimCluster,
    history: &KvHistory,
    at_least: usize,
) -> Result<(), String> {
    history.stop();
    sleep_ms(DRAIN_MS).await;
    heal_and_check(c).await?;
    let applied = applied_writes(c)?;
    let operations = resolve(history.snapshot(), &applied).map_err(|e| at(c, e))?;
    c.record("kv_operations", operations.len() as f64);
    if operations.len() < at_least {
        return Err(at(
            c,
            format!(
                "only {} key-value operations were recorded",
                operations.len()
            ),
        ));
    }
    linearizable::check(&operations).map_err(|v| at(c, format!("linearizability: {v}")))
}

/// Every write the canonical chain applied, by (client, request), with what it answered:
/// re-executed here from the blocks of the most advanced node, through the application's own
/// executor. A write applied twice is a violation.
fn applied_writes(c: &SimCluster) -> Result<BTreeMap<(u64, u64), KvReturn>, String> {
    let node = c
        .up_nodes()
        .into_iter()
        .filter_map(|i| c.node(i))
        .max_by_key(|n| n.chain().head().height)
        .ok_or("no node is up")?;
    let chain = node.chain();
    let mut state = App::new(KvApp).genesis();
    let mut applied = BTreeMap::new();
    for height in 1..=chain.head().height {
        let block = chain
            .block(height)
            .map_err(|e| e.to_string())?
            .ok_or(format!("block {height} is missing"))?;
        for tx in &block.transactions {
            let kv = KvTx::from_tx(tx).map_err(|e| format!("block {height}: {e}"))?;
            let output = state
                .execute(tx)
                .map_err(|e| format!("block {height}: replay refused a transaction: {e}"))?;
            let ret = match KvOutcome::decode(&output).map_err(|e| e.to_string())? {
                KvOutcome::Put => KvReturn::Put,
                KvOutcome::Deleted(existed) => KvReturn::Deleted(existed),
                KvOutcome::Swapped(swapped) => KvReturn::Swapped(swapped),
            };
            if applied.insert((kv.client, kv.request), ret).is_some() {
                return Err(format!(
                    "client {} request {} was applied twice (again at height {height})",
                    kv.client, kv.request
                ));
            }
        }
    }
    Ok(applied)
}

/// The history as the check takes it. A write whose client saw an answer must be in the chain
/// with that answer. One whose client saw none is settled by the chain: absent, it never took
/// effect and is left out; present, its answer is known and only its instant is not (it
/// completes at the end of time). Reads are never left open.
fn resolve(
    operations: Vec<Operation>,
    applied: &BTreeMap<(u64, u64), KvReturn>,
) -> Result<Vec<Operation>, String> {
    let mut out = Vec::with_capacity(operations.len());
    for mut op in operations {
        let id = (op.client, op.request);
        let on_chain = applied.get(&id);
        match (&op.call, &op.completed, on_chain) {
            (linearizable::KvCall::Get, _, _) => {}
            (_, Some((_, seen)), Some(chain)) if seen != chain => {
                return Err(format!(
                    "client {} request {}: the client was answered {seen:?}, the chain {chain:?}",
                    op.client, op.request
                ))
            }
            (_, Some((_, seen)), None) => {
                return Err(format!(
                    "client {} request {} was answered {seen:?} but is not in the chain",
                    op.client, op.request
                ))
            }
            (_, Some(_), Some(_)) => {}
            (_, None, None) => continue,
            (_, None, Some(chain)) => op.completed = Some((Duration::MAX, chain.clone())),
        }
        out.push(op);
    }
    Ok(out)
}

/// A key-value cluster with its clients running and a leader making progress.
async fn running(ctx: &Ctx) -> Result<(SimCluster, std::sync::Arc<KvHistory>), String> {
    let c = kv_cluster(ctx);
    let history = spawn_kv_clients(&c, ctx.seed, KV_CLIENTS, KV_KEYS);
    let all = c.up_nodes();
    c.wait_for_leader(&all, HEAL_BOUND)
        .await
        .map_err(|e| at(&c, e))?;
    c.wait_for_progress(PROGRESS_BLOCKS, HEAL_BOUND)
        .await
        .map_err(|e| at(&c, e))?;
    Ok((c, history))
}

pub(crate) fn kv_linearizable(ctx: Ctx) -> ScenarioFuture {
    Box::pin(async move {
        let (mut c, history) = running(&ctx).await?;
        let schedule = ctx.schedule(|| draw_kv_linearizable(ctx.seed, c.size(), FAULT_SECS));
        check_fits(&schedule, c.size(), 0, false).map_err(|e| e.to_string())?;
        execute(&mut c, &schedule).await;
        check_history(&mut c, &history, FEWEST_OPERATIONS).await
    })
}

/// Everything `chaos` does to a cluster but L1 (these clusters have none; a node is cut off
/// from its peers instead), under the same clients and the same history check: crashes and
/// power losses, partitions one way or both, loss, delay, failing disk writes, clock jumps,
/// stream faults.
pub(crate) fn kv_chaos(ctx: Ctx) -> ScenarioFuture {
    Box::pin(async move {
        let (mut c, history) = running(&ctx).await?;
        // chaos's draws; its L1 fault cuts a node off from its peers instead.
        let schedule = ctx.schedule(|| {
            draw_chaos(
                ctx.seed,
                &ChaosMix {
                    nodes: c.size(),
                    externals: 0,
                    spare: SpareDraw::CutOff,
                    secs: CHAOS_SECS,
                    weights: Weights::CHAOS,
                },
            )
        });
        check_fits(&schedule, c.size(), 0, false).map_err(|e| e.to_string())?;
        execute(&mut c, &schedule).await;
        check_history(&mut c, &history, FEWEST_OPERATIONS_CHAOS).await
    })
}
