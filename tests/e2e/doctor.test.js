// `switchboard doctor` against real redis-servers: a good one (exit 0, every check ok, as text
// and --json), one with maxmemory-policy allkeys-lru and one with scripting renamed away (exit
// 1 naming the reason and the fix), none at all (exit 3); and the eviction warning the agent
// and the gateway log at start-up.
'use strict';
const test = require('node:test');
const assert = require('node:assert');
const { startRedis, startSwitchboard, runSwitchboard, freePort } = require('./lib/harness');

for (const k of Object.keys(process.env)) if (k.startsWith('REDIS_')) delete process.env[k];

let good, lru, noScripts;

test.before(async () => {
  good = await startRedis({ aof: true, args: ['--notify-keyspace-events', 'Ex'] });
  lru = await startRedis({ aof: true, args: ['--maxmemory-policy', 'allkeys-lru'] });
  noScripts = await startRedis({ aof: true, args: ['--rename-command', 'EVAL', ''] });
});

test.after(async () => {
  for (const r of [good, lru, noScripts]) if (r) await r.stop();
});

test('a good Redis: exit 0, every check ok (text and --json)', async () => {
  const r = await runSwitchboard(['doctor'], { REDIS_URL: good.url });
  assert.strictEqual(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /all good: 0 failed, 0 warnings/);
  for (const name of ['version', 'scripting', 'maxmemory-policy', 'persistence',
    'keyspace-events', 'latency', 'tls']) assert.match(r.stdout, new RegExp(`ok +${name} `));
  const j = await runSwitchboard(['doctor', '--json'], { REDIS_URL: good.url });
  assert.strictEqual(j.code, 0);
  const doc = JSON.parse(j.stdout);
  assert.strictEqual(doc.ok, true);
  assert.strictEqual(doc.redis, `127.0.0.1:${good.port}`);
  assert.ok(doc.checks.every((c) => c.status === 'ok'), j.stdout);
  assert.match(doc.checks.find((c) => c.name === 'persistence').detail, /AOF on/);
});

test('maxmemory-policy allkeys-lru: exit 1 with the reason and the fix', async () => {
  const r = await runSwitchboard(['doctor'], { REDIS_URL: lru.url });
  assert.strictEqual(r.code, 1, r.stdout + r.stderr);
  assert.match(r.stdout, /FAIL +maxmemory-policy +allkeys-lru: Redis may evict job records/);
  assert.match(r.stdout, /fix: CONFIG SET maxmemory-policy noeviction/);
  const j = JSON.parse((await runSwitchboard(['doctor', '--json'], { REDIS_URL: lru.url })).stdout);
  assert.strictEqual(j.ok, false);
  assert.deepStrictEqual(j.checks.filter((c) => c.status === 'fail').map((c) => c.name), ['maxmemory-policy']);
});

test('scripting disabled (EVAL renamed away): exit 1 with the reason', async () => {
  const r = await runSwitchboard(['doctor', '--json'], { REDIS_URL: noScripts.url });
  assert.strictEqual(r.code, 1, r.stdout + r.stderr);
  const c = JSON.parse(r.stdout).checks.find((x) => x.name === 'scripting');
  assert.strictEqual(c.status, 'fail');
  assert.match(c.detail, /EVAL failed: ERR unknown command/);
  assert.match(c.fix, /allow EVAL/);
});

test('no Redis: exit 3', async () => {
  const r = await runSwitchboard(['doctor'], { REDIS_URL: `redis://127.0.0.1:${await freePort()}` });
  assert.strictEqual(r.code, 3);
  assert.match(r.stderr, /cannot reach redis/);
});

test('the agent and the gateway warn at start-up when Redis may evict, not otherwise', async () => {
  const port = await freePort();
  const env = { REDIS_URL: lru.url, JWT_SECRET: 's', PORT: String(port), BIND: '127.0.0.1' };
  const agent = startSwitchboard(['agent'], env, 'agent');
  const gw = startSwitchboard(['gateway'], env, 'gateway');
  const quiet = startSwitchboard(['agent'], { REDIS_URL: good.url }, 'agent-good');
  try {
    await agent.waitForOutput(/WARNING: redis maxmemory-policy is allkeys-lru/);
    await gw.waitForOutput(/WARNING: redis maxmemory-policy is allkeys-lru/);
    await quiet.waitForOutput(/online/);
    assert.doesNotMatch(quiet.output, /maxmemory-policy/);
  } finally {
    for (const c of [agent, gw, quiet]) { c.kill('SIGTERM'); await c.exited; }
  }
});
