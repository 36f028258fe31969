//! `listen --echo` answers each message within the session it came from (issue #12, defect 6):
//! the echoes of one process never reach the next process that uses the same name.

mod common;

use common::{WAIT, listen};
use networkio::{Event, Node};
use tokio::time::timeout;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echoes_of_a_process_never_reach_the_next_process_with_its_name() {
    // More than the listener's window (16,384 messages): with the first `p` reading none of its
    // echoes (and holding at most one), the listener's echoing is still stuck on `p`'s messages
    // when `p` is replaced, whatever the timing.
    const N: usize = 20_000;
    let mut listener = listen("echo-srv", &["--echo"]).await;
    let addr = listener.addr.clone();
    let printing = tokio::spawn(async move {
        let mut lines = Vec::new();
        while lines.len() < N + 1 {
            lines.push(listener.next_line().await);
        }
        (listener, lines)
    });

    let first = Node::builder("p")
        .inbox(1, 1 << 20)
        .start()
        .await
        .expect("start the first p");
    let to_listener = timeout(WAIT, first.connect(addr.as_str()))
        .await
        .expect("connect in time")
        .expect("connect");
    let mut last = None;
    for i in 1..=N {
        last = Some(to_listener.send(&format!("p1-{i}")).await.expect("send"));
    }
    timeout(WAIT, last.expect("sent").delivered())
        .await
        .expect("delivered in time")
        .expect("delivered");
    // The first process dies without a goodbye; a new one takes the name.
    first.abort().await;
    let second = Node::builder("p")
        .start()
        .await
        .expect("start the second p");
    let mut events = second.events();
    let to_listener = timeout(WAIT, second.connect(addr.as_str()))
        .await
        .expect("connect in time")
        .expect("connect");
    to_listener.send(&"p2-1").await.expect("send");

    // The second process hears the echo of its own message and nothing of the first's.
    let first_echo = timeout(WAIT, async {
        loop {
            if let Event::Message { peer } = events.recv().await.expect("node running") {
                let echoes: Vec<String> = peer.read_all().expect("strings");
                if let Some(first) = echoes.into_iter().next() {
                    return first;
                }
            }
        }
    })
    .await
    .expect("an echo in time");
    assert_eq!(first_echo, "p2-1", "the new process got another's echo");

    // Every message was printed all the same, once, in order.
    let (listener, lines) = timeout(WAIT, printing)
        .await
        .expect("every line in time")
        .expect("printing task");
    let expected: Vec<String> = (1..=N)
        .map(|i| format!("p\tp1-{i}"))
        .chain(["p\tp2-1".to_owned()])
        .collect();
    assert_eq!(lines, expected);
    second.shutdown().await;
    let (rest, _) = listener.terminate().await;
    assert!(rest.is_empty(), "unexpected output: {rest:?}");
}
