//! The vote gate of a node repairing its store: after a repair forgot the log it had
//! acknowledged, it abstains until it has applied up to the bound the repair wrote (see
//! [`crate::consensus::repair`]): it never stands, and it grants a vote only to a candidate
//! whose last log position reaches the bound, which is Raft's own rule applied to the lost log.

use openraft::AsyncRuntime;

use super::ConsensusNode;
use crate::consensus::raft::types::log_pos;
use crate::ids::NodeId;
use crate::policy::election::LogPos;

impl<RT: AsyncRuntime> ConsensusNode<RT> {
    /// A repair's abstention bound, while the applied position is short of it.
    pub(crate) fn abstaining(&self) -> Option<LogPos> {
        let bound = self.abstain_until?;
        let applied = self
            .chain
            .state()
            .last_applied
            .map_or(LogPos { term: 0, index: 0 }, |l| log_pos(&l));
        (applied < bound).then_some(bound)
    }

    /// A vote request: Raft's answer, or, while abstaining, a refusal to a candidate whose log
    /// does not reach the bound (the candidate sees this node's vote and log, and a rejection,
    /// as from any voter that will not grant).
    pub(super) async fn answer_vote(
        &self,
        req: openraft::raft::VoteRequest<NodeId>,
    ) -> Result<openraft::raft::VoteResponse<NodeId>, openraft::error::RaftError<NodeId>> {
        let candidate = req.last_log_id.as_ref().map(log_pos);
        if self
            .abstaining()
            .is_none_or(|bound| candidate >= Some(bound))
        {
            return self.raft().vote(req).await;
        }
        let m = self.raft().metrics().borrow().clone();
        Ok(openraft::raft::VoteResponse {
            vote: m.vote,
            vote_granted: false,
            last_log_id: self.log.last_log_id().ok().flatten(),
        })
    }
}
