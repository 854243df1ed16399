//! A fault-injecting TCP proxy on 127.0.0.1 for the reliability scenarios.
//!
//! [`Proxy::start`] listens on an ephemeral port and forwards every accepted
//! connection to one upstream address, both ways. At runtime a test can:
//!
//! - [`Proxy::cut`] every connection (live ones are closed at once, new ones
//!   are accepted and closed straight away) and [`Proxy::restore`] service;
//! - [`Proxy::lose_downstream`]: on the first connection where a [`Trigger`]
//!   fires, swallow the server→client frame that fired it and everything
//!   after it, optionally closing that connection right away ("lose an ack");
//!   the swallowed frames are kept ([`Proxy::dropped`]) so the test can read
//!   what the client never got;
//! - [`Proxy::set_latency`]: delay every chunk, each direction, by a fixed time
//!   (a delay line: throughput is not reduced).
//!
//! Frames: with [`Framing::WebSocket`] the server→client stream is split into
//! WebSocket frames after the HTTP response head (`101`), and a trigger sees
//! each frame's (unmasked) payload. A head other than `101`, a head over 64 KiB
//! or a frame over 16 MiB turns the connection into [`Framing::Raw`], where
//! every chunk read is one "frame". Nothing in here panics on network data.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How the server→client byte stream is cut into frames for triggers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Every chunk read from the server is one frame.
    Raw,
    /// An HTTP response head, then WebSocket frames (after a `101`).
    WebSocket,
}

/// A predicate on a frame's payload.
pub type FramePredicate = Arc<dyn Fn(&[u8]) -> bool + Send + Sync>;

/// When a downstream loss starts on a connection.
#[derive(Clone)]
pub enum Trigger {
    /// After this many server→client frames were forwarded on the connection
    /// (0: from the first frame on).
    AfterFrames(u64),
    /// At the first server→client frame whose payload matches.
    Matching(FramePredicate),
}

impl Trigger {
    /// A trigger on frames whose payload satisfies `f`.
    pub fn matching(f: impl Fn(&[u8]) -> bool + Send + Sync + 'static) -> Trigger {
        Trigger::Matching(Arc::new(f))
    }

    /// A trigger on frames whose payload contains every one of `needles`.
    pub fn containing(needles: &[&str]) -> Trigger {
        let needles: Vec<Vec<u8>> = needles.iter().map(|n| n.as_bytes().to_vec()).collect();
        Trigger::matching(move |p| needles.iter().all(|n| contains(p, n)))
    }

    fn fires(&self, forwarded: u64, payload: &[u8]) -> bool {
        match self {
            Trigger::AfterFrames(n) => forwarded >= *n,
            Trigger::Matching(f) => f(payload),
        }
    }
}

impl std::fmt::Debug for Trigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Trigger::AfterFrames(n) => write!(f, "AfterFrames({n})"),
            Trigger::Matching(_) => f.write_str("Matching(..)"),
        }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

#[derive(Debug)]
struct Loss {
    trigger: Trigger,
    cut: bool,
}

#[derive(Debug, Default)]
struct State {
    cut: bool,
    latency: Duration,
    loss: Option<Loss>,
    dropped: Vec<Vec<u8>>,
    accepted: u64,
    refused: u64,
    live: usize,
}

struct Shared {
    upstream: SocketAddr,
    framing: Framing,
    state: Mutex<State>,
    /// Bumped by every `cut`: live connections close when it changes.
    cuts: watch::Sender<u64>,
    /// Bumped every time a loss fires.
    losses: watch::Sender<u64>,
}

/// A running proxy; dropping it stops the listener and every connection.
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: CancellationToken,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("addr", &self.addr)
            .field("upstream", &self.shared.upstream)
            .finish_non_exhaustive()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Proxy {
    /// Listens on `127.0.0.1:0` and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr, framing: Framing) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            upstream,
            framing,
            state: Mutex::new(State::default()),
            cuts: watch::channel(0).0,
            losses: watch::channel(0).0,
        });
        let stop = CancellationToken::new();
        tokio::spawn(accept_loop(listener, shared.clone(), stop.clone()));
        Ok(Proxy { addr, shared, stop })
    }

    /// The proxy's address (point clients here).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes every live connection and refuses new ones until [`Proxy::restore`].
    pub fn cut(&self) {
        self.shared.state.lock().cut = true;
        self.shared.cuts.send_modify(|g| *g += 1);
    }

    /// Accepts connections again.
    pub fn restore(&self) {
        self.shared.state.lock().cut = false;
    }

    /// Delays every chunk read from now on by `latency`, each direction.
    pub fn set_latency(&self, latency: Duration) {
        self.shared.state.lock().latency = latency;
    }

    /// Arms a one-shot loss: on the first connection where `trigger` fires, the
    /// firing server→client frame and all later server→client bytes of that
    /// connection are swallowed; with `cut` the connection is closed at once.
    /// Replaces a loss armed before that has not fired.
    pub fn lose_downstream(&self, trigger: Trigger, cut: bool) {
        self.shared.state.lock().loss = Some(Loss { trigger, cut });
    }

    /// Whether a loss is armed and has not fired yet.
    pub fn loss_armed(&self) -> bool {
        self.shared.state.lock().loss.is_some()
    }

    /// Waits until `n` losses have fired in total (false on timeout).
    pub async fn wait_losses(&self, n: u64, timeout: Duration) -> bool {
        let mut rx = self.shared.losses.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|fired| *fired >= n))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Payloads of the frames swallowed by losses (the firing frame and any
    /// complete frame after it), oldest first.
    pub fn dropped(&self) -> Vec<Vec<u8>> {
        self.shared.state.lock().dropped.clone()
    }

    /// Connections accepted and forwarded so far.
    pub fn accepted(&self) -> u64 {
        self.shared.state.lock().accepted
    }

    /// Connections refused (closed on accept) while cut, or when the upstream
    /// was unreachable.
    pub fn refused(&self) -> u64 {
        self.shared.state.lock().refused
    }

    /// Connections open right now.
    pub fn live(&self) -> usize {
        self.shared.state.lock().live
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, stop: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            a = listener.accept() => a,
        };
        let Ok((client, _)) = accepted else {
            // EMFILE and friends: back off briefly instead of spinning.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        if shared.state.lock().cut {
            shared.state.lock().refused += 1;
            drop(client);
            continue;
        }
        let shared = shared.clone();
        let stop = stop.child_token();
        tokio::spawn(async move {
            let Ok(server) = TcpStream::connect(shared.upstream).await else {
                shared.state.lock().refused += 1;
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            {
                let mut st = shared.state.lock();
                st.accepted += 1;
                st.live += 1;
            }
            run_connection(client, server, &shared, stop).await;
            shared.state.lock().live -= 1;
        });
    }
}

/// One chunk in a delay line; `None` data means end of stream.
struct Chunk {
    due: Instant,
    data: Option<Vec<u8>>,
}

/// Why a pump ended.
enum PumpEnd {
    /// The reading side finished (EOF or error): the write side was shut.
    Finished,
    /// A loss with `cut` fired: close the whole connection.
    Cut,
}

async fn run_connection(
    client: TcpStream,
    server: TcpStream,
    shared: &Arc<Shared>,
    stop: CancellationToken,
) {
    let mut cuts = shared.cuts.subscribe();
    cuts.borrow_and_update();
    let (client_rd, client_wr) = client.into_split();
    let (server_rd, server_wr) = server.into_split();
    let upstream = pump(client_rd, server_wr, shared.clone(), None);
    let downstream = pump(server_rd, client_wr, shared.clone(), Some(shared.framing));
    tokio::pin!(upstream, downstream);
    let (mut up_done, mut down_done) = (false, false);
    while !(up_done && down_done) {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = cuts.changed() => return,
            end = &mut upstream, if !up_done => {
                up_done = true;
                if matches!(end, PumpEnd::Cut) { return; }
            }
            end = &mut downstream, if !down_done => {
                down_done = true;
                if matches!(end, PumpEnd::Cut) { return; }
            }
        }
    }
}

/// Copies `rd` to `wr` through a delay line; `framing` is set for the
/// server→client direction, where losses apply.
async fn pump(
    mut rd: OwnedReadHalf,
    mut wr: OwnedWriteHalf,
    shared: Arc<Shared>,
    framing: Option<Framing>,
) -> PumpEnd {
    let (tx, mut rx) = mpsc::channel::<Chunk>(64);
    let reader = {
        let shared = shared.clone();
        async move {
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                let n = rd.read(&mut buf).await.unwrap_or(0);
                let due = Instant::now() + shared.state.lock().latency;
                let data = (n > 0).then(|| buf[..n].to_vec());
                let end = data.is_none();
                if tx.send(Chunk { due, data }).await.is_err() || end {
                    return;
                }
            }
        }
    };
    let writer = async move {
        let mut inspector = framing.map(Inspector::new);
        while let Some(chunk) = rx.recv().await {
            tokio::time::sleep_until(chunk.due).await;
            let Some(data) = chunk.data else { break };
            let (out, cut) = match inspector.as_mut() {
                Some(i) => i.feed(&data, &shared),
                None => (data, false),
            };
            if !out.is_empty() && wr.write_all(&out).await.is_err() {
                return PumpEnd::Finished;
            }
            if cut {
                return PumpEnd::Cut;
            }
        }
        let _ = wr.shutdown().await;
        PumpEnd::Finished
    };
    // The writer decides when the pump ends (after the end of stream, or on a
    // write error, which drops the reader too).
    tokio::pin!(reader, writer);
    let mut reader_done = false;
    loop {
        tokio::select! {
            _ = &mut reader, if !reader_done => reader_done = true,
            end = &mut writer => return end,
        }
    }
}

/// Splits the server→client stream into frames and applies losses.
struct Inspector {
    mode: Framing,
    in_head: bool,
    buf: Vec<u8>,
    forwarded: u64,
    dropping: bool,
}

const MAX_HEAD: usize = 64 * 1024;
const MAX_FRAME: u64 = 16 * 1024 * 1024;

impl Inspector {
    fn new(framing: Framing) -> Self {
        Inspector {
            mode: framing,
            in_head: framing == Framing::WebSocket,
            buf: Vec::new(),
            forwarded: 0,
            dropping: false,
        }
    }

    /// Takes a chunk; returns the bytes to forward and whether to cut now.
    fn feed(&mut self, data: &[u8], shared: &Shared) -> (Vec<u8>, bool) {
        if self.dropping {
            return (Vec::new(), false);
        }
        self.buf.extend_from_slice(data);
        let mut out = Vec::new();
        if self.in_head {
            match find(&self.buf, b"\r\n\r\n") {
                Some(end) => {
                    let head: Vec<u8> = self.buf.drain(..end + 4).collect();
                    out.extend_from_slice(&head);
                    self.in_head = false;
                    if !head.starts_with(b"HTTP/1.1 101") {
                        self.mode = Framing::Raw;
                    }
                }
                None if self.buf.len() > MAX_HEAD => {
                    self.in_head = false;
                    self.mode = Framing::Raw;
                }
                None => return (out, false),
            }
        }
        loop {
            let (len, payload) = match self.mode {
                Framing::Raw if self.buf.is_empty() => break,
                Framing::Raw => (self.buf.len(), self.buf.clone()),
                Framing::WebSocket => match ws_frame(&self.buf) {
                    FrameParse::Complete { len, payload } => (len, payload),
                    FrameParse::Incomplete => break,
                    FrameParse::TooBig => {
                        self.mode = Framing::Raw;
                        continue;
                    }
                },
            };
            let frame: Vec<u8> = self.buf.drain(..len).collect();
            let mut st = shared.state.lock();
            let fires = st
                .loss
                .as_ref()
                .is_some_and(|l| l.trigger.fires(self.forwarded, &payload));
            if fires {
                let cut = st.loss.take().is_some_and(|l| l.cut);
                st.dropped.push(payload);
                drop(st);
                shared.losses.send_modify(|n| *n += 1);
                self.dropping = true;
                self.buf.clear();
                return (out, cut);
            }
            drop(st);
            out.extend_from_slice(&frame);
            self.forwarded += 1;
        }
        (out, false)
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[derive(Debug, PartialEq, Eq)]
enum FrameParse {
    /// A whole frame of `len` bytes with this (unmasked) payload.
    Complete { len: usize, payload: Vec<u8> },
    /// More bytes are needed.
    Incomplete,
    /// The frame announces more than [`MAX_FRAME`] bytes.
    TooBig,
}

/// Parses one WebSocket frame (RFC 6455 §5.2) at the start of `buf`.
fn ws_frame(buf: &[u8]) -> FrameParse {
    let (Some(&_b0), Some(&b1)) = (buf.first(), buf.get(1)) else {
        return FrameParse::Incomplete;
    };
    let masked = b1 & 0x80 != 0;
    let (payload_len, mut at) = match b1 & 0x7f {
        126 => match buf.get(2..4) {
            Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4usize),
            None => return FrameParse::Incomplete,
        },
        127 => match buf.get(2..10) {
            Some(b) => {
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                (u64::from_be_bytes(a), 10usize)
            }
            None => return FrameParse::Incomplete,
        },
        n => (u64::from(n), 2usize),
    };
    if payload_len > MAX_FRAME {
        return FrameParse::TooBig;
    }
    let mask = if masked {
        let Some(m) = buf.get(at..at + 4) else {
            return FrameParse::Incomplete;
        };
        at += 4;
        Some([m[0], m[1], m[2], m[3]])
    } else {
        None
    };
    // `payload_len <= MAX_FRAME`, so this fits a usize.
    let end = at + payload_len as usize;
    let Some(raw) = buf.get(at..end) else {
        return FrameParse::Incomplete;
    };
    let payload = match mask {
        Some(m) => raw.iter().enumerate().map(|(i, b)| b ^ m[i % 4]).collect(),
        None => raw.to_vec(),
    };
    FrameParse::Complete { len: end, payload }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// An upstream that echoes every connection.
    async fn echo() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    /// A server text frame (unmasked).
    fn text_frame(payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0x81];
        match payload.len() {
            n if n < 126 => f.push(n as u8),
            n if n <= 0xffff => {
                f.push(126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(payload);
        f
    }

    const HEAD: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n";

    /// An upstream that answers a WebSocket-like head and the given frames,
    /// then holds the connection open until the client closes.
    async fn frames_upstream(frames: Vec<Vec<u8>>) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let frames = frames.clone();
                tokio::spawn(async move {
                    let mut all = HEAD.to_vec();
                    for f in &frames {
                        all.extend_from_slice(&text_frame(f));
                    }
                    // In small pieces, so frames straddle reads.
                    for piece in all.chunks(7) {
                        if s.write_all(piece).await.is_err() {
                            return;
                        }
                    }
                    let mut sink = [0u8; 64];
                    while matches!(s.read(&mut sink).await, Ok(n) if n > 0) {}
                });
            }
        });
        addr
    }

    async fn read_until_eof(s: &mut TcpStream) -> Vec<u8> {
        let mut all = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut all))
            .await
            .expect("EOF within 5 s");
        all
    }

    #[tokio::test]
    async fn forwards_both_ways() {
        let p = Proxy::start(echo().await, Framing::Raw).await.unwrap();
        let mut c = TcpStream::connect(p.addr()).await.unwrap();
        let msg = vec![7u8; 100_000];
        c.write_all(&msg).await.unwrap();
        let mut back = vec![0u8; msg.len()];
        tokio::time::timeout(Duration::from_secs(5), c.read_exact(&mut back))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(back, msg);
        assert_eq!((p.accepted(), p.live()), (1, 1));
        drop(c);
        for _ in 0..100 {
            if p.live() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(p.live(), 0, "a closed client closes its connection");
    }

    #[tokio::test]
    async fn cut_closes_live_and_new_connections_until_restored() {
        let p = Proxy::start(echo().await, Framing::Raw).await.unwrap();
        let mut live = TcpStream::connect(p.addr()).await.unwrap();
        live.write_all(b"x").await.unwrap();
        let mut one = [0u8; 1];
        live.read_exact(&mut one).await.unwrap();
        p.cut();
        assert!(
            read_until_eof(&mut live).await.is_empty(),
            "a live connection is closed by the cut"
        );
        let mut new = TcpStream::connect(p.addr()).await.unwrap();
        let _ = new.write_all(b"y").await;
        assert!(
            read_until_eof(&mut new).await.is_empty(),
            "a new one is closed at once"
        );
        assert!(p.refused() >= 1);
        p.restore();
        let mut again = TcpStream::connect(p.addr()).await.unwrap();
        again.write_all(b"z").await.unwrap();
        again.read_exact(&mut one).await.unwrap();
        assert_eq!(&one, b"z");
    }

    #[tokio::test]
    async fn latency_delays_each_direction() {
        let p = Proxy::start(echo().await, Framing::Raw).await.unwrap();
        p.set_latency(Duration::from_millis(100));
        let mut c = TcpStream::connect(p.addr()).await.unwrap();
        let t = std::time::Instant::now();
        c.write_all(b"ping").await.unwrap();
        let mut back = [0u8; 4];
        c.read_exact(&mut back).await.unwrap();
        let rtt = t.elapsed();
        assert!(rtt >= Duration::from_millis(190), "round trip {rtt:?}");
        assert!(rtt < Duration::from_secs(2), "round trip {rtt:?}");
    }

    #[tokio::test]
    async fn loses_frames_after_the_nth_without_cutting() {
        let frames: Vec<Vec<u8>> = (0..5).map(|i| format!("frame-{i}").into_bytes()).collect();
        let p = Proxy::start(frames_upstream(frames).await, Framing::WebSocket)
            .await
            .unwrap();
        p.lose_downstream(Trigger::AfterFrames(2), false);
        let mut c = TcpStream::connect(p.addr()).await.unwrap();
        assert!(p.wait_losses(1, Duration::from_secs(5)).await);
        let mut want = HEAD.to_vec();
        want.extend(text_frame(b"frame-0"));
        want.extend(text_frame(b"frame-1"));
        let mut got = vec![0u8; want.len()];
        c.read_exact(&mut got).await.unwrap();
        assert_eq!(got, want, "the head and the first two frames pass");
        let mut more = [0u8; 1];
        let r = tokio::time::timeout(Duration::from_millis(200), c.read(&mut more)).await;
        assert!(
            r.is_err(),
            "nothing after the loss; the connection stays open"
        );
        assert_eq!(p.dropped(), vec![b"frame-2".to_vec()]);
        assert!(!p.loss_armed(), "a loss fires once");
    }

    #[tokio::test]
    async fn loses_a_matching_frame_and_cuts() {
        let big = "a".repeat(70_000);
        let frames = vec![
            b"hello".to_vec(),
            big.clone().into_bytes(),
            br#"{"type":"send_ack","client_msg_id":"m2"}"#.to_vec(),
            b"after".to_vec(),
        ];
        let p = Proxy::start(frames_upstream(frames).await, Framing::WebSocket)
            .await
            .unwrap();
        p.lose_downstream(Trigger::containing(&["send_ack", "\"m2\""]), true);
        let mut c = TcpStream::connect(p.addr()).await.unwrap();
        let got = read_until_eof(&mut c).await;
        let mut want = HEAD.to_vec();
        want.extend(text_frame(b"hello"));
        want.extend(text_frame(big.as_bytes()));
        assert_eq!(got.len(), want.len());
        assert!(
            got == want,
            "everything before the matching frame, then EOF"
        );
        assert_eq!(p.dropped().len(), 1);
        assert!(contains(&p.dropped()[0], b"send_ack"));
        // The next connection is untouched: the loss was one-shot.
        let mut c2 = TcpStream::connect(p.addr()).await.unwrap();
        let mut head = vec![0u8; HEAD.len()];
        c2.read_exact(&mut head).await.unwrap();
        assert_eq!(head, HEAD);
    }

    #[tokio::test]
    async fn a_non_upgrade_answer_is_raw() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            s.write_all(b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 5\r\n\r\nnope!")
                .await
                .unwrap();
        });
        let p = Proxy::start(addr, Framing::WebSocket).await.unwrap();
        p.lose_downstream(Trigger::containing(&["nope"]), true);
        let mut c = TcpStream::connect(p.addr()).await.unwrap();
        let got = read_until_eof(&mut c).await;
        assert!(got.starts_with(b"HTTP/1.1 401"), "the head passes");
        assert!(!contains(&got, b"nope"), "the body chunk is swallowed");
    }

    #[test]
    fn parses_frames() {
        assert_eq!(ws_frame(&[]), FrameParse::Incomplete);
        assert_eq!(ws_frame(&[0x81]), FrameParse::Incomplete);
        assert_eq!(
            ws_frame(&[0x81, 2, b'h', b'i', 0xff]),
            FrameParse::Complete {
                len: 4,
                payload: b"hi".to_vec()
            }
        );
        // 16-bit and 64-bit lengths.
        let f = text_frame(&[1u8; 300]);
        assert_eq!(
            ws_frame(&f),
            FrameParse::Complete {
                len: 304,
                payload: vec![1u8; 300]
            }
        );
        assert_eq!(ws_frame(&f[..100]), FrameParse::Incomplete);
        let f = text_frame(&[2u8; 70_000]);
        assert!(matches!(
            ws_frame(&f),
            FrameParse::Complete { len: 70_010, .. }
        ));
        // Masked (client) frame.
        let mask = [1u8, 2, 3, 4];
        let mut f = vec![0x81, 0x80 | 3];
        f.extend_from_slice(&mask);
        f.extend(b"abc".iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        assert_eq!(
            ws_frame(&f),
            FrameParse::Complete {
                len: 9,
                payload: b"abc".to_vec()
            }
        );
        let mut huge = vec![0x82, 127];
        huge.extend_from_slice(&u64::MAX.to_be_bytes());
        assert_eq!(ws_frame(&huge), FrameParse::TooBig);
    }
}
