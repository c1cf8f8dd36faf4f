//! The consensus node's one driver: it sleeps until the core's next deadline or until some
//! work it started finishes, runs the core, and carries out the effects. It decides nothing:
//! every choice is the core's ([`crate::consensus::core`]); openraft keeps its own tasks.

use std::sync::Arc;
use std::time::Duration;

use futures::channel::mpsc::{UnboundedReceiver, UnboundedSender};
use futures::future::{select, Either};
use futures::StreamExt;
use openraft::AsyncRuntime;

use crate::consensus::config::NodeConfig;
use crate::consensus::core::{Effect, Input};
use crate::consensus::node::ConsensusNode;
use crate::consensus::raft::types::{ApplyOutcome, Command};
use crate::consensus::{backfill, certify};
use crate::events::Event;
use crate::net::peer;
use crate::net::wire::{Request, Response};
use crate::policy::sequencer::ProposalOutcome;
use crate::seams::{NodeError, Seams};
use crate::settlement::batcher;

impl<RT: AsyncRuntime> ConsensusNode<RT> {
    /// Opens storage, starts Raft and the node's driver on the runtime.
    pub async fn start(cfg: NodeConfig, seams: Seams) -> Result<Arc<Self>, NodeError> {
        let (node, finished) = Self::open(cfg, seams).await?;
        if node.config().bootstrap {
            let _detached = RT::spawn(node.clone().bootstrap());
        }
        let _detached = RT::spawn(drive(node.clone(), finished));
        Ok(node)
    }
}

/// Runs `node`'s core until the node stops.
async fn drive<RT: AsyncRuntime>(
    node: Arc<ConsensusNode<RT>>,
    mut finished: UnboundedReceiver<Input>,
) {
    let done = node.wake().clone();
    let mut input = Input::Tick;
    loop {
        if node.is_stopped() {
            return;
        }
        if let Some(error) = node.storage().corruption_seen() {
            node.stop_for_damage(error).await;
            return;
        }
        let view = node.raft_view();
        let effects = {
            let now = node.core().now_ms();
            node.core().lock().handle(now, &view, input)
        };
        for effect in effects {
            carry_out(&node, effect, &done).await;
        }
        input = next_input::<RT>(&node, &mut finished).await;
    }
}

/// The next finished work, or [`Input::Tick`] once the core's deadline comes.
async fn next_input<RT: AsyncRuntime>(
    node: &ConsensusNode<RT>,
    finished: &mut UnboundedReceiver<Input>,
) -> Input {
    let wait_ms = {
        let deadline = node.core().lock().next_deadline();
        deadline.saturating_sub(node.core().now_ms())
    };
    if wait_ms == 0 {
        return Input::Tick;
    }
    let sleep = Box::pin(RT::sleep(Duration::from_millis(wait_ms)));
    let gap = Box::pin(node.chain().backfill_due());
    match select(select(sleep, gap), finished.next()).await {
        Either::Right((Some(input), _)) => input,
        Either::Left((Either::Right(_), _)) => Input::GapMayExist,
        // The node holds a sender: the stream never ends while the node lives.
        Either::Left((Either::Left(_), _)) | Either::Right((None, _)) => Input::Tick,
    }
}

async fn carry_out<RT: AsyncRuntime>(
    node: &Arc<ConsensusNode<RT>>,
    effect: Effect,
    done: &UnboundedSender<Input>,
) {
    match effect {
        Effect::Emit(event) => node.emit(event),
        Effect::ConfirmLeadership { within_ms } => {
            let raft = node.raft();
            let done = done.clone();
            let _detached = RT::spawn(async move {
                let confirmed = matches!(
                    RT::timeout(Duration::from_millis(within_ms), raft.ensure_linearizable()).await,
                    Ok(Ok(_))
                );
                let _ = done.unbounded_send(Input::Confirmed(confirmed));
            });
        }
        Effect::Propose { block, within_ms } => {
            let height = block.header.height;
            // Handed to Raft here, in order: a pipelined block must follow its parent.
            match node.raft().client_write_ff(Command::Block(*block)).await {
                Err(e) => {
                    let outcome = ProposalOutcome::Failed(e.to_string());
                    let _ = done.unbounded_send(Input::Resolved { height, outcome });
                }
                Ok(canonized) => {
                    let done = done.clone();
                    let deadline = Duration::from_millis(within_ms);
                    let _detached = RT::spawn(async move {
                        let outcome = match RT::timeout(deadline, canonized).await {
                            Ok(Ok(Ok(resp))) => outcome_of(resp.data),
                            Ok(Ok(Err(e))) => ProposalOutcome::Failed(e.to_string()),
                            Ok(Err(_)) => ProposalOutcome::Failed("Raft stopped".into()),
                            Err(_) => ProposalOutcome::TimedOut,
                        };
                        let _ = done.unbounded_send(Input::Resolved { height, outcome });
                    });
                }
            }
        }
        Effect::RequestPreVotes { round } => request_pre_votes(node, round, done),
        Effect::Campaign => {
            let _ = node.raft().trigger().elect().await;
        }
        Effect::StepDown => {
            if let Err(e) = node.reopen_raft(true).await {
                tracing::error!(node = ?node.id(), "could not restart raft after stepping down: {e}");
            }
        }
        Effect::Reopen { after } => {
            match node.reopen_raft(false).await {
                Ok(()) => node.emit(Event::RaftReopened { after }),
                // Raft stays failed, so the election policy asks again after a timeout.
                Err(e) => tracing::warn!(node = ?node.id(), "could not reopen raft: {e}"),
            }
        }
        Effect::Probe => probe_peers(node),
        Effect::FetchBlocks {
            gap,
            source,
            from,
            count,
        } => {
            let (node, done) = (node.clone(), done.clone());
            let _detached = RT::spawn(async move {
                let step = backfill::fetch(&*node, &gap, source, from, count).await;
                let _ = done.unbounded_send(Input::Backfilled(step));
            });
        }
        Effect::Certify(round) => {
            let (node, done) = (node.clone(), done.clone());
            let _detached = RT::spawn(async move {
                let progressed = certify::round(&*node, round).await;
                let _ = done.unbounded_send(Input::Certified { progressed });
            });
        }
        Effect::Recut { gap } => {
            let key = &node.config().key;
            let closed = backfill::recut_reported(node.chain(), key, &gap, &mut |e| node.emit(e));
            let _ = done.unbounded_send(Input::Recut { closed });
        }
        Effect::Batcher(work) => {
            let Some(l1) = node.l1().cloned() else {
                tracing::error!(node = ?node.id(), "batcher work with no L1: {work:?}");
                return;
            };
            let (node, done) = (node.clone(), done.clone());
            let _detached = RT::spawn(async move {
                let answer = batcher::carry_out(&*node, &*l1, work).await;
                let _ = done.unbounded_send(Input::Batcher(answer));
            });
        }
    }
}

/// What an applied block entry means for the proposal.
fn outcome_of(applied: ApplyOutcome) -> ProposalOutcome {
    match applied {
        ApplyOutcome::Applied { .. } | ApplyOutcome::Control => ProposalOutcome::Canonized,
        ApplyOutcome::Rejected(e) => ProposalOutcome::Rejected(e.to_string()),
        ApplyOutcome::Claimed { .. } | ApplyOutcome::ClaimLost(_) => {
            ProposalOutcome::Failed("a block entry applied as a claim".into())
        }
    }
}

/// Asks every other voter for its pre-vote; each answer goes back to the core.
fn request_pre_votes<RT: AsyncRuntime>(
    node: &Arc<ConsensusNode<RT>>,
    round: u64,
    done: &UnboundedSender<Input>,
) {
    let last_log = match node.last_log_pos() {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(node = ?node.id(), "no pre-vote: cannot read the log: {e}");
            return;
        }
    };
    let req = Request::PreVote { last_log };
    let timeout = Duration::from_millis(node.config().election_timeout_ms_min);
    for peer in node.other_peers() {
        let (node, req, done) = (node.clone(), req.clone(), done.clone());
        let _detached = RT::spawn(async move {
            let transport = &**node.transport();
            let answer = peer::ask(transport, peer, &req, timeout, |r| match r {
                Response::PreVote { granted } => Some(granted),
                _ => None,
            });
            if let Ok(granted) = answer.await {
                let _ = done.unbounded_send(Input::PreVoteAnswer {
                    round,
                    peer,
                    granted,
                });
            }
        });
    }
}

/// Pings every other voter; answers count as contact.
fn probe_peers<RT: AsyncRuntime>(node: &Arc<ConsensusNode<RT>>) {
    let timeout = Duration::from_millis(node.config().heartbeat_interval_ms * 2);
    for peer in node.other_peers() {
        let node = node.clone();
        let _detached = RT::spawn(async move {
            let transport = &**node.transport();
            let pong = peer::ask(transport, peer, &Request::Ping, timeout, |r| match r {
                Response::Pong => Some(()),
                _ => None,
            });
            if pong.await.is_ok() {
                node.core().heard(peer);
            }
        });
    }
}
