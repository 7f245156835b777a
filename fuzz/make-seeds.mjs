// Writes the fuzz targets' seed inputs (fuzz/seeds/<target>/): well-formed examples of what
// each target reads, so the fuzzer starts from the shapes real clients send rather than from
// nothing. Run from the repository root: node fuzz/make-seeds.mjs
import { createHash, createHmac } from 'node:crypto';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';

import { offer } from '../tests/lib/sdp.mjs';

const COOKIE = 0x2112a442;
const ATTR = {
  USERNAME: 0x0006, MESSAGE_INTEGRITY: 0x0008, ERROR_CODE: 0x0009, CHANNEL_NUMBER: 0x000c,
  LIFETIME: 0x000d, XOR_PEER_ADDRESS: 0x0012, DATA: 0x0013, REALM: 0x0014, NONCE: 0x0015,
  EVEN_PORT: 0x0018, REQUESTED_TRANSPORT: 0x0019, PRIORITY: 0x0024, ICE_CONTROLLING: 0x802a,
  RESERVATION_TOKEN: 0x0022, CONNECTION_ID: 0x002a, FINGERPRINT: 0x8028,
};
// Method | class bits (RFC 8489 §5): requests, indications, error responses.
const TYPE = { BINDING: 0x0001, ALLOCATE: 0x0003, REFRESH: 0x0004, SEND: 0x0016, CREATE_PERMISSION: 0x0008, CHANNEL_BIND: 0x0009, CONNECT: 0x000a, CONNECTION_BIND: 0x000b, ALLOCATE_ERROR: 0x0113 };

const u16 = (n) => Buffer.from([n >> 8, n & 255]);
const u32 = (n) => { const b = Buffer.alloc(4); b.writeUInt32BE(n >>> 0); return b; };

function stun(type, attrs, { tid = Buffer.alloc(12, 7), integrity, fingerprint } = {}) {
  let body = Buffer.alloc(0);
  const add = (t, v) => {
    const pad = Buffer.alloc((4 - (v.length % 4)) % 4);
    body = Buffer.concat([body, u16(t), u16(v.length), v, pad]);
  };
  const header = (extra) => Buffer.concat([u16(type), u16(body.length + extra), u32(COOKIE), tid]);
  for (const [t, v] of attrs) add(t, v);
  if (integrity) add(ATTR.MESSAGE_INTEGRITY, createHmac('sha1', integrity).update(Buffer.concat([header(24), body])).digest());
  if (fingerprint) add(ATTR.FINGERPRINT, u32((crc32(Buffer.concat([header(8), body])) ^ 0x5354554e) >>> 0));
  return Buffer.concat([header(0), body]);
}

function crc32(bytes) {
  let c = ~0;
  for (const byte of bytes) {
    c ^= byte;
    for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0xedb88320 & -(c & 1));
  }
  return ~c >>> 0;
}

/** XOR-PEER-ADDRESS of an IPv4 address. */
function xorAddress(ip, port) {
  const octets = ip.split('.').map(Number);
  const addr = u32(((octets[0] << 24) | (octets[1] << 16) | (octets[2] << 8) | octets[3]) ^ COOKIE);
  return Buffer.concat([Buffer.from([0, 1]), u16(port ^ (COOKIE >>> 16)), addr]);
}

const peer = xorAddress('203.0.113.0', 4000);
const key = createHash('md5').update('alice:rtc.local:pw').digest();
const messages = {
  binding: stun(TYPE.BINDING, []),
  allocate: stun(TYPE.ALLOCATE, [[ATTR.REQUESTED_TRANSPORT, Buffer.from([17, 0, 0, 0])], [ATTR.LIFETIME, u32(600)]]),
  allocate_even_port: stun(TYPE.ALLOCATE, [[ATTR.REQUESTED_TRANSPORT, Buffer.from([17, 0, 0, 0])], [ATTR.EVEN_PORT, Buffer.from([0x80])]]),
  allocate_reservation: stun(TYPE.ALLOCATE, [[ATTR.REQUESTED_TRANSPORT, Buffer.from([17, 0, 0, 0])], [ATTR.RESERVATION_TOKEN, Buffer.alloc(8, 1)]]),
  create_permission: stun(TYPE.CREATE_PERMISSION, [[ATTR.XOR_PEER_ADDRESS, peer]]),
  channel_bind: stun(TYPE.CHANNEL_BIND, [[ATTR.CHANNEL_NUMBER, Buffer.from([0x40, 0, 0, 0])], [ATTR.XOR_PEER_ADDRESS, peer]]),
  send: stun(TYPE.SEND, [[ATTR.XOR_PEER_ADDRESS, peer], [ATTR.DATA, Buffer.from('hello peer')]]),
  refresh: stun(TYPE.REFRESH, [[ATTR.LIFETIME, u32(0)]]),
  allocate_tcp: stun(TYPE.ALLOCATE, [[ATTR.REQUESTED_TRANSPORT, Buffer.from([6, 0, 0, 0])]]),
  connect: stun(TYPE.CONNECT, [[ATTR.XOR_PEER_ADDRESS, peer]]),
  connection_bind: stun(TYPE.CONNECTION_BIND, [[ATTR.CONNECTION_ID, u32(0)]]),
  // The harness makes the id one the relay gave out, picked by the first byte: the second.
  connection_bind_second: stun(TYPE.CONNECTION_BIND, [[ATTR.CONNECTION_ID, u32(0x01000000)]]),
  error: stun(TYPE.ALLOCATE_ERROR, [[ATTR.ERROR_CODE, Buffer.concat([Buffer.from([0, 0, 4, 1]), Buffer.from('Unauthorized')])], [ATTR.REALM, Buffer.from('rtc.local')], [ATTR.NONCE, Buffer.from('abcdef')]]),
  signed: stun(TYPE.ALLOCATE, [[ATTR.REQUESTED_TRANSPORT, Buffer.from([17, 0, 0, 0])], [ATTR.USERNAME, Buffer.from('alice')], [ATTR.REALM, Buffer.from('rtc.local')], [ATTR.NONCE, Buffer.from('abcdef')]], { integrity: key, fingerprint: true }),
};
const channelData = Buffer.concat([Buffer.from([0x40, 0, 0, 5]), Buffer.from('hello'), Buffer.alloc(3)]);

const seeds = {};
seeds.stun_codec = { ...messages, channel_data: channelData };

// turn_relay steps: [mode] then [0|1 client (1: signed by the harness)][five-tuple][len16][bytes],
// [2 peer][selector][len16][bytes], [3 clock][seconds/8].
const client = (signed, packet, selector = 0) => Buffer.concat([Buffer.from([signed ? 1 : 0, selector]), u16(packet.length), packet]);
const fromPeer = (bytes, selector = 0) => Buffer.concat([Buffer.from([2, selector]), u16(bytes.length), bytes]);
const clock = (eighths) => Buffer.from([3, eighths]);
// [2][selector ≥ 0x80]: a TCP allocation's event, by selector % 3: a Connect completes (0),
// a peer connects (1; to 203.0.113.<selector % 4>), a bound connection ends (2).
const tcpEvent = (selector) => Buffer.from([2, selector]);
// Five-tuple selectors: % 3 = 1 is TCP, (selector / 3) % 4 the client's port.
const [CONTROL, DATA_1, DATA_2] = [1, 4, 7];
seeds.turn_relay = {
  session: Buffer.concat([
    Buffer.from([0]),
    client(false, messages.allocate), // 401 with a NONCE
    client(true, messages.allocate),
    client(true, messages.create_permission),
    client(true, messages.channel_bind),
    client(false, channelData),
    client(false, messages.send),
    fromPeer(Buffer.from('hello client')),
    clock(10),
    client(true, messages.refresh),
  ]),
  tcp_allocation: Buffer.concat([
    Buffer.from([0]),
    client(false, messages.allocate_tcp, CONTROL),
    client(true, messages.allocate_tcp, CONTROL),
    client(true, messages.connect, CONTROL),
    tcpEvent(129), // connected
    client(true, messages.connection_bind, DATA_1),
    client(true, messages.create_permission, CONTROL),
    tcpEvent(136), // 203.0.113.0 connects in
    client(true, messages.connection_bind_second, DATA_2),
    tcpEvent(128), // a bound connection ends
    clock(5),
  ]),
  reservations: Buffer.concat([
    Buffer.from([5]),
    client(false, messages.allocate_even_port),
    client(true, messages.allocate_even_port),
    client(true, messages.allocate_reservation, 1),
    clock(5),
  ]),
};

// signal_commands: [event selector (high bit: /sfu)] then the JSON payload. The selector
// indexes EVENTS in fuzz_targets/signal_commands.rs.
const EVENTS = ['join', 'leave', 'message', 'candidate', 'restart', 'layer', 'share', 'record', 'live', 'moderate', 'update', ''];
const event = (name, sfu, payload) => Buffer.concat([Buffer.from([EVENTS.indexOf(name) | (sfu ? 0x80 : 0)]), Buffer.from(JSON.stringify(payload))]);
seeds.signal_commands = {
  join_1to1: event('join', false, ['room-1']),
  join_1to1_passcode: event('join', false, ['room-1', 'sesame']),
  message_1to1: event('message', false, ['room-1', { type: 'offer', sdp: offer() }]),
  join_sfu: event('join', true, { room: 'r', name: 'Ada', sdp: offer(), live: true, passcode: 'sesame' }),
  candidate: event('candidate', true, { candidate: 'candidate:1 1 udp 2130706431 192.0.2.1 50000 typ host', sdpMid: '0', sdpMLineIndex: 0 }),
  layer: event('layer', true, { participant: 'p0123456789ab', quality: 'low', source: 'screen' }),
  moderate: event('moderate', true, { action: 'mute', participant: 'p0123456789ab' }),
  record: event('record', true, { on: true }),
};

const simulcast = offer(2).replace('a=rtcp-fb:96 nack pli', 'a=rtcp-fb:96 nack pli\r\na=rid:q send\r\na=rid:h send\r\na=rid:f send\r\na=simulcast:send q;h;f');
seeds.sfu_sdp = { publisher: Buffer.from(offer(2)), viewer: Buffer.from(offer(2, 'recvonly')), four: Buffer.from(offer(4)), simulcast: Buffer.from(simulcast) };

// sfu_datagram steps: [source][length / 8][bytes]; `UFRG` becomes the server's ICE ufrag.
const step = (source, bytes) => {
  const padded = Buffer.concat([bytes, Buffer.alloc((8 - (bytes.length % 8)) % 8)]);
  return Buffer.concat([Buffer.from([source, padded.length / 8]), padded]);
};
const check = stun(TYPE.BINDING, [[ATTR.USERNAME, Buffer.from('UFRG:tEsT')], [ATTR.PRIORITY, u32(2130706431)], [ATTR.ICE_CONTROLLING, Buffer.alloc(8, 3)]], { integrity: Buffer.from('0123456789abcdefghijklmn'), fingerprint: true });
const dtlsHello = Buffer.concat([Buffer.from([22, 254, 253, 0, 0, 0, 0, 0, 0, 0, 0, 0, 40, 1, 0, 0, 28]), Buffer.alloc(28, 1)]);
const rtp = Buffer.concat([Buffer.from([0x80, 111, 0, 1, 0, 0, 0, 160, 0, 0, 3, 232]), Buffer.alloc(40, 9)]);
seeds.sfu_datagram = { check: step(0, check), dtls: Buffer.concat([step(0, check), step(0, dtlsHello)]), rtp: Buffer.concat([step(1, rtp), step(0, rtp)]) };

for (const [target, files] of Object.entries(seeds)) {
  const dir = new URL(`./seeds/${target}/`, import.meta.url);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  for (const [name, bytes] of Object.entries(files)) writeFileSync(new URL(name, dir), bytes);
}
