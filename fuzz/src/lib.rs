//! Fuzz entry points for everything that decodes bytes from outside, and for the engine's
//! policies (`policies`): each must return, never panic, whatever it is given (and a policy
//! must hold its safety rule). `tests/` drives them with proptest and replays the committed
//! inputs; the cargo-fuzz harness in `libfuzzer/` calls the same functions.

use canon_engine::app::kv::{KvQuery, KvTx};
use canon_engine::app::ledger::SignedTransaction;
use canon_engine::chain::block::Block;
use canon_engine::codec;
use canon_engine::net::p2p::frame::Frame;
use canon_engine::net::wire::{Request, Response};

pub mod policies;
use policies::seed_reaching;
pub use policies::{election, fence, signing_guard};

/// Decodes `data` as every externally supplied message type. Returns how many decoded.
pub fn decode_all(data: &[u8]) -> usize {
    [
        codec::decode::<Block>(data).is_ok(),
        codec::decode::<SignedTransaction>(data).is_ok(),
        codec::decode::<Request>(data).is_ok(),
        codec::decode::<Response>(data).is_ok(),
        codec::decode::<Frame>(data).is_ok(),
        codec::decode::<KvTx>(data).is_ok(),
        codec::decode::<KvQuery>(data).is_ok(),
    ]
    .iter()
    .filter(|ok| **ok)
    .count()
}

/// Verifies a decoded block's signature and transactions the way a replayer would, on the
/// assumption that it extends nothing: it must be rejected, never panic.
pub fn verify_untrusted_block(data: &[u8]) -> bool {
    let Ok(block) = codec::decode::<Block>(data) else {
        return false;
    };
    let app = canon_engine::app::App::new(canon_engine::app::ledger::LedgerApp::default());
    block.transactions.iter().all(|t| app.verify(t).is_ok())
        && canon_engine::keys::recover_node_id(
            &block.header.hash().unwrap_or_default(),
            &block.signature,
        )
        .is_ok()
}

/// A byte stream that yields `data` and then ends, and swallows whatever is written to it.
struct Incoming<'a> {
    data: &'a [u8],
}

impl tokio::io::AsyncRead for Incoming<'_> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let n = self.data.len().min(buf.remaining());
        buf.put_slice(&self.data[..n]);
        self.data = &self.data[n..];
        std::task::Poll::Ready(Ok(()))
    }
}

impl tokio::io::AsyncWrite for Incoming<'_> {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::task::Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// Feeds `data` to the accepting side of the p2p handshake, as a stranger's connection would:
/// it must end in an error (nobody can answer a fresh ephemeral key from canned bytes), never
/// panic. Returns whether the handshake failed, as it always must.
pub fn p2p_accept(data: &[u8]) -> bool {
    use canon_engine::net::p2p::handshake::{accept_over, Identity};
    // Made once, as a node makes its own once: a key derivation per input was most of a
    // fuzzer's time.
    static IDENTITY: std::sync::OnceLock<Identity> = std::sync::OnceLock::new();
    let identity = IDENTITY.get_or_init(|| {
        let key = canon_engine::keys::derived_key("canon-fuzz/p2p", 0);
        Identity::new(&key, 7, [8; 32]).expect("an identity")
    });
    let handshake = accept_over(Incoming { data }, identity, 7, [7; 32]);
    futures::executor::block_on(handshake).is_err()
}

/// Feeds `data` through an established p2p channel as a hostile peer that completed the
/// handshake would: pieces of its choosing (each a length byte, then that many plaintext
/// bytes whose first is the piece's flag), sealed with the session's real keys, read by the
/// receiving side's own piece and frame handling. One session serves every input (a real
/// handshake per input held the target to about a thousand inputs a second): after each
/// input a closing piece and a sentinel frame (with a token fresh for the call) are sent, and
/// the receiver reads until the sentinel. Its rules: malformed pieces and frames are refused without knocking the
/// session's counters out of step (no piece fails authentication), a call to read never
/// hangs and consumes at least one piece, and no more frames arrive than pieces ended one.
/// Returns how many frames arrived.
pub fn p2p_channel(data: &[u8]) -> usize {
    use canon_engine::net::p2p::channel::Channel;
    use canon_engine::net::p2p::frame::{Frame, FrameError};
    use canon_engine::net::p2p::handshake::{accept_over, dial_over, Identity};
    use tokio::io::DuplexStream;

    type Pair = (Channel<DuplexStream>, Channel<DuplexStream>);
    static PAIR: std::sync::OnceLock<std::sync::Mutex<Pair>> = std::sync::OnceLock::new();
    const SENTINEL: u64 = u64::MAX;
    let pair = PAIR.get_or_init(|| {
        let (a, b) = tokio::io::duplex(1 << 20);
        let (k0, k1) = (
            canon_engine::keys::derived_key("canon-fuzz/channel", 0),
            canon_engine::keys::derived_key("canon-fuzz/channel", 1),
        );
        let i0 = Identity::new(&k0, 7, [1; 32]).expect("an identity");
        let i1 = Identity::new(&k1, 7, [2; 32]).expect("an identity");
        let (d, s) = futures::executor::block_on(futures::future::join(
            dial_over(a, &i0, None, 7, [1; 32]),
            accept_over(b, &i1, 7, [2; 32]),
        ));
        let ((_, dialer), (_, acceptor)) = (d.expect("dial"), s.expect("accept"));
        std::sync::Mutex::new((dialer, acceptor))
    });
    let mut pair = canon_engine::sync::lock(pair);
    let (peer, node) = &mut *pair;
    let mut pieces: Vec<&[u8]> = Vec::new();
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        let (piece, tail) = tail.split_at(usize::from(len).min(tail.len()));
        pieces.push(piece);
        rest = tail;
    }
    let ends = pieces.iter().filter(|p| p.first() == Some(&0)).count();
    // The sentinel carries a token the input cannot know: a sentinel forged inside an input
    // (libFuzzer learns the id from the comparison) once ended the read early, and the
    // pieces after it were left for the next input to trip over. A fresh token per call.
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let token = alloy_primitives::keccak256(call.to_be_bytes()).to_vec();
    let sentinel = canon_engine::codec::encode(&Frame::Response {
        id: SENTINEL,
        body: token.clone(),
    })
    .expect("encode");
    // Closes whatever frame the input left open (its bytes then fail to decode, or complete
    // one), then the sentinel on its own.
    let closing: &[u8] = &[0];
    let mut last = vec![0u8];
    last.extend_from_slice(&sentinel);
    pieces.push(closing);
    pieces.push(&last);
    futures::executor::block_on(async {
        peer.send_pieces(&pieces).await.expect("the session seals");
        let mut frames = 0usize;
        for _ in 0..pieces.len() {
            match node.recv().await {
                Ok(Frame::Response { id: SENTINEL, body }) if body == token => {
                    assert!(
                        frames <= ends + 1,
                        "{frames} frames from {ends} ending pieces"
                    );
                    return frames;
                }
                Ok(_) => frames += 1,
                Err(e @ (FrameError::Unauthentic(_) | FrameError::Closed | FrameError::Io(_))) => {
                    panic!("the session broke on a piece it sealed itself: {e}")
                }
                Err(FrameError::Malformed(_) | FrameError::TooSlow) => {}
            }
        }
        panic!("the sentinel did not arrive within {} reads", pieces.len())
    })
}

/// Reads `data` as a node's configuration: YAML up to the first 0 byte, then `KEY=VALUE`
/// environment lines, then (after a second 0 byte) a prefs.toml. Every input ends in settings
/// or an error naming a key; never a panic. Returns whether it validated.
pub fn config(data: &[u8]) -> bool {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\0');
    let yaml = parts.next().unwrap_or_default().to_string();
    let env: Vec<(String, String)> = parts
        .next()
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let level = match parts.next() {
        Some(prefs) => match canon_node::config::prefs_from_text(prefs, "prefs.toml") {
            Ok(level) => Some(level),
            Err(_) => return false,
        },
        None => None,
    };
    match canon_node::config::layer(&[("config.yaml".into(), yaml)], level, env) {
        Ok(settings) => settings.validate().is_ok(),
        Err(e) => {
            // An error always names where it is from.
            assert!(!e.key.is_empty(), "a config error without a key: {e}");
            false
        }
    }
}

/// The JSON-RPC calls whose parameters [`rpc_params`] reads, by the selector byte (mod their
/// count).
pub const RPC_CALLS: &[&str] = &[
    "canon_sendTransaction",
    "canon_sendTransactions",
    "canon_sendTransactionAndWait",
    "canon_sendTransactionsAndWait",
    "canon_query",
    "canon_getBlockByNumber",
    "canon_getAccount",
    "kv_put",
    "kv_delete",
    "kv_compareAndSet",
    "kv_get",
    "kv_range",
];

/// Reads `data` as one JSON-RPC call's parameters, exactly as the node does
/// (`canon_node::rpc_params`): the first byte picks the call, the rest is the raw parameter
/// text the server hands over. Every input ends in the call's typed parameters or an
/// `Invalid params` error; never a panic. What parses keeps the stated bounds: a batch holds
/// at most the per-call maximum, a wait is 1 ms to the protocol's most, a range's limit is 1
/// to its most. Returns whether it parsed.
pub fn rpc_params(data: &[u8]) -> bool {
    use canon_engine::app::kv::{KvQuery, MAX_RANGE_PAIRS};
    use canon_engine::net::wire::MAX_SUBMIT_WAIT_MS;
    use canon_node::rpc_params as p;
    use std::time::Duration;

    /// The per-call batch maximum the fuzzer's node is configured with.
    const MAX_PER_CALL: usize = 64;
    let Some((&selector, text)) = data.split_first() else {
        return false;
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return false;
    };
    let params = jsonrpsee_types::Params::new((!text.is_empty()).then_some(text));
    let wait_ok = |w: &Duration| {
        *w >= Duration::from_millis(1) && *w <= Duration::from_millis(u64::from(MAX_SUBMIT_WAIT_MS))
    };
    let range_ok = |q: &KvQuery| match q {
        KvQuery::Range { limit, .. } => (1..=MAX_RANGE_PAIRS).contains(limit),
        KvQuery::Get { .. } => true,
    };
    let result: Result<(), jsonrpsee_types::ErrorObjectOwned> =
        match RPC_CALLS[usize::from(selector) % RPC_CALLS.len()] {
            "canon_sendTransaction" => p::send_transaction(&params).map(|_| ()),
            "canon_sendTransactions" => p::send_transactions(&params, MAX_PER_CALL)
                .map(|txs| assert!(txs.len() <= MAX_PER_CALL, "{} in one call", txs.len())),
            "canon_sendTransactionAndWait" => p::send_transaction_and_wait(&params)
                .map(|(_, w)| assert!(wait_ok(&w), "a wait of {w:?}")),
            "canon_sendTransactionsAndWait" => p::send_transactions_and_wait(&params, MAX_PER_CALL)
                .map(|(txs, w)| {
                    assert!(
                        txs.len() <= MAX_PER_CALL && wait_ok(&w),
                        "{} txs, {w:?}",
                        txs.len()
                    )
                }),
            "canon_query" => p::query(&params).map(|_| ()),
            "canon_getBlockByNumber" => p::get_block(&params, 1_000).map(|_| ()),
            "canon_getAccount" => p::get_account(&params).map(|_| ()),
            "kv_put" | "kv_delete" | "kv_compareAndSet" => {
                let parse = match RPC_CALLS[usize::from(selector) % RPC_CALLS.len()] {
                    "kv_put" => p::kv_put,
                    "kv_delete" => p::kv_delete,
                    _ => p::kv_compare_and_set,
                };
                parse(&params).map(|(_, w)| assert!(wait_ok(&w), "a wait of {w:?}"))
            }
            "kv_get" => p::kv_get(&params).map(|(q, _)| assert!(range_ok(&q))),
            _ => p::kv_range(&params).map(|(q, _)| assert!(range_ok(&q), "{q:?}")),
        };
    match result {
        Ok(()) => true,
        Err(e) => {
            assert_eq!(e.code(), p::INVALID_PARAMS, "{}", e.message());
            false
        }
    }
}

/// Reads `data` as a log of the settlement contract, as the L1 client does
/// (`canon_node::settlement_events`): the first byte picks the first topic (one of the
/// contract's two event signatures, or the next 32 bytes as they are) and how many topics
/// follow it (0-3, 32 bytes each); the rest is the log's data. Every input ends in one of our
/// events or an error naming why; never a panic. What decodes encodes back to a log that
/// decodes to the same event, with the batch number its indexed topic. Returns whether it
/// decoded.
pub fn settlement_events(data: &[u8]) -> bool {
    use alloy_primitives::B256;
    use canon_node::settlement_events::{decode, encode, SettlementEvent};

    let Some((&selector, mut rest)) = data.split_first() else {
        return false;
    };
    let word = |rest: &mut &[u8]| -> Option<B256> {
        let (w, tail) = rest.split_first_chunk::<32>()?;
        *rest = tail;
        Some(B256::from(*w))
    };
    let (committed, changed) = {
        let (t, _) = encode(&SettlementEvent::BatchCommitted {
            number: 0,
            first_height: 0,
            last_height: 0,
            state_root: B256::ZERO,
            commitment: B256::ZERO,
            epoch: 0,
        });
        let (v, _) = encode(&SettlementEvent::ValidatorsChanged {
            batch_number: 0,
            validators: Vec::new(),
        });
        (t[0], v[0])
    };
    let mut topics = Vec::new();
    match selector % 3 {
        0 => topics.push(committed),
        1 => topics.push(changed),
        _ => topics.extend(word(&mut rest)),
    }
    for _ in 0..(selector / 3) % 4 {
        topics.extend(word(&mut rest));
    }
    let Ok(event) = decode(&topics, rest) else {
        return false;
    };
    let (again_topics, again_data) = encode(&event);
    assert_eq!(decode(&again_topics, &again_data).as_ref(), Ok(&event));
    let number = match &event {
        SettlementEvent::BatchCommitted { number, .. } => *number,
        SettlementEvent::ValidatorsChanged { batch_number, .. } => *batch_number,
    };
    assert_eq!(
        topics.get(1),
        Some(&B256::left_padding_from(&number.to_be_bytes()))
    );
    true
}

/// A fuzz target's entry point: it returns whatever it is given, or panics on a broken rule.
pub type EntryPoint = fn(&[u8]);

/// Every fuzz target by name, with its entry point: what `tests/corpus.rs` replays each
/// committed input through.
pub const TARGETS: &[(&str, EntryPoint)] = &[
    ("codec_decode", |d| {
        decode_all(d);
    }),
    ("untrusted_block", |d| {
        verify_untrusted_block(d);
    }),
    ("p2p_accept", |d| assert!(p2p_accept(d))),
    ("p2p_channel", |d| {
        p2p_channel(d);
    }),
    ("config", |d| {
        config(d);
    }),
    ("rpc_params", |d| {
        rpc_params(d);
    }),
    ("settlement_events", |d| {
        settlement_events(d);
    }),
    ("signing_guard", |d| {
        signing_guard(d);
    }),
    ("fence", |d| {
        fence(d);
    }),
    ("election", |d| {
        election(d);
    }),
];

/// Starting inputs per target, made from real encodings so the fuzzer begins past the length
/// prefixes and enum tags: (target, file name, bytes).
pub fn seed_inputs() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    use canon_engine::app::ledger::{Payload, Transaction};
    use canon_engine::net::wire::Request;
    let key = canon_engine::keys::derived_key("canon-fuzz/seed", 0);
    let tx = Transaction {
        sender: key.address(),
        nonce: 3,
        payload: Payload::Transfer {
            to: key.address(),
            amount: 5,
        },
    }
    .sign(&key)
    .expect("sign");
    let block = policies::guard_block(&key, 4, 1);
    let enc = |v: Result<Vec<u8>, codec::CodecError>| v.expect("encode");
    let mut framed = Vec::new();
    for piece in [&[7u8; 32][..], &[1u8; 48][..]] {
        framed.extend_from_slice(&(piece.len() as u32).to_be_bytes());
        framed.extend_from_slice(piece);
    }
    vec![
        ("codec_decode", "block", enc(codec::encode(&block))),
        ("codec_decode", "transaction", enc(codec::encode(&tx))),
        ("codec_decode", "get-head", enc(codec::encode(&Request::GetHead))),
        (
            "codec_decode",
            "get-blocks",
            enc(codec::encode(&Request::GetBlocks {
                from: 1,
                max: 64,
                wait_ms: 0,
            })),
        ),
        (
            "codec_decode",
            "kv-cas",
            enc(codec::encode(&KvTx {
                client: 1,
                request: 2,
                op: canon_engine::app::kv::KvOp::CompareAndSet {
                    key: b"k".to_vec(),
                    expected: None,
                    new: Some(b"v".to_vec()),
                },
            })),
        ),
        (
            "codec_decode",
            "kv-range",
            enc(codec::encode(&KvQuery::Range {
                start: b"a".to_vec(),
                end: Some(b"z".to_vec()),
                limit: 10,
            })),
        ),
        ("untrusted_block", "block", enc(codec::encode(&block))),
        ("p2p_accept", "framed", framed),
        // A request frame in one piece, then one cut in two.
        ("p2p_channel", "pieces", channel_seed()),
        (
            "config",
            "group",
            b"consensus:\n  enabled: false\nredundancy_level: 2\nvalidator_secret_key: 0af6153646bbf600f55ce455e1995283542b1ae25ce2622ce1fda443927c5308\n\0RPC_ADDRESS=127.0.0.1:3050\nNETWORK_BOOT_NODES=10.0.0.1:3060\n\0[Preferences]\nRedundancyLevel = 1\n".to_vec(),
        ),
        ("rpc_params", "send", rpc_seed("canon_sendTransaction", r#"["0x01c0ffee"]"#)),
        (
            "rpc_params",
            "send-many-and-wait",
            rpc_seed("canon_sendTransactionsAndWait", r#"[["0x01", "0xzz", "02"], 250]"#),
        ),
        ("rpc_params", "query", rpc_seed("canon_query", r#"["0x00", "local"]"#)),
        ("rpc_params", "block", rpc_seed("canon_getBlockByNumber", r#"["0x1f"]"#)),
        (
            "rpc_params",
            "account",
            rpc_seed("canon_getAccount", r#"["0x00000000000000000000000000000000000000aa"]"#),
        ),
        (
            "rpc_params",
            "cas",
            rpc_seed("kv_compareAndSet", r#"["0x6b", null, "0x76", 1000]"#),
        ),
        ("rpc_params", "range", rpc_seed("kv_range", r#"["0x00", "0xff", 10, "linearizable"]"#)),
        ("settlement_events", "batch-committed", event_seed(0)),
        ("settlement_events", "validators-changed", event_seed(1)),
        // Schedules that get somewhere: four blocks let through, a value chosen, a campaign.
        ("signing_guard", "lets-through", seed_reaching(128, |b| signing_guard(b) >= 4)),
        ("fence", "chooses", seed_reaching(256, |b| fence(b) == 1)),
        ("election", "campaigns", seed_reaching(256, |b| election(b) >= 1)),
    ]
}

/// A `settlement_events` input: a real log of the contract's `which`-th event (0: a batch
/// committed, 1: a new attester set), in the target's layout.
fn event_seed(which: u8) -> Vec<u8> {
    use canon_node::settlement_events::{encode, SettlementEvent};
    let event = if which == 0 {
        SettlementEvent::BatchCommitted {
            number: 7,
            first_height: 61,
            last_height: 70,
            state_root: alloy_primitives::B256::repeat_byte(3),
            commitment: alloy_primitives::B256::repeat_byte(4),
            epoch: 2,
        }
    } else {
        SettlementEvent::ValidatorsChanged {
            batch_number: 7,
            validators: vec![alloy_primitives::Address::repeat_byte(5); 3],
        }
    };
    let (topics, data) = encode(&event);
    // The selector: that event's signature, and one more topic (the batch number).
    let mut input = vec![which + 3];
    input.extend_from_slice(topics[1].as_slice());
    input.extend_from_slice(&data);
    input
}

/// A `p2p_channel` input: a whole request frame in one piece, then another in two pieces.
fn channel_seed() -> Vec<u8> {
    use canon_engine::net::p2p::frame::Frame;
    let frame = |id| {
        codec::encode(&Frame::Request {
            id,
            body: vec![7; 9],
        })
        .expect("encode")
    };
    let mut input = Vec::new();
    let mut piece = |flag: u8, bytes: &[u8]| {
        input.push(bytes.len() as u8 + 1);
        input.push(flag);
        input.extend_from_slice(bytes);
    };
    piece(0, &frame(1));
    let two = frame(2);
    piece(1, &two[..4]);
    piece(0, &two[4..]);
    input
}

/// An `rpc_params` input: the call's selector byte, then its parameter text.
fn rpc_seed(call: &str, params: &str) -> Vec<u8> {
    let selector = RPC_CALLS
        .iter()
        .position(|c| *c == call)
        .expect("a known call");
    let mut input = vec![selector as u8];
    input.extend_from_slice(params.as_bytes());
    input
}
