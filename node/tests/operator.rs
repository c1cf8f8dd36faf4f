//! What an operator sees, on real processes: a paused follower is one warning on the leader,
//! summarised while it lasts, with a metric, not an error ten times a second; and the
//! listeners answer only on the addresses they were given.
#![cfg(feature = "production")]

mod common;

use std::time::Duration;

use canon_node::devnet::{Devnet, Ports};
use common::*;
use nix::sys::signal::Signal;

/// Ports of this test: the seed's (3050/3060/3071/3312 + i) moved up by this much.
const PORT_OFFSET: u16 = 22_000;

/// A metric's value on node `i`, if it serves it.
fn metric(i: usize, name: &str) -> Option<f64> {
    let url = format!(
        "http://127.0.0.1:{}/metrics",
        Ports::of(i, PORT_OFFSET).prometheus
    );
    let text = ureq::get(&url)
        .call()
        .ok()?
        .body_mut()
        .read_to_string()
        .ok()?;
    text.lines()
        .find(|l| l.split(' ').next() == Some(name))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

fn log(net: &Devnet, i: usize) -> String {
    std::fs::read_to_string(net.log_path(i)).unwrap_or_default()
}

#[test]
fn a_paused_follower_is_one_warning_and_a_metric() {
    let dir = scratch("operator-pause");
    let mut net = Devnet::start(exe(), 3, dir.path(), PORT_OFFSET).expect("devnet starts");
    let leader = wait_for("a leader", Duration::from_secs(30), || agreed_leader(&net));
    wait_for("blocks", Duration::from_secs(20), || {
        height(&net, leader).filter(|h| *h >= 3)
    });
    let follower = (leader + 1) % 3;
    // The membership in effect shows on every node: the three configured voters, no learner.
    for i in 0..3 {
        let m = status(&net, i)
            .and_then(|s| s.membership)
            .expect("membership");
        assert_eq!((m.voters.len(), m.learners.len()), (3, 0), "n{i}: {m:?}");
    }
    assert_eq!(metric(leader, "canon_raft_voters"), Some(3.0));
    let short = status(&net, follower)
        .expect("follower status")
        .node_id
        .short();
    let short = short.as_str();
    let before = log(&net, leader);

    net.signal(follower, Signal::SIGSTOP);
    wait_for(
        "the leader's unreachable gauge",
        Duration::from_secs(10),
        || metric(leader, "canon_peers_unreachable").filter(|v| *v >= 1.0),
    );
    // Six seconds of a leader retrying its follower ten times a second.
    std::thread::sleep(Duration::from_secs(6));
    let failures = metric(leader, "canon_peer_request_failures_total").unwrap_or(0.0);
    let during = log(&net, leader)[before.len()..].to_string();
    net.signal(follower, Signal::SIGCONT);
    eprintln!("the leader's log while n{follower} was paused:\n{during}");

    let errors: Vec<&str> = during.lines().filter(|l| l.contains("ERROR")).collect();
    assert!(
        errors.is_empty(),
        "errors while a follower was paused:\n{}",
        errors.join("\n")
    );
    let said: Vec<&str> = during
        .lines()
        .filter(|l| l.contains("peer unreachable") && l.contains(short))
        .collect();
    assert_eq!(said.len(), 1, "said once:\n{during}");
    assert!(
        during.lines().count() <= 10,
        "the leader's log grew by {} lines in 6 s:\n{during}",
        during.lines().count()
    );
    assert!(failures >= 5.0, "failed requests counted: {failures}");

    wait_for(
        "the follower answers again",
        Duration::from_secs(20),
        || {
            let back = log(&net, leader)
                .lines()
                .any(|l| l.contains("peer reachable again") && l.contains(short));
            (back && metric(leader, "canon_peers_unreachable") == Some(0.0)).then_some(())
        },
    );

    // No node's secret key shows in any log, /status or /metrics.
    for i in 0..3 {
        let key = hex::encode(canon_node::devnet::node_key(i).to_bytes());
        let status = serde_json::to_string(&status(&net, i)).unwrap_or_default();
        let url = format!(
            "http://127.0.0.1:{}/metrics",
            Ports::of(i, PORT_OFFSET).prometheus
        );
        let metrics = ureq::get(&url)
            .call()
            .ok()
            .and_then(|mut r| r.body_mut().read_to_string().ok())
            .unwrap_or_default();
        assert!(status.len() > 100 && metrics.len() > 100, "n{i} answered");
        for j in 0..3 {
            for (what, text) in [
                ("log", log(&net, j)),
                ("status", status.clone()),
                ("metrics", metrics.clone()),
            ] {
                assert!(!text.contains(&key[..16]), "n{i}'s key in n{j}'s {what}");
            }
        }
    }
    net.stop_all();
}

#[test]
fn operator_listeners_answer_on_loopback_by_default() {
    // The defaults, as `check-config` shows them: every listener but p2p on 127.0.0.1.
    let out = std::process::Command::new(exe())
        .arg("check-config")
        .env_clear()
        .output()
        .expect("check-config runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for line in [
        "rpc_address: 127.0.0.1:3050",
        "status_server_address: 127.0.0.1:3071",
        "observability_prometheus_address: 127.0.0.1",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
}

/// One HTTP/1.1 POST of `body` to the node's JSON-RPC, answered in full: (status, body);
/// status 0 when nothing listens yet.
fn post(port: u16, body: &str) -> (u16, String) {
    post_from([127, 0, 0, 1], port, body)
}

/// [`post`] from the loopback address `from`.
fn post_from(from: [u8; 4], port: u16, body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let Some(mut s) = connect_from(from, port) else {
        return (0, String::new());
    };
    s.set_nonblocking(false).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

/// A connection to 127.0.0.1:`port` from the loopback address `from` (any of 127/8), as a
/// client on another host would come from another address.
fn connect_from(from: [u8; 4], port: u16) -> Option<std::net::TcpStream> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .ok()?;
    rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().ok()?;
        socket
            .bind((std::net::Ipv4Addr::from(from), 0).into())
            .ok()?;
        let stream = socket
            .connect(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
            .await
            .ok()?;
        stream.into_std().ok()
    })
}

/// Opens a connection to `port`, sends half a request's headers and waits for the server to
/// close it: how long that took (the test fails if it never does within 5 s).
fn half_request_closed_after(port: u16) -> Duration {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 256];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return started.elapsed(),
            Ok(_) => continue,
            Err(e) => panic!("port {port}: a half-sent request still holds its connection: {e}"),
        }
    }
}

#[test]
fn http_bounds_are_stated_and_kept() {
    let dir = scratch("operator-rpc-bounds");
    let env = [
        ("RPC_MAX_BATCH_CALLS", "3"),
        ("RPC_MAX_REQUEST_BYTES", "4096"),
        ("RPC_MAX_TRANSACTIONS_PER_CALL", "5"),
        ("RPC_FIRST_REQUEST_TIMEOUT_MS", "500"),
        ("HTTP_HEADER_TIMEOUT_MS", "500"),
        ("RPC_MAX_REQUESTS_PER_SECOND_PER_IP", "20"),
        ("HTTP_MAX_CONNECTIONS", "4"),
        ("HTTP_MAX_CONNECTIONS_PER_IP", "2"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let mut net =
        Devnet::start_with(exe(), 1, 0, dir.path(), PORT_OFFSET + 30, env).expect("node starts");
    let port = Ports::of(0, PORT_OFFSET + 30).rpc;
    wait_for("the node's RPC", Duration::from_secs(30), || {
        let (status, _) = post(
            port,
            r#"{"jsonrpc":"2.0","id":1,"method":"canon_blockNumber","params":[]}"#,
        );
        (status == 200).then_some(())
    });
    let call = |id: u32| {
        format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"canon_blockNumber","params":[]}}"#)
    };

    // A batch at the limit is answered call by call; one over it is refused whole.
    let (status, body) = post(port, &format!("[{},{},{}]", call(1), call(2), call(3)));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body.matches("\"result\"").count(), 3, "{body}");
    let (_, body) = post(
        port,
        &format!("[{},{},{},{}]", call(1), call(2), call(3), call(4)),
    );
    assert!(
        !body.contains("\"result\"") && body.contains("error"),
        "{body}"
    );

    // A body over the limit never reaches a method.
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"canon_sendTransactions","params":[["0x{}"]]}}"#,
        "00".repeat(2_100)
    );
    let (status, body) = post(port, &big);
    assert_eq!(status, 413, "{body}");

    // Six transactions where five are allowed: refused, naming the setting.
    let six = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"canon_sendTransactions","params":[[{}]]}}"#,
        ["\"0x00\""; 6].join(",")
    );
    let (_, body) = post(port, &six);
    assert!(body.contains("rpc_max_transactions_per_call"), "{body}");

    // Forty requests at once from one address: its burst of 20 is answered, the rest get
    // 429; another address is still answered.
    let statuses: Vec<u16> = (0..40)
        .map(|_| post_from([127, 0, 0, 4], port, &call(1)).0)
        .collect();
    let answered = statuses.iter().filter(|s| **s == 200).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert!(
        (20..=22).contains(&answered) && answered + limited == 40,
        "statuses: {statuses:?}"
    );
    assert_eq!(post(port, &call(2)).0, 200);

    // A client that opens a connection and sends half a request is closed after the timeout,
    // on every HTTP server.
    let ports = Ports::of(0, PORT_OFFSET + 30);
    for (what, port) in [
        ("rpc", ports.rpc),
        ("status", ports.status),
        ("metrics", ports.prometheus),
    ] {
        let waited = half_request_closed_after(port);
        assert!(
            waited < Duration::from_secs(3),
            "{what}: closed only after {waited:?}"
        );
    }
    // Twenty slow clients from one address: two are held (its share), the rest closed at
    // once, so /status still answers another address at once.
    let slow: Vec<std::net::TcpStream> = (0..20)
        .filter_map(|_| connect_from([127, 0, 0, 2], ports.status))
        .collect();
    for mut s in slow.iter().take(20) {
        use std::io::Write;
        let _ = s.write_all(b"GET /status HTTP/1.1\r\n");
    }
    let asked = std::time::Instant::now();
    wait_for("/status past slow clients", Duration::from_secs(20), || {
        net.clients[0].status().ok()
    });
    let waited = asked.elapsed();
    eprintln!("/status answered {waited:?} after 20 slow connections from another address");
    assert!(waited < Duration::from_secs(1), "/status took {waited:?}");
    drop(slow);
    net.stop_all();
}
