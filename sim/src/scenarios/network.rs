//! The network under attack and under stream faults: an attacker on the path tampers with live
//! connections between consensus nodes, and an attacker host dials them with replayed
//! handshakes, garbage and silence. The p2p layer closes and reports every such connection,
//! the checker holds that nothing an attacker touched reached an engine, and the cluster keeps
//! canonizing over the remaining links.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use canon_engine::net::p2p::ConnectionFault;
use rand::Rng;
use tokio::io::AsyncWriteExt;

use super::common::{at, heal_and_check, running_cluster, sleep_ms, HEAL_BOUND};
use crate::cluster::SimCluster;
use crate::net::stream::Tamper;
use crate::net::PORT;
use crate::scenario::{Ctx, ScenarioFuture};

fn refused_at(c: &SimCluster, node: usize) -> Vec<ConnectionFault> {
    c.observer
        .lock()
        .connections_refused
        .iter()
        .filter(|(n, _)| *n == node)
        .map(|(_, f)| *f)
        .collect()
}

/// Waits until `node` reported a refused connection beyond the `before` it had.
async fn wait_for_refusal(
    c: &SimCluster,
    node: usize,
    before: usize,
    bound: Duration,
) -> Result<ConnectionFault, String> {
    let start = std::time::Instant::now();
    loop {
        if let Some(f) = refused_at(c, node).get(before) {
            return Ok(*f);
        }
        if start.elapsed() > bound {
            return Err(format!(
                "n{node} reported no refused connection within {bound:?}"
            ));
        }
        sleep_ms(20).await;
    }
}

/// What the attacker host does to one node from outside the path.
#[derive(Clone, Copy, Debug)]
enum Dial {
    /// Replays the handshake (and what followed) another node sent it, recorded off the wire.
    ReplayedHandshake,
    /// Sends bytes that are no handshake.
    Garbage,
    /// Opens connections and says nothing.
    Silence,
}

const ATTACKER_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 9, 1));

pub(crate) fn hostile_network(ctx: Ctx) -> ScenarioFuture {
    Box::pin(async move {
        let (mut c, _) = running_cluster(&ctx).await?;
        let n = c.size();
        let mut lines = Vec::new();
        // On the path: each attack once on what the leader sends a follower (its replication
        // stream, never idle), and the follower must notice.
        for attack in [
            Tamper::FlipBit,
            Tamper::Replay,
            Tamper::Drop,
            Tamper::Splice,
        ] {
            let a = c.leader().ok_or_else(|| at(&c, "no leader".into()))?;
            let b = (a + c.rng.gen_range(1..n)) % n;
            let before = refused_at(&c, b).len();
            let hit = c.net.tamper(a, b, attack);
            c.note(format!(
                "attack: {attack:?} n{a} -> n{b} ({hit} connections)"
            ));
            if hit == 0 {
                return Err(at(&c, format!("no connection n{a} -> n{b} to attack")));
            }
            let fault = wait_for_refusal(&c, b, before, Duration::from_secs(5))
                .await
                .map_err(|e| at(&c, format!("after {attack:?}: {e}")))?;
            lines.push(format!("{attack:?} n{a}->n{b}: n{b} closed it ({fault:?})"));
            c.wait_for_progress(3, HEAL_BOUND)
                .await
                .map_err(|e| at(&c, format!("after {attack:?}: {e}")))?;
        }
        // From outside: an attacker host dials each node.
        let attacker = c
            .net
            .add_member(attacker_key().node_id(), SocketAddr::new(ATTACKER_IP, PORT));
        let host = c
            .handle
            .create_node()
            .name("attacker")
            .ip(ATTACKER_IP)
            .build();
        for dial in [Dial::ReplayedHandshake, Dial::Garbage, Dial::Silence] {
            let target = c.rng.gen_range(0..n);
            let victim_of_replay = (target + 1) % n;
            let before = refused_at(&c, target).len();
            // A live connection whose handshake the path recorded (one may be redialing).
            let mut recorded = c.net.recorded_dial(victim_of_replay, target);
            for _ in 0..100 {
                if !recorded.is_empty() || !matches!(dial, Dial::ReplayedHandshake) {
                    break;
                }
                sleep_ms(20).await;
                recorded = c.net.recorded_dial(victim_of_replay, target);
            }
            if recorded.is_empty() && matches!(dial, Dial::ReplayedHandshake) {
                return Err(at(
                    &c,
                    format!("no handshake of n{victim_of_replay} to n{target} recorded to replay"),
                ));
            }
            let net = c.net.clone();
            let address = SocketAddr::new(crate::cluster::node_ip(target), PORT).to_string();
            let garbage: Vec<u8> = (0..64).map(|_| c.rng.gen()).collect();
            c.note(format!("attack: host dials n{target}: {dial:?}"));
            let id = attacker_key().node_id();
            let opened = host
                .spawn(async move {
                    let mut held = Vec::new();
                    let rounds = if matches!(dial, Dial::Silence) { 8 } else { 1 };
                    for _ in 0..rounds {
                        let Ok(conn) = net.connect(attacker, id, &address).await else {
                            return held.len();
                        };
                        let mut stream = conn.stream;
                        stream.forge();
                        match dial {
                            Dial::ReplayedHandshake => {
                                for segment in &recorded {
                                    let _ = stream.write_all(segment).await;
                                    madsim::time::sleep(Duration::from_millis(5)).await;
                                }
                            }
                            Dial::Garbage => {
                                let _ = stream.write_all(&garbage).await;
                            }
                            Dial::Silence => {}
                        }
                        held.push(stream);
                    }
                    madsim::time::sleep(Duration::from_secs(7)).await;
                    held.len()
                })
                .await
                .unwrap_or(0);
            let refusals = refused_at(&c, target);
            let new: Vec<_> = refusals.get(before..).unwrap_or(&[]).to_vec();
            let expected = match dial {
                Dial::ReplayedHandshake | Dial::Garbage => ConnectionFault::Handshake,
                Dial::Silence => ConnectionFault::HandshakeTimedOut,
            };
            if !new.contains(&expected) {
                return Err(at(
                    &c,
                    format!("{dial:?} on n{target} ({opened} connections): expected {expected:?}, n{target} reported {new:?}"),
                ));
            }
            if matches!(dial, Dial::Silence) && !new.contains(&ConnectionFault::OverLimit) {
                return Err(at(
                    &c,
                    format!("8 silent connections from one address: expected some refused over the limit, got {new:?}"),
                ));
            }
            lines.push(format!(
                "{dial:?} on n{target}: n{target} closed it ({new:?})"
            ));
            c.wait_for_progress(3, HEAL_BOUND)
                .await
                .map_err(|e| at(&c, format!("after {dial:?}: {e}")))?;
        }
        for l in &lines {
            c.note(format!("attack result: {l}"));
        }
        c.record("attacks", lines.len() as f64);
        heal_and_check(&mut c).await
    })
}

fn attacker_key() -> canon_engine::keys::SecretKey {
    canon_engine::keys::derived_key("canon-sim/attacker", 0)
}
