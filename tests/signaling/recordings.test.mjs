// The recordings upload API (docs/recording.md, docs/protocol.md) with bad and repeated input:
// chunks in order, a repeated chunk answered without being stored twice, a gap refused with
// where to resume, sizes, types, unknown ids, the operator's list, Range requests on the
// finished file; with join tokens, a token and the same user.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import path from 'node:path';

import { operatorHeaders, signalBin, startServer } from '../lib/server.mjs';

const SECRET = 'recordings-test-secret-0123456789abcdef';
let open;
let closed;

before(async () => {
  open = await startServer();
  closed = await startServer({ args: ['--auth-secret', SECRET] });
});

after(async () => {
  await open?.stop();
  await closed?.stop();
});

const json = (body) => ({ method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

async function create(server, body = { mime: 'video/webm;codecs=vp8,opus', room: 'r1' }, headers = {}) {
  const res = await fetch(`${server.url}/api/recordings`, { ...json(body), headers: { 'content-type': 'application/json', ...headers } });
  return { status: res.status, body: await res.json() };
}

async function put(server, id, seq, bytes, headers = {}) {
  const res = await fetch(`${server.url}/api/recordings/${id}/chunks/${seq}`, { method: 'PUT', headers, body: bytes });
  return { status: res.status, body: await res.json().catch(() => null) };
}

function token(identity, room = 'r1') {
  return execFileSync(signalBin, ['token', '--room', room, '--identity', identity, '--secret', SECRET], { encoding: 'utf8' }).trim();
}

describe('recordings API', () => {
  test('chunks append in order; a repeat is answered, a gap refused with where to resume', async () => {
    const { status, body } = await create(open);
    assert.equal(status, 201);
    assert.match(body.id, /^[0-9a-f]{32}$/);
    assert.equal(body.next, 0);
    const id = body.id;
    assert.deepEqual(await put(open, id, 0, Buffer.from('aaaa')), { status: 200, body: { next: 1 } });
    assert.deepEqual(await put(open, id, 0, Buffer.from('aaaa')), { status: 200, body: { next: 1 } }, 'a retry');
    const gap = await put(open, id, 2, Buffer.from('cc'));
    assert.equal(gap.status, 409);
    assert.equal(gap.body.error.code, 'out_of_order');
    assert.equal(gap.body.error.next, 1);
    assert.deepEqual(await put(open, id, 1, Buffer.from('bbb')), { status: 200, body: { next: 2 } });
    const empty = await put(open, id, 2, Buffer.alloc(0));
    assert.equal(empty.status, 400);
    assert.equal(empty.body.error.code, 'empty_chunk');
    const status2 = await (await fetch(`${open.url}/api/recordings/${id}`)).json();
    assert.deepEqual([status2.state, status2.next, status2.bytes], ['recording', 2, 7]);
    assert.equal(readFileSync(path.join(open.recordingsDir, `${id}.part`), 'utf8'), 'aaaabbb', 'no duplicate, no gap');
  });

  test('bad input: type, room, size, unknown ids, finishing nothing', async () => {
    for (const mime of ['text/html', 'video/webm<script>', '']) {
      const { status, body } = await create(open, { mime });
      assert.equal(status, 400, mime);
      assert.equal(body.error.code, 'bad_type');
    }
    assert.equal((await create(open, { mime: 'video/webm', room: '../etc' })).body.error.code, 'bad_room');
    const garbage = await fetch(`${open.url}/api/recordings`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{' });
    assert.ok(garbage.status >= 400 && garbage.status < 500, `malformed JSON: ${garbage.status}`);
    const { body } = await create(open);
    const big = await put(open, body.id, 0, Buffer.alloc(16 * 1024 * 1024 + 2));
    assert.equal(big.status, 413);
    assert.equal(statSync(path.join(open.recordingsDir, `${body.id}.json`)).isFile(), true);
    const unknown = '0'.repeat(32);
    assert.equal((await put(open, unknown, 0, Buffer.from('x'))).status, 404);
    assert.equal((await fetch(`${open.url}/api/recordings/${unknown}`)).status, 404);
    assert.equal((await fetch(`${open.url}/api/recordings/..%2F..%2Fetc%2Fpasswd/file`)).status, 404);
    const nothing = await fetch(`${open.url}/api/recordings/${body.id}/finish`, { method: 'POST' });
    assert.equal(nothing.status, 400);
    assert.equal((await nothing.json()).error.code, 'empty');
    assert.equal((await fetch(`${open.url}/api/recordings/${body.id}/file`)).status, 409, 'not finished yet');
  });

  test('open recordings per user are limited', async () => {
    const server = await startServer();
    try {
      for (let i = 0; i < 4; i++) assert.equal((await create(server)).status, 201);
      const fifth = await create(server);
      assert.equal(fifth.status, 507);
      assert.equal(fifth.body.error.code, 'too_many_open');
    } finally {
      await server.stop();
    }
  });

  test('finished: served with Range, listed for the operator only', async () => {
    const { body } = await create(open, { mime: 'video/mp4;codecs=avc1,opus' });
    await put(open, body.id, 0, Buffer.from('0123456789'));
    const finished = await (await fetch(`${open.url}/api/recordings/${body.id}/finish`, { method: 'POST' })).json();
    assert.equal(finished.state, 'finished');
    assert.equal(finished.file, `/api/recordings/${body.id}/file`);
    const again = await fetch(`${open.url}/api/recordings/${body.id}/finish`, { method: 'POST' });
    assert.equal(again.status, 200, 'finishing twice is harmless');
    assert.equal((await put(open, body.id, 1, Buffer.from('x'))).status, 409);
    const range = await fetch(`${open.url}${finished.file}`, { headers: { range: 'bytes=2-5' } });
    assert.equal(range.status, 206);
    assert.equal(range.headers.get('content-type'), 'video/mp4');
    assert.equal(await range.text(), '2345');
    assert.equal((await fetch(`${open.url}/api/recordings`)).status, 401);
    const list = await (await fetch(`${open.url}/api/recordings`, { headers: operatorHeaders })).json();
    assert.ok(list.recordings.some((r) => r.id === body.id));
  });

  test('with join tokens: a token to start, and only its user adds to it', async () => {
    const refused = await create(closed);
    assert.equal(refused.status, 401);
    const ann = { authorization: `Bearer ${token('ann')}` };
    const other = await create(closed, { mime: 'video/webm', room: 'r2' }, ann);
    assert.equal(other.status, 403);
    assert.equal(other.body.error.code, 'room_not_allowed');
    const { status, body } = await create(closed, { mime: 'video/webm', room: 'r1' }, ann);
    assert.equal(status, 201);
    const eve = { authorization: `Bearer ${token('eve')}` };
    const stolen = await put(closed, body.id, 0, Buffer.from('x'), eve);
    assert.equal(stolen.status, 403);
    assert.equal(stolen.body.error.code, 'not_yours');
    assert.equal((await put(closed, body.id, 0, Buffer.from('x'), ann)).status, 200);
  });
});
