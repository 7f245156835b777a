// The HTTP side of `signal` as browsers really use it: HTTP/2 over TLS (where the host is in
// `:authority`, not in a `Host` header) and HTTP/1.1, reached by a name other than localhost.
//
// Guards two defects found by trying the server as a new user would (issue 8):
//   - /api/ice-servers answered `turn:localhost:…` to every HTTP/2 client, so a browser on
//     another machine got no usable STUN/TURN server;
//   - text files went out without `charset=utf-8`, so a page without <meta charset> was decoded
//     as windows-1252 and a UTF-8 script with non-ASCII characters did not parse.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import https from 'node:https';
import { operatorHeaders, startServer } from '../lib/server.mjs';

// An external relay (no embedded one: its port 3478 would clash between test files): the
// server only mints credentials for it, with `{host}` standing for the name the browser used.
const EXTERNAL_TURN = ['--turn-url', 'turn:{host}:3478?transport=udp', '--turn-secret', 'test-secret'];

function h2Get(port, path, authority, extraHeaders = {}) {
  return new Promise((resolve, reject) => {
    const session = http2.connect(`https://127.0.0.1:${port}`, { rejectUnauthorized: false });
    session.on('error', reject);
    const req = session.request({ ':path': path, ':authority': authority, ...extraHeaders });
    let body = '';
    let headers;
    req.setEncoding('utf8');
    req.on('response', (h) => (headers = h));
    req.on('data', (chunk) => (body += chunk));
    req.on('end', () => {
      session.close();
      resolve({ status: headers[':status'], headers, body, alpn: session.alpnProtocol });
    });
    req.on('error', reject);
    req.end();
  });
}

function h1Get(port, path, host) {
  return new Promise((resolve, reject) => {
    const req = https.get(
      { host: '127.0.0.1', port, path, headers: { host }, servername: 'call.test', rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk) => (body += chunk));
        res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body }));
      },
    );
    req.on('error', reject);
  });
}

const turnUrls = (body) => JSON.parse(body).iceServers.flatMap((s) => s.urls);

describe('ICE servers name the host the browser used', () => {
  let server;
  before(async () => {
    server = await startServer({ tls: true, args: EXTERNAL_TURN });
  });
  after(() => server?.stop());

  it('over HTTP/2 (:authority)', async () => {
    const res = await h2Get(server.port, '/api/ice-servers', `call.test:${server.port}`);
    assert.equal(res.alpn, 'h2', 'the server speaks HTTP/2 to a client that offers it');
    assert.equal(res.status, 200);
    assert.deepEqual(turnUrls(res.body), ['turn:call.test:3478?transport=udp']);
    assert.equal(res.headers['cache-control'], 'no-store');
  });

  it('over HTTP/1.1 (Host)', async () => {
    const res = await h1Get(server.port, '/api/ice-servers', `call.test:${server.port}`);
    assert.equal(res.status, 200);
    assert.deepEqual(turnUrls(res.body), ['turn:call.test:3478?transport=udp']);
  });

  it('refuses a host that is not a name', async () => {
    const res = await h1Get(server.port, '/api/ice-servers', 'evil.test/x?');
    assert.equal(res.status, 400);
    assert.match(res.body, /--public-host/);
  });
});

describe('--public-host overrides the request', () => {
  let server;
  before(async () => {
    server = await startServer({ tls: true, args: [...EXTERNAL_TURN, '--public-host', 'relay.example'] });
  });
  after(() => server?.stop());

  it('for HTTP/2 and HTTP/1.1 alike', async () => {
    const h2 = await h2Get(server.port, '/api/ice-servers', `call.test:${server.port}`);
    const h1 = await h1Get(server.port, '/api/ice-servers', 'other.test');
    assert.deepEqual(turnUrls(h2.body), ['turn:relay.example:3478?transport=udp']);
    assert.deepEqual(turnUrls(h1.body), ['turn:relay.example:3478?transport=udp']);
  });
});

describe('text is served as UTF-8', () => {
  let server;
  before(async () => {
    server = await startServer({ tls: true });
  });
  after(() => server?.stop());

  for (const [path, type] of [
    ['/', 'text/html'],
    ['/index.html', 'text/html'],
    ['/app.js', 'text/javascript'],
    ['/style.css', 'text/css'],
    ['/vendor/socket.io.min.js', 'text/javascript'],
  ]) {
    it(`${path} → ${type}; charset=utf-8`, async () => {
      const res = await h2Get(server.port, path, `call.test:${server.port}`);
      assert.equal(res.status, 200);
      assert.equal(res.headers['content-type'], `${type}; charset=utf-8`);
    });
  }

  it('JSON and binary types are left alone', async () => {
    const res = await h2Get(server.port, '/api/stats', `call.test:${server.port}`, operatorHeaders);
    assert.equal(res.headers['content-type'], 'application/json');
  });
});
