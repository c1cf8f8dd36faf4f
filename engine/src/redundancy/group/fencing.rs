//! The fenced sign path of a group member (`redundancy_fencing`): a block is signed only once
//! a majority of the group chose it. This member answers others' ballots with its
//! [`FencedAcceptor`], and proposes its own round's block as
//! [`policy::fence_proposer`](crate::policy::fence_proposer) decides, carrying out the two
//! steps over the network.

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use openraft::AsyncRuntime;

use super::GroupMember;
use crate::chain::block::Block;
use crate::events::Event;
use crate::net::peer;
use crate::net::wire::{Request, Response};
use crate::policy::fence::Ballot;
use crate::policy::fence_proposer::{NextBlock, Proposer};
use crate::policy::redundancy::StepIn;
use crate::redundancy::fenced::{unsigned, FencedAcceptor, SignedBallot};
use crate::sync::lock;

impl<RT: AsyncRuntime> GroupMember<RT> {
    pub(super) fn on_fence_prepare(&self, signed: &SignedBallot) -> Response {
        let Some(fence) = &self.fence else {
            return Response::Refused("this member is not fenced".into());
        };
        let ballot = match signed.verify(&self.identity) {
            Ok(b) => b,
            Err(why) => return Response::Refused(why),
        };
        match fence.prepare(&ballot, self.clock_round(), self.sync.replica().chain()) {
            Ok(accepted) => Response::FencePromised(accepted),
            Err(why) => Response::Refused(why),
        }
    }

    pub(super) fn on_fence_accept(&self, signed: &SignedBallot, block: Block) -> Response {
        let Some(fence) = &self.fence else {
            return Response::Refused("this member is not fenced".into());
        };
        let ballot = match signed.verify(&self.identity) {
            Ok(b) => b,
            Err(why) => return Response::Refused(why),
        };
        let chain = self.sync.replica().chain();
        match fence.accept(&ballot, signed.block_hash, block, self.clock_round(), chain) {
            Ok(()) => Response::FenceAccepted,
            Err(why) => Response::Refused(why),
        }
    }

    /// Fenced mode's sign path for `round` (see [`policy::fence`]): a majority promises the
    /// round, a majority accepts the block (another's already accepted one if any promise
    /// carried it), and only then is it signed, guarded and published.
    pub(super) async fn propose(self: Arc<Self>, round: u64, reason: StepIn) {
        let outcome = self.run_proposal(round, reason).await;
        lock(&self.state).core.on_proposal_done();
        if let Err(why) = outcome {
            self.emit(Event::SignRefused {
                round,
                reason: format!("fenced: {why}"),
            });
        }
    }

    async fn run_proposal(&self, round: u64, reason: StepIn) -> Result<(), String> {
        let Some(fence) = &self.fence else {
            return Ok(());
        };
        let head = {
            let mut st = lock(&self.state);
            // A block chosen and guarded before a crash goes out first: no new signature.
            self.publish_pending(&mut st)
                .map_err(|()| "the guarded block does not extend the head".to_string())?;
            self.sync.head()
        };
        if head.round.is_some_and(|r| r >= round) {
            return Ok(());
        }
        let ballot = Ballot {
            round,
            level: self.cfg.redundancy.level.value(),
            height: head.height + 1,
        };
        let mut proposer = Proposer::new(ballot, self.cfg.members.len() + 1);
        // Each step gets a third of the round: a later answer is as good as absent.
        let timeout =
            Duration::from_millis((self.cfg.block_time_ms / 3).min(self.cfg.request_timeout_ms));
        let signed = SignedBallot::sign(self.id, &ballot, None, &self.cfg.identity)
            .map_err(|e| e.to_string())?;
        let own = fence.prepare(&ballot, self.clock_round(), self.sync.replica().chain());
        let mut promises = vec![own];
        for r in self
            .ask_members(Request::FencePrepare(signed), timeout)
            .await
        {
            promises.push(match r {
                Ok(Response::FencePromised(p)) => Ok(p),
                Ok(Response::Refused(why)) => Err(why),
                Ok(_) => Err("an unexpected answer".into()),
                Err(e) => Err(e),
            });
        }
        proposer.on_promises(promises)?;
        loop {
            let head = self.sync.head();
            let next = proposer.next(head.height, |b: &Block| b.header.parent_hash == head.hash)?;
            let own = next == NextBlock::Own;
            let block = match next {
                NextBlock::Adopt(block) => block,
                NextBlock::Own => {
                    let mut st = lock(&self.state);
                    match self.build(&mut st, round) {
                        Some(b) => unsigned(&b),
                        None => return Ok(()),
                    }
                }
            };
            let step = proposer.accept_ballot();
            let accepts = self
                .accept_everywhere(fence, &step, &block, timeout)
                .await?;
            proposer.on_accepts(accepts)?;
            // Chosen: sign it (deterministic, so whoever signs this block makes the same one).
            let sealed = Block::seal(block.header, block.transactions, &self.cfg.identity)
                .map_err(|e| e.to_string())?;
            {
                let mut st = lock(&self.state);
                if self.sync.head().height >= step.height {
                    // Downloaded meanwhile: the chosen block is the only one it can be.
                    return Ok(());
                }
                self.record_and_publish(&mut st, &sealed, reason);
            }
            if !proposer.on_signed(own) {
                return Ok(());
            }
        }
    }

    /// Step 2 at this member and every other: their answers, this member's first.
    async fn accept_everywhere(
        &self,
        fence: &FencedAcceptor,
        ballot: &Ballot,
        block: &Block,
        timeout: Duration,
    ) -> Result<Vec<Result<(), String>>, String> {
        let hash = block.hash().map_err(|e| e.to_string())?;
        let signed = SignedBallot::sign(self.id, ballot, Some(hash), &self.cfg.identity)
            .map_err(|e| e.to_string())?;
        let own = fence.accept(
            ballot,
            Some(hash),
            block.clone(),
            self.clock_round(),
            self.sync.replica().chain(),
        );
        let mut answers = vec![own];
        let req = Request::FenceAccept(signed, Box::new(block.clone()));
        for r in self.ask_members(req, timeout).await {
            answers.push(match r {
                Ok(Response::FenceAccepted) => Ok(()),
                Ok(Response::Refused(why)) => Err(why),
                Ok(_) => Err("an unexpected answer".into()),
                Err(e) => Err(e),
            });
        }
        Ok(answers)
    }

    /// Sends `req` to every other member; their answers, in member order.
    async fn ask_members(&self, req: Request, timeout: Duration) -> Vec<Result<Response, String>> {
        let transport = &*self.seams.transport;
        join_all(self.cfg.members.iter().map(|m| {
            let req = &req;
            async move {
                peer::call(transport, *m, req, timeout)
                    .await
                    .map_err(|e| e.to_string())
            }
        }))
        .await
    }
}
