// Camera, microphone and audio levels, shared by the pages.

export function stopStream(stream) {
  stream?.getTracks().forEach((t) => t.stop());
}

/**
 * Opens camera and microphone, falling back to audio only or video only. Throws an Error
 * whose message can be shown to the user.
 * @returns {Promise<{stream: MediaStream, missing: null | 'audio' | 'video'}>}
 */
export async function openCameraAndMic(video = { width: { ideal: 1280 }, height: { ideal: 720 } }) {
  if (!navigator.mediaDevices?.getUserMedia) {
    throw new Error('This browser cannot access camera and microphone here (HTTPS is required).');
  }
  const attempts = [
    [{ audio: true, video }, null],
    [{ audio: true, video: false }, 'video'],
    [{ audio: false, video }, 'audio'],
  ];
  let lastErr;
  for (const [constraints, missing] of attempts) {
    try {
      return { stream: await navigator.mediaDevices.getUserMedia(constraints), missing };
    } catch (err) {
      lastErr = err;
      if (err?.name === 'NotAllowedError' || err?.name === 'SecurityError') break;
    }
  }
  throw new Error(
    lastErr?.name === 'NotAllowedError'
      ? 'Camera and microphone access was denied. Allow it in the browser and try again.'
      : `Cannot open camera or microphone (${lastErr?.name ?? 'unknown error'}).`,
  );
}

// Audio level meters, on one timer. In a call no WebAudio runs: an AudioContext with an
// analyser per remote track cost ~0.1 of a CPU core per two pages on this 2-core machine
// (bench/sfu/browsers.mjs, docs/BENCHMARKS.md "SFU page vs full mesh"). Levels come from what
// WebRTC measures anyway:
// - remote participants: the level each RTP packet's audio-level header extension carries
//   (RFC 6464), per source (RTCRtpReceiver.getSynchronizationSources);
// - our own microphone in a call: the sender's `media-source` audioLevel (RTCRtpSender.getStats);
// - the lobby preview only (no call yet): an analyser on a WebAudio graph, closed with it.
let audioCtx = null;
const meters = new Set();
let meterTimer = 0;
const METER_INTERVAL_MS = 100;

function context() {
  if (!audioCtx) audioCtx = new AudioContext();
  if (audioCtx.state === 'suspended') audioCtx.resume().catch(() => {});
  return audioCtx;
}

function addMeter(meter) {
  meters.add(meter);
  if (!meterTimer) meterTimer = setInterval(measure, METER_INTERVAL_MS);
  return meter;
}

/** Calls `onLevel(rms 0..1)` ten times a second for a local `stream`'s audio; null without audio. */
export function levelMeter(stream, onLevel) {
  if (!stream?.getAudioTracks().length) return null;
  const source = context().createMediaStreamSource(stream);
  const analyser = context().createAnalyser();
  analyser.fftSize = 512;
  source.connect(analyser);
  const data = new Uint8Array(analyser.fftSize);
  const read = () => {
    analyser.getByteTimeDomainData(data);
    let sum = 0;
    for (const v of data) {
      const x = (v - 128) / 128;
      sum += x * x;
    }
    return Math.sqrt(sum / data.length);
  };
  return addMeter({ read, source, onLevel });
}

/**
 * Calls `onLevel(0..1)` ten times a second with the level of the audio `receiver` gets
 * (linear, 1 = full scale: `RTCRtpSynchronizationSource.audioLevel`); 0 while nothing arrives.
 */
export function receiverMeter(receiver, onLevel) {
  if (receiver?.track?.kind !== 'audio' || typeof receiver.getSynchronizationSources !== 'function') return null;
  return addMeter({ read: () => receiver.getSynchronizationSources()[0]?.audioLevel ?? 0, onLevel });
}

/**
 * Calls `onLevel(0..1)` ten times a second with the level of the audio we send, read about
 * three times a second from the sender `currentSender()` returns (a function: the page may
 * replace its connection); 0 without one.
 */
export function senderMeter(currentSender, onLevel) {
  let level = 0;
  let pending = false;
  let ticks = 0;
  const read = () => {
    // getStats is asynchronous and costs more than a synchronous read: every third tick.
    const sender = currentSender();
    if (!sender) return 0;
    if (!pending && ticks++ % 3 === 0) {
      pending = true;
      sender.getStats().then((report) => {
        report.forEach((s) => { if (s.type === 'media-source' && s.kind === 'audio') level = s.audioLevel ?? 0; });
      }, () => {}).finally(() => { pending = false; });
    }
    return level;
  };
  return addMeter({ read, onLevel });
}

export function dropMeter(meter) {
  if (!meter) return;
  meters.delete(meter);
  try {
    meter.source?.disconnect();
  } catch {
    /* already disconnected */
  }
  if (!meters.size) {
    clearInterval(meterTimer);
    meterTimer = 0;
  }
  // Without WebAudio meters the context would keep rendering (and costing CPU) for nothing.
  if (audioCtx && ![...meters].some((m) => m.source)) {
    audioCtx.close().catch(() => {});
    audioCtx = null;
  }
}

function measure() {
  for (const m of meters) m.onLevel(m.read());
}
