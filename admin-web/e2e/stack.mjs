// The real system on loopback for the end-to-end test: the mock Azure OpenAI upstream, the control
// plane (serving the built console) and one edge, each on a free 127.0.0.1 port, in a temporary
// folder. Binaries come from AIPROXY_BIN_DIR (default <repo>/target/debug); nothing is built here.

import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const BINARIES = ['aiproxy-control-plane', 'aiproxy-edge', 'mock-azure'];

/** A problem with the test's surroundings, reported without a stack trace. */
export class SetupError extends Error {}

export function locateBinaries(repo) {
  const dir = process.env.AIPROXY_BIN_DIR || join(repo, 'target', 'debug');
  const missing = BINARIES.filter((b) => !existsSync(join(dir, b)));
  if (missing.length) {
    throw new SetupError(
      `missing ${missing.join(', ')} in ${dir}: build them first (cargo build --workspace --bins) or point AIPROXY_BIN_DIR at the folder that holds them`,
    );
  }
  return Object.fromEntries(BINARIES.map((b) => [b, join(dir, b)]));
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A child environment without Azure identity variables or the caller's AIPROXY_* settings. */
function cleanEnv(extra) {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (/^(AZURE_|IDENTITY_|MSI_|AIPROXY_)/.test(k)) continue;
    env[k] = v;
  }
  return { ...env, RUST_LOG: process.env.RUST_LOG || 'info', ...extra };
}

export class Stack {
  constructor(repo) {
    this.repo = repo;
    this.bins = locateBinaries(repo);
    this.tmp = mkdtempSync(join(tmpdir(), 'aiproxy-admin-web-e2e-'));
    this.children = [];
    this.adminToken = `adm_${randomBytes(24).toString('hex')}`;
    this.edgeToken = `edge_${randomBytes(24).toString('hex')}`;
    this.mockKey = `mock_${randomBytes(12).toString('hex')}`;
  }

  spawn(name, bin, args, env) {
    const log = join(this.tmp, `${name}.log`);
    const out = createWriteStream(log);
    const child = spawn(bin, args, { env, cwd: this.tmp, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.pipe(out);
    child.stderr.pipe(out);
    child.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    this.children.push({ name, child, log });
    return child;
  }

  async waitFor(name, child, probe, timeoutMs = 30_000) {
    const deadline = Date.now() + timeoutMs;
    let exited = null;
    child.exited.then((r) => (exited = r));
    while (Date.now() < deadline) {
      if (exited) throw new Error(`${name} exited (${JSON.stringify(exited)}) before it was ready:\n${this.tail(name)}`);
      try {
        if (await probe()) return;
      } catch {
        // not up yet
      }
      await sleep(100);
    }
    throw new Error(`${name} was not ready within ${timeoutMs / 1000} s:\n${this.tail(name)}`);
  }

  tail(name, lines = 30) {
    const entry = this.children.find((c) => c.name === name);
    if (!entry) return '';
    try {
      return readFileSync(entry.log, 'utf8').split('\n').slice(-lines).join('\n');
    } catch {
      return '';
    }
  }

  async start({ webDir }) {
    const [mockPort, adminPort, grpcPort, edgePort] = [await freePort(), await freePort(), await freePort(), await freePort()];
    this.mockUrl = `http://127.0.0.1:${mockPort}`;
    this.adminUrl = `http://127.0.0.1:${adminPort}`;
    this.edgeUrl = `http://127.0.0.1:${edgePort}`;

    const mock = this.spawn('mock-azure', this.bins['mock-azure'], ['--listen', `127.0.0.1:${mockPort}`, '--api-key', this.mockKey], cleanEnv({}));
    await this.waitFor('mock-azure', mock, async () => {
      await fetch(`${this.mockUrl}/`);
      return true;
    });

    const cp = this.spawn(
      'control-plane',
      this.bins['aiproxy-control-plane'],
      [],
      cleanEnv({
        AIPROXY_DATABASE_URL: `sqlite://${join(this.tmp, 'aiproxy.db')}`,
        AIPROXY_DATA_DIR: this.tmp,
        AIPROXY_ADMIN_ADDR: `127.0.0.1:${adminPort}`,
        AIPROXY_GRPC_ADDR: `127.0.0.1:${grpcPort}`,
        AIPROXY_ADMIN_TOKEN: this.adminToken,
        AIPROXY_EDGE_TOKEN: this.edgeToken,
        AIPROXY_ALLOW_INSECURE_UPSTREAMS: 'true',
        AIPROXY_CREDENTIAL: 'none',
        AIPROXY_ADMIN_WEB_DIR: webDir,
      }),
    );
    await this.waitFor('control-plane', cp, async () => (await fetch(`${this.adminUrl}/healthz`)).status === 200);

    const edge = this.spawn(
      'edge',
      this.bins['aiproxy-edge'],
      [],
      cleanEnv({
        AIPROXY_CONTROL_PLANE_URL: `http://127.0.0.1:${grpcPort}`,
        AIPROXY_LISTEN_ADDR: `127.0.0.1:${edgePort}`,
        AIPROXY_EDGE_TOKEN: this.edgeToken,
      }),
    );
    await this.waitFor('edge', edge, async () => (await fetch(`${this.edgeUrl}/readyz`)).status === 200);
  }

  /** Stops every child (TERM, then KILL after 3 s) and removes the temporary folder. */
  async stop({ keep = false } = {}) {
    const running = this.children.filter(({ child }) => child.exitCode === null && child.signalCode === null);
    for (const { child } of running) child.kill('SIGTERM');
    await Promise.race([Promise.all(running.map(({ child }) => child.exited)), sleep(3000)]);
    for (const { child } of running) {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
    await Promise.race([Promise.all(running.map(({ child }) => child.exited)), sleep(2000)]);
    if (!keep) rmSync(this.tmp, { recursive: true, force: true });
  }

  /** Synchronous last resort (process exit): KILL whatever still runs. */
  killNow() {
    for (const { child } of this.children) {
      if (child.exitCode === null && child.signalCode === null) {
        try {
          child.kill('SIGKILL');
        } catch {
          // already gone
        }
      }
    }
  }
}
