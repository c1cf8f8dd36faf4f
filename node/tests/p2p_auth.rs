//! The p2p channel and Raft admission on a real node: a peer must prove its key in the Noise
//! handshake, an id outside `consensus_peer_ids` cannot drive Raft, and bytes that are not an
//! authentic frame close only their connection.
#![cfg(feature = "production")]

mod common;

use std::time::Duration;

use canon_engine::codec;
use canon_engine::keys::{derived_key, SecretKey};
use canon_engine::net::p2p::channel::Channel;
use canon_engine::net::wire::{Request, Response};
use canon_node::devnet::{node_key, Devnet, Ports};
use canon_node::genesis::DEV_CHAIN_ID;
use canon_node::p2p::frame::Frame;
use canon_node::p2p::handshake::{dial_over, HandshakeError, Identity};
use common::*;
use openraft::Vote;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const PORT_OFFSET: u16 = 21_200;

type Conn = Channel<TcpStream>;

async fn dial(
    stream: TcpStream,
    key: &SecretKey,
    expected: Option<canon_engine::NodeId>,
    chain_id: u64,
) -> Result<(canon_engine::NodeId, Conn), HandshakeError> {
    let identity = Identity::new(key, chain_id, rand::random())?;
    dial_over(stream, &identity, expected, chain_id, rand::random()).await
}

async fn connect(key: &SecretKey, expected: canon_engine::NodeId) -> Result<Conn, HandshakeError> {
    let port = Ports::of(0, PORT_OFFSET).p2p;
    let stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("tcp connect");
    dial(stream, key, Some(expected), DEV_CHAIN_ID)
        .await
        .map(|(_, conn)| conn)
}

async fn ask(conn: &mut Conn, id: u64, req: &Request) -> Response {
    conn.send(&Frame::Request {
        id,
        body: codec::encode(req).expect("encode"),
    })
    .await
    .expect("send");
    match tokio::time::timeout(Duration::from_secs(5), conn.recv()).await {
        Ok(Ok(Frame::Response { id: got, body })) => {
            assert_eq!(got, id);
            codec::decode(&body).expect("response decodes")
        }
        other => panic!("expected a response, got {other:?}"),
    }
}

fn vote_request(from: &SecretKey, term: u64) -> Request {
    Request::Vote(openraft::raft::VoteRequest::new(
        Vote::new(term, from.node_id()),
        None,
    ))
}

#[test]
fn unauthenticated_peers_cannot_drive_raft() {
    let dir = scratch("p2p-auth");
    // Three configured peers, one running: it cannot elect itself, so a stranger's vote
    // request is the only thing that could move its term.
    let mut net = Devnet::start(exe(), 3, dir.path(), PORT_OFFSET).expect("devnet starts");
    for i in 1..3 {
        net.stop(i, Duration::from_secs(5));
    }
    let node = node_key(0).node_id();
    let term_before = wait_for("n0 status", Duration::from_secs(20), || status(&net, 0)).term;
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        // 1. A stranger with a valid key of its own may connect (external nodes do), but
        //    every Raft request from it is refused.
        let stranger = derived_key("test/stranger", 0);
        let mut conn = connect(&stranger, node)
            .await
            .expect("a stranger may connect");
        match ask(&mut conn, 1, &vote_request(&stranger, term_before + 100)).await {
            Response::Refused(why) => assert!(why.contains("is not a member"), "{why}"),
            _ => panic!("a vote request from a non-peer must be refused"),
        }

        // 2. A client of the old, unencrypted protocol (or anything that is not a Noise
        //    handshake) is closed without an answer. (Claiming another node's id with one's
        //    own key is refused inside the handshake: `p2p::handshake`'s unit tests.)
        let peer1 = node_key(1).node_id();
        let port = Ports::of(0, PORT_OFFSET).p2p;
        let mut plain = TcpStream::connect(("127.0.0.1", port)).await.expect("tcp");
        plain
            .write_all(b"\x00\x00\x00\x05hello")
            .await
            .expect("write");
        let mut answer = Vec::new();
        let read = tokio::time::timeout(
            Duration::from_secs(10),
            tokio::io::AsyncReadExt::read_to_end(&mut plain, &mut answer),
        )
        .await;
        assert!(
            matches!(read, Ok(Ok(_)) | Ok(Err(_))) && answer.len() < 100,
            "a non-Noise client must be closed, got {read:?} after {} bytes",
            answer.len()
        );
        let wrong_node = dial(
            TcpStream::connect(("127.0.0.1", port)).await.expect("tcp"),
            &stranger,
            Some(peer1),
            DEV_CHAIN_ID,
        )
        .await;
        assert!(
            wrong_node.is_err(),
            "dialing n0 while expecting n1 must fail"
        );
        // Dialing by address alone (a group member's id is new at each start) learns the id
        // the peer proves.
        let (learned, _) = dial(
            TcpStream::connect(("127.0.0.1", port)).await.expect("tcp"),
            &stranger,
            None,
            DEV_CHAIN_ID,
        )
        .await
        .expect("dial by address");
        assert_eq!(learned, node);

        // 3. Bytes that are not an authentic piece (here: a well-formed length, then
        //    garbage where the ciphertext belongs) close that connection only.
        let mut bad = connect(&stranger, node).await.expect("connect");
        bad.get_mut()
            .write_all(b"\x00\x00\x00\x20not a frame, not authenticated..")
            .await
            .expect("send garbage");
        let closed = tokio::time::timeout(Duration::from_secs(5), bad.recv()).await;
        assert!(
            matches!(closed, Ok(Err(_))),
            "the malformed connection must be closed, got {closed:?}"
        );
        // An absurd length prefix (4 GiB) after a valid handshake: closed, nothing allocated.
        let mut huge = connect(&stranger, node).await.expect("connect");
        huge.get_mut().write_all(&[0xff; 4]).await.expect("write");
        let closed = tokio::time::timeout(Duration::from_secs(5), huge.recv()).await;
        assert!(
            matches!(closed, Ok(Err(_))),
            "the oversized frame must close its connection, got {closed:?}"
        );
        match ask(
            &mut conn,
            2,
            &Request::Query(canon_engine::app::ledger::account_query(
                &alloy_primitives::Address::ZERO,
            )),
        )
        .await
        {
            Response::Query { answer: Ok(_), .. } => {}
            _ => panic!("the other connection must keep working"),
        }
    });
    let after = status(&net, 0).expect("n0 still serves status");
    assert!(
        after.term < term_before + 100,
        "a non-peer moved the term from {term_before} to {}",
        after.term
    );
    net.stop_all();
}
