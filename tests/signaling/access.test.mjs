// Access control over HTTP (docs/security.md), against the real server: which web pages may
// open signaling connections (Origin), the operator endpoints' token, and the per-address
// budget for TURN credentials. socket.io clients v4 and v2, as browsers' pages would be.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';

import { OPERATOR_TOKEN, startServer } from '../lib/server.mjs';

const require = createRequire(import.meta.url);
const clients = { v4: require('socket.io-client'), v2: require('socket.io-client-v2') };
const ALLOWED = 'https://app.example';

let server;
let closed;

before(async () => {
  server = await startServer({ args: ['--allow-origin', ALLOWED] });
  closed = await startServer({ operatorToken: null });
});
after(async () => {
  await server?.stop();
  await closed?.stop();
});

/** Connects with `origin` as a browser would send it (none: a client that is not a browser). */
function connect(version, url, { origin, transport = 'websocket' } = {}) {
  const socket = clients[version](url, {
    transports: [transport],
    forceNew: true,
    reconnection: false,
    extraHeaders: origin ? { origin } : {},
  });
  return new Promise((resolve) => {
    const timer = setTimeout(() => done('timeout'), 5000);
    const done = (outcome) => {
      clearTimeout(timer);
      socket.close();
      resolve(outcome);
    };
    socket.once('connect', () => done('connected'));
    socket.once('connect_error', () => done('refused'));
    socket.once('error', () => done('refused')); // v2 reports a refused upgrade here
  });
}

describe('Origin of signaling connections', () => {
  for (const version of ['v4', 'v2']) {
    for (const transport of ['websocket', 'polling']) {
      test(`${version} over ${transport}: another site's page is refused, ours and allowed ones connect`, async () => {
        const own = server.url;
        assert.equal(await connect(version, server.url, { origin: 'https://evil.example', transport }), 'refused');
        assert.equal(await connect(version, `${server.url}/sfu`, { origin: 'https://evil.example', transport }), 'refused');
        assert.equal(await connect(version, server.url, { origin: 'null', transport }), 'refused');
        assert.equal(await connect(version, server.url, { origin: own, transport }), 'connected');
        assert.equal(await connect(version, `${server.url}/sfu`, { origin: own, transport }), 'connected');
        assert.equal(await connect(version, server.url, { origin: ALLOWED, transport }), 'connected');
        assert.equal(await connect(version, server.url, { transport }), 'connected', 'no Origin: not a browser');
      });
    }
  }

  test('the refusal says why', async () => {
    const res = await fetch(`${server.url}/socket.io/?EIO=4&transport=polling`, { headers: { origin: 'https://evil.example' } });
    assert.equal(res.status, 403);
    assert.match(await res.text(), /origin https:\/\/evil\.example may not open signaling connections.*allowed_origins/);
  });
});

describe('operator endpoints', () => {
  for (const path of ['/api/rooms', '/api/stats', '/metrics']) {
    test(`${path} needs the operator token`, async () => {
      const none = await fetch(`${server.url}${path}`);
      assert.equal(none.status, 401);
      assert.equal(none.headers.get('www-authenticate'), 'Bearer');
      for (const authorization of [`Bearer ${OPERATOR_TOKEN}x`, `Bearer ${OPERATOR_TOKEN.slice(1)}`, `Basic ${OPERATOR_TOKEN}`, 'Bearer ']) {
        assert.equal((await fetch(`${server.url}${path}`, { headers: { authorization } })).status, 401, authorization);
      }
      const ok = await fetch(`${server.url}${path}`, { headers: { authorization: `Bearer ${OPERATOR_TOKEN}` } });
      assert.equal(ok.status, 200);
      if (path === '/metrics') assert.match(await ok.text(), /^# HELP /);
      else assert.equal(typeof (await ok.json()), 'object');
    });

    test(`${path} is off without an operator token`, async () => {
      const res = await fetch(`${closed.url}${path}`, { headers: { authorization: `Bearer ${OPERATOR_TOKEN}` } });
      assert.equal(res.status, 403);
      assert.match(await res.text(), /operator endpoints are off: set \[access\] operator_token/);
    });
  }
});

describe('ICE servers budget', () => {
  test('a burst per address, then 429 with Retry-After; another address has its own', async () => {
    // The test talks to the server over loopback, as a proxy on the server's machine would:
    // the client's address is the proxy's last X-Forwarded-For entry.
    const get = (client) => fetch(`${closed.url}/api/ice-servers`, { headers: client ? { 'x-forwarded-for': `198.51.100.1, ${client}` } : {} });
    const statuses = [];
    for (let i = 0; i < 20; i++) statuses.push((await get('192.0.2.1')).status);
    assert.deepEqual(statuses, Array(20).fill(200));
    const refused = await get('192.0.2.1');
    assert.equal(refused.status, 429);
    assert.ok(Number(refused.headers.get('retry-after')) >= 1);
    assert.match(await refused.text(), /too many requests for ICE servers/);
    assert.equal((await get('192.0.2.7')).status, 200, 'another address');
    // Loopback clients (or a proxy that does not say whom it serves) have no budget.
    for (let i = 0; i < 25; i++) assert.equal((await get()).status, 200);
    // The page itself (and the server) go on: other routes are not limited.
    assert.equal((await fetch(`${closed.url}/healthz`)).status, 200);
  });
});
