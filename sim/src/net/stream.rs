//! One simulated TCP connection: two ordered byte pipes between two hosts, with what TCP does
//! under faults. Bytes arrive in order, each write after its own delay but never before the
//! write ahead of it; a partition holds them until it heals (TCP retransmits); a lost segment
//! costs a retransmission timeout, not the bytes. A writer that fills the receiver's window
//! blocks until the reader reads (a peer that stops reading pushes back). A process that exits
//! closes its end (the peer reads EOF); a host that loses power leaves the peer half-open until
//! the peer writes to the rebooted host and is reset.
//!
//! Every byte an attacker altered or injected is marked; a side that read one is *tainted*, and
//! the checker holds that nothing delivered on a tainted side reaches the engine.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use canon_engine::NodeId;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::SimNet;

/// How many unread bytes one direction holds before the writer blocks (a socket buffer).
pub const WINDOW_BYTES: usize = 256 * 1024;

/// The dialing side (0) and the accepting side (1).
pub const DIALER: usize = 0;
pub const ACCEPTOR: usize = 1;

enum Payload {
    Data(Vec<u8>),
    /// The writer closed its end: the reader sees EOF here.
    Fin,
}

struct Segment {
    due: Instant,
    payload: Payload,
    /// Bytes of it already read.
    read: usize,
    /// Altered or injected by an attacker.
    tainted: bool,
}

/// One direction of a connection.
#[derive(Default)]
struct Pipe {
    segments: VecDeque<Segment>,
    unread_bytes: usize,
    last_due: Option<Instant>,
    reader: Option<Waker>,
    writer: Option<Waker>,
    /// The writer shut its end (or exited): no more writes.
    write_closed: bool,
    /// The reading process closed its socket: writes fail (the kernel answers with a reset).
    reader_closed: bool,
    /// The reader consumed a byte an attacker altered or injected.
    tainted: bool,
    /// The attacker dropped a segment here: every byte after it is out of place.
    altered_from_here: bool,
    /// The reader does not read before this (a stall, a process that stopped reading).
    stalled_until: Option<Instant>,
    /// What the attacker recorded off this pipe, for replays and splices.
    recorded: Vec<Vec<u8>>,
}

impl Pipe {
    fn wake_all(&mut self) {
        if let Some(w) = self.reader.take() {
            w.wake();
        }
        if let Some(w) = self.writer.take() {
            w.wake();
        }
    }
}

/// What an attacker on the path does to the next segment written in one direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tamper {
    /// Flips one bit.
    FlipBit,
    /// Delivers it, then a copy of an earlier segment of the same direction.
    Replay,
    /// Drops it.
    Drop,
    /// Replaces it with a segment recorded off another connection.
    Splice,
}

pub(crate) struct ConnState {
    pub(crate) id: u64,
    /// Host indices: [dialer, acceptor].
    pub(crate) hosts: [usize; 2],
    /// The ids whose keys the two sides hold: the only ids that may be proven on it.
    pub(crate) ids: [NodeId; 2],
    /// `pipes[s]` carries what side `s` writes.
    pipes: [Pipe; 2],
    reset: bool,
    /// A side that vanished without a word: its host lost power.
    vanished: [bool; 2],
    /// Nothing gets through in either direction and nobody is told (a middlebox dropped the
    /// flow): both sides are half-open.
    black_hole: bool,
    /// Attacks waiting for the next segment, by writing side.
    tamper: [VecDeque<Tamper>; 2],
    /// Segments recorded from another connection, for a splice.
    foreign: Vec<Vec<u8>>,
    /// A side whose every byte is the attacker's own (it dialed with raw bytes, not as a node).
    forged: [bool; 2],
}

pub(crate) type SharedConn = Arc<Mutex<ConnState>>;

pub(crate) fn lock(conn: &SharedConn) -> MutexGuard<'_, ConnState> {
    canon_engine::sync::lock(conn)
}

impl ConnState {
    pub(crate) fn new(id: u64, hosts: [usize; 2], ids: [NodeId; 2]) -> ConnState {
        ConnState {
            id,
            hosts,
            ids,
            pipes: [Pipe::default(), Pipe::default()],
            reset: false,
            vanished: [false; 2],
            black_hole: false,
            tamper: [VecDeque::new(), VecDeque::new()],
            foreign: Vec::new(),
            forged: [false; 2],
        }
    }

    /// Which side `host` is on (the acceptor's, unless it dialed).
    pub(crate) fn side_of(&self, host: usize) -> usize {
        if self.hosts[DIALER] == host {
            DIALER
        } else {
            ACCEPTOR
        }
    }

    pub(crate) fn is_open(&self) -> bool {
        let both_closed = self.pipes.iter().all(|p| p.write_closed);
        let both_gone = self.vanished.iter().all(|v| *v);
        !(self.reset || both_closed || both_gone)
    }

    pub(crate) fn reset(&mut self) {
        self.reset = true;
        for p in &mut self.pipes {
            p.wake_all();
        }
    }

    pub(crate) fn black_hole(&mut self) {
        self.black_hole = true;
    }

    /// Side `reader` reads nothing until `until`; the writer fills the window and blocks.
    pub(crate) fn stall(&mut self, reader: usize, until: Instant) {
        self.pipes[1 - reader].stalled_until = Some(until);
    }

    pub(crate) fn tamper(&mut self, writer: usize, attack: Tamper, foreign: Vec<Vec<u8>>) {
        self.tamper[writer].push_back(attack);
        if !foreign.is_empty() {
            self.foreign = foreign;
        }
    }

    /// What side `writer` has sent so far, as recorded (the first segments only).
    pub(crate) fn recorded(&self, writer: usize) -> Vec<Vec<u8>> {
        self.pipes[writer].recorded.clone()
    }

    /// Whether side `reader` consumed a byte an attacker altered or injected.
    pub(crate) fn tainted(&self, reader: usize) -> bool {
        self.pipes[1 - reader].tainted
    }

    fn push(&mut self, writer: usize, due: Instant, payload: Payload, tainted: bool) {
        let pipe = &mut self.pipes[writer];
        let due = pipe.last_due.map_or(due, |last| due.max(last));
        pipe.last_due = Some(due);
        if let Payload::Data(d) = &payload {
            pipe.unread_bytes += d.len();
        }
        let tainted = tainted || pipe.altered_from_here;
        pipe.segments.push_back(Segment {
            due,
            payload,
            read: 0,
            tainted,
        });
        if let Some(w) = pipe.reader.take() {
            w.wake();
        }
    }

    /// Writes `data` from side `writer`, after whatever attack waits for it.
    fn write_segment(&mut self, writer: usize, due: Instant, data: Vec<u8>) {
        const RECORDED_SEGMENTS: usize = 16;
        if self.pipes[writer].recorded.len() < RECORDED_SEGMENTS {
            self.pipes[writer].recorded.push(data.clone());
        }
        match self.tamper[writer].pop_front() {
            None => {
                let forged = self.forged[writer];
                self.push(writer, due, Payload::Data(data), forged)
            }
            Some(Tamper::FlipBit) => {
                let mut data = data;
                let at = (self.id as usize).wrapping_mul(31) % data.len().max(1);
                if let Some(b) = data.get_mut(at) {
                    *b ^= 0x10;
                }
                self.push(writer, due, Payload::Data(data), true);
            }
            Some(Tamper::Replay) => {
                let earlier = self.pipes[writer].recorded.first().cloned();
                self.push(writer, due, Payload::Data(data), false);
                if let Some(copy) = earlier {
                    self.push(writer, due, Payload::Data(copy), true);
                }
            }
            Some(Tamper::Drop) => {
                // The bytes that follow are genuine but no longer where the writer put them.
                self.pipes[writer].altered_from_here = true;
            }
            Some(Tamper::Splice) => {
                let foreign = self.foreign.pop().unwrap_or_else(|| vec![0u8; data.len()]);
                self.push(writer, due, Payload::Data(foreign), true);
            }
        }
    }
}

/// One side of a simulated connection.
pub struct SimStream {
    conn: SharedConn,
    side: usize,
    net: SimNet,
    timer: Option<(Instant, Pin<Box<madsim::time::Sleep>>)>,
}

impl SimStream {
    pub(crate) fn new(conn: SharedConn, side: usize, net: SimNet) -> SimStream {
        SimStream {
            conn,
            side,
            net,
            timer: None,
        }
    }

    pub fn connection(&self) -> u64 {
        lock(&self.conn).id
    }

    /// Marks everything this side writes as the attacker's: it is no node speaking.
    pub fn forge(&self) {
        lock(&self.conn).forged[self.side] = true;
    }

    /// Waits until `at`; `Ready` once it passed.
    fn wait_until(&mut self, at: Instant, cx: &mut Context<'_>) -> Poll<()> {
        if self.timer.as_ref().is_none_or(|(t, _)| *t != at) {
            self.timer = Some((at, Box::pin(madsim::time::sleep_until(at))));
        }
        match self.timer.as_mut() {
            Some((_, sleep)) => sleep.as_mut().poll(cx),
            None => Poll::Ready(()),
        }
    }
}

impl AsyncRead for SimStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let (from_host, to_host) = {
                let c = lock(&self.conn);
                (c.hosts[1 - self.side], c.hosts[self.side])
            };
            let blocked = self.net.blocked(from_host, to_host);
            let now = Instant::now();
            let side = self.side;
            let mut guard = lock(&self.conn);
            let c = &mut *guard;
            if c.reset {
                return Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()));
            }
            let black_hole = c.black_hole;
            let pipe = &mut c.pipes[1 - side];
            let Some(front) = pipe.segments.front_mut() else {
                pipe.reader = Some(cx.waker().clone());
                return Poll::Pending;
            };
            if black_hole {
                pipe.reader = Some(cx.waker().clone());
                return Poll::Pending;
            }
            if blocked {
                pipe.reader = Some(cx.waker().clone());
                drop(guard);
                self.net.wake_on_fault_change(cx.waker().clone());
                return Poll::Pending;
            }
            let ready_at = match pipe.stalled_until {
                Some(s) if s > now => front.due.max(s),
                _ => front.due,
            };
            if ready_at > now {
                pipe.reader = Some(cx.waker().clone());
                drop(guard);
                match self.wait_until(ready_at, cx) {
                    Poll::Ready(()) => continue,
                    Poll::Pending => return Poll::Pending,
                }
            }
            let n = match &front.payload {
                Payload::Fin => return Poll::Ready(Ok(())),
                Payload::Data(d) => {
                    let n = (d.len() - front.read).min(buf.remaining());
                    buf.put_slice(&d[front.read..front.read + n]);
                    n
                }
            };
            front.read += n;
            if front.tainted && n > 0 {
                pipe.tainted = true;
            }
            let done = matches!(&front.payload, Payload::Data(d) if front.read == d.len());
            if done {
                pipe.segments.pop_front();
            }
            pipe.unread_bytes -= n;
            if let Some(w) = pipe.writer.take() {
                w.wake();
            }
            return Poll::Ready(Ok(()));
        }
    }
}

impl AsyncWrite for SimStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let peer = lock(&self.conn).hosts[1 - self.side];
        let peer_up = self.net.is_powered(peer);
        let delay = self.net.segment_delay();
        let side = self.side;
        let mut guard = lock(&self.conn);
        let c = &mut *guard;
        if c.reset {
            return Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()));
        }
        if c.vanished[1 - side] && peer_up {
            // The peer's host came back without this connection: its kernel resets it.
            c.reset();
            return Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()));
        }
        let pipe = &mut c.pipes[side];
        if pipe.write_closed || pipe.reader_closed {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        if pipe.unread_bytes >= WINDOW_BYTES {
            pipe.writer = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = buf.len().min(WINDOW_BYTES - pipe.unread_bytes);
        c.write_segment(side, Instant::now() + delay, buf[..n].to_vec());
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let delay = self.net.segment_delay();
        let mut c = lock(&self.conn);
        if !c.pipes[self.side].write_closed {
            c.pipes[self.side].write_closed = true;
            c.push(self.side, Instant::now() + delay, Payload::Fin, false);
        }
        Poll::Ready(Ok(()))
    }
}

impl Drop for SimStream {
    fn drop(&mut self) {
        let host = lock(&self.conn).hosts[self.side];
        let powered = self.net.is_powered(host);
        let delay = if powered {
            self.net.segment_delay()
        } else {
            Duration::ZERO
        };
        let mut c = lock(&self.conn);
        let side = self.side;
        if !powered {
            // The host lost power: its end is gone and nobody is told.
            c.vanished[side] = true;
            return;
        }
        // The process exited or closed the socket: the kernel sends FIN, and answers later
        // writes with a reset.
        c.pipes[1 - side].reader_closed = true;
        c.pipes[1 - side].wake_all();
        if !c.pipes[side].write_closed {
            c.pipes[side].write_closed = true;
            c.push(side, Instant::now() + delay, Payload::Fin, false);
        }
    }
}
