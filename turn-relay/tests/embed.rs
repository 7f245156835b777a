//! The library API the `signal` server embeds: start, addresses, metrics, shutdown.

mod common;

use common::StunClient;
use std::io::{Read, Write};
use std::time::{Duration, SystemTime};
use turn_relay::config::RelayConfig;
use turn_relay::{rest_auth, Transport, TurnServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_server_relays_and_shuts_down() {
    let cfg = RelayConfig::parse(
        "listening-ip=127.0.0.1\nlistening-port=0\nrealm=rtc.local\n\
         use-auth-secret\nstatic-auth-secret=embed-secret\n\
         prometheus\nprometheus-port=0\nmin-port=43000\nmax-port=43999\n",
    )
    .unwrap();
    let server = TurnServer::start(cfg).await.unwrap();
    let addrs = server.local_addrs();
    let udp = addrs.iter().find(|(t, _)| *t == Transport::Udp).unwrap().1;
    let tcp = addrs.iter().find(|(t, _)| *t == Transport::Tcp).unwrap().1;
    assert_ne!(udp.port(), 0);
    assert_eq!(udp.port(), tcp.port(), "TCP follows the UDP port");

    let (user, pass) = rest_auth::credentials(
        "embed-secret",
        "alice",
        Duration::from_secs(300),
        SystemTime::now(),
    );
    let relayed = tokio::task::spawn_blocking(move || {
        let mut c = StunClient::new(udp);
        c.allocate((&user, &pass))
    })
    .await
    .unwrap()
    .expect("allocation with REST credentials");
    assert!((43000..=43999).contains(&relayed.port()));
    assert_eq!(server.allocation_count(), 1);

    let metrics = server.metrics_addr().expect("metrics listener");
    let body = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(metrics).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).unwrap();
        body
    })
    .await
    .unwrap();
    assert!(body.starts_with("HTTP/1.0 200"), "{body}");
    assert!(body.contains("\nturn_allocations 1\n"), "{body}");
    assert!(body.contains("\nturn_auth_failures_total 1\n"), "{body}");

    tokio::time::timeout(Duration::from_secs(5), server.shutdown())
        .await
        .expect("shutdown within 5 s");
    let answered = tokio::task::spawn_blocking(move || {
        let c = StunClient::new(udp);
        c.sock
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        c.try_binding().is_some()
    })
    .await
    .unwrap();
    assert!(!answered, "listener still answering after shutdown");
}

#[tokio::test]
async fn start_rejects_inconsistent_config() {
    let cfg =
        RelayConfig::parse("listening-ip=127.0.0.1\nlistening-port=0\nuse-auth-secret\n").unwrap();
    let err = TurnServer::start(cfg).await.err().expect("must fail");
    assert!(err.to_string().contains("static-auth-secret"), "{err}");
}
