//! The blocking API: a server and a client in one program, each on a thread of its own, with no
//! async code. The client sends five messages, the server answers each, and both finish.
//!
//! Run: `cargo run --example blocking`.

use std::thread;

use networkio::blocking::{Event, Node};

/// How many messages the client sends (and answers it waits for).
const MESSAGES: usize = 5;

// `pub` so that a test can run this program (tests/blocking.rs).
pub fn main() -> Result<(), networkio::Error> {
    let server = Node::builder("server-001")
        .listen("127.0.0.1:0") // port 0: the OS picks a free one
        .start_blocking()?;
    let addr = server.local_addrs()[0];
    println!("server: listening on {addr}");
    let server_thread = thread::spawn(move || serve(server));

    let client = Node::builder("client-123").start_blocking()?;
    let peer = client.connect(addr)?; // a Peer handle named "server-001"
    println!("client: connected to {}", peer.name());

    let receipt = peer.send(&"hello")?; // queued (blocks only while the window is full)
    receipt.delivered()?; // optional: wait for the acknowledgement
    println!("client: message #{} delivered", receipt.seq());
    let rest: Vec<String> = (2..=MESSAGES).map(|i| format!("message {i}")).collect();
    let last = peer.send_many(&rest)?;
    last.delivered()?; // cumulative: everything before it arrived too
    println!("client: messages up to #{} delivered", last.seq());

    // The server's answers: one peer to hear from, so wait on that peer alone.
    let mut answers = 0;
    while answers < MESSAGES {
        let text: String = peer.recv()?; // blocks until the server's next answer
        println!("client: {} says {text}", peer.name());
        answers += 1;
    }
    client.shutdown();
    println!("client: shut down");
    server_thread
        .join()
        .expect("the server's thread panicked")?;
    println!("done: {MESSAGES} messages sent, {answers} answers received");
    Ok(())
}

/// Answers every message until it has answered [`MESSAGES`], then shuts the server down.
fn serve(server: Node) -> Result<(), networkio::Error> {
    let mut answered = 0;
    for event in server.events() {
        match event {
            Event::Message { peer } => {
                for text in peer.read_all::<String>()? {
                    println!("server: {} says {text}", peer.name());
                    let receipt = peer.send(&format!("got {text:?}"))?;
                    answered += 1;
                    if answered == MESSAGES {
                        receipt.delivered()?;
                        println!("server: all {answered} answers delivered");
                        server.shutdown(); // (dropping the last handle would do the same)
                        println!("server: shut down");
                        return Ok(());
                    }
                }
            }
            Event::Connected { peer, .. } => println!("server: {} connected", peer.name()),
            _ => {}
        }
    }
    Ok(())
}
