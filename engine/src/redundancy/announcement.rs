//! A redundancy group member's announcement of itself (seed 002), signed with the group's
//! identity key so that only a member holding that key can make the others stand down. It is a
//! wire message, so it sits below both the wire and the group that sends it.

use serde::{Deserialize, Serialize};

use crate::codec::{self, CodecError};
use crate::ids::{NodeId, Sig65};
use crate::keys::{self, SecretKey};
use crate::policy::redundancy::Announcement;

/// An [`Announcement`] signed with the identity's key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedAnnouncement {
    pub member: NodeId,
    pub level: i64,
    pub started_at_ms: u64,
    pub round: u64,
    pub signature: Sig65,
}

#[derive(Serialize)]
struct AnnouncementBody<'a> {
    domain: &'a str,
    member: NodeId,
    level: i64,
    started_at_ms: u64,
    round: u64,
}

fn announcement_hash(a: &Announcement) -> Result<alloy_primitives::B256, CodecError> {
    let body = AnnouncementBody {
        // Never confusable with a block header's hash.
        domain: "canon/redundancy-announcement",
        member: a.member,
        level: a.level,
        started_at_ms: a.started_at_ms,
        round: a.round,
    };
    Ok(alloy_primitives::keccak256(codec::encode(&body)?))
}

impl SignedAnnouncement {
    pub fn sign(a: &Announcement, identity: &SecretKey) -> Result<SignedAnnouncement, CodecError> {
        Ok(SignedAnnouncement {
            member: a.member,
            level: a.level,
            started_at_ms: a.started_at_ms,
            round: a.round,
            signature: identity.sign_hash(&announcement_hash(a)?),
        })
    }

    /// The announcement, if `identity` signed it; anything else merely claims the key.
    pub fn verify(&self, identity: &NodeId) -> Result<Announcement, String> {
        let a = Announcement {
            member: self.member,
            level: self.level,
            started_at_ms: self.started_at_ms,
            round: self.round,
        };
        let hash = announcement_hash(&a).map_err(|e| e.to_string())?;
        match keys::recover_node_id(&hash, &self.signature) {
            Ok(id) if id == *identity => Ok(a),
            _ => Err(format!(
                "announcement from {} is not signed by the group's identity",
                self.member
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::derived_key;

    #[test]
    fn announcements_verify_only_with_the_identity() {
        let identity = derived_key("group-test", 0);
        let other = derived_key("group-test", 1);
        let a = Announcement {
            member: derived_key("group-test", 2).node_id(),
            level: 1,
            started_at_ms: 5,
            round: 9,
        };
        let signed = SignedAnnouncement::sign(&a, &identity).unwrap();
        assert_eq!(signed.verify(&identity.node_id()), Ok(a));
        // Signed by someone else, or altered after signing: only a claim.
        let forged = SignedAnnouncement::sign(&a, &other).unwrap();
        assert!(forged.verify(&identity.node_id()).is_err());
        let mut altered = signed.clone();
        altered.level = 0;
        assert!(altered.verify(&identity.node_id()).is_err());
        let mut garbage = signed;
        garbage.signature = Sig65([0u8; 65]);
        assert!(garbage.verify(&identity.node_id()).is_err());
    }
}
