//! The live mio driver, without privileges: two stacks on a Unix datagram link, each under
//! its own event loop on its own thread.

mod common;

use std::sync::mpsc;
use std::thread;
use std::time::{Duration as StdDuration, Instant as StdInstant};

use common::{config, EchoClient, CLIENT_IP, SERVER_IP};
use smoltcp::wire::{IpAddress, IpEndpoint};
use tapir::app::echo::EchoServer;
use tapir::device::dgram;
use tapir::runtime::event_loop::{self, Ended, LoopOptions};
use tapir::runtime::{StopHandle, WallClock};
use tapir::stack::Stack;

fn quiet_options() -> LoopOptions {
    LoopOptions {
        handle_signals: false,
        ..LoopOptions::default()
    }
}

#[test]
fn stop_handle_from_another_thread_ends_the_loop() {
    let (mut server_dev, mut client_dev) = dgram::pair(1500).unwrap();
    let stop = StopHandle::new();
    let server_stop = stop.clone();
    let (done_tx, done_rx) = mpsc::channel();
    let server = thread::spawn(move || {
        let clock = WallClock::new();
        let mut stack = Stack::new(config(SERVER_IP, 2, 1), &mut server_dev, clock.now()).unwrap();
        let mut echo = EchoServer::bind(&mut stack, 7).unwrap();
        let ended = event_loop::run(
            &mut server_dev,
            &mut stack,
            &mut echo,
            &server_stop,
            &quiet_options(),
        );
        done_tx.send(()).ok();
        (
            ended.map_err(|e| e.to_string()),
            echo.echoed(),
            stack.stats(),
        )
    });

    // A client under its own live loop echoes 1 MiB over four connections.
    let clock = WallClock::new();
    let mut stack = Stack::new(config(CLIENT_IP, 1, 2), &mut client_dev, clock.now()).unwrap();
    let remote = IpEndpoint::new(IpAddress::Ipv4(SERVER_IP), 7);
    let mut client = EchoClient::connect(&mut stack, remote, 4, 256 * 1024);
    let ended = event_loop::run(
        &mut client_dev,
        &mut stack,
        &mut client,
        &StopHandle::new(),
        &quiet_options(),
    )
    .unwrap();
    assert_eq!(ended, Ended::Finished);
    assert!(client.failures.is_empty(), "{:?}", client.failures);
    for (sent, sent_hash, received, recv_hash) in client.results() {
        assert_eq!((sent, received), (256 * 1024, 256 * 1024));
        assert_eq!(sent_hash, recv_hash);
    }

    // The server is idle in epoll_wait now; only the stop switch can end it.
    assert!(
        done_rx.recv_timeout(StdDuration::from_millis(300)).is_err(),
        "server kept running"
    );
    let asked = StdInstant::now();
    stop.stop();
    done_rx
        .recv_timeout(StdDuration::from_secs(5))
        .expect("the loop ended after stop()");
    assert!(asked.elapsed() < StdDuration::from_secs(5));
    let (ended, echoed, stats) = server.join().unwrap();
    assert_eq!(ended, Ok(Ended::Stopped));
    assert_eq!(echoed, 4 * 256 * 1024);
    assert_eq!(stats.accepted, 4);
}

#[test]
fn stop_before_run_returns_at_once() {
    let (mut dev, _peer) = dgram::pair(1500).unwrap();
    let clock = WallClock::new();
    let mut stack = Stack::new(config(SERVER_IP, 2, 1), &mut dev, clock.now()).unwrap();
    let mut echo = EchoServer::bind(&mut stack, 7).unwrap();
    let stop = StopHandle::new();
    stop.stop();
    let ended = event_loop::run(&mut dev, &mut stack, &mut echo, &stop, &quiet_options()).unwrap();
    assert_eq!(ended, Ended::Stopped);
}
