// A home router's DNS resolver, as small as it can be: answers A queries for the names it
// is given and NXDOMAIN for everything else. Chromium resolves STUN/TURN host names through
// DNS (not /etc/hosts), so a lab home needs one (../shared/notes/network-lab-facts.md).
//
//   node tests/lab/dns.mjs LISTEN_IP NAME=IPV4 [NAME=IPV4 …]
//
// Prints "dns ready" once listening. Only UDP (what Chromium's resolver uses first); answers
// carry TTL 5 s so that a renumbered server is seen quickly.
import dgram from 'node:dgram';

/** Parses one query; returns null for anything that is not a single-question query. */
export function parseQuery(msg) {
  if (msg.length < 12) return null;
  const flags = msg.readUInt16BE(2);
  if (flags & 0x8000) return null; // a response, not a query
  if (msg.readUInt16BE(4) !== 1) return null; // QDCOUNT
  const labels = [];
  let offset = 12;
  for (;;) {
    if (offset >= msg.length) return null;
    const len = msg[offset];
    if (len === 0) break;
    if (len > 63 || offset + 1 + len > msg.length) return null; // no compression in queries
    labels.push(msg.subarray(offset + 1, offset + 1 + len).toString('latin1'));
    offset += 1 + len;
  }
  offset += 1;
  if (offset + 4 > msg.length) return null;
  return {
    id: msg.readUInt16BE(0),
    recursionDesired: Boolean(flags & 0x0100),
    name: labels.join('.').toLowerCase(),
    type: msg.readUInt16BE(offset),
    klass: msg.readUInt16BE(offset + 2),
    question: msg.subarray(12, offset + 4),
  };
}

/** The answer to `query` given `names` (lower-case name → IPv4 string). */
export function answer(query, names) {
  const ip = names.get(query.name);
  const isA = query.type === 1 && query.klass === 1;
  const rcode = ip === undefined ? 3 /* NXDOMAIN */ : 0;
  const records = ip !== undefined && isA ? [ip] : []; // AAAA etc. of a known name: NODATA
  const header = Buffer.alloc(12);
  header.writeUInt16BE(query.id, 0);
  header.writeUInt16BE(0x8000 | 0x0400 | (query.recursionDesired ? 0x0100 : 0) | 0x0080 | rcode, 2);
  header.writeUInt16BE(1, 4);
  header.writeUInt16BE(records.length, 6);
  const answers = records.map((addr) => {
    const rr = Buffer.alloc(16);
    rr.writeUInt16BE(0xc00c, 0); // pointer to the question's name
    rr.writeUInt16BE(1, 2); // A
    rr.writeUInt16BE(1, 4); // IN
    rr.writeUInt32BE(5, 6); // TTL
    rr.writeUInt16BE(4, 10);
    addr.split('.').forEach((octet, i) => rr.writeUInt8(Number(octet), 12 + i));
    return rr;
  });
  return Buffer.concat([header, query.question, ...answers]);
}

function main([listen, ...pairs]) {
  const names = new Map(
    pairs.map((pair) => {
      const [name, ip] = pair.split('=');
      return [name.toLowerCase(), ip];
    }),
  );
  const socket = dgram.createSocket('udp4');
  socket.on('message', (msg, from) => {
    const query = parseQuery(msg);
    if (query) socket.send(answer(query, names), from.port, from.address);
  });
  socket.bind(53, listen, () => console.log('dns ready'));
}

if (import.meta.url === `file://${process.argv[1]}`) main(process.argv.slice(2));
