//! The listener under a slow-head attack: the real binary, with few file descriptors.

use std::process::Command;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::restart::launch;

/// Descriptors the server may hold, and connections that each send half a request head and
/// wait: more of them than the server has descriptors.
const DESCRIPTORS: u32 = 512;
const HALF_SENT: usize = 600;

#[tokio::test]
async fn half_sent_request_heads_are_closed_and_healthz_keeps_answering() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("seedgate.toml");
    std::fs::write(&config, "request_head_timeout_ms = 1500\n").unwrap();
    // `ulimit` in a shell that then becomes the server: the limit is the server's own.
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(format!("ulimit -n {DESCRIPTORS} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_seedgate"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(&data)
        .arg("--config")
        .arg(&config)
        .env("SEEDGATE_DATABASE_URL", crate::helpers::database_url(&data));
    let (mut server, _) = launch(command, None, false).await;
    let address = server.address.clone();
    let port: u16 = address.rsplit(':').next().unwrap().parse().unwrap();
    let client = reqwest::Client::new();

    let mut held = Vec::with_capacity(HALF_SENT);
    for _ in 0..HALF_SENT {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            .await
            .unwrap();
        held.push(stream);
    }

    // The server runs out of descriptors at first; heads that never arrive are closed after
    // 1.5 s, so a fresh request gets through soon after, while the attackers still hold on.
    let started = Instant::now();
    let answered = loop {
        let probe = client
            .get(format!("{address}/healthz"))
            .timeout(Duration::from_secs(2))
            .send()
            .await;
        if let Ok(response) = probe {
            break response.status().as_u16();
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "/healthz did not answer while half-sent heads were held"
        );
    };
    assert_eq!(answered, 200);

    // Every half-sent connection was closed by the server, none answered as if whole.
    let deadline = Instant::now() + Duration::from_secs(20);
    for stream in &mut held {
        let mut buf = [0u8; 256];
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(n)) => {
                let reply = String::from_utf8_lossy(&buf[..n]);
                assert!(n == 0 || reply.starts_with("HTTP/1.1 408"), "{reply}");
            }
            Ok(Err(_)) => {}
            Err(_) => panic!("a half-sent request head was still held open after 20 s"),
        }
    }
    assert!(server.is_running(), "the server exited");
}
