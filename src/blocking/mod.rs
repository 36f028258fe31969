//! A blocking API, for programs without an async runtime: [`Node`], [`Peer`], [`Events`].
//!
//! The same nodes, sessions and guarantees as the async API, with calls that block the calling
//! thread instead of returning futures. Configure a node with the usual [`NodeBuilder`]
//! and start it with [`NodeBuilder::start_blocking`]:
//!
//! ```
//! use std::thread;
//!
//! use networkio::blocking::{Event, Node};
//!
//! # fn main() -> networkio::Result<()> {
//! // A server, answering every message on a thread of its own.
//! let server = Node::builder("server-001").listen("127.0.0.1:0").start_blocking()?;
//! let addr = server.local_addrs()[0];
//! let answering = thread::spawn(move || -> networkio::Result<()> {
//!     for event in server.events() {
//!         if let Event::Message { peer } = event {
//!             while let Some((session, texts)) = peer.read_with_session::<String>(usize::MAX)? {
//!                 for text in texts {
//!                     // A reply: sent within the session the text came from, never to a
//!                     // later process of that name (that fails with Error::SessionEnded).
//!                     peer.send_in(&session, &format!("got {text}"))?;
//!                     if text == "three" {
//!                         return Ok(()); // dropping the last handle shuts the server down
//!                     }
//!                 }
//!             }
//!         }
//!     }
//!     Ok(())
//! });
//!
//! // A client: dials the server and learns its name from the handshake.
//! let client = Node::builder("client-123").start_blocking()?;
//! let server = client.connect(addr)?;
//! assert_eq!(server.name(), "server-001");
//! server.send(&"one")?; // queued; blocks only while the window is full
//! server.send(&"two")?;
//! server.send(&"three")?.delivered()?; // acknowledged: all three are in the server's inbox
//!
//! let mut answers = Vec::new();
//! let mut events = client.events();
//! while answers.len() < 3 {
//!     match events.recv() {
//!         Some(Event::Message { peer }) => answers.extend(peer.read_all::<String>()?),
//!         Some(_) => {} // Connected, Delivered, ...
//!         None => break, // the node shut down
//!     }
//! }
//! assert_eq!(answers, ["got one", "got two", "got three"]);
//! answering.join().expect("the server's thread")?;
//! client.shutdown();
//! # Ok(())
//! # }
//! ```
//!
//! # How it runs
//!
//! Each blocking node runs the async [`crate::Node`] on a thread of its own (named
//! `networkio-NAME`), with a single-threaded tokio runtime: its connections, timers and
//! acknowledgements never wait for the application. Calls that wait for the node's state
//! (a full window, a receipt, the next event) wait on the calling thread itself, woken by the
//! node's thread; calls that do I/O (`connect`, `shutdown`) run on the node's thread while the
//! caller waits for their result.
//!
//! # Lifetime
//!
//! [`Node::shutdown`] shuts the node down as [`crate::Node::shutdown`] does (waiting up to the
//! shutdown linger for acknowledgements) and then stops and joins the node's thread. Dropping the
//! last [`Node`] handle does the same, so it may block for up to the linger too; no thread is
//! left behind. [`Peer`] and [`Events`] handles do not keep a node running: after its shutdown,
//! sending fails with [`Error::NodeClosed`] and the events end.
//!
//! # Inside an async runtime
//!
//! Every call works from any thread, including one running tokio tasks: nothing here starts,
//! enters or drops a runtime on the caller's thread, so nothing panics. But a blocking call
//! there blocks that thread and every task it would run; in async code use the async API, or
//! call the blocking one from [`tokio::task::spawn_blocking`].

mod events;
mod peer;
mod wait;

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::{self, JoinHandle, ThreadId};

use parking_lot::Mutex;
use tokio::runtime::Handle;
use tokio::sync::oneshot;

pub use events::{Event, Events};
pub use peer::{Peer, Receipt};

use crate::error::{Error, Result};
use crate::proto::validate_name;
use crate::{NodeBuilder, PublicKey};

impl NodeBuilder {
    /// Validates the configuration, binds the listeners and starts the node on a thread of its
    /// own, returning a [`blocking::Node`](Node): the start of the [`blocking`](self) API.
    pub fn start_blocking(self) -> Result<Node> {
        Node::start(self)
    }
}

/// A blocking networkio node: the twin of [`crate::Node`], running on a thread of its own (see
/// the [module documentation](self)).
///
/// Cloning gives another handle to the same node. The node runs until [`Node::shutdown`] or
/// until the last handle is dropped.
#[derive(Clone)]
pub struct Node {
    inner: crate::Node,
    background: Arc<Background>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("blocking::Node").field(&self.inner).finish()
    }
}

/// How the node's thread should end the node.
#[derive(Debug, Clone, Copy)]
enum Stop {
    Shutdown,
    Abort,
}

/// The node's thread and the means to stop it; shared by a node's handles, and dropped with
/// the last.
struct Background {
    handle: Handle,
    stop: Mutex<Option<oneshot::Sender<Stop>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    thread_id: ThreadId,
}

impl Background {
    /// Tells the node's thread to end the node `how`, and waits until the thread has finished.
    fn stop(&self, how: Stop) {
        if let Some(stop) = self.stop.lock().take() {
            let _ = stop.send(how);
        }
        if thread::current().id() == self.thread_id {
            return; // a thread cannot join itself; it finishes right after this
        }
        // Held while joining, so that a second caller returns only once the node is down.
        let mut thread = self.thread.lock();
        if let Some(thread) = thread.take() {
            if thread.join().is_err() {
                tracing::error!("the thread of a blocking networkio node panicked");
            }
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.stop(Stop::Shutdown);
    }
}

/// What the node's thread reports once the node has started.
type Started = Result<(crate::Node, Handle)>;

/// The body of the node's thread: starts the node, then waits for the word to end it.
fn run(builder: NodeBuilder, started: mpsc::SyncSender<Started>, stop: oneshot::Receiver<Stop>) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            let _ = started.send(Err(Error::Io(e)));
            return;
        }
    };
    runtime.block_on(async move {
        let node = match builder.start().await {
            Ok(node) => node,
            Err(e) => {
                let _ = started.send(Err(e));
                return;
            }
        };
        if started.send(Ok((node.clone(), Handle::current()))).is_err() {
            node.abort().await; // nobody to hand it to
            return;
        }
        // A dropped sender (every handle gone) also means shut down.
        match stop.await {
            Ok(Stop::Abort) => node.abort().await,
            Ok(Stop::Shutdown) | Err(_) => node.shutdown().await,
        }
    });
    // Dropping the runtime here drops whatever is left on it: connects still running fail
    // with `NodeClosed`.
}

impl Node {
    /// A builder for a node called `name`: the async [`NodeBuilder`], finished with
    /// [`NodeBuilder::start_blocking`].
    pub fn builder(name: impl Into<String>) -> NodeBuilder {
        crate::Node::builder(name)
    }

    /// Starts the node `builder` describes on a thread of its own (the same as
    /// [`NodeBuilder::start_blocking`]).
    pub fn start(builder: NodeBuilder) -> Result<Node> {
        // Before the thread is named after it (a name with a NUL byte would panic there).
        validate_name(&builder.name)?;
        let (started_tx, started_rx) = mpsc::sync_channel(1);
        let (stop_tx, stop_rx) = oneshot::channel();
        let thread = thread::Builder::new()
            .name(format!("networkio-{}", builder.name))
            .spawn(move || run(builder, started_tx, stop_rx))?;
        match started_rx.recv() {
            Ok(Ok((inner, handle))) => Ok(Node {
                inner,
                background: Arc::new(Background {
                    handle,
                    stop: Mutex::new(Some(stop_tx)),
                    thread_id: thread.thread().id(),
                    thread: Mutex::new(Some(thread)),
                }),
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            // The thread ended without a word: it panicked, and the panic belongs to the caller.
            Err(mpsc::RecvError) => match thread.join() {
                Err(panic) => std::panic::resume_unwind(panic),
                Ok(()) => Err(Error::NodeClosed),
            },
        }
    }

    /// This node's name.
    pub fn name(&self) -> &str {
        self.inner.name()
    }

    /// This process's incarnation; see [`crate::Node::incarnation`].
    pub fn incarnation(&self) -> u64 {
        self.inner.incarnation()
    }

    /// This node's public key, which peers pin; `None` in insecure plaintext mode.
    pub fn public_key(&self) -> Option<PublicKey> {
        self.inner.public_key()
    }

    /// The addresses the node listens on (with the ports the OS picked).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        self.inner.local_addrs()
    }

    /// Live TCP connections (handshaking or established), accepted and dialed.
    pub fn connection_count(&self) -> usize {
        self.inner.connection_count()
    }

    /// The async handle to the same node, for what has no blocking twin. Its synchronous calls
    /// suit any thread; its async calls run on whatever runtime awaits them, not on this node's
    /// thread.
    pub fn as_async(&self) -> &crate::Node {
        &self.inner
    }

    /// The node's notification queue. Every handle reads the same queue.
    pub fn events(&self) -> Events {
        self.inner.events().into()
    }

    /// Dials `addr` (anything [`std::net::ToSocketAddrs`] takes: `"host:port"`, a
    /// [`SocketAddr`], ...; names are resolved on the calling thread), completes the handshake
    /// and returns the peer that answered. If the connection later breaks, the node redials
    /// with backoff and the session resumes; see [`crate::Node::connect`].
    pub fn connect(&self, addr: impl ToSocketAddrs) -> Result<Peer> {
        let addrs: Vec<SocketAddr> = addr.to_socket_addrs()?.collect();
        let node = self.inner.clone();
        let (tx, rx) = mpsc::sync_channel(1);
        self.background.handle.spawn(async move {
            let _ = tx.send(node.connect(&addrs[..]).await);
        });
        // No answer: the node's thread ended (shut down) and dropped the attempt.
        let peer = rx.recv().map_err(|_| Error::NodeClosed)??;
        Ok(peer.into())
    }

    /// The known peer called `name`.
    pub fn peer(&self, name: &str) -> Option<Peer> {
        self.inner.peer(name).map(Peer::from)
    }

    /// Every known peer.
    pub fn peers(&self) -> Vec<Peer> {
        self.inner.peers().into_iter().map(Peer::from).collect()
    }

    /// Shuts the node down gracefully, as [`crate::Node::shutdown`] does, then stops and joins
    /// its thread. Every handle sees the node closed; dropping the last one later does nothing
    /// more. Calls from several threads all return once the node is down.
    pub fn shutdown(&self) {
        self.background.stop(Stop::Shutdown);
    }

    /// Stops the node at once, as if its process had died (see [`crate::Node::abort`]), then
    /// joins its thread.
    pub fn abort(&self) {
        self.background.stop(Stop::Abort);
    }
}
