// Finishing a browser recording: our WebM rewrite (media-out/src/webm/seekable.rs, through the
// real API: POST …/finish, which reads the uploaded file, writes it seekable and fsyncs it)
// against ffmpeg remuxing the same file (`ffmpeg -c copy`, which also writes Duration and
// Cues), in the same run; plus the server's CPU per uploaded MiB. The input is a live WebM as
// a browser writes one (unknown sizes, no Duration, no Cues), made by Debian's ffmpeg.
//
//   cargo build --release -p signal && unshare --net --pid --fork --kill-child --mount-proc \
//     sh -c 'ip link set lo up && SIGNAL_BIN=$PWD/target/release/signal node bench/recording/finish.mjs'
// Knobs: SECONDS=120 (recording length) BITRATE=2M RUNS=5 CHUNK_KIB=1024
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startServer } from '../../tests/lib/server.mjs';

const SECONDS = Number(process.env.SECONDS ?? 120);
const BITRATE = process.env.BITRATE ?? '2M';
const RUNS = Number(process.env.RUNS ?? 5);
const CHUNK = Number(process.env.CHUNK_KIB ?? 1024) * 1024;
const TICK = 100; // clock ticks per second of /proc/<pid>/stat on Linux

const dir = mkdtempSync(path.join(tmpdir(), 'bench-recording-'));
const live = path.join(dir, 'live.webm');
console.log(`making a ${SECONDS} s live WebM (VP8 ${BITRATE} + Opus)…`);
execFileSync('ffmpeg', ['-v', 'error', '-f', 'lavfi', '-i', `testsrc2=size=1280x720:rate=30:duration=${SECONDS}`, '-f', 'lavfi', '-i', `sine=duration=${SECONDS}`,
  '-c:v', 'libvpx', '-deadline', 'realtime', '-cpu-used', '8', '-b:v', BITRATE, '-g', '30', '-c:a', 'libopus', '-live', '1', '-f', 'webm', '-y', live]);
const bytes = readFileSync(live);
console.log(`input: ${(bytes.length / 2 ** 20).toFixed(1)} MiB`);

/** [user, system] CPU seconds of a process. */
const cpuParts = (pid) => {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return [Number(fields[11]) / TICK, Number(fields[12]) / TICK];
};
const cpu = (pid) => cpuParts(pid).reduce((a, b) => a + b);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const server = await startServer();
const ours = [];
const oursCpu = [];
const oursUser = [];
const uploadCpuPerMiB = [];
try {
  for (let run = 0; run < RUNS; run++) {
    const created = await (await fetch(`${server.url}/api/recordings`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ mime: 'video/webm;codecs=vp8,opus' }) })).json();
    const key = { 'x-upload-key': created.upload_key };
    const before = cpu(server.proc.pid);
    for (let seq = 0, at = 0; at < bytes.length; seq++, at += CHUNK) {
      const res = await fetch(`${server.url}/api/recordings/${created.id}/chunks/${seq}`, { method: 'PUT', headers: key, body: bytes.subarray(at, at + CHUNK) });
      if (!res.ok) throw new Error(`chunk ${seq}: ${res.status} ${await res.text()}`);
    }
    uploadCpuPerMiB.push(((cpu(server.proc.pid) - before) * 1000) / (bytes.length / 2 ** 20));
    const cpu0 = cpu(server.proc.pid);
    const user0 = cpuParts(server.proc.pid)[0];
    const t0 = performance.now();
    const res = await fetch(`${server.url}/api/recordings/${created.id}/finish`, { method: 'POST', headers: key });
    ours.push(performance.now() - t0);
    oursCpu.push((cpu(server.proc.pid) - cpu0) * 1000);
    oursUser.push((cpuParts(server.proc.pid)[0] - user0) * 1000);
    const done = await res.json();
    if (!res.ok || Math.abs(done.duration_ms / 1000 - SECONDS) > 1) throw new Error(`finish: ${JSON.stringify(done)}`);
    await fetch(`${server.url}/api/recordings/${created.id}`, { method: 'DELETE', headers: key });
  }
} finally {
  await server.stop();
}

const ffmpeg = [];
const ffmpegCpu = [];
const ffmpegUser = [];
for (let run = 0; run < RUNS; run++) {
  const out = path.join(dir, 'remuxed.webm');
  const t0 = performance.now();
  // -benchmark prints ffmpeg's own user and system time.
  const r = spawnSync('ffmpeg', ['-hide_banner', '-nostats', '-loglevel', 'info', '-benchmark', '-i', live, '-c', 'copy', '-f', 'webm', '-y', out], { encoding: 'utf8' });
  ffmpeg.push(performance.now() - t0);
  if (r.status !== 0) throw new Error(String(r.stderr));
  const [, user, system] = r.stdout.match(/utime=([\d.]+)s stime=([\d.]+)s/) ?? r.stderr.match(/utime=([\d.]+)s stime=([\d.]+)s/);
  ffmpegCpu.push((Number(user) + Number(system)) * 1000);
  ffmpegUser.push(Number(user) * 1000);
  statSync(out);
}
rmSync(dir, { recursive: true, force: true });

const mib = bytes.length / 2 ** 20;
console.log(`\nfinish a ${SECONDS} s WebM (${mib.toFixed(1)} MiB), medians of ${RUNS}:`);
console.log(`  signal finish (rewrite + fsync): ${median(ours).toFixed(0)} ms  (${(mib / (median(ours) / 1000)).toFixed(0)} MiB/s)  runs ${ours.map((x) => x.toFixed(0)).join(' ')}`);
console.log(`  ffmpeg -c copy remux:            ${median(ffmpeg).toFixed(0)} ms  (${(mib / (median(ffmpeg) / 1000)).toFixed(0)} MiB/s)  runs ${ffmpeg.map((x) => x.toFixed(0)).join(' ')}`);
console.log(`  ratio signal/ffmpeg: ${(median(ours) / median(ffmpeg)).toFixed(2)}× wall (ours includes the HTTP round trip and fsync of the file, ffmpeg's no fsync)`);
console.log(`  CPU: signal ${median(oursCpu).toFixed(0)} ms, ffmpeg ${median(ffmpegCpu).toFixed(0)} ms: ${(median(oursCpu) / median(ffmpegCpu)).toFixed(2)}×  (runs ${oursCpu.map((x) => x.toFixed(0)).join(' ')} / ${ffmpegCpu.map((x) => x.toFixed(0)).join(' ')})`);
console.log(`  of which user: signal ${median(oursUser).toFixed(0)} ms, ffmpeg ${median(ffmpegUser).toFixed(0)} ms (the rest is the kernel: reading, writing, fsync)`);
console.log(`upload: server CPU ${median(uploadCpuPerMiB).toFixed(1)} ms per MiB (${CHUNK / 1024} KiB chunks, fsync each)  runs ${uploadCpuPerMiB.map((x) => x.toFixed(1)).join(' ')}`);
