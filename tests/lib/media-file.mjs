// Checks of recorded media files with Debian's ffprobe and ffmpeg, shared by the recording tests.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';

/**
 * Where the media in `file` ends, from its packets' own timestamps (independent of the
 * duration a muxer or our server wrote into the header): `lastStart`, when the last packet
 * of any stream starts, and `latestEnd`, the latest a stream's last frame can end if it lasts
 * as long as the gap before it. A WebM block carries no length of its own, so a duration in
 * between is right: at 2 fps (a starved recorder) the last frame lasts half a second.
 */
export function packetSpan(file) {
  const rows = execFileSync('ffprobe', ['-v', 'error', '-show_entries', 'packet=stream_index,pts_time,duration_time', '-of', 'csv=p=0', file], { encoding: 'utf8', maxBuffer: 64 << 20 });
  // Per stream: its two latest packet times, and the last packet duration ffprobe gave.
  const streams = new Map();
  for (const row of rows.split('\n')) {
    const [index, text, duration] = row.split(',');
    const pts = Number(text);
    if (!text || !Number.isFinite(pts)) continue;
    const s = streams.get(index) ?? { last: -Infinity, previous: -Infinity, duration: 0 };
    if (pts > s.last) Object.assign(s, { previous: s.last, last: pts });
    else if (pts > s.previous) s.previous = pts;
    if (Number.isFinite(Number(duration))) s.duration = Number(duration);
    streams.set(index, s);
  }
  let lastStart = 0;
  let latestEnd = 0;
  for (const { last, previous, duration } of streams.values()) {
    const gap = Number.isFinite(previous) ? last - previous : 0;
    lastStart = Math.max(lastStart, last);
    latestEnd = Math.max(latestEnd, last + Math.max(gap, duration));
  }
  return { lastStart, latestEnd };
}

/** Rounding between a header's duration and packet times (ms time bases, MP4 ticks). */
const SPAN_SLACK_S = 0.05;

/** Asserts that a duration (`what`, seconds) covers every packet and ends with the last frame. */
export function assertMatchesPackets(seconds, span, what) {
  const text = `${what} ${seconds} s; the last packet starts at ${span.lastStart.toFixed(3)} s and ends by ${span.latestEnd.toFixed(3)} s`;
  assert.ok(seconds >= span.lastStart - SPAN_SLACK_S && seconds <= span.latestEnd + SPAN_SLACK_S, text);
}

/**
 * ffprobe's view and ffmpeg's full decode and seek of `file`: an audio and a video stream, a
 * declared duration that matches the packets (`packetSpan`) and lies within `tolerance` s of
 * `seconds`, decoded end to end and from the middle without an error, and audio that is not
 * silence. Returns the figures.
 */
export function checkMediaFile(file, { seconds, tolerance = 1 }) {
  const probe = JSON.parse(execFileSync('ffprobe', ['-v', 'error', '-show_entries', 'stream=codec_type,codec_name,width,height:format=duration,format_name', '-of', 'json', file], { encoding: 'utf8' }));
  const kinds = probe.streams.map((s) => s.codec_type).sort();
  assert.deepEqual(kinds, ['audio', 'video'], JSON.stringify(probe));
  const duration = Number(probe.format.duration);
  assert.ok(Number.isFinite(duration), `a duration in the file: ${probe.format.duration}`);
  const span = packetSpan(file);
  assertMatchesPackets(duration, span, 'the file says');
  assert.ok(Math.abs(duration - seconds) <= tolerance, `duration ${duration} s for ${seconds.toFixed(1)} s recorded`);
  // The null output keeps the file's own time base (`-enc_time_base -1`): Chromium's MP4 gives
  // every sample a 1-tick duration (time base 1/30000), from which ffmpeg guesses a frame
  // rate for its output and then complains about its own rounding, not about the file.
  const decode = spawnSync('ffmpeg', ['-v', 'error', '-i', file, '-enc_time_base', '-1', '-f', 'null', '-'], { encoding: 'utf8' });
  assert.equal(decode.status, 0);
  assert.equal(decode.stderr.trim(), '', `decodes without an error: ${decode.stderr.slice(0, 600)}`);
  const seek = spawnSync('ffmpeg', ['-v', 'error', '-ss', String(duration / 2), '-i', file, '-frames:v', '1', '-f', 'null', '-'], { encoding: 'utf8' });
  assert.equal(seek.status, 0);
  assert.equal(seek.stderr.trim(), '', 'seeks to the middle');
  const volume = spawnSync('ffmpeg', ['-hide_banner', '-nostats', '-i', file, '-vn', '-af', 'volumedetect', '-f', 'null', '-'], { encoding: 'utf8' });
  const maxVolume = Number(volume.stderr.match(/max_volume: (-?[\d.]+) dB/)?.[1]);
  assert.ok(maxVolume > -40, `the audio is not silent: max ${maxVolume} dB`);
  const video = probe.streams.find((s) => s.codec_type === 'video');
  return { duration, span, maxVolume, codecs: probe.streams.map((s) => s.codec_name).join('+'), format: probe.format.format_name, width: video.width, height: video.height };
}

/**
 * Makes a fake camera and microphone for Chromium (`--use-file-for-fake-video-capture`,
 * `--use-file-for-fake-audio-capture`) that flash white and beep at the same moments: the
 * first 100 ms of every second, over a `seconds`-long loop.
 */
export function flashAndBeep(dir, { seconds = 2, size = '320x240', fps = 15 } = {}) {
  const video = `${dir}/flash.y4m`;
  const audio = `${dir}/beep.wav`;
  execFileSync('ffmpeg', ['-v', 'error', '-y', '-f', 'lavfi', '-i', `color=c=black:s=${size}:r=${fps}:d=${seconds}`,
    '-vf', "drawbox=enable='lt(mod(t,1),0.1)':color=white:t=fill,format=yuv420p", '-f', 'yuv4mpegpipe', video]);
  execFileSync('ffmpeg', ['-v', 'error', '-y', '-f', 'lavfi', '-i', `sine=f=1000:sample_rate=48000:d=${seconds}`,
    '-af', "volume=enable='gte(mod(t,1),0.1)':volume=0", '-ac', '1', audio]);
  return { video, audio };
}

/**
 * Where flashes and beeps start in a recording (seconds), and the offset of each beep from
 * the nearest flash (ms; positive: the sound comes late).
 */
export function flashBeepOffsets(file) {
  const frames = spawnSync('ffmpeg', ['-hide_banner', '-nostats', '-i', file, '-an', '-vf', 'signalstats,metadata=print:key=lavfi.signalstats.YAVG', '-f', 'null', '-'], { encoding: 'utf8', maxBuffer: 64 << 20 });
  const flashes = [];
  let time = null;
  let wasBright = false;
  for (const line of frames.stderr.split('\n')) {
    const t = line.match(/pts_time:([\d.]+)/);
    if (t) time = Number(t[1]);
    const y = line.match(/lavfi\.signalstats\.YAVG=([\d.]+)/);
    if (y && time !== null) {
      const bright = Number(y[1]) > 128;
      if (bright && !wasBright) flashes.push(time);
      wasBright = bright;
    }
  }
  const sound = spawnSync('ffmpeg', ['-hide_banner', '-nostats', '-i', file, '-vn', '-af', 'silencedetect=n=-30dB:d=0.3', '-f', 'null', '-'], { encoding: 'utf8' });
  const beeps = [...sound.stderr.matchAll(/silence_end: ([\d.]+)/g)].map((m) => Number(m[1]));
  const offsets = beeps
    .map((beep) => {
      const nearest = flashes.reduce((best, f) => (Math.abs(f - beep) < Math.abs(best - beep) ? f : best), Infinity);
      return Math.round((beep - nearest) * 1000);
    })
    .filter((ms) => Math.abs(ms) < 500);
  return { flashes, beeps, offsets };
}

export const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted.length ? sorted[Math.floor(sorted.length / 2)] : null;
};
