//! Serving a role's port: HTTP/1.1 over TCP with TCP_NODELAY, TLS with the component's
//! certificate, and the limits that keep one client from holding the server.
//!
//! - TLS: a port with a certificate speaks TLS; the main port tells TLS from plain HTTP by
//!   the first byte (a TLS handshake starts with 0x16), so that old clients keep their
//!   `http://` URLs unless the administrator turns plain HTTP off. Each request carries an
//!   [`identity::Transport`]: whether it came over TLS, and which principal the client's
//!   certificate names; and the TCP peer's address as axum's [`ConnectInfo`] (the metadata
//!   service answers by it).
//! - Limits: a connection must send its request head within [`Limits::header_timeout`] (a
//!   slowloris holds nothing for long), and a request body that stalls for
//!   [`Limits::body_idle_timeout`] while the server waits for it ends the request (a stalled
//!   upload holds no temp file for ever); at most [`Limits::max_connections`] connections
//!   are served at once, [`Limits::max_per_address`] from one address (more are closed at
//!   once), so a flood from one host leaves room for the others.
//! - Shutdown: on the signal, no new connection is taken and those open finish their request.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use identity::Transport;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tower_service::Service;

/// The first byte of a TLS connection (a handshake record).
const TLS_HANDSHAKE: u8 = 0x16;

/// What one port allows, per connection and in all.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// How long a client may take to send a request's head (and its TLS handshake), and
    /// how long a kept-alive connection may stay idle.
    pub header_timeout: Duration,
    /// How long a request body may send nothing while the server waits for it.
    pub body_idle_timeout: Duration,
    /// Connections served at once; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// Connections served at once from one address; more are closed at once.
    pub max_per_address: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_timeout: Duration::from_secs(30),
            body_idle_timeout: Duration::from_secs(60),
            max_connections: 4096,
            max_per_address: 512,
        }
    }
}

/// How a port speaks.
#[derive(Clone)]
pub struct Port {
    /// The TLS settings of the component serving it; `None`: plain HTTP only.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// What plain HTTP gets on a port with TLS. Without TLS it is served.
    pub plain: Plain,
    /// The limits.
    pub limits: Limits,
}

/// What a port with TLS does with a connection speaking plain HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plain {
    /// Served too (the main port, for old clients' `http://` URLs).
    Serve,
    /// Answered with a 400 saying to use `https://` (the components' internal ports).
    Refuse,
    /// Answered with a redirect to the same URL over `https://` (the web console: a person
    /// who typed `http://` lands on the page they meant).
    Redirect,
}

/// Serves `router` on `listener` as `port` says until `shutdown` completes; then lets the
/// open connections finish (at most 10 s).
pub async fn serve(
    listener: TcpListener,
    port: Port,
    router: axum::Router,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(port.limits.max_connections));
    let per_address: Arc<Mutex<HashMap<IpAddr, usize>>> = Arc::default();
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let (closing_tx, closing_rx) = tokio::sync::watch::channel(());
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!("cannot accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some(address_slot) = AddressSlot::take(&per_address, peer, port.limits) else {
            drop(tcp);
            continue;
        };
        if let Err(e) = tcp.set_nodelay(true) {
            // Small responses must not wait for Nagle's algorithm (40 ms stalls otherwise).
            tracing::warn!("cannot set TCP_NODELAY: {e}");
        }
        let port = port.clone();
        let router = router.clone();
        let watcher = graceful.watcher();
        let mut closing = closing_rx.clone();
        tokio::spawn(async move {
            let _slots = (permit, address_slot);
            let opened = tokio::select! {
                opened = open(tcp, &port) => opened,
                _ = closing.changed() => return,
            };
            let Some((io, transport)) = opened else {
                return;
            };
            let idle = port.limits.body_idle_timeout;
            let service = hyper::service::service_fn(move |mut req: http::Request<Incoming>| {
                req.extensions_mut().insert(transport.clone());
                req.extensions_mut().insert(ConnectInfo(peer));
                let mut router = router.clone();
                let req = req.map(|body| Body::new(IdleBody::new(body, idle)));
                async move {
                    let resp: Result<_, Infallible> = router.call(req).await;
                    resp
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(port.limits.header_timeout)
                .serve_connection(io, service);
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(%peer, "connection ended: {e}");
            }
        });
    }
    drop(listener);
    let _ = closing_tx.send(());
    if tokio::time::timeout(Duration::from_secs(10), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after 10 s; closing them");
    }
}

/// A connection made ready for HTTP: TLS accepted when it starts a handshake (and the port
/// has a certificate), else plain when the port allows it. `None` when it is not served
/// (a failed handshake, plain HTTP where only TLS is spoken, nothing sent in time).
async fn open(mut tcp: TcpStream, port: &Port) -> Option<(TokioIo<Box<dyn Stream>>, Transport)> {
    let Some(tls) = &port.tls else {
        return Some((TokioIo::new(Box::new(tcp)), Transport::Plain));
    };
    let mut first = [0u8; 1];
    let peeked = tokio::time::timeout(port.limits.header_timeout, tcp.peek(&mut first)).await;
    if !matches!(peeked, Ok(Ok(1))) {
        return None;
    }
    if first[0] != TLS_HANDSHAKE {
        match port.plain {
            Plain::Serve => return Some((TokioIo::new(Box::new(tcp)), Transport::Plain)),
            Plain::Refuse => refuse_plain(tcp, None).await,
            Plain::Redirect => {
                let location = https_location(&mut tcp, port.limits.header_timeout).await;
                refuse_plain(tcp, location).await;
            }
        }
        return None;
    }
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.clone());
    let accepted = tokio::time::timeout(port.limits.header_timeout, acceptor.accept(tcp)).await;
    let stream = match accepted {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            tracing::debug!("TLS handshake failed: {e}");
            return None;
        }
        Err(_) => return None,
    };
    let peer = rpc::tls::peer_principal(stream.get_ref().1);
    Some((TokioIo::new(Box::new(stream)), Transport::Tls { peer }))
}

/// Answers a plain HTTP request on a port that speaks TLS only with a 400 that says so (as
/// nginx does), instead of a handshake error the client cannot read; or, given the request's
/// `https://` URL, with a 301 there whose body says the same.
async fn refuse_plain(mut tcp: TcpStream, location: Option<String>) {
    const BODY: &str = "This port speaks HTTPS only: use an https:// URL.\n";
    let response = match location {
        Some(location) => {
            let body = format!("This port speaks HTTPS only: use {location}\n");
            format!(
                "HTTP/1.1 301 Moved Permanently\r\nLocation: {location}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
        }
        None => format!(
            "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{BODY}",
            BODY.len()
        ),
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let _ = tcp.write_all(response.as_bytes()).await;
        let _ = tcp.shutdown().await;
    })
    .await;
}

/// The `https://` URL of the plain HTTP request arriving on `tcp`: its `Host` and target, read
/// from a head of at most 8 KiB sent within `timeout`. `None` when the head does not come, is
/// not HTTP, or names no usable host.
async fn https_location(tcp: &mut TcpStream, timeout: Duration) -> Option<String> {
    let mut head = Vec::with_capacity(1024);
    let read = tokio::time::timeout(timeout, async {
        let mut buf = [0u8; 1024];
        while head.len() < 8192 && !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = tokio::io::AsyncReadExt::read(tcp, &mut buf).await.ok()?;
            if n == 0 {
                return None;
            }
            head.extend_from_slice(&buf[..n]);
        }
        Some(())
    })
    .await;
    read.ok()??;
    let head = std::str::from_utf8(&head).ok()?;
    let mut lines = head.split("\r\n");
    let target = lines.next()?.split(' ').nth(1)?;
    let host = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("host"))?
        .1
        .trim();
    let safe = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'<')
    };
    if !target.starts_with('/') || !safe(target) || !safe(host) || host.contains('/') {
        return None;
    }
    Some(format!("https://{host}{target}"))
}

/// A request body that fails with `TimedOut` when the client sends nothing for `idle` while
/// the server waits for it (time the server spends elsewhere does not count).
struct IdleBody {
    inner: Incoming,
    idle: Duration,
    /// Armed while the server waits for the next frame.
    timer: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl IdleBody {
    fn new(inner: Incoming, idle: Duration) -> IdleBody {
        IdleBody {
            inner,
            idle,
            timer: None,
        }
    }
}

impl http_body::Body for IdleBody {
    type Data = bytes::Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        use std::future::Future;
        use std::task::Poll;
        let this = &mut *self;
        match std::pin::Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.timer = None;
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                let idle = this.idle;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("the request body sent nothing for {} s", idle.as_secs()),
                    ))))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A byte stream a connection is served over (TCP, or TLS over TCP).
trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Stream for T {}

/// One connection's place in its address' count, given back when the connection ends.
struct AddressSlot {
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl AddressSlot {
    /// A place for a connection from `peer`, unless its address holds its share already.
    fn take(
        counts: &Arc<Mutex<HashMap<IpAddr, usize>>>,
        peer: SocketAddr,
        limits: Limits,
    ) -> Option<AddressSlot> {
        let mut map = rpc::lock(counts);
        let count = map.entry(peer.ip()).or_insert(0);
        if *count >= limits.max_per_address {
            tracing::warn!(peer = %peer.ip(), "too many connections from one address");
            return None;
        }
        *count += 1;
        Some(AddressSlot {
            counts: counts.clone(),
            ip: peer.ip(),
        })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut map = rpc::lock(&self.counts);
        if let Some(count) = map.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                map.remove(&self.ip);
            }
        }
    }
}
