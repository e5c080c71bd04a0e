//! A TCP proxy between a runtime and Postgres that can lose the answer to a `COMMIT`: the server
//! commits, and the client never hears so. The one fault that makes an outcome unknown, staged
//! for real: your retries with idempotency keys can be tested against it. It can cut a
//! connection at the runtime's other transaction ends too (see [`Cut`]).

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use sqlx::postgres::PgConnectOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How a transaction ends: a simple-query message (`Q`, its length, the text, NUL). sqlx sends
/// `COMMIT` and `ROLLBACK`; a committer that begins its next transaction ahead commits with
/// `COMMIT; BEGIN`, and writes a batch again after `ROLLBACK; BEGIN`.
const COMMIT_MESSAGE: &[u8] = b"Q\0\0\0\x0bCOMMIT\0";
const COMMIT_AND_BEGIN_MESSAGE: &[u8] = b"Q\0\0\0\x12COMMIT; BEGIN\0";
const ROLLBACK_MESSAGE: &[u8] = b"Q\0\0\0\x0dROLLBACK\0";
const ROLLBACK_AND_BEGIN_MESSAGE: &[u8] = b"Q\0\0\0\x14ROLLBACK; BEGIN\0";
/// The server's word that a `COMMIT` committed: a CommandComplete message (`C`, its length, the
/// tag, NUL).
const COMMITTED_MESSAGE: &[u8] = b"C\0\0\0\x0bCOMMIT\0";
/// The end of the server's answer to a query: ReadyForQuery (`Z`, its length 5; then the
/// transaction status, one byte).
const READY_FOR_QUERY: &[u8] = b"Z\0\0\0\x05";

/// A proxy in front of a Postgres server: connect through [`url`](Self::url), then
/// [`arm`](Self::arm) it to lose the answer to the next `COMMIT`.
///
/// ```no_run
/// # async fn example(db: entities_runtime::testing::TestDatabase) {
/// use entities_runtime::testing::CommitCutter;
/// let proxy = CommitCutter::start(&db.url).await;
/// let runtime = entities_runtime::Runtime::builder(&proxy.url).build().await.unwrap();
/// proxy.arm_for("a name only this test writes");
/// // ... the action that writes it hears `Error::OutcomeUnknown`, and is committed.
/// assert_eq!(proxy.cuts(), 1);
/// # }
/// ```
pub struct CommitCutter {
    /// The database URL through the proxy.
    pub url: String,
    armed: Arc<Mutex<Option<Arm>>>,
    cuts: Arc<AtomicUsize>,
    accept: tokio::task::JoinHandle<()>,
}

/// Where an armed proxy cuts a connection: the statement that ends a transaction whose answer
/// the client loses, wholly or in part. The connection is closed then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// A `COMMIT` (or `COMMIT; BEGIN`): the server commits, the client hears nothing.
    Commit,
    /// A `COMMIT; BEGIN` (a committer beginning its next transaction ahead): the client hears the
    /// `COMMIT` committed, then loses the connection before the answer to the `BEGIN`.
    BeginAfterCommit,
    /// A `ROLLBACK; BEGIN` (a committer writing a batch again after a projection failed amid
    /// it): the server rolls back, the client hears nothing.
    RollbackAndBegin,
}

impl Cut {
    /// Whether `sent` (what a client sent in one write) holds the statement this cut waits for.
    fn waits_for(self, sent: &[u8]) -> bool {
        match self {
            Cut::Commit => {
                contains(sent, COMMIT_MESSAGE) || contains(sent, COMMIT_AND_BEGIN_MESSAGE)
            }
            Cut::BeginAfterCommit => contains(sent, COMMIT_AND_BEGIN_MESSAGE),
            Cut::RollbackAndBegin => contains(sent, ROLLBACK_AND_BEGIN_MESSAGE),
        }
    }
}

/// What the proxy waits for: where it cuts, and in which transaction.
struct Arm {
    cut: Cut,
    /// Only a transaction whose statements or parameters held these bytes; any when `None`.
    marker: Option<Vec<u8>>,
}

/// What a connection does with the server's next answer (an `AtomicU8` between its two halves).
const PASS: u8 = 0;
const DROP_ANSWER: u8 = 1;
const DROP_AFTER_COMMITTED: u8 = 2;

impl CommitCutter {
    /// A proxy in front of the server of `url`, a `postgres://` URL with a host and a port.
    ///
    /// # Panics
    /// When `url` is not such a URL, or no local port is free.
    pub async fn start(url: &str) -> Self {
        let options = PgConnectOptions::from_str(url).expect("a Postgres URL");
        let upstream = format!("{}:{}", options.get_host(), options.get_port());
        assert!(
            url.contains(&upstream),
            "the URL must name its host and port, as `{upstream}`: {url}"
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let proxy: SocketAddr = listener.local_addr().expect("bound");
        let armed = Arc::new(Mutex::new(None));
        let cuts = Arc::new(AtomicUsize::new(0));
        let accept = tokio::spawn({
            let (armed, cuts, upstream) = (armed.clone(), cuts.clone(), upstream.clone());
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    let Ok(server) = TcpStream::connect(&upstream).await else {
                        continue; // the client sees its connection closed, as with the server down
                    };
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
        self.arm_at(Cut::Commit, None);
    }

    /// As [`arm`](Self::arm), for the next `COMMIT` of a transaction that sent `marker` (in a
    /// statement or a parameter, a name the action writes, say): other connections' commits,
    /// a projector's or a subscription's, go through. The marker must arrive in one read of
    /// the socket: keep it short. A marker sent outside a transaction marks its connection's
    /// next one.
    pub fn arm_for(&self, marker: &str) {
        self.arm_at(Cut::Commit, Some(marker));
    }

    /// Cuts the next connection that sends the statement `cut` waits for, in a transaction that
    /// sent `marker` when one is given (as [`arm_for`](Self::arm_for)). One cut per arming, and
    /// the arming is spent on that statement: with [`Cut::BeginAfterCommit`], a `COMMIT` that
    /// does not commit cuts nothing ([`cuts`](Self::cuts) stays as it was).
    pub fn arm_at(&self, cut: Cut, marker: Option<&str>) {
        *self.armed.lock().expect("not poisoned") = Some(Arm {
            cut,
            marker: marker.map(|marker| marker.as_bytes().into()),
        });
    }

    /// How many connections were cut (answers dropped, wholly or in part).
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
    armed: Arc<Mutex<Option<Arm>>>,
    cuts: Arc<AtomicUsize>,
) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let next_answer = Arc::new(AtomicU8::new(PASS));
    let to_server = {
        let next_answer = next_answer.clone();
        async move {
            let mut buffer = vec![0u8; 64 * 1024];
            // Whether this connection's transaction sent the armed marker.
            let mut carried = false;
            loop {
                let read = client_read.read(&mut buffer).await.unwrap_or(0);
                if read == 0 {
                    return;
                }
                let sent = &buffer[..read];
                {
                    let mut armed = armed.lock().expect("not poisoned");
                    if let Some(Arm {
                        marker: Some(marker),
                        ..
                    }) = &*armed
                    {
                        carried |= contains(sent, marker);
                    }
                    let cut = armed.as_ref().and_then(|arm| {
                        (arm.cut.waits_for(sent) && (arm.marker.is_none() || carried))
                            .then_some(arm.cut)
                    });
                    if let Some(cut) = cut {
                        *armed = None;
                        let answer = match cut {
                            Cut::BeginAfterCommit => DROP_AFTER_COMMITTED,
                            Cut::Commit | Cut::RollbackAndBegin => DROP_ANSWER,
                        };
                        next_answer.store(answer, Ordering::SeqCst);
                    }
                }
                // The transaction ended: the next one on this connection starts unmarked.
                if ends_transaction(sent) {
                    carried = false;
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
            let received = &buffer[..read];
            let (passed, cut) = match next_answer.load(Ordering::SeqCst) {
                PASS => (received, false),
                DROP_ANSWER => (&received[..0], true),
                // Up to the end of the `COMMIT`'s completion (all of it while that is still to
                // come); whatever follows is lost. A `COMMIT` that did not commit (it failed, or
                // rolled back an aborted transaction) leaves nothing to cut: the answer passes,
                // and so do the connection's later ones.
                _ => match position(received, COMMITTED_MESSAGE) {
                    Some(at) => {
                        let end = at + COMMITTED_MESSAGE.len();
                        next_answer.store(DROP_ANSWER, Ordering::SeqCst);
                        (&received[..end], end < received.len())
                    }
                    None => {
                        if contains(received, READY_FOR_QUERY) {
                            next_answer.store(PASS, Ordering::SeqCst);
                        }
                        (received, false)
                    }
                },
            };
            if client_write.write_all(passed).await.is_err() {
                return;
            }
            if cut {
                cuts.fetch_add(1, Ordering::SeqCst);
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

/// The simple-query message of `sql`, as a client sends it.
#[cfg(test)]
fn query_message(sql: &str) -> Vec<u8> {
    let length = u32::try_from(4 + sql.len() + 1).expect("a short query");
    [
        b"Q".as_slice(),
        &length.to_be_bytes(),
        sql.as_bytes(),
        b"\0",
    ]
    .concat()
}

/// Whether `sent` holds a statement that ends a transaction.
fn ends_transaction(sent: &[u8]) -> bool {
    [
        COMMIT_MESSAGE,
        COMMIT_AND_BEGIN_MESSAGE,
        ROLLBACK_MESSAGE,
        ROLLBACK_AND_BEGIN_MESSAGE,
    ]
    .iter()
    .any(|message| contains(sent, message))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    position(haystack, needle).is_some()
}

fn position(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_messages_are_those_of_the_statements_that_end_a_transaction() {
        assert_eq!(COMMIT_MESSAGE, query_message("COMMIT"));
        assert_eq!(ROLLBACK_MESSAGE, query_message("ROLLBACK"));
        assert_eq!(
            COMMIT_AND_BEGIN_MESSAGE,
            query_message(crate::store::PG_COMMIT_AND_BEGIN)
        );
        assert_eq!(
            ROLLBACK_AND_BEGIN_MESSAGE,
            query_message(crate::store::PG_ROLLBACK_AND_BEGIN)
        );
    }
}
