// Plays back a recording made in the browser (docs/recording.md): /recording.html?id=…
// The file is served with HTTP Range requests, so the player can seek in it.
const $ = (id) => document.getElementById(id);
const id = new URLSearchParams(location.search).get('id') ?? '';

function fail(text) {
  $('error').textContent = text;
  $('error').hidden = false;
}

async function show() {
  if (!/^[0-9a-f]{32}$/.test(id)) return fail('This link names no recording.');
  const res = await fetch(`/api/recordings/${id}`, { cache: 'no-store' });
  const meta = await res.json().catch(() => ({}));
  if (!res.ok) return fail(meta.error?.message ?? `The server answered ${res.status}.`);
  if (meta.state !== 'finished') return fail('This recording is still being made; reload in a moment.');
  $('player').src = meta.file;
  $('download').href = meta.file;
  $('download').download = `recording-${meta.room ?? id}.${meta.mime.includes('mp4') ? 'mp4' : 'webm'}`;
  const when = new Date(meta.created * 1000).toLocaleString();
  const length = meta.duration_ms ? ` · ${(meta.duration_ms / 1000).toFixed(1)} s` : '';
  $('facts').textContent = `${meta.room ? `Room ${meta.room} · ` : ''}${when}${length} · ${(meta.bytes / 1e6).toFixed(1)} MB · ${meta.mime}`;
  $('recording').hidden = false;
}

show().catch((err) => fail(String(err)));
