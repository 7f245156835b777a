// Recording a call in the browser (docs/recording.md), the pure parts: which format to
// record in, and the upload queue. Chunks (one a second from MediaRecorder) are uploaded in
// order; the server's answer says which chunk it wants next, so a retry after a lost answer
// is harmless and a reconnect resumes exactly where the server is. Nothing recorded is
// dropped while the page lives: a chunk leaves the queue only when the server has it.
// lib/record-call.js does the I/O.

/** What MediaRecorder should write, best first: MP4 (H.264 + Opus) plays everywhere; WebM else. */
export const RECORDING_TYPES = [
  'video/mp4;codecs=avc1,opus',
  'video/webm;codecs=vp9,opus',
  'video/webm;codecs=vp8,opus',
  'video/webm',
];

/**
 * The first type this browser records (`isTypeSupported` is MediaRecorder's), or one forced
 * with `prefer` ('webm' or 'mp4') when the browser has it.
 */
export function pickType(isTypeSupported, prefer = null) {
  const candidates = prefer ? RECORDING_TYPES.filter((t) => t.includes(`/${prefer}`)) : RECORDING_TYPES;
  return candidates.find((t) => isTypeSupported(t)) ?? RECORDING_TYPES.find((t) => isTypeSupported(t)) ?? null;
}

/** An upload: chunks waiting (oldest first, numbered from 0) and what the server has. */
export function createUpload() {
  return { queue: [], recorded: 0, stored: 0, bytes: 0, failures: 0, error: null, done: false };
}

/** MediaRecorder gave the next chunk. */
export function chunkRecorded(upload, size) {
  return { ...upload, queue: [...upload.queue, { seq: upload.recorded, size }], recorded: upload.recorded + 1, bytes: upload.bytes + size };
}

/** The chunk to send now, if any. */
export function nextToSend(upload) {
  return upload.error ? null : upload.queue[0] ?? null;
}

/**
 * The server answered a chunk (or said where it is): it has every chunk before `next`.
 * A 409 `out_of_order` carries `next` too, so both go through here. A server that says it
 * has less than it acknowledged before lost chunks we no longer hold: that is final.
 */
export function serverHas(upload, next) {
  if (next < upload.stored) return refused(upload, `the server lost chunks ${next}–${upload.stored - 1}`);
  return { ...upload, queue: upload.queue.filter((c) => c.seq >= next), stored: next, failures: 0 };
}

/** A send failed for a reason that may pass (network, server restarting): wait and retry. */
export function sendFailed(upload) {
  return { ...upload, failures: upload.failures + 1 };
}

/** How long to wait before the next try after `failures` failures in a row, ms. */
export function retryDelay(failures) {
  return failures === 0 ? 0 : Math.min(5000, 250 * 2 ** Math.min(failures - 1, 5));
}

/** The server refused for good (quota, too large, unknown): stop sending; what it has stays. */
export function refused(upload, error) {
  return { ...upload, error };
}

/** Everything recorded is on the server. */
export function allStored(upload) {
  return upload.queue.length === 0 && upload.stored === upload.recorded;
}

/**
 * What to do with a recording a page left unfinished (a reload, a crash of the tab), from
 * what the server says of it (`null`: it does not know the id) and the chunk numbers kept in
 * the browser: forget it (unknown, or finished already: the server's idle sweep finishes
 * one nobody sends to), or send the kept chunks from the server's `next` on, as long as
 * they follow one another, and finish it.
 */
export function resumePlan(server, kept) {
  if (server?.state !== 'recording' || !Number.isInteger(server.next)) return { action: 'forget', send: [] };
  const send = [];
  for (const seq of [...kept].sort((a, b) => a - b)) {
    if (seq < server.next) continue;
    if (seq !== server.next + send.length) break; // a gap: nothing after it can be appended
    send.push(seq);
  }
  return { action: 'finish', send };
}
