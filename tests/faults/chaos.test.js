// Fault injection under load (SPEC §9): jobs are POSTed to two gateways while agents and
// gateways are killed with SIGKILL and restarted, Redis (AOF, fsync always) is killed and
// restarted, and Redis is paused with SIGSTOP beyond the clients' patience. Afterwards every
// acknowledged job (HTTP 202) must have ended `done` exactly once (one entry in the
// job.completed audit stream, written by the same script that finishes the job), nothing may
// be left in a processing list or the queue, and the counts are printed.
// Delivery (SPEC §9 "every status reaches its user"): jobs belong to USERS users, each with a
// socket.io-client socket on one of the gateways for the whole run (it reconnects when its
// gateway is killed), and the gateways' SUBSCRIBE connections are also cut on their own
// (CLIENT KILL TYPE pubsub, a network blip) while agents keep publishing. Every acknowledged
// job's owner must receive `rebalance:done` for it, live or replayed ("replay":true).
'use strict';
const test = require('node:test');
const assert = require('node:assert');
const jwt = require('jsonwebtoken');
const { io } = require('socket.io-client');
const { startRedis, startSwitchboard, waitFor, freePort } = require('../e2e/lib/harness');

const SECRET = 'chaos-secret';
const JOBS = Number(process.env.CHAOS_JOBS || 300);
const USERS = 40; // jobs per user stay well under the replay's 50 newest per user
const FAST = { AGENT_STATUS_TTL: '2', HEARTBEAT_INTERVAL: '1', RECOVERY_INTERVAL: '1',
  RETRY_BACKOFF_MS: '20', RATE_LIMIT: '1000000' };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

test('chaos: kill -9 agents and gateways, restart and pause Redis, under load: nothing lost', async () => {
  const redis = await startRedis({ aof: true });
  const env = { ...FAST, REDIS_URL: redis.url, JWT_SECRET: SECRET, BIND: '127.0.0.1' };
  const ports = [await freePort(), await freePort()];
  const procs = { gw: [], agent: [] };
  const startGw = async (i) => {
    procs.gw[i] = startSwitchboard(['gateway'], { ...env, PORT: String(ports[i]) }, `gateway-${i}`);
    await procs.gw[i].waitForOutput(/listening on/);
  };
  const startAgent = (i) => {
    procs.agent[i] = startSwitchboard(['agent', '--concurrency', '4', '--exec',
      'sleep 0.01; echo \'{"ok":true}\''], env, `agent-${i}`);
  };
  await startGw(0); await startGw(1);
  startAgent(0); startAgent(1);

  // One socket per user, on gateway i % 2; `done` events are recorded by job id.
  const users = [...Array(USERS).keys()].map((i) => {
    const token = jwt.sign({ sub: `chaos-${i}`, publicKey: `PK-chaos-${i}`, role: 'user' }, SECRET,
      { algorithm: 'HS256', expiresIn: '1h' });
    const socket = io(`http://127.0.0.1:${ports[i % 2]}`, { auth: { token }, forceNew: true,
      reconnectionDelay: 100, reconnectionDelayMax: 500, transports: ['websocket'] });
    const done = new Map(); // jobId -> 'live' | 'replay' (first arrival)
    socket.on('rebalance:done', (d) => { if (!done.has(d.jobId)) done.set(d.jobId, d.replay ? 'replay' : 'live'); });
    return { token, socket, done, jobs: [] };
  });
  await Promise.all(users.map((u) => new Promise((resolve, reject) => {
    u.socket.once('connect', resolve);
    u.socket.once('connect_error', reject);
  })));
  const acked = new Set();
  let sent = 0, refused = 0, attempts = 0;
  let chaosDone = false;

  // Producer: each job is POSTed until a gateway acknowledges it (202). An attempt whose answer
  // was lost (503 after Redis stalled, a killed gateway) may still have queued a job: that is
  // an extra job, run like any other, never a second copy of an acknowledged one.
  async function produce(worker) {
    for (;;) {
      if (sent >= JOBS && chaosDone) return; // at least JOBS, and load during every fault
      const n = sent++;
      const owner = users[n % USERS];
      for (let tries = 0; ; tries++) {
        attempts++;
        const port = ports[(n + tries + worker) % 2];
        try {
          const res = await fetch(`http://127.0.0.1:${port}/api/v1/agent/rebalance`, {
            method: 'POST', signal: AbortSignal.timeout(5000),
            headers: { authorization: `Bearer ${owner.token}`, 'content-type': 'application/json' },
            body: JSON.stringify({ amount: 100 + n }) });
          if (res.status === 202) {
            const { jobId } = await res.json();
            acked.add(jobId);
            owner.jobs.push(jobId);
            break;
          }
          await res.text();
          refused++;
        } catch { refused++; }
        await sleep(50);
      }
    }
  }

  // The gateways' SUBSCRIBE connections cut while Redis and the agents stay up.
  const cutPubsub = async () => {
    const c = redis.client();
    c.on('error', () => {});
    try { await c.client('KILL', 'TYPE', 'pubsub'); } finally { c.disconnect(); }
  };
  // Chaos: one full cycle of faults, one at a time, while the load runs.
  const faults = [
    cutPubsub,
    async () => { procs.agent[0].kill('SIGKILL'); await procs.agent[0].exited; startAgent(0); },
    async () => { procs.gw[1].kill('SIGKILL'); await procs.gw[1].exited; await startGw(1); },
    async () => { await redis.restart(); },
    async () => { procs.agent[1].kill('SIGKILL'); await procs.agent[1].exited; startAgent(1); },
    async () => { redis.proc.kill('SIGSTOP'); await sleep(4000); redis.proc.kill('SIGCONT'); },
    async () => { procs.gw[0].kill('SIGKILL'); await procs.gw[0].exited; await startGw(0); },
    cutPubsub,
  ];
  const counts = { faults: 0 };
  async function chaos() {
    for (const fault of faults) {
      await sleep(300);
      await fault();
      counts.faults++;
    }
    chaosDone = true;
  }

  await Promise.all([...[0, 1, 2, 3, 4, 5, 6, 7].map(produce), chaos()]);

  const r = redis.client();
  r.on('error', () => {});
  try {
    const ids = [...acked];
    const status = async () => (await r.mget(ids.map((id) => `agent:rebalance:job:${id}`)))
      .map((x) => (x ? JSON.parse(x).status : 'missing'));
    await waitFor(async () => {
      try { return (await status()).every((s) => s === 'done' || s === 'error'); } catch { return false; }
    }, { timeoutMs: 120000, intervalMs: 200, what: 'every acknowledged job finished' });
    const final = await status();
    const completed = new Map();
    for (const [, fields] of await r.xrange('agent:stream:job.completed', '-', '+')) {
      const data = JSON.parse(fields[fields.indexOf('data') + 1]);
      completed.set(data.jobId, (completed.get(data.jobId) || 0) + 1);
    }
    const twice = ids.filter((id) => (completed.get(id) || 0) > 1);
    const lost = ids.filter((id, i) => final[i] !== 'done');
    console.log(`chaos: jobs sent=${sent} acknowledged=${ids.length} attempts=${attempts} ` +
      `refused=${refused} faults=${counts.faults} finished=${final.filter((s) => s === 'done').length} ` +
      `finished-twice=${twice.length} lost=${lost.length}`);
    assert.strictEqual(ids.length, sent, 'every job was eventually acknowledged');
    assert.deepStrictEqual(lost, [], 'no acknowledged job lost or failed');
    assert.deepStrictEqual(twice, [], 'no job finished twice');
    for (const id of ids) assert.strictEqual(completed.get(id), 1, `job ${id} completed once`);
    assert.deepStrictEqual(await r.keys('agent:rebalance:processing:*'), [], 'nothing stuck');
    assert.strictEqual(await r.llen('agent:rebalance:jobs'), 0, 'queue drained');
    assert.ok(counts.faults >= faults.length, `a full cycle of faults ran (${counts.faults})`);

    // Delivery: every owner got `done` for each of its jobs, live or replayed.
    const missing = () => users.flatMap((u) => u.jobs.filter((id) => !u.done.has(id)));
    await waitFor(() => missing().length === 0,
      { timeoutMs: 30000, intervalMs: 100, what: 'every owner received done' }).catch(() => {});
    const via = { live: 0, replay: 0 };
    for (const u of users) for (const id of u.jobs) if (u.done.has(id)) via[u.done.get(id)]++;
    const most = Math.max(...users.map((u) => u.jobs.length));
    console.log(`delivery: users=${USERS} jobs=${ids.length} most-per-user=${most} ` +
      `done-live=${via.live} done-replay=${via.replay} missing=${missing().length}`);
    assert.ok(most <= 50, 'the replay limit (50 newest per user) is not the bottleneck');
    assert.deepStrictEqual(missing(), [], 'every owner received done for every acknowledged job');
  } finally {
    r.disconnect();
    for (const u of users) u.socket.close();
    for (const p of [...procs.gw, ...procs.agent]) if (p.exitCode === null) p.kill('SIGKILL');
    await redis.stop();
  }
});
