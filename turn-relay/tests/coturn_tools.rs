//! Interop: coturn's own client tools against the `turn-relay` binary on loopback.
//! Every child process is killed after a fixed limit and every load is a fixed
//! message count.

mod common;

use common::*;
use std::process::Command;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(60);

#[test]
fn stunclient_binding() {
    require_coturn_tools("stunclient_binding");
    let relay = Relay::start("");
    let (_, out) = run_bounded(
        Command::new("turnutils_stunclient").args(["-p", &relay.port.to_string(), "127.0.0.1"]),
        Duration::from_secs(15),
    );
    assert!(
        out.contains("UDP reflexive addr: 127.0.0.1:"),
        "stunclient output:\n{out}"
    );
}

/// Runs uclient with `flags` (10 clients × 200 messages of 160 bytes) against the relay on
/// `port`, with a turnutils_peer echo on `peer_port`; its report, or its output.
fn uclient(
    port: u16,
    peer_port: u16,
    flags: &[&str],
    creds: &[&str],
) -> Result<UclientReport, String> {
    let (port, peer_port) = (port.to_string(), peer_port.to_string());
    let mut args: Vec<&str> = flags.to_vec();
    args.extend(["-e", "127.0.0.1", "-r", &peer_port, "-p", &port]);
    args.extend(["-n", "200", "-m", "10", "-l", "160", "-z", "5"]);
    args.extend(creds);
    args.push("127.0.0.1");
    let (_, out) = run_bounded(Command::new("turnutils_uclient").args(&args), LIMIT);
    parse_uclient(&out).ok_or(out)
}

/// Run uclient with `flags` against a turnutils_peer echo and check delivery; the relay's log.
fn uclient_roundtrip(name: &str, flags: &[&str], creds: &[&str]) -> String {
    require_coturn_tools(name);
    let relay = Relay::start("allow-loopback-peers");
    let peer_port = free_port();
    let _peer = spawn_peer(peer_port);
    let r = uclient(relay.port, peer_port, flags, creds).unwrap_or_else(|out| {
        panic!(
            "no summary from uclient:\n{out}\nrelay log:\n{}",
            relay.log_text()
        )
    });
    println!("{name}: {r:?}");
    let log = relay.log_text();
    assert_eq!(r.sent, 2000, "{r:?}\nrelay log:\n{log}");
    assert!(r.lost_pct <= 1.0, "{r:?}\nrelay log:\n{log}");
    assert!(r.received >= 1980, "{r:?}\nrelay log:\n{log}");
    log
}

// `-c`: one allocation per client. Without it uclient allocates RTP/RTCP pairs: the RTP one
// with EVEN-PORT and the R bit, the RTCP one with the RESERVATION-TOKEN it got (RFC 8656
// §7.2), as coturn serves them.
#[test]
fn uclient_udp_channels() {
    uclient_roundtrip("uclient_udp_channels", &["-c"], &["-u", "test", "-w", "pw"]);
}

#[test]
fn uclient_rtp_rtcp_pairs_with_reservations() {
    // Before reservations, the RTP allocation was answered 508 and uclient stopped there.
    uclient_roundtrip(
        "uclient_rtp_rtcp_pairs_with_reservations",
        &[],
        &["-u", "test", "-w", "pw"],
    );
}

#[test]
fn uclient_udp_send_indications() {
    uclient_roundtrip(
        "uclient_udp_send_indications",
        &["-c", "-s"],
        &["-u", "test", "-w", "pw"],
    );
}

#[test]
fn uclient_tcp_channels() {
    uclient_roundtrip(
        "uclient_tcp_channels",
        &["-c", "-t"],
        &["-u", "test", "-w", "pw"],
    );
}

#[test]
fn uclient_tcp_send_indications() {
    uclient_roundtrip(
        "uclient_tcp_send_indications",
        &["-c", "-t", "-s"],
        &["-u", "test", "-w", "pw"],
    );
}

// `-T`: TCP allocations (RFC 6062). Clients pair up: one Connects to the other's relayed
// address, the other is told by a ConnectionAttempt, both bind a data connection with
// ConnectionBind, and the messages go through two TCP relays.
#[test]
fn uclient_tcp_relay() {
    uclient_roundtrip("uclient_tcp_relay", &["-T"], &["-u", "test", "-w", "pw"]);
}

// `-P` ("passive TCP", RFC 6062 with an active peer): uclient counts only half of the
// messages as received, against coturn as against us (the clients that play the active peer
// do not count theirs). So coturn runs beside us, and we must do as well.
#[test]
fn uclient_tcp_relay_passive_as_coturn() {
    require_coturn_tools("uclient_tcp_relay_passive_as_coturn");
    if which("turnserver").is_none() {
        println!("SKIP uclient_tcp_relay_passive_as_coturn: coturn's turnserver not installed");
        return;
    }
    let creds = ["-u", "test", "-w", "pw"];
    let coturn_port = free_port();
    let _coturn = spawn_coturn(coturn_port);
    let theirs =
        uclient(coturn_port, free_port(), &["-P"], &creds).expect("uclient against coturn");
    let relay = Relay::start("allow-loopback-peers");
    let ours = uclient(relay.port, free_port(), &["-P"], &creds).unwrap_or_else(|out| {
        panic!(
            "no summary from uclient:\n{out}\nrelay log:\n{}",
            relay.log_text()
        )
    });
    println!("uclient -P: coturn {theirs:?}, turn-relay {ours:?}");
    assert_eq!(ours.sent, 2000);
    assert_eq!(theirs.sent, 2000);
    assert!(
        ours.received > 0 && ours.received >= theirs.received,
        "turn-relay {ours:?}, coturn {theirs:?}"
    );
}

#[test]
fn uclient_rest_api_credentials() {
    // -W: uclient derives `expiry:user` / base64(HMAC-SHA1) from the shared secret. The
    // relay also has a static user (the other uclient tests log in as it): coturn refuses
    // that mix, this relay serves both and says so at startup.
    let log = uclient_roundtrip(
        "uclient_rest_api_credentials",
        &["-c"],
        &["-W", SECRET, "-u", "someone"],
    );
    assert!(log.contains("coturn refuses this mix"), "{log}");
}

#[test]
fn uclient_wrong_password_is_refused() {
    require_coturn_tools("uclient_wrong_password_is_refused");
    let relay = Relay::start("allow-loopback-peers\nverbose");
    let port = relay.port.to_string();
    let (_, out) = run_bounded(
        Command::new("turnutils_uclient").args([
            "-c",
            "-n",
            "5",
            "-m",
            "1",
            "-e",
            "127.0.0.1",
            "-r",
            "3480",
            "-p",
            &port,
            "-u",
            "test",
            "-w",
            "Zq9-not-the-pw",
            "127.0.0.1",
        ]),
        Duration::from_secs(20),
    );
    assert!(
        out.contains("Cannot complete Allocation"),
        "uclient output:\n{out}"
    );
    assert!(
        relay.log_text().contains("bad MESSAGE-INTEGRITY"),
        "{}",
        relay.log_text()
    );
    // The password itself never reaches the log.
    assert!(!relay.log_text().contains("Zq9-not-the-pw"));
}

#[test]
fn uclient_over_tls() {
    require_coturn_tools("uclient_over_tls");
    // Self-signed certificate made in-process (rcgen), so no openssl command is needed.
    let dir = std::env::temp_dir().join(format!("turn-relay-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
        .expect("generate a self-signed certificate");
    std::fs::write(&cert, generated.cert.pem()).unwrap();
    std::fs::write(&key, generated.signing_key.serialize_pem()).unwrap();
    let tls_port = free_port();
    let relay = Relay::start(&format!(
        "allow-loopback-peers\nno-tls=0\ntls-listening-port={tls_port}\ncert={}\npkey={}",
        cert.display(),
        key.display()
    ));
    let peer_port = free_port();
    let _peer = spawn_peer(peer_port);
    let (_, out) = run_bounded(
        Command::new("turnutils_uclient").args([
            "-t",
            "-S",
            "-c",
            "-n",
            "100",
            "-m",
            "4",
            "-l",
            "120",
            "-z",
            "5",
            "-e",
            "127.0.0.1",
            "-r",
            &peer_port.to_string(),
            "-p",
            &tls_port.to_string(),
            "-u",
            "test",
            "-w",
            "pw",
            "127.0.0.1",
        ]),
        LIMIT,
    );
    let _ = std::fs::remove_dir_all(&dir);
    let r = parse_uclient(&out).unwrap_or_else(|| {
        panic!(
            "no summary from uclient:\n{out}\nrelay log:\n{}",
            relay.log_text()
        )
    });
    assert_eq!(r.sent, 400, "{out}");
    assert!(r.lost_pct <= 1.0, "{out}");
}

#[test]
fn uclient_ipv6_relay() {
    require_coturn_tools("uclient_ipv6_relay");
    if std::net::UdpSocket::bind("[::1]:0").is_err() {
        println!("SKIP uclient_ipv6_relay: no IPv6 loopback");
        return;
    }
    let relay = Relay::start("allow-loopback-peers\nlistening-ip=::1");
    let peer_port = free_port().to_string();
    let _peer = Bg(Command::new("turnutils_peer")
        .args(["-L", "::1", "-p", &peer_port])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap());
    std::thread::sleep(Duration::from_millis(200));
    let port = relay.port.to_string();
    // -x: REQUESTED-ADDRESS-FAMILY IPv6 (RFC 6156), client on ::1 too.
    let (_, out) = run_bounded(
        Command::new("turnutils_uclient").args([
            "-x", "-c", "-n", "100", "-m", "4", "-z", "5", "-e", "::1", "-r", &peer_port, "-p",
            &port, "-u", "test", "-w", "pw", "::1",
        ]),
        LIMIT,
    );
    let r = parse_uclient(&out).unwrap_or_else(|| {
        panic!(
            "no summary from uclient:\n{out}\nrelay log:\n{}",
            relay.log_text()
        )
    });
    assert_eq!(r.sent, 400, "{out}");
    assert!(r.lost_pct <= 1.0, "{out}");
}
