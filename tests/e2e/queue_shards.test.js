// QUEUE_SHARDS=6 end to end on one redis-server (plain key style): a gateway and a C agent
// (`switchboard agent --exec`), 300 jobs POSTed by 30 users through HTTP. Every job reaches
// done; each user's jobs are in the user's shard (id suffix, keys) and ran in the order they
// were queued (one worker: the handler runs in take order); the shards hold jobs of several
// users; lookups by id (GET /agent/{type}/{id}, `switchboard job`) find them on their shard;
// a user's listing shows their jobs; `switchboard queue` and `metrics` add every shard up.
'use strict';
const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const jwt = require('jsonwebtoken');
const { startRedis, startSwitchboard, runSwitchboard, waitFor, freePort } = require('./lib/harness');
const { request } = require('./lib/http');

const SECRET = 'e2e-shards-secret';
const SHARDS = 6;
const USERS = 30;
const PER_USER = 10;
let redis, rc, gw, agent, base, dir, log;

const token = (pk) => jwt.sign({ sub: pk, publicKey: pk, role: 'user' }, SECRET,
  { algorithm: 'HS256', expiresIn: '1h' });
const env = () => ({ REDIS_URL: redis.url, QUEUE_SHARDS: String(SHARDS) });

test.before(async () => {
  redis = await startRedis();
  rc = redis.client();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sb-e2e-shards-'));
  log = path.join(dir, 'ran.jsonl');
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  gw = startSwitchboard(['gateway'], { ...env(), JWT_SECRET: SECRET, PORT: String(port),
    BIND: '127.0.0.1', RATE_LIMIT: '1000' }, 'gateway');
  await gw.waitForOutput(/listening on/);
  // one worker: the handler runs jobs in the order they were taken; it notes each one
  agent = startSwitchboard(['agent', '--concurrency', '1', '--grace', '1', '--exec',
    `tr -d '\\n' >> ${log}; echo >> ${log}; echo '{"ok":true}'`], env(), 'agent');
  await agent.waitForOutput(/online/);
});

test.after(async () => {
  for (const p of [gw, agent]) if (p && p.exitCode === null) p.kill('SIGKILL');
  rc.disconnect();
  await redis.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

test('300 jobs of 30 users through HTTP all reach done, each user in order on their shard', async () => {
  const ids = new Map(); // user -> ids in POST order
  const users = Array.from({ length: USERS }, (_, u) => `shard-user-${u}`);
  for (let k = 0; k < PER_USER; k++) {
    await Promise.all(users.map(async (pk) => {
      const r = await request('POST', `${base}/api/v1/agent/rebalance`, {
        headers: { authorization: `Bearer ${token(pk)}` }, body: { amount: 1 + k, user: pk, seq: k } });
      assert.strictEqual(r.status, 202, r.text);
      assert.match(r.json.jobId, /^\d{1,16}-[0-9a-f]{8}(s[1-5])?$/);
      if (!ids.has(pk)) ids.set(pk, []);
      ids.get(pk)[k] = r.json.jobId;
    }));
  }
  const all = [...ids.values()].flat();
  const shardOf = (id) => { const m = /s(\d+)$/.exec(id); return m ? Number(m[1]) : 0; };
  const queueOf = (id) => (shardOf(id) ? `rebalance.${shardOf(id)}` : 'rebalance');
  await waitFor(async () => {
    const recs = await rc.mget(all.map((id) => `agent:${queueOf(id)}:job:${id}`));
    return recs.every((t) => t && JSON.parse(t).status === 'done');
  }, { timeoutMs: 120000, intervalMs: 200, what: 'all 300 jobs done' });

  // one user, one shard; the users spread over the shards
  const used = new Set();
  for (const [pk, list] of ids) {
    const shards = new Set(list.map(shardOf));
    assert.strictEqual(shards.size, 1, `${pk}'s jobs are on one shard`);
    used.add(shardOf(list[0]));
    assert.strictEqual(await rc.zcard(`agent:${queueOf(list[0])}:user:${pk}`), PER_USER);
  }
  assert.ok(used.size >= 4, `30 users on ${used.size} of ${SHARDS} shards`);

  // the handler ran each user's jobs in the order they were queued
  const ran = fs.readFileSync(log, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
  assert.strictEqual(ran.length, USERS * PER_USER);
  const last = new Map();
  for (const j of ran) {
    const p = j.payload || j;
    const was = last.has(p.user) ? last.get(p.user) : -1;
    assert.ok(p.seq > was, `${p.user}: job ${p.seq} ran after ${was}`);
    last.set(p.user, p.seq);
  }

  // lookups by id go to the id's shard: HTTP and CLI
  const [pk, list] = [...ids].find(([, l]) => shardOf(l[0]) > 0);
  const auth = { authorization: `Bearer ${token(pk)}` };
  const one = await request('GET', `${base}/api/v1/agent/rebalance/${list[3]}`, { headers: auth });
  assert.strictEqual(one.status, 200, one.text);
  assert.strictEqual(one.json.status, 'done');
  const mine = await request('GET', `${base}/api/v1/agent/rebalance/jobs?limit=50`, { headers: auth });
  assert.strictEqual(mine.status, 200);
  assert.strictEqual(mine.json.count, PER_USER);
  const beyond = await request('GET', `${base}/api/v1/agent/rebalance/1700000000000-abcdef01s9`,
    { headers: auth });
  assert.strictEqual(beyond.status, 404);
  const job = await runSwitchboard(['job', '--json', list[3]], env());
  assert.strictEqual(job.code, 0, job.stderr);
  assert.strictEqual(JSON.parse(job.stdout).status, 'done');
  const hist = await runSwitchboard(['job', 'history', '--json', list[3]], env());
  assert.strictEqual(hist.code, 0, hist.stderr);

  // `queue` and `metrics` add every shard up
  const q = await runSwitchboard(['queue', '--json'], env());
  assert.strictEqual(q.code, 0, q.stderr);
  const counts = JSON.parse(q.stdout);
  assert.strictEqual(counts.counts.done, USERS * PER_USER);
  assert.strictEqual(counts.counts.queued, 0);
  assert.strictEqual(counts.total, USERS * PER_USER);
  const text = await runSwitchboard(['queue'], env());
  assert.match(text.stdout, /pending: 0/);
  const m = await runSwitchboard(['metrics', '--json'], env());
  assert.strictEqual(m.code, 0, m.stderr);
  assert.strictEqual(JSON.parse(m.stdout).doneJobs, USERS * PER_USER);
  const admin = jwt.sign({ sub: 'ops', publicKey: 'ops', role: 'admin' }, SECRET,
    { algorithm: 'HS256', expiresIn: '1h' });
  const hm = await request('GET', `${base}/api/v1/agent/rebalance/metrics?days=1`,
    { headers: { authorization: `Bearer ${admin}` } });
  assert.strictEqual(hm.status, 200, hm.text);
  assert.strictEqual(hm.json.totalJobs, USERS * PER_USER);
  // without QUEUE_SHARDS the CLI sees shard 0 only: all processes must agree
  const q1 = await runSwitchboard(['queue', '--json'], { REDIS_URL: redis.url });
  assert.ok(JSON.parse(q1.stdout).counts.done < USERS * PER_USER);
});

test('an agent with another QUEUE_SHARDS warns about the jobs it never takes', async () => {
  agent.kill('SIGTERM');
  await agent.exited;
  const pk = 'shard-user-1'; // not on shard 0 (checked below)
  const r = await request('POST', `${base}/api/v1/agent/rebalance`, {
    headers: { authorization: `Bearer ${token(pk)}` }, body: { amount: 1 } });
  assert.strictEqual(r.status, 202, r.text);
  assert.match(r.json.jobId, /s[1-5]$/);
  const lone = startSwitchboard(['agent', '--recovery-interval', '1'], { REDIS_URL: redis.url },
    'agent-n1');
  try {
    await lone.waitForOutput(/1 job\(s\) of type rebalance wait on queue shards at or beyond 1/);
  } finally {
    lone.kill('SIGKILL');
  }
});
