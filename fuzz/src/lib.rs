//! Fuzz entry points for everything that decodes bytes from outside: each must return, never
//! panic, whatever it is given. `tests/` drives them with proptest; a cargo-fuzz harness can
//! call the same functions.

use canon_engine::app::ledger::SignedTransaction;
use canon_engine::chain::block::Block;
use canon_engine::codec;
use canon_engine::net::p2p::frame::Frame;
use canon_engine::net::wire::{Request, Response};

/// Decodes `data` as every externally supplied message type. Returns how many decoded.
pub fn decode_all(data: &[u8]) -> usize {
    [
        codec::decode::<Block>(data).is_ok(),
        codec::decode::<SignedTransaction>(data).is_ok(),
        codec::decode::<Request>(data).is_ok(),
        codec::decode::<Response>(data).is_ok(),
        codec::decode::<Frame>(data).is_ok(),
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
    let key = canon_engine::keys::derived_key("canon-fuzz/p2p", 0);
    let handshake =
        canon_engine::net::p2p::handshake::accept_over(Incoming { data }, &key, 7, [7; 32]);
    futures::executor::block_on(handshake).is_err()
}
