//! Just enough of Engine.IO v4 + socket.io v5 (default namespace, WebSocket transport, text
//! packets) for the load client. Written by hand instead of using a socket.io client crate
//! so that per-connection state is one WebSocket and a socket id, and so that the client
//! costs little CPU next to the server it measures on the same 2 cores.

use serde_json::Value;

/// Engine.IO `pong`, the answer to the server's `2` ping (EIO4: the server pings).
pub const PONG: &str = "3";
/// socket.io CONNECT to the default namespace, no auth payload.
pub const CONNECT: &str = "40";
/// socket.io DISCONNECT from the default namespace.
pub const DISCONNECT: &str = "41";

/// One incoming Engine.IO packet, as far as the benchmark cares.
#[derive(Debug, PartialEq)]
pub enum Packet {
    /// `0{...}` handshake.
    Open,
    /// `2` server ping: must be answered with [`PONG`] within the ping timeout.
    Ping,
    /// `1` Engine.IO close.
    Close,
    /// `40{"sid":...}` namespace connect accepted; carries the socket id used in events.
    Connected(String),
    /// `44{...}` namespace connect refused.
    ConnectError(String),
    /// `41` server-side namespace disconnect.
    Disconnect,
    /// `42[name, args...]` event.
    Event(String, Vec<Value>),
    /// Anything else (noop, pong, ack, binary): reported, never expected.
    Other(String),
}

/// Parses one WebSocket text frame.
pub fn parse(frame: &str) -> Packet {
    let mut chars = frame.chars();
    match chars.next() {
        Some('0') => Packet::Open,
        Some('1') => Packet::Close,
        Some('2') if frame.len() == 1 => Packet::Ping,
        Some('4') => parse_socketio(&frame[1..]),
        _ => Packet::Other(frame.to_owned()),
    }
}

fn parse_socketio(p: &str) -> Packet {
    match p.as_bytes().first() {
        Some(b'0') => {
            let sid = serde_json::from_str::<Value>(&p[1..])
                .ok()
                .and_then(|v| v.get("sid").and_then(Value::as_str).map(str::to_owned));
            match sid {
                Some(sid) => Packet::Connected(sid),
                None => Packet::Other(format!("4{p}")),
            }
        }
        Some(b'1') => Packet::Disconnect,
        Some(b'4') => Packet::ConnectError(p[1..].to_owned()),
        Some(b'2') => {
            // An optional ack id (digits) may precede the array; the servers never send one
            // to us, but skipping it keeps the parser faithful to the spec.
            let body = p[1..].trim_start_matches(|c: char| c.is_ascii_digit());
            match serde_json::from_str::<Vec<Value>>(body) {
                Ok(mut args) if !args.is_empty() => match args.remove(0) {
                    Value::String(name) => Packet::Event(name, args),
                    _ => Packet::Other(format!("4{p}")),
                },
                _ => Packet::Other(format!("4{p}")),
            }
        }
        _ => Packet::Other(format!("4{p}")),
    }
}

/// `42["join","ROOM"]`. Room names used by the bench are `[A-Za-z0-9_.~-]`, which need no
/// JSON escaping.
pub fn join(room: &str) -> String {
    format!("42[\"join\",\"{room}\"]")
}

/// The candidate line relayed in the ping-pong. `seq` is the ICE foundation, so the line
/// stays grammatical and the receiver can match replies to requests; realistic length
/// (~100 bytes) so that per-message costs resemble a real call's trickle ICE.
pub fn candidate_line(seq: u64) -> String {
    format!(
        "candidate:{seq} 1 udp 2122260223 127.0.0.1 {} typ host generation 0 ufrag bnch network-id 1",
        50_000 + seq % 10_000
    )
}

/// `42["message","ROOM",{type:'candidate',...}]`, the shape the course client sends.
pub fn candidate_message(room: &str, seq: u64) -> String {
    format!(
        "42[\"message\",\"{room}\",{{\"type\":\"candidate\",\"candidate\":\"{}\",\"sdpMLineIndex\":0,\"sdpMid\":\"0\"}}]",
        candidate_line(seq)
    )
}

/// Checks that a relayed `data` object is exactly what [`candidate_message`] sent, and
/// returns its sequence number. `Err` describes the mismatch (the server must relay `data`
/// unchanged).
pub fn relayed_seq(data: &Value) -> Result<u64, String> {
    let obj = data.as_object().ok_or("data is not an object")?;
    let cand = obj
        .get("candidate")
        .and_then(Value::as_str)
        .ok_or("data.candidate missing")?;
    let seq: u64 = cand
        .strip_prefix("candidate:")
        .and_then(|s| s.split(' ').next())
        .and_then(|s| s.parse().ok())
        .ok_or("data.candidate has no sequence number")?;
    let intact = obj.len() == 4
        && obj.get("type").and_then(Value::as_str) == Some("candidate")
        && cand == candidate_line(seq)
        && obj.get("sdpMLineIndex").and_then(Value::as_u64) == Some(0)
        && obj.get("sdpMid").and_then(Value::as_str) == Some("0");
    if intact {
        Ok(seq)
    } else {
        Err(format!("relayed data altered: {data}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_engine_io_packets() {
        assert_eq!(parse(r#"0{"sid":"x","pingInterval":2000}"#), Packet::Open);
        assert_eq!(parse("2"), Packet::Ping);
        assert_eq!(parse("1"), Packet::Close);
        assert_eq!(parse("6"), Packet::Other("6".into()));
    }

    #[test]
    fn parses_socket_io_packets() {
        assert_eq!(parse(r#"40{"sid":"abc"}"#), Packet::Connected("abc".into()));
        assert_eq!(parse("41"), Packet::Disconnect);
        assert_eq!(
            parse(r#"44{"message":"no"}"#),
            Packet::ConnectError(r#"{"message":"no"}"#.into())
        );
        assert_eq!(
            parse(r#"42["joined","r1","id1",{"peers":[],"capacity":2}]"#),
            Packet::Event(
                "joined".into(),
                vec![json!("r1"), json!("id1"), json!({"peers":[],"capacity":2})]
            )
        );
        assert_eq!(
            parse(r#"4212["bye","r","i"]"#),
            Packet::Event("bye".into(), vec![json!("r"), json!("i")])
        );
        assert!(matches!(parse("42[1]"), Packet::Other(_)));
        assert!(matches!(parse("42[]"), Packet::Other(_)));
        assert!(matches!(parse("42{"), Packet::Other(_)));
    }

    #[test]
    fn candidate_round_trips() {
        let frame = candidate_message("room-7", 42);
        let Packet::Event(name, args) = parse(&frame) else {
            panic!("not an event: {frame}");
        };
        assert_eq!(name, "message");
        assert_eq!(args[0], json!("room-7"));
        assert_eq!(relayed_seq(&args[1]), Ok(42));
        assert_eq!(join("r"), r#"42["join","r"]"#);
    }

    #[test]
    fn detects_altered_relay() {
        let mut data = json!({
            "type": "candidate",
            "candidate": candidate_line(3),
            "sdpMLineIndex": 0,
            "sdpMid": "0"
        });
        assert_eq!(relayed_seq(&data), Ok(3));
        data["extra"] = json!(1);
        assert!(relayed_seq(&data).is_err());
        data = json!({"type": "candidate", "candidate": "candidate:x"});
        assert!(relayed_seq(&data).is_err());
    }
}
