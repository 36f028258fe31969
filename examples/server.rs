//! A server that prints what it receives and answers every message.
//!
//! Run: `cargo run --example server` then, in another terminal, `cargo run --example client`.
//! Both take an optional address (`cargo run --example server -- 127.0.0.1:0` picks a free port
//! and prints it); the default is 127.0.0.1:8080.

use networkio::{Event, Node};

#[tokio::main]
async fn main() -> Result<(), networkio::Error> {
    let arg = std::env::args().nth(1); // an address other than the default, if given
    let addr = arg.as_deref().unwrap_or("127.0.0.1:8080");
    let node = Node::builder("server-001").listen(addr).start().await?;
    println!("listening on {} as {}", node.local_addrs()[0], node.name());
    let mut events = node.events(); // the node's notification queue
    while let Some(event) = events.recv().await {
        match event {
            Event::Message { peer } => {
                // "peer has new data": read 1, 2 or all of it; what is not read stays queued.
                let mut texts: Vec<String> = peer.read(2)?;
                if peer.pending() > 0 {
                    // `Message` fires again only when more data arrives: take the rest now.
                    println!("({} more from {} queued)", peer.pending(), peer.name());
                    texts.extend(peer.read_all::<String>()?);
                }
                for text in texts {
                    println!("{}: {text}", peer.name());
                    peer.send(&format!("got {text:?}")).await?; // answer each message
                }
            }
            Event::Delivered { peer, up_to } => {
                println!("{} acknowledged everything up to #{up_to}", peer.name());
            }
            Event::Connected { peer, resumed } => {
                println!("{} connected (session resumed: {resumed})", peer.name());
            }
            Event::Disconnected { peer, reason } => {
                println!("{} disconnected: {reason}", peer.name());
            }
            Event::SessionLost { peer, unacked, .. } => {
                let (name, lost) = (peer.name(), unacked.len());
                println!("{name} lost its session; {lost} messages handed back");
            }
            _ => {}
        }
    }
    Ok(())
}
