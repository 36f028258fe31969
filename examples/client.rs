//! A client that sends a few messages to the example server and waits for the acknowledgements.
//!
//! Run `cargo run --example server` first.

use networkio::{Event, Node};

#[tokio::main]
async fn main() -> Result<(), networkio::Error> {
    let node = Node::builder("client-123").start().await?;
    let server = node.connect("127.0.0.1:8080").await?; // a Peer handle named "server-001"
    println!("connected to {}", server.name());

    let receipt = server.send(&"Hello").await?; // queued (waits only if the window is full)
    receipt.delivered().await?; // optional: wait for the acknowledgement
    println!("message #{} delivered", receipt.seq());

    let mut last = None;
    for i in 0..5 {
        last = Some(server.send(&format!("message {i}")).await?);
    }
    if let Some(receipt) = last {
        receipt.delivered().await?; // cumulative: everything before it arrived too
    }

    // Read the server's answers as they come.
    let mut events = node.events();
    let mut answers = 0;
    while answers < 6 {
        if let Some(Event::Message { peer }) = events.recv().await {
            for text in peer.read_all::<String>()? {
                println!("{} says {text}", peer.name());
                answers += 1;
            }
        }
    }
    node.shutdown().await;
    Ok(())
}
