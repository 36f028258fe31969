//! A client that sends six messages to the example server, waits for their acknowledgement, then
//! prints the server's six answers and exits.
//!
//! Run `cargo run --example server` first; `cargo run --example client -- ADDR` dials another
//! address than the default 127.0.0.1:8080.

use networkio::{Event, Node};

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

    let mut last = None;
    for i in 1..=5 {
        last = Some(server.send(&format!("message {i}")).await?);
    }
    if let Some(receipt) = last {
        receipt.delivered().await?; // cumulative: everything before it arrived too
        println!("messages up to #{} delivered", receipt.seq());
    }

    // The server answers each of the 6 messages: read the answers as they come.
    let mut events = node.events();
    let mut answers = 0;
    while answers < 6 {
        match events.recv().await {
            Some(Event::Message { peer }) => {
                for text in peer.read_all::<String>()? {
                    println!("{} says {text}", peer.name());
                    answers += 1;
                }
            }
            Some(_) => {}  // acknowledgements, connection changes: not needed here
            None => break, // the node shut down
        }
    }
    node.shutdown().await;
    Ok(())
}
