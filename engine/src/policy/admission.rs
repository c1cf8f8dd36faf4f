//! Where a client's transaction goes: into this node's mempool (it leads), on to the leader
//! (once), or back to the client with whatever leader is known.

use super::election::{RaftView, Role};
use crate::ids::NodeId;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// This node leads: check the transaction against the ledger and admit it.
    Admit,
    /// Pass it to the leader, once.
    Forward(NodeId),
    /// No leader to give it to; the client retries, at `leader` if one is known.
    NotLeader { leader: Option<NodeId> },
}

/// `forwarded`: the transaction already came from a replica, and is never forwarded again
/// (two nodes that each believe the other leads must not bounce it between them).
pub fn route(me: NodeId, view: &RaftView, forwarded: bool) -> Route {
    match view.leader {
        Some(l) if l == me && view.role == Role::Leader => Route::Admit,
        Some(l) if l != me && !forwarded => Route::Forward(l),
        leader => Route::NotLeader {
            leader: leader.filter(|l| *l != me),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::derived_key;

    #[test]
    fn routes() {
        let ids: Vec<NodeId> = (0..2).map(|i| derived_key("route", i).node_id()).collect();
        let (me, other) = (ids[0], ids[1]);
        let view = |role, leader| RaftView {
            role,
            term: 4,
            voted_for: leader,
            leader,
            millis_since_quorum_ack: None,
            failed: None,
            voters: Vec::new(),
            abstain_until: None,
        };
        // (our role, the leader we know, already forwarded) -> route
        let table = [
            (Role::Leader, Some(me), false, Route::Admit),
            (Role::Leader, Some(me), true, Route::Admit),
            (Role::Follower, Some(other), false, Route::Forward(other)),
            // Forwarded to us, but we do not lead: back to the sender, never on again.
            (
                Role::Follower,
                Some(other),
                true,
                Route::NotLeader {
                    leader: Some(other),
                },
            ),
            (
                Role::Follower,
                None,
                false,
                Route::NotLeader { leader: None },
            ),
            (
                Role::Candidate,
                None,
                true,
                Route::NotLeader { leader: None },
            ),
            // Raft still names us, but we are no longer leader (stepping down).
            (
                Role::Follower,
                Some(me),
                false,
                Route::NotLeader { leader: None },
            ),
        ];
        for (role, leader, forwarded, expect) in table {
            assert_eq!(
                route(me, &view(role, leader), forwarded),
                expect,
                "{role:?} {leader:?} {forwarded}"
            );
        }
    }
}
