// The CLI verbs that report on a running installation: `bench` sends jobs to the running
// agents and measures them; `metrics` reads the summary of SPEC §4; both against a real
// redis-server and a real `switchboard agent`.
'use strict';
const test = require('node:test');
const assert = require('node:assert');
const { startRedis, startSwitchboard, runSwitchboard } = require('./lib/harness');

let redis;
test.before(async () => { redis = await startRedis(); });
test.after(async () => { await redis.stop(); });

test('bench with no agent running times out and says why', async () => {
  const r = await runSwitchboard(['bench', '--jobs', '10', '--timeout', '1'], { REDIS_URL: redis.url });
  assert.strictEqual(r.code, 1, r.stderr);
  assert.match(r.stdout, /10 sent, 0 finished/);
  assert.match(r.stderr, /are agents running/);
  const c = redis.client();
  await c.flushall();
  c.disconnect();
});

test('bench measures the running agents; metrics reports what they did', async () => {
  const agent = startSwitchboard(['agent', '--concurrency', '4'], { REDIS_URL: redis.url });
  try {
    await agent.waitForOutput(/online/);
    const b = await runSwitchboard(['bench', '--jobs', '500', '--timeout', '60'], { REDIS_URL: redis.url });
    assert.strictEqual(b.code, 0, b.stderr);
    assert.match(b.stdout, /500 sent, 500 finished \(0 failed\), 0 unfinished/);
    assert.match(b.stdout, /throughput: \d+ jobs\/s/);
    assert.match(b.stdout, /latency: +p50 \d+ ms, p95 \d+ ms, p99 \d+ ms/);
    assert.match(b.stderr, /finished, \d+ jobs\/s/, 'progress on stderr');
    const m = await runSwitchboard(['metrics', '--json', '--days', '2'], { REDIS_URL: redis.url });
    assert.strictEqual(m.code, 0, m.stderr);
    const doc = JSON.parse(m.stdout);
    assert.strictEqual(doc.totalJobs, 500);
    assert.strictEqual(doc.doneJobs, 500);
    assert.strictEqual(doc.failedJobs, 0);
    assert.strictEqual(doc.daily.length, 2);
    const text = await runSwitchboard(['metrics'], { REDIS_URL: redis.url });
    assert.match(text.stdout, /jobs submitted +500/);
    const bad = await runSwitchboard(['metrics', '--days', '31'], { REDIS_URL: redis.url });
    assert.strictEqual(bad.code, 2);
    assert.match(bad.stderr, /--days/);
  } finally {
    agent.kill('SIGTERM');
    await agent.exited;
  }
});
