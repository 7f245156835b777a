// The recording upload queue (public/lib/recorder.js): in order, retries harmless, resumes
// where the server is, nothing dropped before the server has it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { allStored, chunkRecorded, createUpload, nextToSend, pickType, refused, resumePlan, retryDelay, sendFailed, serverHas } from '../../public/lib/recorder.js';

test('MP4 first, WebM where MP4 cannot be recorded, or as asked', () => {
  const all = () => true;
  assert.equal(pickType(all), 'video/mp4;codecs=avc1,opus');
  assert.equal(pickType((t) => t.startsWith('video/webm')), 'video/webm;codecs=vp9,opus');
  assert.equal(pickType(all, 'webm'), 'video/webm;codecs=vp9,opus');
  assert.equal(pickType((t) => t.startsWith('video/mp4'), 'webm'), 'video/mp4;codecs=avc1,opus', 'asked for what it cannot: the best it can');
  assert.equal(pickType(() => false), null);
});

test('chunks go in order and leave the queue only when the server has them', () => {
  let u = createUpload();
  u = chunkRecorded(u, 100);
  u = chunkRecorded(u, 120);
  assert.deepEqual(nextToSend(u), { seq: 0, size: 100 });
  u = sendFailed(u);
  assert.deepEqual(nextToSend(u), { seq: 0, size: 100 }, 'a failed send is tried again');
  u = serverHas(u, 1);
  assert.deepEqual(nextToSend(u), { seq: 1, size: 120 });
  assert.equal(u.failures, 0);
  u = chunkRecorded(u, 90);
  // The answer to chunk 1 was lost, but the server had it: a 409 out_of_order for chunk 2
  // (sent after a retry of 1?) or the retry's own answer both say next = 2.
  u = serverHas(u, 2);
  assert.deepEqual(nextToSend(u), { seq: 2, size: 90 });
  assert.equal(allStored(u), false);
  u = serverHas(u, 3);
  assert.equal(nextToSend(u), null);
  assert.equal(allStored(u), true);
  assert.equal(u.bytes, 310);
});

test('resuming after a reconnect: the server says where it is', () => {
  let u = createUpload();
  for (const size of [10, 10, 10, 10]) u = chunkRecorded(u, size);
  // Chunks 0 and 1 made it before the connection dropped; their answers did not.
  u = sendFailed(sendFailed(u));
  u = serverHas(u, 2);
  assert.deepEqual(u.queue.map((c) => c.seq), [2, 3]);
  // A server that forgot acknowledged chunks cannot be repaired from here: stop.
  u = serverHas(u, 1);
  assert.match(u.error, /lost chunks 1–1/);
  assert.equal(nextToSend(u), null);
});

test('backoff grows and stays bounded; a refusal stops sending', () => {
  assert.deepEqual([0, 1, 2, 3, 10].map(retryDelay), [0, 250, 500, 1000, 5000]);
  let u = chunkRecorded(createUpload(), 5);
  u = refused(u, 'quota_exceeded');
  assert.equal(nextToSend(u), null);
  assert.equal(allStored(u), false);
});

test('a recording left by a reload: the kept chunks from where the server is, then finish', () => {
  const recording = (next) => ({ state: 'recording', next });
  assert.deepEqual(resumePlan(recording(3), [5, 3, 4]), { action: 'finish', send: [3, 4, 5] });
  assert.deepEqual(resumePlan(recording(3), [1, 2, 3, 4]), { action: 'finish', send: [3, 4] }, 'what the server has is not sent again');
  assert.deepEqual(resumePlan(recording(3), []), { action: 'finish', send: [] }, 'the server has it all: finish');
  assert.deepEqual(resumePlan(recording(3), [3, 5, 6]), { action: 'finish', send: [3] }, 'nothing after a gap');
  assert.deepEqual(resumePlan(recording(3), [4, 5]), { action: 'finish', send: [] });
  assert.deepEqual(resumePlan({ state: 'finished', next: 9 }, [9]), { action: 'forget', send: [] }, 'finished meanwhile');
  assert.deepEqual(resumePlan(null, [0, 1]), { action: 'forget', send: [] }, 'the server does not know it');
  assert.deepEqual(resumePlan({ state: 'recording' }, [0]), { action: 'forget', send: [] });
});
