//! A client that sends six messages to the example server, waits for their acknowledgement, then
//! prints the server's six answers and exits.
//!
//! Run `cargo run --example server` first; `cargo run --example client -- ADDR` dials another
//! address than the default 127.0.0.1:8080.

use networkio::Node;

#[tokio::main]
async fn main() -> Result<(), networkio::Error> {
    let arg = std::env::args().nth(1); // an address other than the default, if given
    let addr = arg.as_deref().unwrap_or("127.0.0.1:8080");
    let node = Node::builder("client-123").start().await?;
    let server = node.connect(addr).await?; // a Peer handle named "server-001"
    println!("connected to {}", server.name());

    let receipt = server.send(&"Hello").await?; // queued (waits only if the window is full)
    receipt.delivered().await?; // optional: wait for the acknowledgement
    println!("message #{} delivered", receipt.seq());

    let mut last = server.send(&"message 1").await?.into_owned();
    for i in 2..=5 {
        last = server.send(&format!("message {i}")).await?.into_owned();
    }
    last.delivered().await?; // cumulative: everything before it arrived too
    println!("messages up to #{} delivered", last.seq());

    // The server answers each of the 6 messages. One peer to hear from: wait on that peer
    // alone (a node with many peers reacts to `node.events()` instead, as the server does).
    for _ in 0..6 {
        let text: String = server.recv().await?;
        println!("{} says {text}", server.name());
    }
    node.shutdown().await;
    Ok(())
}
