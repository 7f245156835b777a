// The recordings upload API (docs/recording.md) with bad and repeated input: chunks in order,
// a repeated chunk answered without being stored twice, a gap refused with where to resume,
// only the upload key adds to a recording, sizes and types refused before the body is read,
// unknown ids, a live WebM made seekable (checked with ffprobe), abandoned recordings finished
// by the server, deletion, the operator's list, Range requests on the finished file; with join
// tokens, a token for the room to start, and chunks that need none (they outlive it).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { operatorHeaders, signalBin, startServer } from '../lib/server.mjs';
import { until } from '../lib/browser.mjs';

const SECRET = 'recordings-test-secret-0123456789abcdef';
const IDLE_SECONDS = 2;
let open;
let closed;
let scratch;

before(async () => {
  scratch = mkdtempSync(path.join(tmpdir(), 'recordings-test-'));
  const config = path.join(scratch, 'signal.toml');
  writeFileSync(config, `[recordings]\nidle_seconds = ${IDLE_SECONDS}\n`);
  open = await startServer({ args: ['-c', config] });
  closed = await startServer({ args: ['--auth-secret', SECRET] });
});

after(async () => {
  await open?.stop();
  await closed?.stop();
  rmSync(scratch, { recursive: true, force: true });
});

async function create(server, body = { mime: 'video/webm;codecs=vp8,opus', room: 'r1' }, headers = {}) {
  const res = await fetch(`${server.url}/api/recordings`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
  return { status: res.status, body: await res.json() };
}

/** PUTs a chunk with the recording's upload key, another `key`, or none (`null`). */
async function put(server, recording, seq, bytes, key = recording.upload_key) {
  const headers = key === null ? {} : { 'x-upload-key': key };
  const res = await fetch(`${server.url}/api/recordings/${recording.id}/chunks/${seq}`, { method: 'PUT', headers, body: bytes });
  return { status: res.status, body: await res.json().catch(() => null) };
}

/**
 * A PUT that declares `length` bytes but sends only the first KiB and waits: the server must
 * refuse from the declared length, before reading the body.
 */
function putDeclaring(server, recording, length) {
  return new Promise((resolve, reject) => {
    const req = http.request(`${server.url}/api/recordings/${recording.id}/chunks/0`, {
      method: 'PUT',
      headers: { 'content-length': length, 'x-upload-key': recording.upload_key },
    }, (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode, body: JSON.parse(body) }));
    });
    req.on('error', reject);
    req.write(Buffer.alloc(1024));
  });
}

async function finish(server, recording, key = recording.upload_key) {
  const res = await fetch(`${server.url}/api/recordings/${recording.id}/finish`, { method: 'POST', headers: { 'x-upload-key': key } });
  return { status: res.status, body: await res.json() };
}

const state = async (server, id) => (await fetch(`${server.url}/api/recordings/${id}`)).json();

function token(identity, { room = 'r1', ttl = '1h' } = {}) {
  return execFileSync(signalBin, ['token', '--room', room, '--identity', identity, '--ttl', ttl, '--secret', SECRET], { encoding: 'utf8' }).trim();
}

describe('recordings API', () => {
  test('chunks append in order; a repeat is answered, a gap refused with where to resume', async () => {
    const { status, body: rec } = await create(open);
    assert.equal(status, 201);
    assert.match(rec.id, /^[0-9a-f]{32}$/);
    assert.match(rec.upload_key, /^[0-9a-f]{32}$/);
    assert.equal(rec.next, 0);
    assert.deepEqual(await put(open, rec, 0, Buffer.from('aaaa')), { status: 200, body: { next: 1 } });
    assert.deepEqual(await put(open, rec, 0, Buffer.from('aaaa')), { status: 200, body: { next: 1 } }, 'a retry');
    const gap = await put(open, rec, 2, Buffer.from('cc'));
    assert.equal(gap.status, 409);
    assert.equal(gap.body.error.code, 'out_of_order');
    assert.equal(gap.body.error.next, 1);
    assert.deepEqual(await put(open, rec, 1, Buffer.from('bbb')), { status: 200, body: { next: 2 } });
    const empty = await put(open, rec, 2, Buffer.alloc(0));
    assert.equal(empty.status, 400);
    assert.equal(empty.body.error.code, 'empty_chunk');
    const now = await state(open, rec.id);
    assert.deepEqual([now.state, now.next, now.bytes], ['recording', 2, 7]);
    assert.equal(now.upload_key, undefined, 'the key is never shown again');
    assert.equal(readFileSync(path.join(open.recordingsDir, `${rec.id}.part`), 'utf8'), 'aaaabbb', 'no duplicate, no gap');
  });

  test('only the upload key adds, finishes or deletes', async () => {
    const { body: rec } = await create(open);
    for (const key of [null, '', '0'.repeat(32), rec.upload_key.slice(1)]) {
      const refused = await put(open, rec, 0, Buffer.from('x'), key);
      assert.equal(refused.status, 403, String(key));
      assert.equal(refused.body.error.code, 'not_yours');
    }
    assert.equal((await finish(open, rec, 'wrong')).status, 403);
    assert.equal((await fetch(`${open.url}/api/recordings/${rec.id}`, { method: 'DELETE', headers: { 'x-upload-key': 'wrong' } })).status, 403);
    assert.equal((await fetch(`${open.url}/api/recordings/${rec.id}`, { method: 'DELETE' })).status, 401, 'without a key: the operator only');
    assert.equal((await state(open, rec.id)).next, 0);
  });

  test('bad input: type, room, size (before the body is read), unknown ids, finishing nothing', async () => {
    for (const mime of ['text/html', 'video/webm<script>', '']) {
      const { status, body } = await create(open, { mime });
      assert.equal(status, 400, mime);
      assert.equal(body.error.code, 'bad_type');
    }
    assert.equal((await create(open, { mime: 'video/webm', room: '../etc' })).body.error.code, 'bad_room');
    const garbage = await fetch(`${open.url}/api/recordings`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{' });
    assert.ok(garbage.status >= 400 && garbage.status < 500, `malformed JSON: ${garbage.status}`);
    const { body: rec } = await create(open);
    const big = await putDeclaring(open, rec, 16 * 1024 * 1024 + 2);
    assert.equal(big.status, 413);
    assert.equal(big.body.error.code, 'chunk_too_large');
    assert.equal((await state(open, rec.id)).next, 0);
    assert.equal(existsSync(path.join(open.recordingsDir, `${rec.id}.part`)), false, 'nothing written');
    const unknown = { id: '0'.repeat(32), upload_key: 'k' };
    assert.equal((await put(open, unknown, 0, Buffer.from('x'))).status, 404);
    assert.equal((await fetch(`${open.url}/api/recordings/${unknown.id}`)).status, 404);
    assert.equal((await finish(open, { id: 'made-up' })).status, 404);
    assert.equal((await fetch(`${open.url}/api/recordings/..%2F..%2Fetc%2Fpasswd/file`)).status, 404);
    const nothing = await finish(open, rec);
    assert.equal(nothing.status, 400);
    assert.equal(nothing.body.error.code, 'empty');
    assert.equal((await fetch(`${open.url}/api/recordings/${rec.id}/file`)).status, 409, 'not finished yet');
  });

  test('open recordings per owner are limited', async () => {
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

  test('a live WebM is made seekable: Duration and Cues, to ffprobe', async () => {
    // A live WebM as a browser writes it (unknown sizes, no Duration, no Cues), 3 s.
    const live = path.join(scratch, 'live.webm');
    execFileSync('ffmpeg', ['-v', 'error', '-f', 'lavfi', '-i', 'testsrc=size=320x240:rate=15:duration=3', '-f', 'lavfi', '-i', 'sine=duration=3',
      '-c:v', 'libvpx', '-g', '15', '-c:a', 'libopus', '-live', '1', '-f', 'webm', '-y', live]);
    const probe = (file) => JSON.parse(execFileSync('ffprobe', ['-v', 'error', '-show_entries', 'format=duration', '-of', 'json', file], { encoding: 'utf8' })).format.duration;
    assert.equal(probe(live), undefined, 'the live file has no duration');
    const bytes = readFileSync(live);
    const { body: rec } = await create(open);
    const half = Math.floor(bytes.length / 2);
    await put(open, rec, 0, bytes.subarray(0, half));
    await put(open, rec, 1, bytes.subarray(half));
    const done = await finish(open, rec);
    assert.equal(done.status, 200);
    assert.ok(Math.abs(done.body.duration_ms - 3000) <= 100, `duration ${done.body.duration_ms} ms`);
    const file = path.join(open.recordingsDir, `${rec.id}.webm`);
    assert.ok(Math.abs(Number(probe(file)) - 3) <= 0.1, `ffprobe: ${probe(file)}`);
    const CUES = Buffer.from([0x1c, 0x53, 0xbb, 0x6b]);
    assert.equal(bytes.includes(CUES), false, 'the live file has no Cues');
    assert.equal(readFileSync(file).includes(CUES), true, 'the finished one has');
    const seek = execFileSync('ffmpeg', ['-v', 'error', '-ss', '2', '-i', file, '-frames:v', '1', '-f', 'null', '-'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    assert.equal(seek.trim(), '');
  });

  test('a recording nobody finishes is finished by the server after the idle time', async () => {
    const { body: rec } = await create(open, { mime: 'video/mp4;codecs=avc1,opus' });
    await put(open, rec, 0, Buffer.from('abc'));
    const { body: empty } = await create(open);
    const done = await until('finished by the server', async () => (await state(open, rec.id)).state === 'finished', (IDLE_SECONDS + 5) * 1000, 250);
    assert.ok(done);
    assert.equal(readFileSync(path.join(open.recordingsDir, `${rec.id}.mp4`), 'utf8'), 'abc');
    await until('an empty one is dropped', async () => (await fetch(`${open.url}/api/recordings/${empty.id}`)).status === 404, (IDLE_SECONDS + 5) * 1000, 250);
  });

  test('finished: served with Range and nosniff, listed for the operator, deleted', async () => {
    const { body: rec } = await create(open, { mime: 'video/mp4;codecs=avc1,opus' });
    await put(open, rec, 0, Buffer.from('0123456789'));
    const finished = await finish(open, rec);
    assert.equal(finished.body.state, 'finished');
    assert.equal(finished.body.file, `/api/recordings/${rec.id}/file`);
    assert.equal((await finish(open, rec)).status, 200, 'finishing twice is harmless');
    assert.equal((await put(open, rec, 1, Buffer.from('x'))).status, 409);
    const range = await fetch(`${open.url}${finished.body.file}`, { headers: { range: 'bytes=2-5' } });
    assert.equal(range.status, 206);
    assert.equal(range.headers.get('content-type'), 'video/mp4');
    assert.equal(range.headers.get('x-content-type-options'), 'nosniff');
    assert.equal(await range.text(), '2345');
    assert.equal((await fetch(`${open.url}/api/recordings`)).status, 401);
    const list = await (await fetch(`${open.url}/api/recordings`, { headers: operatorHeaders })).json();
    const listed = list.recordings.find((r) => r.id === rec.id);
    assert.ok(listed.owner.startsWith('address:'));
    assert.equal(listed.upload_key, undefined);
    const deleted = await fetch(`${open.url}/api/recordings/${rec.id}`, { method: 'DELETE', headers: { 'x-upload-key': rec.upload_key } });
    assert.equal(deleted.status, 204);
    assert.equal((await fetch(`${open.url}${finished.body.file}`)).status, 404);
    assert.equal(existsSync(path.join(open.recordingsDir, `${rec.id}.mp4`)), false);
  });

  test('with join tokens: a token for the room to start; chunks need only the upload key', async () => {
    const refused = await create(closed);
    assert.equal(refused.status, 401);
    assert.equal(refused.body.error.code, 'token_required');
    const ann = { authorization: `Bearer ${token('ann')}` };
    assert.equal((await create(closed, { mime: 'video/webm', room: 'r2' }, ann)).body.error.code, 'room_not_allowed');
    assert.equal((await create(closed, { mime: 'video/webm' }, ann)).body.error.code, 'room_not_allowed', 'a token names a room: so must the recording');
    const { status, body: rec } = await create(closed, { mime: 'video/webm', room: 'r1' }, ann);
    assert.equal(status, 201);
    // Chunks and finishing take the upload key alone: an hour-long recording outlives its token.
    assert.equal((await put(closed, rec, 0, Buffer.from('x'))).status, 200);
    assert.equal((await finish(closed, rec)).status, 200);
  });
});
