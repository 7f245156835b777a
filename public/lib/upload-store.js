// The chunks of browser recordings kept in IndexedDB until the server has them (docs/recording.md):
// a reload, a crash of the tab or a closed laptop loses nothing that was recorded, since the
// next load of either page sends the rest and finishes the file (lib/record-call.js
// resumeInterrupted). Without IndexedDB (some private modes) the store keeps nothing and
// recording works as before, in memory.

const DB_NAME = 'rtc-call-recordings';
const UPLOADS = 'uploads'; // {id, uploadKey, type, room, created}
const CHUNKS = 'chunks';   // {id, seq, blob}, keyed [id, seq]

/** The store, or one that keeps nothing when IndexedDB cannot be opened. */
export async function openUploadStore() {
  const db = await open().catch(() => null);
  if (!db) return nothingKept();
  const run = (stores, mode, work) => new Promise((resolve, reject) => {
    const tx = db.transaction(stores, mode);
    let result;
    tx.oncomplete = () => resolve(result);
    tx.onerror = tx.onabort = () => reject(tx.error ?? new Error('IndexedDB transaction failed'));
    Promise.resolve(work(tx)).then((r) => { result = r; }, reject);
  });
  const request = (req) => new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
  const range = (id, from = 0) => IDBKeyRange.bound([id, from], [id, Infinity]);
  return {
    kept: true,
    saveUpload: (upload) => run([UPLOADS], 'readwrite', (tx) => { tx.objectStore(UPLOADS).put(upload); }),
    putChunk: (id, seq, blob) => run([CHUNKS], 'readwrite', (tx) => { tx.objectStore(CHUNKS).put({ id, seq, blob }); }),
    uploads: () => run([UPLOADS], 'readonly', (tx) => request(tx.objectStore(UPLOADS).getAll())),
    /** The chunks of `id` the server does not have yet, by number. */
    chunks: (id) => run([CHUNKS], 'readonly', (tx) => request(tx.objectStore(CHUNKS).getAll(range(id)))),
    /** The server has every chunk of `id` before `next`. */
    dropBelow: (id, next) => run([CHUNKS], 'readwrite', (tx) => { tx.objectStore(CHUNKS).delete(IDBKeyRange.bound([id, 0], [id, next], false, true)); }),
    forget: (id) => run([UPLOADS, CHUNKS], 'readwrite', (tx) => {
      tx.objectStore(UPLOADS).delete(id);
      tx.objectStore(CHUNKS).delete(range(id));
    }),
  };
}

function open() {
  return new Promise((resolve, reject) => {
    if (typeof indexedDB === 'undefined') return reject(new Error('no IndexedDB'));
    const req = indexedDB.open(DB_NAME, 1);
    req.onupgradeneeded = () => {
      req.result.createObjectStore(UPLOADS, { keyPath: 'id' });
      req.result.createObjectStore(CHUNKS, { keyPath: ['id', 'seq'] });
    };
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
    req.onblocked = () => reject(new Error('IndexedDB blocked'));
  });
}

function nothingKept() {
  const none = async () => {};
  return { kept: false, saveUpload: none, putChunk: none, uploads: async () => [], chunks: async () => [], dropBelow: none, forget: none };
}
