// Interop with the seeds: a job enqueued by redis-cli exactly as the seeds do is run by
// `switchboard agent`; a Node ioredis agent written as in seed 000 (BRPOP loop) runs jobs
// enqueued by `switchboard enqueue`, and its status messages are valid for our side.
'use strict';
const test = require('node:test');
const assert = require('node:assert');
const { execFileSync } = require('node:child_process');
const { startRedis, startSwitchboard, runSwitchboard, waitFor } = require('./lib/harness');

let redis;
test.before(async () => { redis = await startRedis(); });
test.after(async () => { await redis.stop(); });

test('a job enqueued with redis-cli as the seeds do is processed by switchboard agent', async () => {
  const cli = (...a) => execFileSync('redis-cli', ['-p', String(redis.port), ...a]).toString().trim();
  const id = '1731304200000-a7f3e2k';
  const record = JSON.stringify({ jobId: id, status: 'queued',
    user: { publicKey: 'GXHEXYVepv5EQnhq9VYVWkvW6QDMRj4QZA2B2mmKpCzq', id: 'u-42' },
    payload: { amount: 1000, priority: 'high' } });
  const sub = redis.client();
  const messages = [];
  await sub.subscribe('agent:rebalance:status');
  sub.on('message', (_c, m) => messages.push(JSON.parse(m)));
  cli('SET', `agent:rebalance:job:${id}`, record, 'EX', '86400');
  cli('LPUSH', 'agent:rebalance:jobs', id);
  const agent = startSwitchboard(['agent'], { REDIS_URL: redis.url });
  try {
    await waitFor(() => messages.find((m) => m.status === 'done'), { what: 'done status' });
    assert.deepStrictEqual(messages.map((m) => m.status), ['processing', 'done']);
    const done = messages[1];
    assert.strictEqual(done.jobId, id);
    assert.strictEqual(done.userId, 'GXHEXYVepv5EQnhq9VYVWkvW6QDMRj4QZA2B2mmKpCzq');
    assert.strictEqual(done.result.fee, 20);
    assert.strictEqual(done.result.remainingAmount, 980);
    assert.match(done.timestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    const rec = JSON.parse(cli('GET', `agent:rebalance:job:${id}`));
    assert.strictEqual(rec.status, 'done');
    assert.strictEqual(rec.attempts, 1);
    assert.strictEqual(cli('LLEN', 'agent:rebalance:jobs'), '0');
  } finally {
    agent.kill('SIGTERM');
    assert.deepStrictEqual(await agent.exited, { code: 0, signal: null });
    sub.disconnect();
  }
});

test('a seed-000 ioredis agent (BRPOP loop) runs jobs from switchboard enqueue, FIFO', async () => {
  const IORedis = require('ioredis');
  const redisA = new IORedis(redis.url);       // as in seed 000, Example 1
  redisA.on('error', () => {});                // the server stops at the end of the file
  const sub = redis.client();
  sub.on('error', () => {});
  const seen = [];
  let running = true;
  await sub.subscribe('agent:rebalance:status');
  const statuses = [];
  sub.on('message', (_c, m) => statuses.push(m));
  async function runAgent() {
    while (running) {
      const jobId = await redisA.brpop('agent:rebalance:jobs', 1);
      if (!jobId) continue;
      const queuedJobId = jobId[1];
      const jobData = await redisA.get(`agent:rebalance:job:${queuedJobId}`);
      const job = JSON.parse(jobData);
      seen.push(job.payload.n);
      const userId = job.user.publicKey;
      await redisA.publish('agent:rebalance:status', JSON.stringify({
        jobId: queuedJobId, status: 'processing', userId, timestamp: new Date().toISOString() }));
      const result = { success: true, newBalance: job.payload.amount * 0.95,
        fee: job.payload.amount * 0.05 };
      await redisA.publish('agent:rebalance:status', JSON.stringify({
        jobId: queuedJobId, status: 'done', userId, result, timestamp: new Date().toISOString() }));
    }
  }
  const ids = [];
  for (let n = 0; n < 5; n++) {
    const r = await runSwitchboard(['enqueue', '--user', 'PK-seed', JSON.stringify({ amount: 100, n })],
      { REDIS_URL: redis.url });
    assert.strictEqual(r.code, 0, r.stderr);
    ids.push(r.stdout.trim());
  }
  const loop = runAgent();
  await waitFor(() => seen.length === 5, { what: '5 jobs seen by the ioredis agent' });
  // Our side reads the seed agent's messages: `enqueue --wait` parses each status message with
  // the same validator the gateway uses, and exits 0 only once it saw a valid `done`.
  const waited = await runSwitchboard(['enqueue', '--wait', '--timeout', '20', '--user', 'PK-seed',
    JSON.stringify({ amount: 100, n: 5 })], { REDIS_URL: redis.url });
  assert.strictEqual(waited.code, 0, waited.stderr);
  assert.match(waited.stderr, /^processing/m);
  assert.match(waited.stderr, /^done/m);
  ids.push(waited.stdout.split('\n')[0]);
  running = false;
  await loop;
  assert.deepStrictEqual(seen, [0, 1, 2, 3, 4, 5], 'FIFO: first enqueued, first taken');
  await waitFor(() => statuses.length === 12, { what: '12 status messages' });
  // Our side must accept every message the seed agent published.
  for (const s of statuses) {
    const obj = JSON.parse(s);
    assert.ok(ids.includes(obj.jobId));
    assert.ok(['processing', 'done'].includes(obj.status));
    assert.strictEqual(obj.userId, 'PK-seed');
  }
  redisA.disconnect();
  sub.disconnect();
});
