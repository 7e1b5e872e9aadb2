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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::Notify;

    use super::*;

    const REQUEST: &[u8] = b"GET /slow HTTP/1.1\r\nhost: test\r\n\r\n";

    /// Reads one response's head and its two-byte body from a kept-alive connection.
    async fn read_answer(stream: &mut TcpStream) -> String {
        let mut answer = Vec::new();
        let mut buffer = [0; 1024];
        while !String::from_utf8_lossy(&answer).ends_with("\r\n\r\nok") {
            let read = stream.read(&mut buffer).await.unwrap();
            assert!(read > 0, "closed before answering");
            answer.extend_from_slice(&buffer[..read]);
        }
        String::from_utf8_lossy(&answer).into_owned()
    }

    /// Waits, a while at most, for the server to close `stream` with nothing more sent.
    async fn assert_closed(stream: &mut TcpStream) {
        let mut rest = Vec::new();
        let read = tokio::time::timeout(SHUTDOWN_GRACE / 4, stream.read_to_end(&mut rest)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
    }

    #[tokio::test]
    async fn shutdown_lets_the_open_request_finish_and_closes_idle_connections() {
        let release = Arc::new(Notify::new());
        let entered = Arc::new(Notify::new());
        let router = Router::new().route(
            "/slow",
            get({
                let (release, entered) = (Arc::clone(&release), Arc::clone(&entered));
                move || async move {
                    entered.notify_one();
                    release.notified().await;
                    "ok"
                }
            }),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(serve(
            listener,
            router,
            Duration::from_secs(60),
            async move {
                let _ = stopped.await;
            },
        ));

        // A connection that was answered once and now idles, kept alive.
        let mut idle = TcpStream::connect(address).await.unwrap();
        idle.write_all(REQUEST).await.unwrap();
        entered.notified().await;
        release.notify_one();
        assert!(read_answer(&mut idle).await.starts_with("HTTP/1.1 200"));

        // A request still being answered when shutdown begins.
        let mut busy = TcpStream::connect(address).await.unwrap();
        busy.write_all(REQUEST).await.unwrap();
        entered.notified().await;
        stop.send(()).unwrap();
        // The idle connection is closed while the other request is still being answered.
        assert_closed(&mut idle).await;
        release.notify_one();
        let answer = read_answer(&mut busy).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

        // Then that one is closed too, and the server is done well before its grace period.
        assert_closed(&mut busy).await;
        let ended = tokio::time::timeout(SHUTDOWN_GRACE / 4, server).await;
        assert!(matches!(ended, Ok(Ok(Ok(())))), "{ended:?}");
        assert!(TcpStream::connect(address).await.is_err());
    }
}
