//! A flood on every surface an outsider reaches, on real processes: for a bounded time an
//! attacker on another address hammers the leader's JSON-RPC (full and oversized batches,
//! 10,000-entry submissions, garbage), its p2p port (garbage and silent connections), its
//! status server (slow clients) and its metrics. Meanwhile an honest client submits transfers
//! through a follower and an operator polls /status. Reported: /status p99, the leader's
//! RSS, canonized blocks per second before and during the flood, and that every transfer the
//! cluster accepted was canonized.
#![cfg(feature = "production")]

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use canon_engine::app::ledger::{Payload, Transaction};
use canon_node::devnet::{Devnet, Ports};
use canon_node::genesis::dev_account_key;
use common::*;
use tokio::io::AsyncWriteExt;

const PORT_OFFSET: u16 = 22_300;
/// How long the flood lasts; every loop below also stops at its own count bound.
const FLOOD: Duration = Duration::from_secs(10);
/// The attacker's address (any of 127/8 is loopback): not the honest clients'.
const ATTACKER: [u8; 4] = [127, 0, 0, 3];
/// Upper bound on requests per flooding task, whatever the time.
const MAX_REQUESTS_PER_TASK: u64 = 200_000;

async fn connect(port: u16) -> Option<tokio::net::TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4().ok()?;
    socket
        .bind((std::net::Ipv4Addr::from(ATTACKER), 0).into())
        .ok()?;
    socket
        .connect(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .ok()
}

/// POSTs `body` and reads until the server closes: one request per connection.
async fn post(port: u16, body: &[u8]) {
    use tokio::io::AsyncReadExt;
    let Some(mut s) = connect(port).await else {
        return;
    };
    let head = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if s.write_all(head.as_bytes()).await.is_err() || s.write_all(body).await.is_err() {
        return;
    }
    let mut sink = vec![0u8; 64 << 10];
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while matches!(s.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}

fn rpc_bodies() -> Vec<Vec<u8>> {
    let call = |id: usize| {
        format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"canon_blockNumber","params":[]}}"#)
    };
    let batch = |n: usize| format!("[{}]", (0..n).map(call).collect::<Vec<_>>().join(","));
    vec![
        batch(100).into_bytes(),
        batch(101).into_bytes(),
        format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"canon_sendTransactions","params":[[{}]]}}"#,
            ["\"0x00\""; 10_000].join(",")
        )
        .into_bytes(),
        b"\x00\xff{not json at all".to_vec(),
    ]
}

/// The flood, on `ports` of the leader, until `stop`; returns requests made per surface.
async fn flood(ports: Ports, stop: Arc<AtomicBool>) -> [u64; 4] {
    let bodies = Arc::new(rpc_bodies());
    let counts: Arc<[AtomicU64; 4]> = Arc::new(Default::default());
    let mut tasks = Vec::new();
    for t in 0..4 {
        let (stop, bodies, counts) = (stop.clone(), bodies.clone(), counts.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = t;
            while !stop.load(Ordering::Relaxed) && i < MAX_REQUESTS_PER_TASK as usize {
                post(ports.rpc, &bodies[i % bodies.len()]).await;
                counts[0].fetch_add(1, Ordering::Relaxed);
                i += 4;
            }
        }));
    }
    for kind in 0..2 {
        let (stop, counts) = (stop.clone(), counts.clone());
        tasks.push(tokio::spawn(async move {
            let mut held = Vec::new();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) && n < MAX_REQUESTS_PER_TASK {
                n += 1;
                if let Some(mut s) = connect(ports.p2p).await {
                    if kind == 0 {
                        let garbage: Vec<u8> = (0..1024u32).map(|i| (i * 31 + 7) as u8).collect();
                        let _ = s.write_all(&garbage).await;
                    } else if held.len() < 64 {
                        held.push(s); // silent: the handshake timeout must close it
                    } else {
                        held.remove(0);
                    }
                    counts[1].fetch_add(1, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }));
    }
    {
        let (stop, counts) = (stop.clone(), counts.clone());
        tasks.push(tokio::spawn(async move {
            let mut slow = Vec::new();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) && n < MAX_REQUESTS_PER_TASK {
                n += 1;
                if let Some(mut s) = connect(ports.status).await {
                    let _ = s.write_all(b"GET /status HTTP/1.1\r\n").await;
                    slow.push(s);
                    counts[2].fetch_add(1, Ordering::Relaxed);
                }
                if slow.len() > 200 {
                    slow.remove(0);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    {
        let (stop, counts) = (stop.clone(), counts.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) && n < MAX_REQUESTS_PER_TASK {
                n += 1;
                if let Some(mut s) = connect(ports.prometheus).await {
                    let _ = s
                        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                        .await;
                    let mut sink = Vec::new();
                    use tokio::io::AsyncReadExt;
                    let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut sink))
                        .await;
                    counts[3].fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    [0, 1, 2, 3].map(|i| counts[i].load(Ordering::Relaxed))
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[test]
fn the_leader_survives_a_flood_on_every_surface() {
    let dir = scratch("flood");
    let mut net = Devnet::start(exe(), 3, dir.path(), PORT_OFFSET).expect("devnet starts");
    let leader = wait_for("a leader", Duration::from_secs(30), || agreed_leader(&net));
    let follower = (leader + 1) % 3;
    let pid = net.children[leader].as_ref().expect("leader runs").id();
    wait_for("blocks", Duration::from_secs(20), || {
        height(&net, leader).filter(|h| *h >= 3)
    });
    let canonized = |net: &Devnet| {
        status(net, leader)
            .map(|s| s.last_canonized_height)
            .unwrap_or(0)
    };
    let (h0, t0) = (canonized(&net), Instant::now());
    std::thread::sleep(Duration::from_secs(3));
    let before_bps = (canonized(&net) - h0) as f64 / t0.elapsed().as_secs_f64();
    let rss_before = rss_kib(pid);

    let stop = Arc::new(AtomicBool::new(false));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let log_before = std::fs::read_to_string(net.log_path(leader))
        .unwrap_or_default()
        .len();
    let flooding = rt.spawn(flood(Ports::of(leader, PORT_OFFSET), stop.clone()));

    // The honest client: a transfer every 20 ms through a follower.
    let key = dev_account_key(5);
    let to = dev_account_key(6).address();
    let (_, first_nonce, _) = net.clients[follower]
        .account(&key.address())
        .expect("account");
    let (h1, t1) = (canonized(&net), Instant::now());
    let mut accepted = 0u64;
    let mut refused = 0u64;
    let mut status_latency = Vec::new();
    let mut rss_max = rss_before;
    let mut next_status = Instant::now();
    while t1.elapsed() < FLOOD {
        let tx = Transaction {
            sender: key.address(),
            nonce: first_nonce + accepted,
            payload: Payload::Transfer { to, amount: 1 },
        }
        .sign(&key)
        .expect("sign");
        match net.clients[follower].send_transaction(&tx) {
            Ok(_) => accepted += 1,
            Err(_) => refused += 1,
        }
        if Instant::now() >= next_status {
            let asked = Instant::now();
            if net.clients[leader].status().is_ok() {
                status_latency.push(asked.elapsed());
            } else {
                status_latency.push(Duration::from_secs(60));
            }
            rss_max = rss_max.max(rss_kib(pid));
            next_status += Duration::from_millis(100);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let during_bps = (canonized(&net) - h1) as f64 / t1.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let made = rt.block_on(flooding).expect("flood tasks");

    // Every accepted transfer is canonized: the sender's nonce counts them all.
    let want = first_nonce + accepted;
    wait_for(
        "every accepted transfer canonized",
        Duration::from_secs(30),
        || {
            net.clients[leader]
                .account(&key.address())
                .ok()
                .filter(|(_, n, _)| *n == want)
        },
    );
    let log = std::fs::read_to_string(net.log_path(leader)).unwrap_or_default();
    let logged = &log[log_before.min(log.len())..];
    let mut kinds: std::collections::BTreeMap<String, usize> = Default::default();
    for l in logged.lines() {
        let msg: String = l
            .split_whitespace()
            .skip(2)
            .take(6)
            .collect::<Vec<_>>()
            .join(" ");
        *kinds.entry(msg).or_default() += 1;
    }
    let mut top: Vec<_> = kinds.into_iter().collect();
    top.sort_by_key(|k| std::cmp::Reverse(k.1));
    eprintln!(
        "the leader logged {} lines ({} KiB) under the flood; most: {:?}",
        logged.lines().count(),
        logged.len() / 1024,
        &top[..top.len().min(5)]
    );
    status_latency.sort();
    let p99 = percentile(&status_latency, 0.99);
    eprintln!(
        "flood for {FLOOD:?} from 127.0.0.3 on n{leader}: rpc {} requests, p2p {} connections, \
         status {} slow clients, metrics {} scrapes",
        made[0], made[1], made[2], made[3]
    );
    eprintln!(
        "under the flood: /status p50 {:?} p99 {p99:?} ({} polls); leader RSS {} MiB (before {} \
         MiB); canonized blocks/s {during_bps:.1} (before {before_bps:.1}); transfers \
         accepted {accepted}, refused {refused}, all accepted canonized",
        percentile(&status_latency, 0.5),
        status_latency.len(),
        rss_max / 1024,
        rss_before / 1024,
    );
    assert!(accepted > 0, "no transfer was accepted during the flood");
    // A line per refused connection filled the log at 90 KiB/s before it was summarised.
    assert!(
        logged.lines().count() <= 50,
        "the flood wrote {} log lines",
        logged.lines().count()
    );
    assert!(
        made.iter().all(|n| *n > 0),
        "every surface was flooded: {made:?}"
    );
    assert!(
        p99 < Duration::from_secs(1),
        "/status p99 {p99:?} under the flood"
    );
    assert!(
        during_bps >= before_bps / 4.0,
        "blocks/s fell from {before_bps:.1} to {during_bps:.1}"
    );
    net.stop_all();
}
