// A reconnect storm must not take the gateway from other users (issue #15). One user with 50
// recent jobs of large results reconnects Socket.IO in 20 parallel loops (raw Engine.IO
// WebSockets, each loop at most one connect per 50 ms: up to ~400 connects/s); every replay
// used to read all 50 records whole in one EVAL, Redis saturated, the gateway's stall
// watchdog dropped its command connection and every other user's POST got 503. During such a
// storm another user's POSTs must all be answered 202 with p95 under 100 ms, and the stormer
// must be told why it is refused (CONNECT_ERROR "too many connections" or an Engine.IO error
// at the handshake). Bounded: the storm lasts STORM_MS.
'use strict';
const test = require('node:test');
const assert = require('node:assert');
const crypto = require('node:crypto');
const jwt = require('jsonwebtoken');
const { startRedis, startSwitchboard, waitFor, freePort } = require('./lib/harness');
const path = require('node:path');
const { Worker } = require('node:worker_threads');

const SECRET = 'e2e-storm-secret';
const STORM_MS = 5000;
const LOOPS = 20;
const JOBS = 50;
const RESULT_BYTES = 120 * 1024;
let redis, rc, gw, base;

function token(pk) {
  return jwt.sign({ sub: pk, publicKey: pk, role: 'user' }, SECRET,
    { algorithm: 'HS256', expiresIn: '1h' });
}

test.before(async () => {
  redis = await startRedis();
  rc = redis.client();
  const port = await freePort();
  gw = startSwitchboard(['gateway'], { REDIS_URL: redis.url, JWT_SECRET: SECRET,
    PORT: String(port), BIND: '127.0.0.1', JOB_TYPES: 'rebalance', RATE_LIMIT: '100000' },
  'gateway');
  base = `http://127.0.0.1:${port}`;
  await gw.waitForOutput(/subscribed to agent:rebalance:events/);
  await waitFor(async () => {
    try { return (await fetch(`${base}/readyz`)).status === 200; } catch { return false; }
  }, { what: 'gateway /readyz' });
});

test.after(async () => {
  if (gw && gw.exitCode === null) gw.kill('SIGKILL');
  if (rc) rc.disconnect();
  if (redis) await redis.stop();
});

// 50 finished jobs with large results, as an agent leaves them (record + the user's index).
async function seedJobs(pk) {
  const now = Date.now();
  const rows = [];
  while (JSON.stringify(rows).length < RESULT_BYTES)
    rows.push({ id: crypto.randomBytes(8).toString('hex'), v: Math.random(), note: 'x'.repeat(40) });
  const m = rc.multi();
  for (let i = 0; i < JOBS; i++) {
    const id = `${now - i}-${crypto.randomBytes(4).toString('hex')}`;
    const at = new Date(now - 1000 + i).toISOString();
    m.set(`agent:rebalance:job:${id}`, JSON.stringify({ jobId: id, type: 'rebalance',
      status: 'done', user: { publicKey: pk, id: pk }, payload: { n: i }, attempts: 1,
      createdAt: at, updatedAt: at, result: { rows } }), 'EX', 86400);
    m.zadd(`agent:rebalance:user:${pk}`, now - i, id);
  }
  await m.exec();
}

// The storm in a worker thread; resolves [[what the server said, count], ...].
function storm(tok, untilMs) {
  return new Promise((resolve, reject) => {
    const w = new Worker(path.join(__dirname, 'lib', 'reconnect_storm.js'),
      { workerData: { base, token: tok, untilMs, loops: LOOPS, minMs: 50 } });
    w.once('message', resolve);
    w.once('error', reject);
  });
}

const netOut = (info) => Number(info.match(/total_net_output_bytes:(\d+)/)[1]);

function p95Of(posts) {
  const ms = posts.map((p) => p.ms).sort((a, b) => a - b);
  return ms[Math.min(ms.length - 1, Math.floor(ms.length * 0.95))];
}

async function victimPosts(tok, until) {
  const out = [];
  while (Date.now() < until) {
    const t0 = performance.now();
    let status;
    try {
      const res = await fetch(`${base}/api/v1/agent/rebalance`, { method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${tok}` },
        body: JSON.stringify({ amount: out.length + 1 }), signal: AbortSignal.timeout(10000) });
      status = res.status;
      await res.arrayBuffer();
    } catch (e) {
      status = `failed: ${e.message}`;
    }
    out.push({ status, ms: performance.now() - t0 });
    await new Promise((r) => setTimeout(r, 100));
  }
  return out;
}

test('a reconnect storm of one user leaves other users\' POSTs fast and accepted', async (t) => {
  const stormer = `STORM-${process.pid}`, victim = token(`VICTIM-${process.pid}`);
  await seedJobs(stormer);
  // the same POSTs without a storm: how fast this machine is now (2 shared cores)
  const calm = p95Of(await victimPosts(victim, Date.now() + 2000));
  const out0 = netOut(await rc.info('stats'));
  const until = Date.now() + STORM_MS;
  const stormed = storm(token(stormer), until);
  const posts = await victimPosts(victim, until);
  const seen = new Map(await stormed);
  const statuses = posts.map((p) => p.status);
  const p95 = p95Of(posts);
  const summary = `storm: ${JSON.stringify([...seen])}; victim statuses ${JSON.stringify(statuses)}; ` +
    `p95 ${p95.toFixed(1)} ms (${calm.toFixed(1)} ms without the storm)`;
  // (d): what the replays cost Redis: bytes it wrote (each connect used to read 6 MB of
  // records) and the script's mean time (shown only: on 2 shared cores it mostly measures load)
  const evalLine = (await rc.info('commandstats')).split('\n')
    .find((l) => l.startsWith('cmdstat_eval:')) || '';
  const outBytes = netOut(await rc.info('stats')) - out0;
  t.diagnostic(`${summary}; redis wrote ${outBytes} bytes; ${evalLine.trim()}`);
  assert.ok(posts.length >= 20, summary);
  assert.ok(statuses.every((s) => s === 202), summary);
  // under 100 ms; on a machine so loaded that the calm p95 is already over 25 ms, within 4x it
  assert.ok(p95 < Math.max(100, 4 * calm), summary);
  // the stormer was told, and its refusals name the reason
  const refused = [...seen.keys()].filter((k) => /too many connections/.test(k) || /^http 429$/.test(k));
  assert.ok(refused.length > 0, summary);
  assert.ok(outBytes < 16 * 1024 * 1024, `redis wrote ${outBytes} bytes; ${summary}`);
});
