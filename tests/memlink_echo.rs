//! TCP echo between two stacks over the in-memory link, on the virtual clock.

mod common;

use common::{config, linked, EchoClient, CLIENT_IP, SERVER_IP};
use smoltcp::time::Duration;
use smoltcp::wire::{IpAddress, IpEndpoint};
use tapir::app::echo::EchoServer;
use tapir::device::memlink::LinkConfig;
use tapir::runtime::sim::{Node, Sim, SimNode};

const PORT: u16 = 7;

fn server_endpoint() -> IpEndpoint {
    IpEndpoint::new(IpAddress::Ipv4(SERVER_IP), PORT)
}

#[test]
fn echo_16_mib_through_loss_and_reordering() {
    echo_16_mib(1);
}

/// With these link seeds both ends fill their buffers, one side's receive window is zero
/// while the other has a byte in flight past it. smoltcp used to drop the ACK field of
/// every such segment and the echo deadlocked; it now takes valid ACKs at a zero window
/// (RFC 9293 3.10.7.4, vendor/smoltcp/TAPIR-PATCH.md).
#[test]
fn echo_16_mib_with_both_windows_full_does_not_deadlock() {
    for seed in [2, 4, 7, 42] {
        echo_16_mib(seed);
    }
}

fn echo_16_mib(seed: u64) {
    let link = LinkConfig {
        loss: 0.01,
        reorder: 0.01,
        latency: Duration::from_micros(200),
        seed,
        ..LinkConfig::default()
    };
    let mut sim = Sim::new();
    let (mut s_stack, s_dev, mut c_stack, c_dev) =
        linked(link, config(SERVER_IP, 2, 1), config(CLIENT_IP, 1, 2), &sim);
    let echo = EchoServer::bind(&mut s_stack, PORT).unwrap();
    let total = 16 * 1024 * 1024;
    let client = EchoClient::connect(&mut c_stack, server_endpoint(), 1, total);
    let mut server = Node::new(s_stack, s_dev, echo);
    let mut client = Node::new(c_stack, c_dev, client);

    let took = sim
        .run_until(
            &mut [&mut server as &mut dyn SimNode, &mut client],
            Duration::from_secs(600),
            |nodes| nodes[1].finished(),
        )
        .expect("echo completes");

    assert!(client.app.failures.is_empty(), "{:?}", client.app.failures);
    let (sent, sent_hash, received, recv_hash) = client.app.results()[0];
    assert_eq!(sent, total);
    assert_eq!(received, total);
    assert_eq!(
        sent_hash, recv_hash,
        "sha256 of what was sent and what came back"
    );
    let link = server.device.link_stats();
    assert!(
        link.lost > 0 && link.reordered > 0,
        "faults were injected: {link:?}"
    );
    eprintln!("16 MiB echoed in {took} virtual, link {link:?}");
}

#[test]
fn thousand_clients_at_once_are_all_accepted_and_freed() {
    let mut sim = Sim::new();
    let (mut s_stack, s_dev, mut c_stack, c_dev) = linked(
        LinkConfig::default(),
        config(SERVER_IP, 2, 3),
        config(CLIENT_IP, 1, 4),
        &sim,
    );
    let echo = EchoServer::bind(&mut s_stack, PORT).unwrap();
    // Only the LISTEN pool: a few sockets, however large the backlog.
    let pool = s_stack.socket_count();
    assert!((1..=8).contains(&pool), "{pool} sockets");
    assert_eq!(s_stack.stats().listening, pool);
    let client = EchoClient::connect(&mut c_stack, server_endpoint(), 1000, 1000);
    let mut server = Node::new(s_stack, s_dev, echo);
    let mut client = Node::new(c_stack, c_dev, client);

    sim.run_until(
        &mut [&mut server as &mut dyn SimNode, &mut client],
        Duration::from_secs(900),
        |nodes| nodes[1].finished(),
    )
    .expect("all clients finish");
    assert!(
        client.app.failures.is_empty(),
        "{:?}",
        &client.app.failures[..5.min(client.app.failures.len())]
    );
    for (sent, sent_hash, received, recv_hash) in client.app.results() {
        assert_eq!((sent, received), (1000, 1000));
        assert_eq!(sent_hash, recv_hash);
    }
    // Let the last FIN/ACK exchanges finish, then everything but the pool must be gone.
    sim.run_until(
        &mut [&mut server as &mut dyn SimNode, &mut client],
        Duration::from_secs(60),
        |_| false,
    )
    .ok();
    let stats = server.stack.stats();
    assert_eq!(stats.accepted, 1000);
    assert_eq!(stats.connections, 0, "{stats:?}");
    assert_eq!(server.stack.socket_count(), pool, "{stats:?}");
    assert_eq!(server.app.open_connections(), 0);
}
