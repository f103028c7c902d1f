// Seed interop through the gateway (issue #15): a job POSTed to the gateway and run by an
// ioredis agent written as in seed 000 (BRPOP, then only PUBLISH processing / done; it never
// writes the record) must be seen `done` with its result by the seed's polling client
// (`GET /api/v1/agent/rebalance/{id}`), from either of two gateways on the same Redis, and a
// late, older status must never move the record back.
'use strict';
const test = require('node:test');
const assert = require('node:assert');
const jwt = require('jsonwebtoken');
const IORedis = require('ioredis');
const { startRedis, startSwitchboard, waitFor, freePort } = require('./lib/harness');

const SECRET = 'e2e-seed-interop-secret';
let redis, gws = [], bases = [];

async function startGateway() {
  const port = await freePort();
  const g = startSwitchboard(['gateway'], { REDIS_URL: redis.url, JWT_SECRET: SECRET,
    PORT: String(port), BIND: '127.0.0.1', JOB_TYPES: 'rebalance' }, `gateway:${port}`);
  await g.waitForOutput(/subscribed to agent:rebalance:events/);
  gws.push(g);
  bases.push(`http://127.0.0.1:${port}`);
}

test.before(async () => {
  redis = await startRedis();
  await startGateway();
  await startGateway();
});

test.after(async () => {
  for (const g of gws) if (g.exitCode === null) g.kill('SIGKILL');
  if (redis) await redis.stop();
});

// Seed 000, Example 1, one job: BRPOP, GET the record, PUBLISH processing, work, PUBLISH done.
async function seedAgentOnce(redisA) {
  const jobId = await redisA.brpop('agent:rebalance:jobs', 10);
  const queuedJobId = jobId[1];
  const job = JSON.parse(await redisA.get(`agent:rebalance:job:${queuedJobId}`));
  const userId = job.user.publicKey;
  await redisA.publish('agent:rebalance:status', JSON.stringify({
    jobId: queuedJobId, status: 'processing', userId, timestamp: new Date().toISOString() }));
  const result = { success: true, fee: job.payload.amount * 0.02,
    remainingAmount: job.payload.amount * 0.98 };
  await redisA.publish('agent:rebalance:status', JSON.stringify({
    jobId: queuedJobId, status: 'done', userId, result, timestamp: new Date().toISOString() }));
  return queuedJobId;
}

test('a seed-000 agent\'s job is seen done with its result over HTTP polling', async () => {
  const pk = `SEED-${process.pid}`;
  const tok = jwt.sign({ sub: pk, publicKey: pk, role: 'user' }, SECRET,
    { algorithm: 'HS256', expiresIn: '1h' });
  const auth = { authorization: `Bearer ${tok}` };
  const res = await fetch(`${bases[0]}/api/v1/agent/rebalance`, { method: 'POST',
    headers: { ...auth, 'content-type': 'application/json' },
    body: JSON.stringify({ amount: 1000, priority: 'high' }) });
  assert.strictEqual(res.status, 202);
  const { jobId } = await res.json();
  const redisA = new IORedis(redis.url);
  try {
    assert.strictEqual(await seedAgentOnce(redisA), jobId);
    // the seed's polling client, against both gateways
    for (const base of bases) {
      const rec = await waitFor(async () => {
        const r = await (await fetch(`${base}/api/v1/agent/rebalance/${jobId}`, { headers: auth })).json();
        const job = r.job || r;
        return job.status === 'done' ? job : null;
      }, { what: `${base} to show the job done` });
      assert.deepStrictEqual(rec.result, { success: true, fee: 20, remainingAmount: 980 });
    }
    // a late, older status does not move it back
    const stale = new Date(Date.now() - 60000).toISOString();
    await redisA.publish('agent:rebalance:status', JSON.stringify({
      jobId, status: 'processing', userId: pk, timestamp: stale }));
    await redisA.publish('agent:rebalance:status', JSON.stringify({
      jobId, status: 'error', userId: pk, error: 'late', timestamp: new Date().toISOString() }));
    // a marker message after them: once the gateways forwarded it, they handled the others
    const probe = new IORedis(redis.url);
    const marker = `${Date.now()}-ffff0000`;
    await redisA.publish('agent:rebalance:status', JSON.stringify({
      jobId: marker, status: 'done', userId: pk, recorded: true }));
    await waitFor(async () => {
      const m = await (await fetch(`${bases[0]}/metrics`)).text();
      return /gateway_status_messages_received_total (\d+)/.exec(m)[1] >= 5;
    }, { what: 'the late messages to be handled' });
    await new Promise((r) => setImmediate(r));
    const rec = JSON.parse(await probe.get(`agent:rebalance:job:${jobId}`));
    assert.strictEqual(rec.status, 'done');
    assert.strictEqual(rec.error, undefined);
    probe.disconnect();
  } finally {
    redisA.disconnect();
  }
});
