//! Frames over an established Noise session. A frame is encoded, cut into pieces that fit one
//! Noise transport message, and each piece goes on the wire as a 4-byte length and its
//! ciphertext (ChaCha20-Poly1305, a 16-byte tag, the nonce a counter per direction that both
//! sides keep). A piece's first plaintext byte says whether more of the frame follows.
//!
//! So a piece that was altered, replayed, reordered or taken from another connection fails to
//! decrypt, and the connection closes; a frame cut short never completes (the connection's end
//! or the peer's next frame, which fails the counter, closes it). Nothing reaches the engine
//! before a whole frame authenticated.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use crate::codec;
use crate::sync::lock;
use bytes::Bytes;
use futures::future::{self, Either};
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use snow::TransportState;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_util::codec::{Framed, LengthDelimitedCodec};
use tokio_util::sync::CancellationToken;

use super::frame::{Frame, FrameError, MAX_FRAME_BYTES};

/// The largest Noise message (the Noise specification's limit).
pub const NOISE_MAX_MESSAGE: usize = 65_535;
/// Poly1305's tag on every transport message.
const TAG_BYTES: usize = 16;
/// Frame bytes per piece: a Noise message less the tag and the piece's "more follows" byte.
const PIECE_BYTES: usize = NOISE_MAX_MESSAGE - TAG_BYTES - 1;
const MORE: u8 = 1;
const LAST: u8 = 0;

pub(crate) type Wire<S> = Framed<S, LengthDelimitedCodec>;
type Noise = Arc<Mutex<TransportState>>;

/// Length-delimited messages of at most one Noise message: the handshake's and the pieces'.
pub(crate) fn wire_codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .max_frame_length(NOISE_MAX_MESSAGE)
        .new_codec()
}

/// An authenticated, encrypted connection to one peer.
pub struct Channel<S> {
    wire: Wire<S>,
    noise: Noise,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Channel<S> {
    /// Continues on `wire`, the framing the handshake ran on: bytes it already buffered
    /// (the peer's first frame may arrive with its last handshake message) stay in it.
    pub(crate) fn new(wire: Wire<S>, noise: TransportState) -> Self {
        Channel {
            wire,
            noise: Arc::new(Mutex::new(noise)),
        }
    }

    pub async fn send(&mut self, frame: &Frame) -> Result<(), FrameError> {
        for piece in seal(&self.noise, frame)? {
            self.wire.send(piece).await?;
        }
        Ok(())
    }

    pub async fn recv(&mut self) -> Result<Frame, FrameError> {
        open_next(&mut self.wire, &self.noise, NO_DEADLINE).await
    }

    /// A sending half and a receiving half, for a writer and a reader task.
    pub fn split(self) -> (ChannelSink<S>, ChannelStream<S>) {
        let (sink, stream) = self.wire.split();
        (
            ChannelSink {
                sink,
                noise: self.noise.clone(),
            },
            ChannelStream {
                stream,
                noise: self.noise,
            },
        )
    }

    /// Seals each of `pieces` as one transport message, exactly as given (its first byte is
    /// read as the piece's flag): what a hostile peer that completed the handshake can send.
    /// The node never calls it; the fuzzer (`p2p_channel`) feeds the receiving side with it.
    pub async fn send_pieces(&mut self, pieces: &[&[u8]]) -> Result<(), FrameError> {
        for piece in pieces {
            let mut cipher = vec![0u8; piece.len() + TAG_BYTES];
            let n = lock(&self.noise)
                .write_message(piece, &mut cipher)
                .map_err(|e| FrameError::Malformed(format!("encrypt: {e}")))?;
            cipher.truncate(n);
            self.wire.send(Bytes::from(cipher)).await?;
        }
        Ok(())
    }

    /// The byte stream underneath, for tests that misbehave on purpose.
    pub fn get_mut(&mut self) -> &mut S {
        self.wire.get_mut()
    }
}

pub struct ChannelSink<S> {
    sink: SplitSink<Wire<S>, Bytes>,
    noise: Noise,
}

impl<S: AsyncRead + AsyncWrite + Unpin> ChannelSink<S> {
    pub async fn send(&mut self, frame: &Frame) -> Result<(), FrameError> {
        for piece in seal(&self.noise, frame)? {
            self.sink.send(piece).await?;
        }
        Ok(())
    }

    /// A connection's writer: sends what `outbox` queues until it ends, a send fails or
    /// `closed` is cancelled, then cancels `closed` (a writer that stops closes its side).
    pub async fn drain(mut self, mut outbox: mpsc::Receiver<Frame>, closed: CancellationToken) {
        loop {
            let next =
                match future::select(Box::pin(outbox.recv()), Box::pin(closed.cancelled())).await {
                    Either::Left((Some(frame), _)) => frame,
                    _ => break,
                };
            let sent =
                future::select(Box::pin(self.send(&next)), Box::pin(closed.cancelled())).await;
            if !matches!(sent, Either::Left((Ok(()), _))) {
                break;
            }
        }
        closed.cancel();
    }
}

pub struct ChannelStream<S> {
    stream: SplitStream<Wire<S>>,
    noise: Noise,
}

impl<S: AsyncRead + AsyncWrite + Unpin> ChannelStream<S> {
    pub async fn recv(&mut self) -> Result<Frame, FrameError> {
        open_next(&mut self.stream, &self.noise, NO_DEADLINE).await
    }

    /// Waits as long as it takes for a frame to begin, then at most until `deadline` (started
    /// by the frame's first piece) for the rest: a peer that trickles a frame in is cut off.
    pub async fn recv_bounded<F: Future<Output = ()>>(
        &mut self,
        deadline: impl FnOnce() -> F,
    ) -> Result<Frame, FrameError> {
        open_next(&mut self.stream, &self.noise, Some(deadline)).await
    }
}

/// `frame`'s pieces, encrypted in order under the session's sending counter.
fn seal(noise: &Noise, frame: &Frame) -> Result<Vec<Bytes>, FrameError> {
    let bytes = codec::encode(frame).map_err(|e| FrameError::Malformed(e.to_string()))?;
    if bytes.len() > MAX_FRAME_BYTES {
        return Err(FrameError::Malformed(format!(
            "a frame of {} bytes is above the {MAX_FRAME_BYTES}-byte limit",
            bytes.len()
        )));
    }
    let chunks: Vec<&[u8]> = if bytes.is_empty() {
        vec![&[][..]]
    } else {
        bytes.chunks(PIECE_BYTES).collect()
    };
    let last = chunks.len() - 1;
    let mut noise = lock(noise);
    let mut out = Vec::with_capacity(chunks.len());
    let mut plain = Vec::with_capacity(PIECE_BYTES + 1);
    // As large as the largest piece sealed, not the largest Noise message: most frames are
    // small (votes, heartbeats), and zeroing 64 KiB for each was a tenth of the simulator's
    // time.
    let mut cipher = vec![0u8; bytes.len().min(PIECE_BYTES) + 1 + TAG_BYTES];
    for (i, chunk) in chunks.into_iter().enumerate() {
        plain.clear();
        plain.push(if i == last { LAST } else { MORE });
        plain.extend_from_slice(chunk);
        let n = noise
            .write_message(&plain, &mut cipher)
            .map_err(|e| FrameError::Malformed(format!("encrypt: {e}")))?;
        out.push(Bytes::copy_from_slice(&cipher[..n]));
    }
    Ok(out)
}

type NoDeadline = fn() -> std::future::Pending<()>;
const NO_DEADLINE: Option<NoDeadline> = None;

/// Reads pieces until a whole frame authenticated, then decodes it. `deadline`, if any, starts
/// when the first piece arrives and bounds the rest.
async fn open_next<R, D, F>(
    stream: &mut R,
    noise: &Noise,
    mut deadline: Option<D>,
) -> Result<Frame, FrameError>
where
    R: futures::Stream<Item = Result<bytes::BytesMut, std::io::Error>> + Unpin,
    D: FnOnce() -> F,
    F: Future<Output = ()>,
{
    let mut frame = Vec::new();
    // Grown to each piece's size (a piece decrypts to less than its own length).
    let mut plain = Vec::new();
    let mut timer: Option<Pin<Box<F>>> = None;
    loop {
        let next = match timer.as_mut() {
            None => stream.next().await,
            Some(t) => match future::select(stream.next(), t.as_mut()).await {
                Either::Left((next, _)) => next,
                Either::Right(_) => return Err(FrameError::TooSlow),
            },
        };
        let piece = match next {
            None => return Err(FrameError::Closed),
            // A length prefix above a Noise message surfaces here as InvalidData.
            Some(Err(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
                return Err(FrameError::Malformed(e.to_string()))
            }
            Some(Err(e)) => return Err(FrameError::Io(e)),
            Some(Ok(piece)) => piece,
        };
        if timer.is_none() {
            timer = deadline.take().map(|d| Box::pin(d()));
        }
        plain.resize(piece.len(), 0);
        let n = lock(noise)
            .read_message(&piece, &mut plain)
            .map_err(|e| FrameError::Unauthentic(e.to_string()))?;
        let Some((&flag, data)) = plain[..n].split_first() else {
            return Err(FrameError::Malformed("an empty piece".into()));
        };
        if frame.len() + data.len() > MAX_FRAME_BYTES {
            return Err(FrameError::Malformed(format!(
                "a frame above the {MAX_FRAME_BYTES}-byte limit"
            )));
        }
        frame.extend_from_slice(data);
        match flag {
            LAST => break,
            MORE => continue,
            other => return Err(FrameError::Malformed(format!("piece flag {other}"))),
        }
    }
    codec::decode::<Frame>(&frame).map_err(|e| FrameError::Malformed(e.to_string()))
}

#[cfg(test)]
mod tests {
    //! The channel against an attacker on the path: every piece is authentic, in order, of
    //! this connection, or the connection closes with nothing delivered.
    use tokio::io::{AsyncWriteExt, DuplexStream};

    use super::*;
    use crate::net::p2p::handshake::duplex_pair;

    type Pair = (Channel<DuplexStream>, Channel<DuplexStream>);

    /// Every pair draws its own keys: two connections never share a session.
    async fn pair() -> Pair {
        static NEXT: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);
        let n = NEXT.fetch_add(2, std::sync::atomic::Ordering::Relaxed);
        duplex_pair(([n; 32], [n + 1; 32])).await
    }

    fn frame(id: u64, len: usize) -> Frame {
        Frame::Request {
            id,
            body: vec![id as u8; len],
        }
    }

    /// Writes `pieces` onto `sender`'s stream as the wire carries them, bypassing its sealing.
    async fn write_raw(sender: &mut Channel<DuplexStream>, pieces: &[Bytes]) {
        for p in pieces {
            let len = (p.len() as u32).to_be_bytes();
            sender.get_mut().write_all(&len).await.unwrap();
            sender.get_mut().write_all(p).await.unwrap();
        }
    }

    fn unauthentic(r: Result<Frame, FrameError>) -> bool {
        matches!(r, Err(FrameError::Unauthentic(_)))
    }

    #[tokio::test]
    async fn frames_of_every_size_arrive_whole_and_in_order() {
        let (mut d, mut s) = pair().await;
        for (id, len) in [
            (1, 0),
            (2, 1),
            (3, PIECE_BYTES - 20),
            (4, PIECE_BYTES * 3 + 7),
        ] {
            d.send(&frame(id, len)).await.unwrap();
        }
        for (id, len) in [
            (1, 0),
            (2, 1),
            (3, PIECE_BYTES - 20),
            (4, PIECE_BYTES * 3 + 7),
        ] {
            match s.recv().await.unwrap() {
                Frame::Request { id: got, body } => assert_eq!((got, body.len()), (id, len)),
                other => panic!("got {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn a_flipped_byte_closes_the_connection() {
        let (mut d, mut s) = pair().await;
        let mut pieces = seal(&d.noise, &frame(1, 100)).unwrap();
        let mut altered = pieces[0].to_vec();
        altered[10] ^= 1;
        pieces[0] = Bytes::from(altered);
        write_raw(&mut d, &pieces).await;
        assert!(unauthentic(s.recv().await));
    }

    #[tokio::test]
    async fn a_replayed_frame_closes_the_connection() {
        let (mut d, mut s) = pair().await;
        let pieces = seal(&d.noise, &frame(1, 100)).unwrap();
        write_raw(&mut d, &pieces).await;
        assert!(s.recv().await.is_ok());
        write_raw(&mut d, &pieces).await;
        assert!(unauthentic(s.recv().await));
    }

    #[tokio::test]
    async fn reordered_frames_close_the_connection() {
        let (mut d, mut s) = pair().await;
        let first = seal(&d.noise, &frame(1, 100)).unwrap();
        let second = seal(&d.noise, &frame(2, 100)).unwrap();
        write_raw(&mut d, &second).await;
        write_raw(&mut d, &first).await;
        assert!(unauthentic(s.recv().await));
    }

    #[tokio::test]
    async fn a_frame_from_another_connection_closes_the_connection() {
        let (mut d, mut s) = pair().await;
        let (other, _other_peer) = pair().await;
        let foreign = seal(&other.noise, &frame(1, 100)).unwrap();
        write_raw(&mut d, &foreign).await;
        assert!(unauthentic(s.recv().await));
    }

    #[tokio::test]
    async fn a_frame_cut_short_is_never_delivered() {
        let (mut d, mut s) = pair().await;
        let pieces = seal(&d.noise, &frame(1, PIECE_BYTES * 2)).unwrap();
        assert_eq!(pieces.len(), 3);
        write_raw(&mut d, &pieces[..2]).await;
        // The rest never comes: the connection ends.
        drop(d);
        assert!(matches!(s.recv().await, Err(FrameError::Closed)));
    }

    #[tokio::test]
    async fn a_frame_trickled_in_past_its_deadline_is_cut_off() {
        let (mut d, s) = pair().await;
        let (_sink, mut stream) = s.split();
        let pieces = seal(&d.noise, &frame(1, PIECE_BYTES * 2)).unwrap();
        // The first piece comes; the rest never does. Without a deadline the reader would
        // wait forever; with one, it gives up once the frame began.
        write_raw(&mut d, &pieces[..1]).await;
        let bounded =
            stream.recv_bounded(|| tokio::time::sleep(std::time::Duration::from_millis(50)));
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), bounded)
            .await
            .expect("the deadline must end the wait");
        assert!(matches!(got, Err(FrameError::TooSlow)), "{got:?}");
    }

    #[tokio::test]
    async fn an_idle_connection_waits_for_a_frame_to_begin() {
        let (mut d, s) = pair().await;
        let (_sink, mut stream) = s.split();
        let late = tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            d.send(&frame(7, 10)).await.unwrap();
            d
        });
        let got = stream
            .recv_bounded(|| tokio::time::sleep(std::time::Duration::from_millis(50)))
            .await;
        assert!(matches!(got, Ok(Frame::Request { id: 7, .. })), "{got:?}");
        drop(late.await);
    }

    #[tokio::test]
    async fn a_frame_announcing_more_than_the_limit_is_refused_before_it_is_read() {
        let (mut d, mut s) = pair().await;
        d.get_mut().write_all(&[0xff; 4]).await.unwrap();
        assert!(matches!(s.recv().await, Err(FrameError::Malformed(_))));
        let too_big = frame(1, MAX_FRAME_BYTES + 1);
        assert!(matches!(
            d.send(&too_big).await,
            Err(FrameError::Malformed(_))
        ));
    }
}
