//! Membership changes on the leader, as an operator asks for them (`canon-node admin`, the
//! simulator's `replace-node`): `policy::membership` decides, openraft's `add_learner` and
//! `change_membership` carry it out (joint consensus, one change at a time). The chain learns
//! the new voters from the first block applied after the change (see
//! [`crate::chain::members`]).

use std::collections::BTreeSet;
use std::time::Duration;

use openraft::{AsyncRuntime, ChangeMembers, ServerState};

use super::ConsensusNode;
use crate::consensus::raft::types::PeerNode;
use crate::consensus::status::MembershipStatus;
use crate::ids::NodeId;
use crate::policy::membership::{decide, Change, L1Duties, LeaderView, Plan, Refusal};
use crate::settlement::l1::L1;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MembershipError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error("Raft did not make the change: {0}")]
    Raft(String),
    #[error("the change was not committed within {0} ms; `members` shows whether it took")]
    TimedOut(u64),
    #[error("cannot tell whether L1 still needs {id}'s attestations: {reason}")]
    L1Unread { id: NodeId, reason: String },
}

impl<RT: AsyncRuntime> ConsensusNode<RT> {
    /// Every member but this node: Raft's membership in effect (voters and learners) and
    /// the chain's signer set. Before this node has heard of any membership, the chain's
    /// signer set is the genesis one (`consensus_peer_ids`).
    pub(crate) fn other_peers(&self) -> impl Iterator<Item = NodeId> + '_ {
        let me = self.id;
        self.member_ids().into_iter().filter(move |p| *p != me)
    }

    /// Every member, this node included if it is one (see [`Self::other_peers`]).
    pub(crate) fn member_ids(&self) -> BTreeSet<NodeId> {
        let raft = self.raft().metrics().borrow().membership_config.clone();
        let mut ids: BTreeSet<NodeId> = raft.membership().nodes().map(|(id, _)| *id).collect();
        ids.extend(self.chain.state().signers(&self.cfg.peers).current());
        ids
    }

    /// Whether `id` may send Raft traffic: a member (see [`Self::other_peers`]) or one of the
    /// operator's boot peers (how a joining node knows a leader added after genesis). Asked
    /// for every request, so it allocates nothing.
    pub(crate) fn is_member(&self, id: &NodeId) -> bool {
        let raft = self.raft().metrics().borrow().membership_config.clone();
        if raft.membership().get_node(id).is_some() {
            return true;
        }
        let declared = match self.chain.state().members.changes().last() {
            Some(last) => last.members.contains(id),
            None => self.cfg.peers.contains(id),
        };
        declared || self.cfg.boot_peers.contains(id)
    }

    /// The chain's signer sets, genesis and declared (see [`crate::chain::members`]).
    pub fn signers(&self) -> crate::chain::members::Signers {
        self.chain.state().signers(&self.cfg.peers)
    }

    /// The membership in effect, as this node's log holds it.
    pub fn members(&self) -> MembershipStatus {
        self.status().membership
    }

    /// Where member `id` listens for p2p, as the membership recorded it when it was added
    /// (`None` for the genesis members, whom `network_boot_nodes` locate).
    pub fn member_address(&self, id: &NodeId) -> Option<String> {
        let m = self.raft().metrics().borrow().membership_config.clone();
        m.membership()
            .get_node(id)
            .map(|n| n.addr.clone())
            .filter(|a| !a.is_empty())
    }

    /// Carries out `change` if this node leads and the policy allows it; returns the
    /// membership after it. `learner_address` is where a learner being added listens for p2p
    /// (`host:port`): recorded in the membership, so whoever leads later reaches it too.
    pub async fn change_members(
        &self,
        change: Change,
        learner_address: &str,
    ) -> Result<MembershipStatus, MembershipError> {
        let mut view = self.leader_view();
        if let (Change::Remove(id), Some(l1)) = (change, self.l1()) {
            if view.is_leader && view.voters.contains(&id) {
                let duties = self.l1_duties(&**l1).await;
                view.l1 = Some(duties.map_err(|reason| MembershipError::L1Unread { id, reason })?);
            }
        }
        let plan = decide(&view, change)?;
        let raft = self.raft();
        let set = |id: NodeId| BTreeSet::from([id]);
        let write = async {
            match plan {
                Plan::Nothing => Ok(()),
                Plan::AddLearner(id) => raft
                    .add_learner(id, PeerNode::new(learner_address), false)
                    .await
                    .map(drop),
                Plan::AddVoter(id) => {
                    commit_voters(&raft, ChangeMembers::AddVoterIds(set(id))).await
                }
                Plan::RemoveVoter(id) => {
                    commit_voters(&raft, ChangeMembers::RemoveVoters(set(id))).await
                }
                Plan::RemoveLearner(id) => {
                    commit_voters(&raft, ChangeMembers::RemoveNodes(set(id))).await
                }
            }
        };
        let within_ms = self.claim_timeout_ms();
        match RT::timeout(Duration::from_millis(within_ms), write).await {
            Ok(Ok(())) => Ok(self.members()),
            Ok(Err(e)) => Err(MembershipError::Raft(e.to_string())),
            Err(_) => Err(MembershipError::TimedOut(within_ms)),
        }
    }

    /// What L1 still needs of the signers: L1's head, read now, against the batches this
    /// node sealed.
    async fn l1_duties(&self, l1: &dyn L1) -> Result<L1Duties, String> {
        let within_ms = self.config().rpc_timeout_ms;
        let head = RT::timeout(Duration::from_millis(within_ms), l1.head())
            .await
            .map_err(|_| format!("L1 did not answer within {within_ms} ms"))??;
        let sealed_height = self.chain.state().batches.sealed_height;
        Ok(L1Duties::of(&self.signers(), head.height, sealed_height))
    }

    /// What the membership policy reads of Raft on this node.
    fn leader_view(&self) -> LeaderView {
        let m = self.raft().metrics().borrow().clone();
        let config = m.membership_config.membership();
        let configs = config.get_joint_config();
        LeaderView {
            id: self.id,
            is_leader: m.state == ServerState::Leader,
            leader: m.current_leader,
            voters: configs.last().cloned().unwrap_or_default(),
            learners: config.learner_ids().collect(),
            last_log_index: m.last_log_index.unwrap_or(0),
            matched: m
                .replication
                .as_ref()
                .map(|r| r.iter().map(|(id, l)| (*id, l.map(|l| l.index))).collect())
                .unwrap_or_default(),
            changing: m.membership_config.log_id().map(|l| l.index)
                > m.last_applied.map(|l| l.index),
            joint: configs.len() > 1,
            l1: None,
        }
    }
}

/// A voter change, committed through joint consensus; removed voters are not kept as learners.
async fn commit_voters<RT: AsyncRuntime>(
    raft: &openraft::Raft<crate::consensus::raft::types::Canon<RT>>,
    members: ChangeMembers<NodeId, PeerNode>,
) -> Result<
    (),
    openraft::error::RaftError<NodeId, openraft::error::ClientWriteError<NodeId, PeerNode>>,
> {
    raft.change_membership(members, false).await.map(drop)
}
