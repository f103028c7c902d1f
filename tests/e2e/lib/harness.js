// Test harness for end-to-end tests: a private redis-server on a free loopback port, the real
// `switchboard` binary as child processes, and helpers that wait on events (log lines, Redis
// state, process exit) instead of sleeping. Every process started here is killed on exit.
'use strict';
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const Redis = require('ioredis');

const SB_BIN = process.env.SB_BIN || path.resolve(__dirname, '../../../build/switchboard');
const REDIS_SERVER = process.env.SB_REDIS_SERVER || 'redis-server';
const children = new Set();

function killAll() {
  for (const c of children) { try { c.kill('SIGKILL'); } catch { /* gone */ } }
}
process.on('exit', killAll);

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

// Polls cond() (sync or async) until truthy; rejects after timeoutMs with what.
async function waitFor(cond, { timeoutMs = 15000, intervalMs = 20, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

function track(child, name) {
  children.add(child);
  child.name = name;
  child.output = '';
  child.exited = new Promise((resolve) => {
    child.on('exit', (code, signal) => { children.delete(child); resolve({ code, signal }); });
  });
  const onData = (d) => {
    child.output += d.toString();
    if (process.env.SB_TEST_VERBOSE) process.stderr.write(`[${name}] ${d}`);
  };
  child.stdout.on('data', onData);
  child.stderr.on('data', onData);
  // Resolves when a line matching re has been printed (now or later).
  child.waitForOutput = (re, timeoutMs = 15000) =>
    waitFor(() => re.test(child.output), { timeoutMs, what: `${name} to print ${re}` });
  return child;
}

// Starts a private redis-server. opts.aof turns on appendonly (survives restart); opts.args
// are extra server arguments (e.g. ['--rename-command', 'CONFIG', '']). opts.tls = {cert, key,
// ca, authClients ('no' | 'optional' | 'yes')} serves TLS only (--tls-port, --port 0): then
// r.url is rediss://, r.tlsEnv the REDIS_TLS_CA setting and r.client() a TLS client.
async function startRedis(opts = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sb-e2e-redis-'));
  const port = await freePort();
  const t = opts.tls;
  const r = { port, dir, url: `${t ? 'rediss' : 'redis'}://127.0.0.1:${port}`, proc: null,
    tlsEnv: t ? { REDIS_TLS_CA: t.ca } : {} };
  const listen = t ? ['--port', '0', '--tls-port', String(port), '--tls-cert-file', t.cert,
    '--tls-key-file', t.key, '--tls-ca-cert-file', t.ca, '--tls-auth-clients',
    t.authClients || 'no'] : ['--port', String(port)];
  // the probe and r.client(): trust the CA, present the client certificate when one is needed
  const tlsOpts = t ? { tls: { ca: fs.readFileSync(t.ca), rejectUnauthorized: false,
    ...(t.clientCert ? { cert: fs.readFileSync(t.clientCert), key: fs.readFileSync(t.clientKey) } : {}) } } : {};
  r.client = (o = {}) => new Redis({ host: '127.0.0.1', port, ...tlsOpts, ...o });
  r.start = async () => {
    r.proc = track(spawn(REDIS_SERVER, [...listen, '--bind', '127.0.0.1',
      '--dir', dir, '--save', '', '--appendonly', opts.aof ? 'yes' : 'no',
      '--appendfsync', 'always', '--loglevel', 'warning', ...(opts.args || [])], { stdio: ['ignore', 'pipe', 'pipe'] }),
    'redis');
    const probe = r.client({ lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    probe.on('error', () => {});
    await waitFor(async () => {
      try { await probe.connect(); return (await probe.ping()) === 'PONG'; } catch { return false; }
    }, { what: 'redis-server to answer PING' });
    probe.disconnect();
  };
  r.kill = async (signal = 'SIGKILL') => { r.proc.kill(signal); await r.proc.exited; };
  r.restart = async () => { await r.kill(); await r.start(); };
  r.stop = async () => { if (r.proc) await r.kill(); fs.rmSync(dir, { recursive: true, force: true }); };
  await r.start();
  return r;
}

// Starts `switchboard ARGS` with env on top of ours.
function startSwitchboard(args, env = {}, name = args[0]) {
  const child = spawn(SB_BIN, args, { env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'] });
  return track(child, name);
}

// Runs `switchboard ARGS` to completion; resolves {code, stdout, stderr}.
function runSwitchboard(args, env = {}, input) {
  return new Promise((resolve) => {
    const child = spawn(SB_BIN, args, { env: { ...process.env, ...env } });
    let stdout = '', stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    if (input !== undefined) child.stdin.end(input); else child.stdin.end();
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

// The next HTTP/1.1 response on a raw socket (utf8): {status, body} once its Content-Length
// bytes are in. For tests that must write requests while the gateway is stopped.
function httpAnswer(sock) {
  return new Promise((resolve, reject) => {
    let buf = '';
    const onData = (d) => {
      buf += d;
      const end = buf.indexOf('\r\n\r\n');
      const len = end < 0 ? -1 : Number((/content-length: *(\d+)/i.exec(buf.slice(0, end)) || [])[1]);
      if (end >= 0 && buf.length >= end + 4 + len) {
        sock.off('data', onData);
        resolve({ status: Number(buf.slice(9, 12)), body: buf.slice(end + 4, end + 4 + len) });
      }
    };
    sock.on('data', onData);
    sock.once('error', reject);
  });
}

// n raw sockets to 127.0.0.1:port, each kept alive by one answered GET /healthz (so the
// server has accepted them and will read them in one poll phase later).
async function keptAliveSockets(port, n) {
  const socks = await Promise.all(Array.from({ length: n }, () => new Promise((resolve, reject) => {
    const sk = net.connect(port, '127.0.0.1', () => resolve(sk));
    sk.setEncoding('utf8');
    sk.once('error', reject);
  })));
  for (const sk of socks) {
    const got = httpAnswer(sk);
    sk.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
    if ((await got).status !== 200) throw new Error('GET /healthz on a kept-alive socket failed');
  }
  return socks;
}

// Writes one POST a socket ({path, authorization, body}) while the server process is stopped
// (SIGSTOP), so that it reads them all in one poll phase once resumed; returns their answers.
async function postsInOneTurn(server, socks, posts) {
  server.kill('SIGSTOP');
  let answers;
  try {
    answers = posts.map((p, i) => {
      const got = httpAnswer(socks[i]);
      socks[i].write(`POST ${p.path} HTTP/1.1\r\nHost: x\r\nAuthorization: ${p.authorization}\r\n` +
        `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(p.body)}\r\n\r\n${p.body}`);
      return got;
    });
  } finally {
    server.kill('SIGCONT');
  }
  return Promise.all(answers);
}

module.exports = { SB_BIN, freePort, waitFor, startRedis, startSwitchboard, runSwitchboard, track,
  httpAnswer, keptAliveSockets, postsInOneTurn };
