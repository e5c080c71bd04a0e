//! A TCP proxy between a runtime and Postgres that can lose the answer to a `COMMIT`: the server
//! commits, and the client never hears so.

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use entities_runtime::sqlx::postgres::PgConnectOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub struct CommitCutter {
    /// The database URL through the proxy.
    pub url: String,
    armed: Arc<AtomicBool>,
    cuts: Arc<AtomicUsize>,
    accept: tokio::task::JoinHandle<()>,
}

impl CommitCutter {
    /// A proxy in front of the server of `url`, a `postgres://` URL with a host and a port.
    pub async fn start(url: &str) -> Self {
        let options = PgConnectOptions::from_str(url).expect("a Postgres URL");
        let upstream = format!("{}:{}", options.get_host(), options.get_port());
        assert!(
            url.contains(&upstream),
            "the URL must name its host and port, as `{upstream}`: {url}"
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy: SocketAddr = listener.local_addr().unwrap();
        let (armed, cuts) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicUsize::new(0)),
        );
        let accept = tokio::spawn({
            let (armed, cuts, upstream) = (armed.clone(), cuts.clone(), upstream.clone());
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    let server = TcpStream::connect(&upstream).await.unwrap();
                    tokio::spawn(relay(client, server, armed.clone(), cuts.clone()));
                }
            }
        });
        Self {
            url: url.replacen(&upstream, &proxy.to_string(), 1),
            armed,
            cuts,
            accept,
        }
    }

    /// The next `COMMIT` any client sends reaches the server; its answer is dropped, and that
    /// client's connection closed.
    pub fn arm(&self) {
        self.armed.store(true, Ordering::SeqCst);
    }

    /// How many answers were dropped.
    pub fn cuts(&self) -> usize {
        self.cuts.load(Ordering::SeqCst)
    }
}

impl Drop for CommitCutter {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn relay(
    client: TcpStream,
    server: TcpStream,
    armed: Arc<AtomicBool>,
    cuts: Arc<AtomicUsize>,
) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let cut_next_answer = Arc::new(AtomicBool::new(false));
    let to_server = {
        let cut_next_answer = cut_next_answer.clone();
        async move {
            let mut buffer = vec![0u8; 64 * 1024];
            loop {
                let read = client_read.read(&mut buffer).await.unwrap_or(0);
                if read == 0 {
                    return;
                }
                let sent = &buffer[..read];
                // A simple-query message `Q` holding `COMMIT`: how sqlx commits.
                if sent.windows(6).any(|window| window == b"COMMIT")
                    && armed.swap(false, Ordering::SeqCst)
                {
                    cut_next_answer.store(true, Ordering::SeqCst);
                }
                if server_write.write_all(sent).await.is_err() {
                    return;
                }
            }
        }
    };
    let to_client = async move {
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let read = server_read.read(&mut buffer).await.unwrap_or(0);
            if read == 0 {
                return;
            }
            if cut_next_answer.load(Ordering::SeqCst) {
                cuts.fetch_add(1, Ordering::SeqCst);
                return;
            }
            if client_write.write_all(&buffer[..read]).await.is_err() {
                return;
            }
        }
    };
    // Whichever side ends first ends both: the halves drop, and both sockets close.
    tokio::select! {
        () = to_server => {}
        () = to_client => {}
    }
}
