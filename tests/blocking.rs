//! The blocking API (`networkio::blocking`): delivery between blocking nodes, receipts, the
//! events iterator, the node's thread, use from inside a tokio runtime, and the example.
#![allow(clippy::unwrap_used)]

mod common;

#[path = "../examples/blocking.rs"]
mod example;

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{Checker, Msg, WAIT};
use networkio::blocking::{Event, Events, Node, Peer};
use networkio::{Error, Fault};

/// Runs `f` on a thread of its own and returns its result, failing the test (instead of hanging
/// it) if `f` does not finish within [`WAIT`]; a panic in `f` fails the test with its message.
fn within<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let runner = thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(WAIT) {
        Ok(value) => {
            runner.join().unwrap();
            value
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => match runner.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("the runner sends before it ends"),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("timed out waiting for {what}"),
    }
}

/// Polls `cond` until it holds, failing after [`WAIT`]; for what no event announces (a thread
/// ending), never a fixed sleep.
fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(5));
    }
}

/// The threads of this process called `name` (as the OS keeps it: 15 bytes at most).
#[cfg(target_os = "linux")]
fn threads_named(name: &str) -> usize {
    let comm = &name[..name.len().min(15)];
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|c| c.trim_end() == comm)
        .count()
}

fn listening(name: &str) -> Node {
    Node::builder(name)
        .listen("127.0.0.1:0")
        .start_blocking()
        .unwrap()
}

/// Waits for the `Connected` event of `events`' node and returns that peer.
fn wait_connected(events: &mut Events) -> Peer {
    loop {
        match events.recv_timeout(WAIT).unwrap() {
            Event::Connected { peer, .. } => return peer,
            _ => continue,
        }
    }
}

#[test]
fn the_example_runs_to_completion() {
    within("the blocking example", example::main).unwrap();
}

/// Reads what `events`' node is told about into the checker until `expect` messages arrived.
fn read_into(mut events: Events, checker: Arc<Mutex<Checker>>, expect: u64) {
    let mut got = 0;
    while got < expect {
        match events.recv_timeout(WAIT).unwrap() {
            Event::Message { peer } => {
                let msgs: Vec<Msg> = peer.read_all().unwrap();
                checker.lock().unwrap().received_from(peer.name(), &msgs);
                got += msgs.len() as u64;
            }
            Event::SessionLost { .. } => checker.lock().unwrap().session_lost("a session ended"),
            _ => {}
        }
    }
}

#[test]
fn every_message_arrives_once_and_in_order_both_ways() {
    const N: u64 = 600;
    within("two blocking nodes exchanging messages", || {
        // Small windows and inboxes, so that senders block for room again and again.
        let a = Node::builder("blk-a")
            .listen("127.0.0.1:0")
            .window(8, 1 << 20)
            .inbox(8, 1 << 20)
            .start_blocking()
            .unwrap();
        let b = Node::builder("blk-b")
            .window(8, 1 << 20)
            .inbox(8, 1 << 20)
            .start_blocking()
            .unwrap();
        let b_to_a = b.connect(a.local_addrs()[0]).unwrap();
        let mut a_events = a.events();
        let a_to_b = wait_connected(&mut a_events);
        assert_eq!((a_to_b.name(), b_to_a.name()), ("blk-b", "blk-a"));

        let checker = Arc::new(Mutex::new(Checker::default()));
        let readers = [
            thread::spawn({
                let checker = checker.clone();
                move || read_into(a_events, checker, N)
            }),
            thread::spawn({
                let (events, checker) = (b.events(), checker.clone());
                move || read_into(events, checker, N)
            }),
        ];
        // a -> b one `send` at a time, b -> a in `send_many` batches.
        let one_by_one = thread::spawn({
            let checker = checker.clone();
            move || {
                let mut last = None;
                for _ in 0..N {
                    let msg = checker.lock().unwrap().next_message("blk-a", "blk-b", 16);
                    last = Some(a_to_b.send(&msg).unwrap());
                }
                last.unwrap().delivered().unwrap();
            }
        });
        let mut last = None;
        for _ in 0..N / 20 {
            let batch: Vec<Msg> = (0..20)
                .map(|_| checker.lock().unwrap().next_message("blk-b", "blk-a", 16))
                .collect();
            last = Some(b_to_a.send_many(&batch).unwrap());
        }
        let last = last.unwrap();
        last.delivered().unwrap();
        assert!(last.is_delivered());
        assert_eq!(last.seq(), N);
        one_by_one.join().unwrap();
        for reader in readers {
            reader.join().unwrap();
        }
        let checker = checker.lock().unwrap();
        assert_eq!(checker.reads(), 2 * N);
        checker.assert_exactly_once_in_order();
    });
}

#[test]
fn delivered_waits_for_the_acknowledgement_and_times_out_without_one() {
    within("receipts", || {
        let server = listening("blk-receipt-server");
        let client = Node::builder("blk-receipt-client")
            .start_blocking()
            .unwrap();
        let peer = client.connect(server.local_addrs()[0]).unwrap();
        let receipt = peer.send(&"one").unwrap();
        receipt.delivered().unwrap();
        assert!(receipt.is_delivered());
        assert_eq!(receipt.seq(), 1);
        assert_eq!(receipt.peer().name(), "blk-receipt-server");
        peer.send(&"two").unwrap().delivered_timeout(WAIT).unwrap();

        // Nobody left to acknowledge: the wait gives up at its timeout, and the receipt stays
        // valid (not delivered, not failed).
        server.abort();
        let receipt = peer.send(&"three").unwrap();
        let err = receipt
            .delivered_timeout(Duration::from_millis(20))
            .unwrap_err();
        assert!(matches!(err, Error::Timeout(_)), "{err:?}");
        assert!(!receipt.is_delivered());

        // The node's end fails it.
        client.shutdown();
        assert!(matches!(receipt.delivered(), Err(Error::NodeClosed)));
    });
}

#[test]
fn recv_waits_for_the_peers_next_message_and_times_out_without_one() {
    within("blocking recv", || {
        let server = listening("blk-recv-server");
        let client = Node::builder("blk-recv-client").start_blocking().unwrap();
        let to_server = client.connect(server.local_addrs()[0]).unwrap();
        let mut events = server.events();
        let from_client = wait_connected(&mut events);

        // Nothing sent yet: the deadline passes and nothing is taken.
        let err = from_client
            .recv_timeout::<String>(Duration::from_millis(20))
            .unwrap_err();
        assert!(matches!(err, Error::Timeout(_)), "{err:?}");

        // A sender on another thread; recv blocks until each message is there, in order.
        let sender = thread::spawn(move || {
            for i in 0..100u32 {
                to_server.send(&i).unwrap();
            }
            to_server
                .send_bytes(&b"raw"[..])
                .unwrap()
                .delivered()
                .unwrap();
            client
        });
        for i in 0..100u32 {
            assert_eq!(from_client.recv::<u32>().unwrap(), i);
        }
        assert_eq!(&from_client.recv_bytes_timeout(WAIT).unwrap()[..], b"raw");
        let client = sender.join().unwrap();

        // Once the node is shut down and the inbox is empty, recv says so instead of blocking.
        server.shutdown();
        assert!(matches!(from_client.recv_bytes(), Err(Error::NodeClosed)));
        drop(client);
    });
}

#[test]
fn events_iterate_until_the_node_shuts_down() {
    within("the events iterator", || {
        let server = listening("blk-events-server");
        let client = Node::builder("blk-events-client").start_blocking().unwrap();
        let events = server.events();
        let collector = thread::spawn(move || events.collect::<Vec<Event>>());
        let peer = client.connect(server.local_addrs()[0]).unwrap();
        let last = peer.send_many(["a", "b", "c"].iter()).unwrap();
        last.delivered().unwrap(); // in the server's inbox, and its `Message` queued

        server.shutdown();
        let events = collector.join().unwrap(); // the iterator ended by itself
        assert!(events.iter().any(
            |e| matches!(e, Event::Connected { peer, .. } if peer.name() == "blk-events-client")
        ));
        let from_client = events
            .iter()
            .find_map(|e| match e {
                Event::Message { peer } => Some(peer.clone()),
                _ => None,
            })
            .expect("a Message event");
        // What arrived stays readable after the shutdown.
        assert_eq!(from_client.read_all::<String>().unwrap(), ["a", "b", "c"]);

        // A closed node: no more events, nothing sent, nothing dialed.
        let mut after = server.events();
        assert!(after.recv().is_none());
        assert!(after.try_recv().is_none());
        assert!(matches!(after.recv_timeout(WAIT), Err(Error::NodeClosed)));
        let err = from_client.send(&"late").unwrap_err();
        assert_eq!(err.fault(), Fault::Ended);
        // (Refused before any packet is sent.)
        assert!(matches!(
            server.connect(("127.0.0.1", 9)),
            Err(Error::NodeClosed)
        ));
    });
}

#[test]
#[cfg(target_os = "linux")]
fn shutdown_stops_and_joins_the_nodes_thread() {
    within("shutdown", || {
        let node = listening("jn1");
        let other = node.clone();
        assert_eq!(threads_named("networkio-jn1"), 1);
        node.shutdown();
        eventually("the node's thread to end", || {
            threads_named("networkio-jn1") == 0
        });
        other.shutdown(); // already down: returns at once
        drop((node, other));
    });
}

#[test]
#[cfg(target_os = "linux")]
fn dropping_the_last_handle_shuts_the_node_down() {
    within("drop", || {
        let server = listening("jn2");
        let client = Node::builder("jn2-client").start_blocking().unwrap();
        let peer = client.connect(server.local_addrs()[0]).unwrap();
        let mut server_events = server.events();
        let to_client = wait_connected(&mut server_events);

        // A clone keeps it running.
        let clone = server.clone();
        drop(server);
        assert_eq!(threads_named("networkio-jn2"), 1);
        peer.send(&"still there").unwrap().delivered().unwrap();

        drop(clone);
        eventually("the node's thread to end", || {
            threads_named("networkio-jn2") == 0
        });
        // Handles kept past the node see it closed.
        assert!(matches!(to_client.send(&"x"), Err(Error::NodeClosed)));
        assert!(matches!(server_events.next(), Some(Event::Message { .. })));
        server_events.for_each(drop); // and the iterator ends
    });
}

#[test]
fn a_failed_start_leaves_no_thread_and_does_not_panic() {
    within("failed starts", || {
        let err = Node::builder("").start_blocking().unwrap_err();
        assert_eq!(err.fault(), Fault::Caller);
        let err = Node::builder("nul\0name").start_blocking().unwrap_err();
        assert_eq!(err.fault(), Fault::Caller);

        let taken = listening("blk-taken");
        let err = Node::builder("bx")
            .listen(taken.local_addrs()[0].to_string())
            .start_blocking()
            .unwrap_err();
        assert_eq!(err.fault(), Fault::Io, "{err:?}");
        #[cfg(target_os = "linux")]
        eventually("the failed node's thread to end", || {
            threads_named("networkio-bx") == 0
        });
    });
}

/// The blocking calls made straight from async code, on the runtime's only thread: they block
/// it (so this is not how to use them) but must neither panic nor hang. More than tokio's
/// cooperative budget of waits in one task poll, and more sends than fit in the window.
fn blocking_calls_in_async_code() {
    let server = listening("blk-rt-server");
    let client = Node::builder("blk-rt-client")
        .window(16, 1 << 20)
        .start_blocking()
        .unwrap();
    let peer = client.connect(server.local_addrs()[0]).unwrap();
    for i in 0..300u32 {
        peer.send(&i).unwrap().delivered().unwrap();
    }
    let many: Vec<u32> = (300..1000).collect();
    let last = peer.send_many(&many).unwrap();
    last.delivered().unwrap();
    for i in 1000..1200u32 {
        peer.send_bytes(i.to_be_bytes().to_vec()).unwrap();
    }
    peer.send(&"end").unwrap().delivered().unwrap();

    let mut events = server.events();
    let from_client = wait_connected(&mut events);
    assert_eq!(
        from_client.read::<u32>(1000).unwrap(),
        (0..1000).collect::<Vec<_>>()
    );
    assert_eq!(from_client.read_bytes(200).len(), 200);
    assert_eq!(from_client.recv::<String>().unwrap(), "end");
    drop((server, client)); // joins both nodes' threads from inside the runtime
}

#[test]
fn blocking_calls_inside_a_tokio_runtime_neither_panic_nor_hang() {
    within("blocking calls in async code", || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async { blocking_calls_in_async_code() });
    });
}

#[test]
fn blocking_calls_from_spawn_blocking() {
    within("blocking calls from spawn_blocking", || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        runtime
            .block_on(runtime.spawn_blocking(blocking_calls_in_async_code))
            .unwrap();
    });
}
