//! The accept loop: HTTP/1 connections, over the server's own TLS when it has a certificate
//! (the handshake bounded by the header-read timeout), with a header-read timeout (which also
//! ends idle keep-alive connections), a cap on open connections that keeps headroom below the
//! process's file limit, and graceful shutdown.
//!
//! At the cap a new connection makes room by closing the connection that has been idle the
//! longest (no request in progress); when every connection is busy the new one is answered
//! 503 with `Retry-After` at once and closed. So `accept()` never runs out of descriptors and
//! `/healthz` answers however many idle connections clients open.

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tower::ServiceExt;

/// Descriptors kept free below the file limit for the database, files, webhooks and logs.
fn reserve(limit: u64) -> u64 {
    (limit / 4).max(128)
}

/// The default connection cap: the soft `RLIMIT_NOFILE` less a reserve (768 for 1024).
pub fn default_max_connections() -> usize {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the limits into the struct we pass; it has no other effects.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } == 0;
    let soft = if ok && rl.rlim_cur != libc::RLIM_INFINITY {
        rl.rlim_cur
    } else {
        1024
    };
    let soft = soft.min(1 << 20);
    soft.saturating_sub(reserve(soft)).max(16) as usize
}

/// One open connection, for choosing whom to close at the cap.
struct Conn {
    /// Requests in progress.
    active: AtomicUsize,
    /// When a request last started or ended (ms since the server started).
    last_active: AtomicU64,
    close: tokio::sync::Notify,
}

/// Counts a request in progress on its connection.
struct Active {
    conn: Arc<Conn>,
    epoch: Instant,
}

impl Active {
    fn new(conn: Arc<Conn>, epoch: Instant) -> Active {
        conn.active.fetch_add(1, Ordering::SeqCst);
        conn.last_active
            .store(epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
        Active { conn, epoch }
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.conn
            .last_active
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
        self.conn.active.fetch_sub(1, Ordering::SeqCst);
    }
}

#[derive(Default)]
struct Conns {
    next_id: u64,
    open: HashMap<u64, Arc<Conn>>,
}

/// Settings of the accept loop.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
}

const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: 94\r\n\r\n{\"error\":{\"code\":\"unavailable\",\"message\":\"the server is at its connection limit; retry soon\"}}";

/// Serves `app` on `listener` (over TLS with `tls`) until `shutdown` completes, then lets
/// open requests finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    tls: Option<Arc<crate::tls::Tls>>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let epoch = Instant::now();
    let conns = Arc::new(Mutex::new(Conns::default()));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(());
    let mut tasks = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
            r = accept(&listener) => match r {
                Some(x) => x,
                None => continue,
            },
        };
        let conn = Arc::new(Conn {
            active: AtomicUsize::new(0),
            last_active: AtomicU64::new(epoch.elapsed().as_millis() as u64),
            close: tokio::sync::Notify::new(),
        });
        let Some(id) = admit(&conns, &conn, limits.max_connections) else {
            if tls.is_some() {
                // A TLS client could not read a plain answer: the refusal is the close.
                continue;
            }
            tasks.spawn(async move {
                let mut stream = stream;
                let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(BUSY)).await;
            });
            continue;
        };
        let _ = stream.set_nodelay(true);
        let ctx = ConnCtx {
            app: app.clone(),
            peer,
            conn,
            epoch,
            http: http.clone(),
            stop: stop_rx.clone(),
        };
        let conns = conns.clone();
        let tls = tls.as_ref().map(|t| t.acceptor());
        let handshake_timeout = limits.header_read_timeout;
        tasks.spawn(async move {
            match tls {
                None => ctx.serve(stream, false).await,
                // Boxed: a TLS connection's state (rustls, the handshake) is several KiB,
                // which every plain connection's task would otherwise reserve as well.
                Some(acceptor) => {
                    Box::pin(ctx.serve_tls(acceptor, stream, handshake_timeout)).await
                }
            }
            if let Ok(mut c) = conns.lock() {
                c.open.remove(&id);
            }
        });
    }
    drop(listener);
    let _ = stop_tx.send(());
    while tasks.join_next().await.is_some() {}
}

/// What one connection's task needs to serve it.
struct ConnCtx {
    app: Router,
    peer: std::net::SocketAddr,
    conn: Arc<Conn>,
    epoch: Instant,
    http: hyper::server::conn::http1::Builder,
    stop: tokio::sync::watch::Receiver<()>,
}

impl ConnCtx {
    /// [`ConnCtx::serve`] after a TLS handshake bounded by `handshake_timeout`.
    async fn serve_tls(
        self,
        acceptor: tokio_rustls::TlsAcceptor,
        stream: tokio::net::TcpStream,
        handshake_timeout: Duration,
    ) {
        let peer = self.peer;
        let mut stop = self.stop.clone();
        let shake = tokio::time::timeout(handshake_timeout, acceptor.accept(stream));
        tokio::select! {
            r = shake => match r {
                Ok(Ok(s)) => self.serve(s, true).await,
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            },
            _ = stop.changed() => {}
        }
    }

    /// Serves HTTP/1 on `io` until the client closes, the connection is chosen to make room,
    /// or the server stops (then the request in progress finishes first).
    async fn serve<I>(self, io: I, tls: bool)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let ConnCtx {
            app,
            peer,
            conn,
            epoch,
            http,
            mut stop,
        } = self;
        let conn_for_svc = conn.clone();
        let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let active = Active::new(conn_for_svc.clone(), epoch);
            let mut req = req.map(axum::body::Body::new);
            req.extensions_mut().insert(ConnectInfo(peer));
            if tls {
                req.extensions_mut().insert(crate::forwarded::TlsConnection);
            }
            let app = app.clone();
            async move {
                let resp = app.oneshot(req).await;
                drop(active);
                resp
            }
        });
        let served = http.serve_connection(TokioIo::new(io), service);
        tokio::pin!(served);
        tokio::select! {
            _ = served.as_mut() => {}
            _ = conn.close.notified() => {
                served.as_mut().graceful_shutdown();
                let _ = served.await;
            }
            _ = stop.changed() => {
                served.as_mut().graceful_shutdown();
                let _ = served.await;
            }
        }
    }
}

/// The next connection; None after a failed accept (out of descriptors or the like), after
/// a short wait so that the loop does not spin.
async fn accept(listener: &TcpListener) -> Option<(tokio::net::TcpStream, std::net::SocketAddr)> {
    match listener.accept().await {
        Ok(x) => Some(x),
        Err(e) => {
            tracing::warn!(error = %e, "cannot accept a connection");
            tokio::time::sleep(Duration::from_millis(50)).await;
            None
        }
    }
}

/// Registers a new connection; its id. At the cap it first closes the connection idle the
/// longest; None when every open connection is busy (the new one is to be refused).
fn admit(conns: &Mutex<Conns>, conn: &Arc<Conn>, max: usize) -> Option<u64> {
    let mut c = match conns.lock() {
        Ok(c) => c,
        Err(p) => p.into_inner(),
    };
    if c.open.len() >= max {
        let idlest = c
            .open
            .iter()
            .filter(|(_, k)| k.active.load(Ordering::SeqCst) == 0)
            .min_by_key(|(_, k)| k.last_active.load(Ordering::Relaxed))
            .map(|(id, _)| *id);
        let victim = idlest.and_then(|id| c.open.remove(&id))?;
        victim.close.notify_one();
    }
    c.next_id += 1;
    let id = c.next_id;
    c.open.insert(id, conn.clone());
    Some(id)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_cap_keeps_a_reserve() {
        assert_eq!(1024 - super::reserve(1024), 768);
        assert_eq!(256 - super::reserve(256), 128);
        assert!(super::default_max_connections() >= 16);
    }

    #[test]
    fn the_busy_answer_is_well_formed() {
        let text = std::str::from_utf8(super::BUSY).unwrap();
        let (_, body) = text.split_once("\r\n\r\n").unwrap();
        assert_eq!(body.len(), 94);
        serde_json::from_str::<serde_json::Value>(body).unwrap();
    }
}
