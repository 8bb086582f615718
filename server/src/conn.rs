//! Connection hygiene for both ports: a connection limit, a first-byte timeout, an idle timeout,
//! and an accept loop that never spins.
//!
//! Without these, 1,100 connections that send nothing used up the process's file descriptors;
//! every `accept` then failed at once and was retried at once (a core at 90 %), and neither port
//! answered. Now:
//! - each port accepts at most [`ConnectionLimits::max_connections`]; a connection beyond that is
//!   closed as soon as it is accepted (the client sees a reset at once rather than a hang);
//! - a connection that sends no byte within [`ConnectionLimits::first_byte_timeout`] is closed;
//! - a connection on which nothing is read or written for [`ConnectionLimits::idle_timeout`] is
//!   closed (gRPC clients answer the server's HTTP/2 pings, and a running query sends keep-alive
//!   batches, so live clients are never idle that long);
//! - a failed `accept` (out of descriptors) waits a little before the next.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tonic::transport::server::{Connected, TcpConnectInfo};

/// Limits of the connections of one port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections open at once.
    pub max_connections: usize,
    /// Longest a new connection may stay silent.
    pub first_byte_timeout: Duration,
    /// Longest a connection may neither read nor write.
    pub idle_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            // Both ports together stay well below the usual soft limit of 1,024 open files,
            // leaving room for the lake's files and the PostgreSQL and Kafka clients.
            max_connections: 384,
            first_byte_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
        }
    }
}

/// How long to wait after a failed `accept`.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// Least time between two warnings about refused connections or failed accepts.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// A connection that holds a place of its port's limit and closes itself when silent.
pub struct Guarded<IO> {
    inner: IO,
    _place: OwnedSemaphorePermit,
    timer: Pin<Box<Sleep>>,
    idle_timeout: Duration,
    /// When the timer was last pushed back (it is pushed back at most once a second).
    pushed: Instant,
    heard: bool,
}

impl<IO> Guarded<IO> {
    fn new(inner: IO, place: OwnedSemaphorePermit, limits: &ConnectionLimits) -> Self {
        let now = Instant::now();
        Self {
            inner,
            _place: place,
            timer: Box::pin(tokio::time::sleep_until(now + limits.first_byte_timeout)),
            idle_timeout: limits.idle_timeout,
            pushed: now,
            heard: false,
        }
    }

    pub fn get_ref(&self) -> &IO {
        &self.inner
    }

    /// Some traffic: the idle timer starts again.
    fn active(&mut self) {
        let now = Instant::now();
        if !self.heard || now.duration_since(self.pushed) >= Duration::from_secs(1) {
            self.heard = true;
            self.pushed = now;
            self.timer.as_mut().reset(now + self.idle_timeout);
        }
    }

    fn expired(&mut self, cx: &mut Context<'_>) -> Option<io::Error> {
        self.timer.as_mut().poll(cx).is_ready().then(|| {
            let why = if self.heard {
                "the connection was idle too long"
            } else {
                "the client sent nothing after connecting"
            };
            io::Error::new(io::ErrorKind::TimedOut, why)
        })
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Guarded<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    self.active();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => match self.expired(cx) {
                Some(e) => Poll::Ready(Err(e)),
                None => Poll::Pending,
            },
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Guarded<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &polled
            && *n > 0
        {
            self.active();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = &polled
            && *n > 0
        {
            self.active();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl Connected for Guarded<TcpStream> {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

/// The accepted connections of `listener`, within `limits`; `port` names it in logs.
pub fn incoming(
    listener: TcpListener,
    limits: ConnectionLimits,
    port: &'static str,
) -> impl Stream<Item = io::Result<Guarded<TcpStream>>> + Send + 'static {
    let places = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let state = (listener, places, None::<Instant>);
    futures::stream::unfold(state, move |(listener, places, mut warned)| async move {
        loop {
            let warn = |warned: &mut Option<Instant>| {
                let now = Instant::now();
                let due = warned.is_none_or(|at| now.duration_since(at) >= WARN_EVERY);
                if due {
                    *warned = Some(now);
                }
                due
            };
            let (tcp, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    if warn(&mut warned) {
                        tracing::warn!(port, cause = %e, "accept failed; retrying");
                    }
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            };
            let Ok(place) = Arc::clone(&places).try_acquire_owned() else {
                if warn(&mut warned) {
                    tracing::warn!(
                        port,
                        %peer,
                        max = limits.max_connections,
                        "connection limit reached; closing new connections"
                    );
                }
                drop(tcp);
                continue;
            };
            // Without TCP_NODELAY small replies wait for delayed ACKs (~40 ms a call).
            let _ = tcp.set_nodelay(true);
            let guarded = Guarded::new(tcp, place, &limits);
            return Some((Ok(guarded), (listener, places, warned)));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn silent_and_surplus_connections_are_closed() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = ConnectionLimits {
            max_connections: 2,
            first_byte_timeout: Duration::from_millis(300),
            idle_timeout: Duration::from_secs(60),
        };
        let accepted = incoming(listener, limits, "test");
        let server = tokio::spawn(async move {
            let mut accepted = std::pin::pin!(accepted);
            let mut reads = Vec::new();
            while let Some(Ok(mut conn)) = accepted.next().await {
                reads.push(tokio::spawn(async move {
                    let mut buf = [0_u8; 16];
                    let mut got = Vec::new();
                    loop {
                        match conn.read(&mut buf).await {
                            Ok(0) => return Ok(got),
                            Ok(n) => {
                                got.extend_from_slice(&buf[..n]);
                                conn.write_all(&buf[..n]).await.unwrap();
                            }
                            Err(e) => return Err(e.kind()),
                        }
                    }
                }));
            }
        });
        let mut talker = TcpStream::connect(addr).await.unwrap();
        let _silent = TcpStream::connect(addr).await.unwrap();
        talker.write_all(b"hi").await.unwrap();
        let mut echo = [0_u8; 2];
        talker.read_exact(&mut echo).await.unwrap();
        assert_eq!(&echo, b"hi");
        // The third is over the limit: closed at once.
        let mut surplus = TcpStream::connect(addr).await.unwrap();
        let mut buf = [0_u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(5), surplus.read(&mut buf))
            .await
            .expect("closed at once");
        assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
        // After the first-byte timeout the silent one is closed and its place is free again.
        tokio::time::sleep(Duration::from_millis(600)).await;
        let mut later = TcpStream::connect(addr).await.unwrap();
        later.write_all(b"ok").await.unwrap();
        let mut echo = [0_u8; 2];
        tokio::time::timeout(Duration::from_secs(5), later.read_exact(&mut echo))
            .await
            .expect("a place was free")
            .unwrap();
        assert_eq!(&echo, b"ok");
        server.abort();
    }
}
