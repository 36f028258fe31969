//! A server that prints what it receives, two messages at a time, and answers each peer.
//!
//! Run: `cargo run --example server` then, in another terminal, `cargo run --example client`.

use networkio::{Event, Node};

#[tokio::main]
async fn main() -> Result<(), networkio::Error> {
    let node = Node::builder("server-001")
        .listen("127.0.0.1:8080")
        .start()
        .await?;
    println!("listening on {:?} as {}", node.local_addrs(), node.name());
    let mut events = node.events(); // the node's notification queue
    while let Some(event) = events.recv().await {
        match event {
            Event::Message { peer } => {
                // Read 1, 2 or all (read_all); the rest stay queued for later.
                let two: Vec<String> = peer.read(2)?;
                for text in &two {
                    println!("{}: {text}", peer.name());
                    peer.send(&format!("got {text:?}")).await?;
                }
                if peer.pending() > 0 {
                    println!("({} more from {} left queued)", peer.pending(), peer.name());
                    // Read them now too: a `Message` event fires again only when new data arrives.
                    for text in peer.read_all::<String>()? {
                        println!("{}: {text}", peer.name());
                    }
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
                println!(
                    "{} lost its session; {} messages handed back",
                    peer.name(),
                    unacked.len()
                );
            }
            _ => {}
        }
    }
    Ok(())
}
