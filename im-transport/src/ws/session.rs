//! One WebSocket session: a single task owns the socket and multiplexes
//! (a) frames pushed by the hub, written with `feed` and flushed once the
//! queue is drained, (b) replies of in-flight requests, (c) client frames,
//! handled concurrently up to `max_in_flight`, (d) pings and the idle
//! timeout, and (e) the token's expiry, which kicks the session (`kicked`
//! "token expired", 4001). It never panics on input: bad frames get `error`
//! frames, an oversized message closes with 1009.

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::stream::FuturesUnordered;
use futures::{Future, FutureExt, SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use im_core::connect::{
    ConnectService, SessionAuth, SessionCtx, CLOSE_GOING_AWAY, CLOSE_KICKED, TOKEN_EXPIRED,
};
use im_core::id::now_ms;
use im_core::protocol::ServerFrame;
use im_core::{Error, ErrorCode};
use tokio_tungstenite::tungstenite::error::CapacityError;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

use super::config::{WsConfig, WsState};

type Socket = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;
type Reply = Pin<Box<dyn Future<Output = Option<ServerFrame>> + Send>>;

enum End {
    Close(u16, String),
    Gone,
}

fn text(bytes: Bytes) -> Option<Message> {
    Utf8Bytes::try_from(bytes).ok().map(Message::Text)
}

fn frame(f: &ServerFrame) -> Message {
    Message::Text(Utf8Bytes::from(f.encode()))
}

/// Runs a session until the socket closes (or its token expires).
pub async fn run_session(mut ws: Socket, state: WsState, auth: SessionAuth, device: String) {
    let (ctx, mut handle) = match state.connect.open_as(&auth, &device).await {
        Ok(x) => x,
        Err(e) if e.code() == ErrorCode::Unauthenticated => {
            // The token was logged out between the upgrade and the bind.
            let reason = e.public_message();
            let _ = ws
                .send(frame(&ServerFrame::Kicked {
                    reason: reason.clone(),
                }))
                .await;
            let _ = ws
                .close(Some(CloseFrame {
                    code: CloseCode::from(CLOSE_KICKED),
                    reason: reason.into(),
                }))
                .await;
            return;
        }
        Err(e) => {
            let _ = ws.send(frame(&ServerFrame::error(&e, None))).await;
            let _ = ws
                .close(Some(CloseFrame {
                    code: CloseCode::Again,
                    reason: "try again later".into(),
                }))
                .await;
            return;
        }
    };
    metrics::gauge!("im_ws_connections").increment(1.0);
    let end = drive(&mut ws, &state, &ctx, &mut handle, auth.expires_at).await;
    metrics::gauge!("im_ws_connections").decrement(1.0);
    state.connect.close(&ctx, &device).await;
    if let End::Close(code, reason) = end {
        let close = CloseFrame {
            code: CloseCode::from(code),
            reason: reason.into(),
        };
        let _ = tokio::time::timeout(state.config.write_timeout, ws.close(Some(close))).await;
    }
}

async fn drive(
    ws: &mut Socket,
    state: &WsState,
    ctx: &SessionCtx,
    handle: &mut im_core::connect::SessionHandle,
    expires_at: Option<i64>,
) -> End {
    let config = state.config.clone();
    let mut in_flight: FuturesUnordered<Reply> = FuturesUnordered::new();
    let mut last_heard = Instant::now();
    let mut ping = tokio::time::interval(config.ping_every);
    ping.reset();
    // One timer per session, armed once: the token's expiry.
    let mut expiring = expires_at.is_some();
    let expiry = tokio::time::sleep(expires_at.map_or(Duration::ZERO, |at| {
        Duration::from_millis(u64::try_from(at.saturating_sub(now_ms())).unwrap_or(0))
    }));
    tokio::pin!(expiry);
    loop {
        tokio::select! {
            biased;
            _ = state.shutdown.cancelled() => {
                return End::Close(CLOSE_GOING_AWAY, "server shutting down".into());
            }
            _ = handle.closed.cancelled() => {
                // Write what the hub queued before closing (e.g. a `kicked` frame).
                while let Ok(b) = handle.outbound.try_recv() {
                    if let Some(m) = text(b) {
                        let _ = ws.feed(m).await;
                    }
                }
                let reason = handle.close_reason();
                let (code, why) = reason.map(|r| (r.code, r.reason)).unwrap_or((1000, String::new()));
                return End::Close(code, why);
            }
            pushed = handle.outbound.recv() => {
                let Some(first) = pushed else { return End::Close(1000, String::new()) };
                if write_batch(ws, &config, first, &mut handle.outbound).await.is_err() {
                    return End::Gone;
                }
            }
            Some(reply) = in_flight.next(), if !in_flight.is_empty() => {
                // Feed this reply and every other one already finished, then
                // flush once.
                let write = async {
                    let mut next = Some(reply);
                    while let Some(r) = next {
                        if let Some(f) = r {
                            ws.feed(frame(&f)).await?;
                        }
                        next = in_flight.next().now_or_never().flatten();
                    }
                    ws.flush().await
                };
                if timed(&config, write).await.is_err() {
                    return End::Gone;
                }
            }
            incoming = ws.next(), if in_flight.len() < config.max_in_flight => {
                last_heard = Instant::now();
                match incoming {
                    None => return End::Gone,
                    Some(Ok(Message::Text(t))) => {
                        let connect: Arc<ConnectService> = state.connect.clone();
                        let ctx = ctx.clone();
                        in_flight.push(Box::pin(async move {
                            connect.handle_text(&ctx, t.as_bytes()).await
                        }));
                    }
                    Some(Ok(Message::Binary(_))) => {
                        let e = Error::InvalidArgument("binary frames are not supported; send JSON text".into());
                        if timed(&config, ws.send(frame(&ServerFrame::error(&e, None)))).await.is_err() {
                            return End::Gone;
                        }
                    }
                    Some(Ok(Message::Close(_))) => return End::Gone,
                    Some(Ok(_)) => {} // ping (answered by tungstenite), pong, raw frame
                    Some(Err(WsError::Capacity(CapacityError::MessageTooLong { .. })))
                    | Some(Err(WsError::Capacity(_))) => {
                        return End::Close(1009, "message too big".into());
                    }
                    Some(Err(WsError::Utf8(_))) => {
                        return End::Close(1007, "invalid UTF-8 in a text frame".into());
                    }
                    Some(Err(WsError::Protocol(_))) => {
                        return End::Close(1002, "protocol error".into());
                    }
                    Some(Err(_)) => return End::Gone,
                }
            }
            () = &mut expiry, if expiring => {
                expiring = false;
                // Through the hub, like any kick: the `kicked` frame is
                // queued, then `closed` fires and closes with 4001.
                state.connect.hub().kick(ctx.session, TOKEN_EXPIRED);
            }
            _ = ping.tick() => {
                if last_heard.elapsed() > config.idle_timeout {
                    return End::Close(1000, "idle timeout".into());
                }
                if timed(&config, ws.send(Message::Ping(Bytes::new()))).await.is_err() {
                    return End::Gone;
                }
            }
        }
    }
}

async fn timed<F: Future<Output = Result<(), WsError>>>(config: &WsConfig, f: F) -> Result<(), ()> {
    match tokio::time::timeout(config.write_timeout, f).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}

/// Feeds `first` and everything already queued, then flushes once.
async fn write_batch(
    ws: &mut Socket,
    config: &WsConfig,
    first: Bytes,
    queue: &mut tokio::sync::mpsc::Receiver<Bytes>,
) -> Result<(), ()> {
    let write = async {
        if let Some(m) = text(first) {
            ws.feed(m).await?;
        }
        let mut n = 1;
        while n < 1024 {
            match queue.try_recv() {
                Ok(b) => {
                    if let Some(m) = text(b) {
                        ws.feed(m).await?;
                    }
                    n += 1;
                }
                Err(_) => break,
            }
        }
        ws.flush().await
    };
    timed(config, write).await
}
