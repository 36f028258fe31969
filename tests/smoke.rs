use std::time::Duration;

use networkio::{Event, Node};

#[tokio::test]
async fn smoke() {
    let server = Node::builder("server-001")
        .listen("127.0.0.1:0")
        .start()
        .await
        .unwrap();
    let addr = server.local_addrs()[0];
    let client = Node::builder("client-123").start().await.unwrap();
    let peer = client.connect(addr).await.unwrap();
    assert_eq!(peer.name(), "server-001");
    let r = peer.send(&"Hello").await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), r.delivered())
        .await
        .unwrap()
        .unwrap();
    let mut events = server.events();
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(5), events.recv())
            .await
            .unwrap()
            .unwrap();
        println!("{ev:?}");
        if let Event::Message { peer } = ev {
            let msgs: Vec<String> = peer.read_all().unwrap();
            assert_eq!(msgs, vec!["Hello".to_string()]);
            break;
        }
    }
    client.shutdown().await;
    server.shutdown().await;
}
