//! An active attacker on loopback: every p2p link of a three-node cluster runs through a
//! man-in-the-middle proxy that forwards the wire's pieces (a 4-byte length and a Noise
//! message) and, on command, attacks the leader's replication stream to one follower: it flips
//! one byte of a piece, replays a recorded piece, drops one, splices in a piece recorded off
//! another connection, and replays a whole recorded handshake on a connection of its own. Each
//! time the connection must close, the follower must report it (its
//! `canon_p2p_connections_refused_total` counter and a log line naming the peer), and the
//! cluster must keep canonizing over the remaining links. The test prints each attack and the
//! node's reaction.
#![cfg(feature = "production")]

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use canon_node::devnet::{node_key, Devnet, Ports};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const PORT_OFFSET: u16 = 21_800;
const NODES: usize = 3;

fn proxy_port(from: usize, to: usize) -> u16 {
    26_900 + (from * NODES + to) as u16
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Attack {
    FlipByte,
    ReplayPiece,
    DropPiece,
    Splice,
}

impl Attack {
    fn describe(self) -> &'static str {
        match self {
            Attack::FlipByte => "flips one byte of a frame",
            Attack::ReplayPiece => "replays a recorded frame",
            Attack::DropPiece => "drops a frame",
            Attack::Splice => "splices in a frame from another connection",
        }
    }
}

/// What one proxied link shares with the test: the attack to make on the next piece the
/// dialer sends after its handshake, what was done, and pieces recorded for replays.
#[derive(Default)]
struct LinkState {
    next: Option<Attack>,
    /// Connections whose attack was made and that then closed, by attack.
    closed_after: Vec<Attack>,
    /// The first pieces the dialer sent on each connection: the handshake and a few frames.
    recorded: Vec<Vec<Vec<u8>>>,
}

type Shared = Arc<Mutex<LinkState>>;
/// Pieces recorded off every link, for a splice.
type Library = Arc<Mutex<Vec<Vec<u8>>>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

async fn read_piece(r: &mut (impl AsyncReadExt + Unpin)) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len).await.ok()?;
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    r.read_exact(&mut body).await.ok()?;
    let mut piece = len.to_vec();
    piece.extend_from_slice(&body);
    Some(piece)
}

/// Forwards one connection piece by piece, attacking the dialer's side on command.
async fn relay(client: TcpStream, target: u16, link: Shared, library: Library) {
    let Ok(server) = TcpStream::connect(("127.0.0.1", target)).await else {
        return;
    };
    let _ = (client.set_nodelay(true), server.set_nodelay(true));
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let slot = {
        let mut l = lock(&link);
        l.recorded.push(Vec::new());
        l.recorded.len() - 1
    };
    let back = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut sr, &mut cw).await;
        let _ = cw.shutdown().await;
    });
    let mut made: Option<Attack> = None;
    let mut sent = 0usize;
    while let Some(mut piece) = read_piece(&mut cr).await {
        sent += 1;
        {
            let mut l = lock(&link);
            if l.recorded[slot].len() < 8 {
                l.recorded[slot].push(piece.clone());
                lock(&library).push(piece.clone());
            }
        }
        // Pieces 1 and 2 are the dialer's handshake messages; attack only frames.
        let attack = if sent > 2 && made.is_none() {
            lock(&link).next.take()
        } else {
            None
        };
        made = made.or(attack);
        let write = match attack {
            None => sw.write_all(&piece).await,
            Some(Attack::FlipByte) => {
                let at = piece.len() / 2;
                piece[at] ^= 0x01;
                sw.write_all(&piece).await
            }
            Some(Attack::ReplayPiece) => {
                let earlier = lock(&link).recorded[slot]
                    .get(2)
                    .cloned()
                    .unwrap_or_default();
                let _ = sw.write_all(&piece).await;
                sw.write_all(&earlier).await
            }
            Some(Attack::DropPiece) => Ok(()),
            Some(Attack::Splice) => {
                let foreign = lock(&library)
                    .iter()
                    .rev()
                    .nth(3)
                    .cloned()
                    .unwrap_or_default();
                sw.write_all(&foreign).await
            }
        };
        if write.is_err() {
            break;
        }
    }
    let _ = sw.shutdown().await;
    back.abort();
    if let Some(a) = made {
        lock(&link).closed_after.push(a);
    }
}

async fn proxy(listen: u16, target: u16, link: Shared, library: Library) {
    let Ok(listener) = TcpListener::bind(("127.0.0.1", listen)).await else {
        panic!("proxy cannot listen on {listen}");
    };
    while let Ok((client, _)) = listener.accept().await {
        tokio::spawn(relay(client, target, link.clone(), library.clone()));
    }
}

/// `canon_p2p_connections_refused_total` of node `i`, summed over faults.
fn refused(i: usize) -> u64 {
    let url = format!(
        "http://127.0.0.1:{}/metrics",
        Ports::of(i, PORT_OFFSET).prometheus
    );
    let Ok(mut resp) = ureq::get(&url).call() else {
        return 0;
    };
    let text = resp.body_mut().read_to_string().unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with("canon_p2p_connections_refused_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

fn log_lines_naming(net: &Devnet, i: usize, peer: &str) -> Vec<String> {
    std::fs::read_to_string(net.log_path(i))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("refused") && l.contains(peer))
        .map(str::to_string)
        .collect()
}

#[test]
fn an_attacker_on_the_path_closes_connections_and_nothing_else() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let links: BTreeMap<(usize, usize), Shared> = (0..NODES)
        .flat_map(|f| (0..NODES).filter(move |t| *t != f).map(move |t| (f, t)))
        .map(|k| (k, Shared::default()))
        .collect();
    let library = Library::default();
    for (&(from, to), link) in &links {
        let target = Ports::of(to, PORT_OFFSET).p2p;
        rt.spawn(proxy(
            proxy_port(from, to),
            target,
            link.clone(),
            library.clone(),
        ));
    }
    let dir = scratch("p2p-mitm");
    let mut net = Devnet::start(exe(), NODES, dir.path(), PORT_OFFSET).expect("devnet starts");
    // Every link through its proxy: restart the nodes with the routes.
    for i in 0..NODES {
        net.stop(i, Duration::from_secs(5));
    }
    net.routes = links
        .keys()
        .map(|&(f, t)| ((f, t), proxy_port(f, t)))
        .collect();
    for i in 0..NODES {
        net.start_node(i).expect("restart");
    }
    let leader = wait_for("a leader", Duration::from_secs(30), || agreed_leader(&net));
    wait_for("blocks", Duration::from_secs(30), || {
        height(&net, leader).filter(|h| *h >= 5)
    });
    let follower = (leader + 1) % NODES;
    let link = links[&(leader, follower)].clone();
    let leader_id = node_key(leader).node_id().to_string();
    let short = &leader_id[..10];
    let mut report = Vec::new();
    for attack in [
        Attack::FlipByte,
        Attack::ReplayPiece,
        Attack::DropPiece,
        Attack::Splice,
    ] {
        let before = refused(follower);
        let closed_before = lock(&link).closed_after.len();
        let h0 = height(&net, leader).unwrap_or(0);
        lock(&link).next = Some(attack);
        let started = Instant::now();
        wait_for(
            &format!(
                "the connection to close after the proxy {}",
                attack.describe()
            ),
            Duration::from_secs(10),
            || (lock(&link).closed_after.len() > closed_before).then_some(()),
        );
        let closed_in = started.elapsed();
        let after = wait_for(
            &format!("n{follower} to report the attack ({})", attack.describe()),
            Duration::from_secs(10),
            || Some(refused(follower)).filter(|r| *r > before),
        );
        let logged = log_lines_naming(&net, follower, short);
        assert!(
            !logged.is_empty(),
            "n{follower}'s log names no refused connection from {short}"
        );
        let h1 = wait_for(
            "the cluster to keep canonizing",
            Duration::from_secs(20),
            || {
                (0..NODES)
                    .filter_map(|i| height(&net, i))
                    .max()
                    .filter(|h| *h >= h0 + 10)
            },
        );
        report.push(format!(
            "proxy {} on n{leader}->n{follower}: connection closed in {:?}; n{follower} p2p_connections_refused {before} -> {after}; log: \"{}\"; cluster canonized {h0} -> {h1}",
            attack.describe(),
            closed_in,
            logged.last().map(|l| l.split_once(" WARN ").map_or(l.as_str(), |(_, w)| w)).unwrap_or_default(),
        ));
    }
    // A whole recorded handshake, replayed on a connection of the attacker's own.
    let recorded = lock(&link).recorded.first().cloned().unwrap_or_default();
    let before = refused(follower);
    let outcome = rt.block_on(async {
        let mut s = TcpStream::connect(("127.0.0.1", Ports::of(follower, PORT_OFFSET).p2p))
            .await
            .expect("connect");
        s.write_all(&recorded[0]).await.expect("message 1");
        // The follower answers with a message 2 for its own fresh ephemeral key ...
        let answer = read_piece(&mut s).await;
        // ... which the recorded message 3 does not match.
        let _ = s.write_all(&recorded[1]).await;
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut rest)).await;
        (answer.is_some(), closed.is_ok(), rest.len())
    });
    assert!(
        outcome.0,
        "the follower answered the replayed first message"
    );
    assert!(
        outcome.1 && outcome.2 == 0,
        "the replayed handshake must be closed with nothing sent: {outcome:?}"
    );
    let after = wait_for(
        "the replayed handshake reported",
        Duration::from_secs(10),
        || Some(refused(follower)).filter(|r| *r > before),
    );
    report.push(format!(
        "attacker replays a recorded handshake of n{leader} to n{follower}: closed with nothing sent; n{follower} p2p_connections_refused {before} -> {after}"
    ));
    let top = assert_same_chain(&net);
    let leader_log = std::fs::read_to_string(net.log_path(leader)).unwrap_or_default();
    eprintln!(
        "DEBUG silent={} lines:\n{}",
        leader_log.matches("silent").count(),
        leader_log
            .lines()
            .filter(|l| l.contains("WARN") || l.contains("INFO canon_engine::net"))
            .take(30)
            .collect::<Vec<_>>()
            .join("\n")
    );
    println!("MITM attacks and the nodes' reactions:");
    for line in &report {
        println!("  {line}");
    }
    println!("  all nodes agree on {top} blocks");
    net.stop_all();
}
