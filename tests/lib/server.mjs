// Starts the real `signal` binary on a free loopback port and stops it afterwards.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const signalBin = process.env.SIGNAL_BIN ?? path.join(repoRoot, 'target/debug/signal');
/** The operator token test servers run with (docs/security.md): GET /api/rooms and /api/stats need it. */
export const OPERATOR_TOKEN = 'test-operator-token-0123456789';
export const operatorHeaders = { authorization: `Bearer ${OPERATOR_TOKEN}` };

/**
 * @param {object} [options]
 * @param {boolean} [options.tls] serve HTTPS with a generated certificate (default: plain HTTP)
 * @param {string} [options.turnConfig] start the embedded TURN relay from this file (default: no relay,
 *   so that parallel test files do not compete for port 3478)
 * @param {string} [options.listen] listen address (default 127.0.0.1:0; the page is always
 *   reached on 127.0.0.1)
 * @param {string} [options.publicDir] the web root (default: the repository's public/)
 * @param {string[]} [options.args] extra flags
 * @param {string|null} [options.operatorToken] the operator token (default OPERATOR_TOKEN; null: none)
 * @param {string} [options.recordingsDir] the recordings directory, the caller's (default: a
 *   temporary one, removed on stop)
 * @returns {Promise<{url: string, port: number, proc: import('node:child_process').ChildProcess, recordingsDir: string, logs: () => string,
 *   operator: (path: string) => Promise<any>, stop: () => Promise<void>}>} `operator(path)` GETs an
 *   operator endpoint (e.g. /api/rooms) with the server's operator token and returns its JSON
 */
export async function startServer({ tls = false, turnConfig, listen = '127.0.0.1:0', publicDir = path.join(repoRoot, 'public'), args = [], operatorToken = OPERATOR_TOKEN, recordingsDir: givenRecordingsDir } = {}) {
  const certDir = mkdtempSync(path.join(tmpdir(), 'signal-test-certs-'));
  const recordingsDir = givenRecordingsDir ?? mkdtempSync(path.join(tmpdir(), 'signal-test-recordings-'));
  const flags = ['--listen', listen, '--public-dir', publicDir, '--cert-dir', certDir, '--recordings-dir', recordingsDir, ...(operatorToken ? ['--operator-token', operatorToken] : []), ...args];
  if (!tls) flags.push('--plain-http');
  flags.push(...(turnConfig ? ['--turn-config', turnConfig] : ['--no-turn']));
  const proc = spawn(signalBin, flags, { env: { ...process.env, SIGNAL_LOG: process.env.SIGNAL_LOG ?? 'info' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const port = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`signal did not start within 10 s:\n${output}`)), 10_000);
    const onData = (chunk) => {
      output += chunk;
      const match = output.match(/listening on (?:127\.0\.0\.1|0\.0\.0\.0|\[::\]):(\d+)/);
      if (match) {
        clearTimeout(timer);
        resolve(Number(match[1]));
      }
    };
    proc.stdout.on('data', onData);
    proc.stderr.on('data', onData);
    proc.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`signal exited with ${code}:\n${output}`));
    });
  });
  const scheme = tls ? 'https' : 'http';
  return {
    url: `${scheme}://127.0.0.1:${port}`,
    port,
    proc,
    recordingsDir,
    logs: () => output,
    async operator(pathname) {
      const res = await fetch(`${scheme}://127.0.0.1:${port}${pathname}`, { headers: operatorHeaders });
      if (!res.ok) throw new Error(`GET ${pathname}: ${res.status} ${await res.text()}`);
      return res.json();
    },
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) {
        const exited = new Promise((resolve) => proc.once('exit', resolve));
        proc.kill('SIGTERM');
        const timer = setTimeout(() => proc.kill('SIGKILL'), 5_000);
        await exited;
        clearTimeout(timer);
      }
      rmSync(certDir, { recursive: true, force: true });
      if (!givenRecordingsDir) rmSync(recordingsDir, { recursive: true, force: true });
    },
  };
}
