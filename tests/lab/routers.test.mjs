// The lab's home routers keep connections the way real ones do, which the call tests rely on.
// A firewall change (what `setRouter` does to a home that keeps its NAT kind) leaves the
// connections the router tracks alone, as loading new nftables rules does on a real router:
// a TCP connection it still allows stays up both ways, while UDP, once blocked, stops both
// ways on flows already open too. Forgetting the mappings (a router reboot, `flushMappings`)
// is another scenario: the server can no longer reach the home until the home sends again,
// and a call's signaling connection may die of it.
//
// The lab once flushed the mappings along with every firewall change: the server's socket.io
// pings to the home were dropped until the page next spoke, and the page, hearing nothing for
// 4 s, reconnected in a test that asserts the signaling connection survives UDP being blocked
// (2 of 4 CI runs).
import { after, before, it } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';

import { until } from '../lib/browser.mjs';
import { Lab, SERVER_IP } from './lab.mjs';

const PORT = 9100;
let lab;

before(async () => {
  lab = await Lab.create({ homes: ['a'] });
});

after(async () => {
  await lab?.down();
  assert.deepEqual(await lab?.leftovers(), { namespaces: [], links: [], processes: 0, dir: false }, 'the lab cleans up after itself');
});

// A TCP server on the public server that sends each line of its stdin to the one client it
// accepted, and a client in home A that prints what it receives: the server speaks, the home
// stays silent.
const SERVER = `
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("${SERVER_IP}", ${PORT})); s.listen(1); print("listening", flush=True)
c, _ = s.accept(); print("accepted", flush=True)
for line in sys.stdin: c.sendall(line.encode())
`;
const CLIENT = `
import socket
c = socket.create_connection(("${SERVER_IP}", ${PORT})); print("connected", flush=True)
f = c.makefile()
for line in f: print("got", line.strip(), flush=True)
`;

// The same over UDP: the home's first datagram opens the flow (and the router's mapping).
const UDP_SERVER = `
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("${SERVER_IP}", ${PORT})); print("listening", flush=True)
_, peer = s.recvfrom(100); print("accepted", flush=True)
for line in sys.stdin: s.sendto(line.encode(), peer)
`;
const UDP_CLIENT = `
import socket
c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
c.connect(("${SERVER_IP}", ${PORT})); c.send(b"hello"); print("connected", flush=True)
while True: print("got", c.recv(100).decode().strip(), flush=True)
`;

/**
 * Opens a flow from home A to the server (`tcp` or `udp`); `say(line)` sends a line from the
 * server and tells whether home A got it within 3 s.
 */
async function connect(proto = 'tcp') {
  const [serverCode, clientCode] = proto === 'tcp' ? [SERVER, CLIENT] : [UDP_SERVER, UDP_CLIENT];
  const server = await lab.spawn(`${proto}-server`, 'ip', ['netns', 'exec', lab.ns('srv'), 'python3', '-c', serverCode], /listening/, { stdin: true });
  const client = await lab.spawn(`${proto}-client`, 'ip', ['netns', 'exec', lab.ns('ha'), 'python3', '-c', clientCode], /connected/);
  await until('the server heard from home A', async () => server.output.includes('accepted'), 5000, 50);
  const say = async (line) => {
    server.stdin.write(`${line}\n`);
    return until(`home A got "${line}"`, async () => client.output.includes(`got ${line}`), 3000, 50).then(() => true, () => false);
  };
  const close = async () => Promise.all([lab.stop(server), lab.stop(client)]);
  return { say, close };
}

it('a firewall change keeps the TCP connections it allows, both ways', async () => {
  const tcp = await connect();
  try {
    assert.ok(await tcp.say('before'), 'the connection works');
    await lab.setRouter('a', { nat: 'cone', firewall: 'no-udp' });
    assert.ok(await tcp.say('after-no-udp'), 'the server still reaches the silent home after UDP was blocked');
    await lab.setRouter('a', { nat: 'cone', firewall: 'tls-only' });
    // tls-only lets TCP out only to the web and TURN-over-TLS ports; this connection's port
    // is neither, so the home could not send on it any more, but what the server sends in
    // on a tracked connection still arrives.
    assert.ok(await tcp.say('after-tls-only'), 'a stricter firewall does not forget the tracked connection');
  } finally {
    await tcp.close();
    await lab.setRouter('a', { nat: 'cone' });
  }
});

it('UDP blocked mid-flow: nothing gets through either way', async () => {
  const udp = await connect('udp');
  try {
    assert.ok(await udp.say('before'), 'the flow works');
    await lab.setRouter('a', { nat: 'cone', firewall: 'no-udp' });
    assert.equal(await udp.say('after-no-udp'), false, 'the server no longer reaches the home over UDP');
  } finally {
    await udp.close();
    await lab.setRouter('a', { nat: 'cone' });
  }
});

it('negative control: a router that forgets its mappings cuts the server off from a silent home', async () => {
  const tcp = await connect();
  try {
    assert.ok(await tcp.say('before'), 'the connection works');
    await lab.flushMappings('a');
    await sleep(200);
    assert.equal(await tcp.say('after-flush'), false, 'nothing reaches the home until it sends again');
  } finally {
    await tcp.close();
  }
});
