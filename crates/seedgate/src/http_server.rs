//! The HTTP/1.1 listener. Axum's own `serve` sets no timer, so hyper's header read timeout never
//! fires there: a client that sends half a request head and waits would hold its connection,
//! and its file descriptor, for good, and a few hundred such clients would starve `accept`.
//! Here every connection must deliver each request head within `head_timeout` of being ready
//! for it, which also closes idle keep-alive connections after that long.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

/// How long `accept` rests after an error such as running out of file descriptors, so the
/// loop does not spin while connections are closing.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// How long open requests may take to finish once shutdown has begun.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Serves `router` on `listener` until `shutdown` resolves, then lets open requests finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    head_timeout: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(head_timeout)
        .keep_alive(true);
    let open = Arc::new(OpenConnections::default());
    // Each connection's task holds a sender; the receiver learns when the last one is gone.
    let (alive, mut all_closed) = mpsc::channel::<()>(1);
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Responses are small and written whole: Nagle's delay would only add latency.
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        let (id, told) = open.add();
        let open = Arc::clone(&open);
        let alive = alive.clone();
        tokio::spawn(async move {
            let result = until_told(connection, told).await;
            open.remove(id);
            drop(alive);
            if let Err(error) = result {
                tracing::debug!(%error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    open.tell_all();
    drop(alive);
    if tokio::time::timeout(SHUTDOWN_GRACE, all_closed.recv())
        .await
        .is_err()
    {
        tracing::warn!("requests still open at shutdown were cut off");
    }
    Ok(())
}

type Connection = http1::Connection<TokioIo<TcpStream>, TowerToHyperService<Router>>;

/// Serves `connection` until it ends or `told` says shutdown has begun, then lets the request
/// in progress finish and closes it.
async fn until_told(connection: Connection, told: oneshot::Receiver<()>) -> hyper::Result<()> {
    tokio::pin!(connection);
    tokio::select! {
        biased;
        result = connection.as_mut() => return result,
        // Told, or its sender dropped: either way, shutdown has begun.
        _ = told => {}
    }
    connection.as_mut().graceful_shutdown();
    connection.await
}

/// The open connections, each with the sender that tells it shutdown has begun. A connection
/// waits on a channel of its own: a signal every connection watched (hyper-util's graceful
/// shutdown) is a lock all of them take each time any is polled, several times a request,
/// passed back and forth between the cores.
#[derive(Default)]
struct OpenConnections {
    senders: Mutex<(u64, HashMap<u64, oneshot::Sender<()>>)>,
}

impl OpenConnections {
    fn add(&self) -> (u64, oneshot::Receiver<()>) {
        let (tell, told) = oneshot::channel();
        let mut senders = self.senders.lock().unwrap_or_else(PoisonError::into_inner);
        let (next, open) = &mut *senders;
        let id = *next;
        *next += 1;
        open.insert(id, tell);
        (id, told)
    }

    fn remove(&self, id: u64) {
        let mut senders = self.senders.lock().unwrap_or_else(PoisonError::into_inner);
        senders.1.remove(&id);
    }

    fn tell_all(&self) {
        let open = std::mem::take(
            &mut self
                .senders
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .1,
        );
        for tell in open.into_values() {
            let _ = tell.send(());
        }
    }
}
