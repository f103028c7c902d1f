// End-to-end tests of clients/node (switchboard-client) against a real redis-server, the real
// gateway and the real agent: Client.enqueue → `switchboard agent` → wait(); what it writes is
// what `switchboard job` reads; the Lua scripts it sends are byte-identical to the C build's
// (Redis knows their SHA1 after only the C binary ran them); metricsSummary equals
// `switchboard metrics --json`; checkRateLimit's window; the event bus both ways with
// `switchboard events` (publish, consume, request/response, dead letters, claims); the
// browser helper JobTracker over Socket.IO and its polling fallback; worker()'s protocol.
'use strict';
const test = require('node:test');
const assert = require('node:assert');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawn } = require('node:child_process');
const jwt = require('jsonwebtoken');
const { startRedis, startSwitchboard, runSwitchboard, waitFor, freePort } = require('./lib/harness');
const sb = require('../../clients/node');
const common = require('../../clients/node/lib/common');

const PK = 'GXHEXYVepv5EQnhq9VYVWkvW6QDMRj4QZA2B2mmKpCzq';
const SECRET = 'client-node-secret';
let redis, rc, client, dir;

test.before(async () => {
  redis = await startRedis();
  rc = redis.client();
  client = new sb.Client({ url: redis.url });
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sb-client-node-'));
});
test.after(async () => {
  client.close();
  rc.disconnect();
  await redis.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});
test.beforeEach(async () => { await rc.flushall(); await rc.script('FLUSH'); });

const env = (extra = {}) => ({ REDIS_URL: redis.url, ...extra });
// Each test gets a deadline: a hang is a failure that names its test.
const it = (name, fn) => test(name, { timeout: 120000 }, fn);
const sha1 = (s) => crypto.createHash('sha1').update(s).digest('hex');

it('enqueue writes what switchboard job reads and switchboard agent runs; wait follows it', async () => {
  const jobId = await client.enqueue('rebalance', { amount: 1000, priority: 'high' }, { publicKey: PK, id: 'u-42' });
  const out = await runSwitchboard(['job', '--json', jobId], env());
  assert.strictEqual(out.code, 0, out.stderr);
  const rec = JSON.parse(out.stdout);
  assert.deepStrictEqual(rec.user, { publicKey: PK, id: 'u-42' });
  assert.deepStrictEqual(rec.payload, { amount: 1000, priority: 'high' });
  assert.deepStrictEqual(await rc.lrange('agent:rebalance:jobs', 0, -1), [jobId]);
  const agent = startSwitchboard(['agent'], env());
  let t = null;
  try {
    const done = await client.wait(jobId, { timeoutMs: 30000 });
    assert.strictEqual(done.status, 'done');
    assert.strictEqual(done.result.fee, 20);
  } finally { agent.kill('SIGKILL'); await agent.exited; }
  const queued = (await runSwitchboard(['enqueue', '--user', PK, '{"amount":3}'], env())).stdout.trim();
  assert.deepStrictEqual((await client.job(queued)).payload, { amount: 3 });
  assert.strictEqual(await client.job('1-ffffffff'), null);
  await assert.rejects(client.enqueue('Bad Type', {}, PK), TypeError);
  await assert.rejects(client.enqueue('rebalance', { amount: NaN }, PK), TypeError);
  await assert.rejects(client.enqueue('rebalance', {}, 'has space'), TypeError);
});

it('wait ends through polling when no status message ever comes', async () => {
  const jobId = await client.enqueue('rebalance', { amount: 1 }, PK);
  const rec = await client.job(jobId);
  setTimeout(() => rc.set(`agent:rebalance:job:${jobId}`, JSON.stringify({ ...rec, status: 'error' })), 300);
  assert.strictEqual((await client.wait(jobId, { timeoutMs: 20000 })).status, 'error');
  await assert.rejects(client.wait(await client.enqueue('rebalance', {}, PK), { timeoutMs: 300 }), /timeout/);
});

it('the Lua scripts are byte-identical to the ones the C build embeds', async () => {
  assert.strictEqual((await runSwitchboard(['enqueue', '--user', PK, '{"amount":5}'], env())).code, 0);
  assert.strictEqual((await runSwitchboard(['metrics', '--json'], env())).code, 0);
  for (const name of ['submit', 'exec_stats']) {
    assert.deepStrictEqual(await rc.script('EXISTS', sha1(common.lua(name))), [1], name);
  }
  // and what the client sends has that SHA1: after a flush it is the only script known
  await rc.script('FLUSH');
  await client.enqueue('rebalance', { amount: 1 }, PK);
  await client.metricsSummary(1);
  assert.deepStrictEqual(await rc.script('EXISTS', sha1(common.lua('submit')), sha1(common.lua('exec_stats'))), [1, 1]);
});

it('metricsSummary equals switchboard metrics; checkRateLimit is a sliding window', async () => {
  for (let i = 0; i < 3; i++) await client.enqueue('rebalance', { amount: 1 }, PK);
  await rc.zadd('metrics:agent:rebalance:execution_times', 10, 'a', 30, 'b');
  assert.deepStrictEqual(await Promise.all([1, 2, 3].map(() => client.checkRateLimit('u7', 2, 60))).then((r) => r.sort()),
    [false, true, true]);
  const mine = await client.metricsSummary(7);
  const cli = JSON.parse((await runSwitchboard(['metrics', '--json'], env())).stdout);
  for (const k of ['totalJobs', 'failedJobs', 'doneJobs', 'avgExecutionTime', 'p95ExecutionTime', 'rateLimit']) {
    assert.deepStrictEqual(mine[k], cli[k], k);
  }
  assert.strictEqual(mine.totalJobs, 3);
  assert.deepStrictEqual(mine.rateLimit, { hits: 3, blocked: 1 });
  await assert.rejects(async () => { for (let i = 0; i < 3; i++) await client.enqueue('rebalance', {}, PK, { rateUser: 'u9', limit: 2 }); },
    sb.RateLimited);
});

it('event bus: our publish → switchboard events consume; switchboard events publish → our consumer', async () => {
  const bus = new sb.EventBus({ url: redis.url, blockMs: 100 });
  const eventId = await bus.publish('task.created', { task_id: '123' }, 'corr-1');
  const out = await runSwitchboard(['events', 'consume', 'task.created', '--exec', 'cat', '--max-events', '1', '--group', 'cli'], env());
  assert.strictEqual(out.code, 0, out.stderr);
  for (let i = 0; i < 3; i++) {
    assert.strictEqual((await runSwitchboard(['events', 'publish', 'task.created', JSON.stringify({ task_id: String(i) })], env())).code, 0);
  }
  const got = [];
  bus.subscribe('task.created', async (data) => { got.push(data); });
  const running = bus.startConsumer({ consumerGroup: 'agent-group', consumerName: 'node-1' });
  await waitFor(() => got.length === 4, { what: '4 events' });
  await bus.stopConsumer();
  await running;
  assert.strictEqual(got[0].event_id, eventId);
  assert.strictEqual(got[0].correlation_id, 'corr-1');
  assert.deepStrictEqual(got.map((d) => d.task_id), ['123', '0', '1', '2']);
  assert.strictEqual((await rc.xpending('agent:stream:task.created', 'agent-group'))[0], 0);
});

it('event bus: request/response both ways with switchboard events', async () => {
  const responder = path.join(dir, 'r.sh');
  fs.writeFileSync(responder, '#!/bin/sh\necho \'{"result":"ok"}\'\n', { mode: 0o755 });
  const cons = startSwitchboard(['events', 'consume', 'document.process', '--exec', responder, '--respond', '--max-events', '1'], env());
  const bus = new sb.EventBus({ url: redis.url, blockMs: 100 });
  assert.deepStrictEqual(await bus.request('document.process', { doc_id: '456' }, 20), { result: 'ok' });
  await cons.exited;
  bus.subscribe('query.run', async (data) => ({ doc: data.doc_id }));
  const running = bus.startConsumer();
  const out = await runSwitchboard(['events', 'request', 'query.run', '{"doc_id":"9"}', '--timeout', '20'], env());
  await bus.stopConsumer();
  await running;
  assert.strictEqual(out.code, 0, out.stderr);
  assert.deepStrictEqual(JSON.parse(out.stdout), { doc: '9' });
  assert.deepStrictEqual(await rc.keys('agent:stream:response:*'), []);
});

it('event bus: claims a dead consumer\'s entries, dead-letters poison and malformed ones, suppresses duplicates', async () => {
  const s = 'agent:stream:task.created';
  await rc.xgroup('CREATE', s, 'agent-group', '0', 'MKSTREAM');
  await rc.xadd(s, '*', 'event_id', 'x', 'event_type', 'task.created');
  for (const t of ['poison', 'a']) await runSwitchboard(['events', 'publish', 'task.created', JSON.stringify({ task_id: t })], env());
  const dup = crypto.randomUUID();
  for (let i = 0; i < 2; i++) {
    await rc.xadd(s, '*', 'event_id', dup, 'event_type', 'task.created', 'timestamp', new Date().toISOString(), 'data', '{"task_id":"dup"}');
  }
  await rc.xreadgroup('GROUP', 'agent-group', 'ghost', 'COUNT', 2, 'STREAMS', s, '>'); // read and died
  const bus = new sb.EventBus({ url: redis.url, blockMs: 100, minIdleMs: 50, idempotencyTtl: 60 });
  const seen = [];
  bus.subscribe('task.created', async (d) => {
    seen.push(d.task_id);
    if (d.task_id === 'poison') throw new sb.DeadLetter('poison pill');
  });
  const running = bus.startConsumer({ consumerName: 'node-2' });
  await waitFor(async () => (await rc.xpending(s, 'agent-group'))[0] === 0 && seen.length >= 3, { what: 'all handled' });
  await bus.stopConsumer();
  await running;
  assert.deepStrictEqual(seen.sort(), ['a', 'dup', 'poison']);
  const dead = (await rc.xrange('agent:stream:dead:task.created', '-', '+')).map(([, f]) => {
    const o = {}; for (let i = 0; i < f.length; i += 2) o[f[i]] = f[i + 1]; return o;
  });
  assert.deepStrictEqual(dead.map((d) => d.reason).sort(), ['missing field timestamp', 'poison pill']);
  assert.ok(dead.every((d) => d.source_stream === s && d.group === 'agent-group'));
});

it('JobTracker follows a job over Socket.IO (gateway + agent), and by polling alone', async () => {
  const port = await freePort();
  const gw = startSwitchboard(['gateway'], env({ JWT_SECRET: SECRET, PORT: String(port), BIND: '127.0.0.1' }));
  const base = `http://127.0.0.1:${port}`;
  const agent = startSwitchboard(['agent'], env());
  let t = null;
  try {
    await waitFor(async () => { try { return (await fetch(`${base}/readyz`)).status === 200; } catch { return false; } },
      { what: 'gateway /readyz' });
    const token = jwt.sign({ sub: 'u-1', publicKey: PK, role: 'user' }, SECRET, { algorithm: 'HS256', expiresIn: '1h' });
    t = new sb.JobTracker({ url: base, token });
    if (!t.socket.connected) await new Promise((r) => t.socket.once('connect', r));
    const steps = [];
    const rec = await t.createAndFollow({ amount: 1000 }, { onStatus: (s) => steps.push(s.status), pollMs: 60000 });
    assert.strictEqual(rec.status, 'done');
    assert.ok(steps.includes('done'), JSON.stringify(steps));
    // polling alone: a job finished by hand, no status message
    const jobId = await client.enqueue('rebalance', { amount: 1 }, PK);
    agent.kill('SIGKILL');
    await agent.exited;
    const r0 = await client.job(jobId);
    if (r0.status !== 'done') {
      await rc.set(`agent:rebalance:job:${jobId}`, JSON.stringify({ ...r0, status: 'done' }));
    }
    const viaPoll = await t.follow(jobId, { pollMs: 100, timeoutMs: 20000 });
    assert.strictEqual(viaPoll.status, 'done');
  } finally {
    if (t) t.close(); // else its socket reconnects forever and the test never ends
    gw.kill('SIGKILL'); agent.kill('SIGKILL');
    await gw.exited;
  }
});

it('worker() speaks the --worker protocol', async () => {
  const prog = `require(${JSON.stringify(path.resolve(__dirname, '../../clients/node'))}).worker(async (job) => {
    console.log('noise');
    if (job.payload === 0) throw new (require(${JSON.stringify(path.resolve(__dirname, '../../clients/node'))}).Permanent)('zero');
    if (job.payload === 1) throw new Error('later');
    return job.payload * 2; });`;
  const child = spawn(process.execPath, ['-e', prog], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d) => { out += d; });
  for (const [id, p] of [['1-a', 3], ['1-b', 0], ['1-c', 1]]) child.stdin.write(`${JSON.stringify({ jobId: id, payload: p })}\n`);
  child.stdin.end();
  await new Promise((r) => child.on('exit', r));
  assert.deepStrictEqual(out.trim().split('\n').map((l) => JSON.parse(l)), [
    { jobId: '1-a', result: 6 }, { jobId: '1-b', error: 'zero', retry: false }, { jobId: '1-c', error: 'later', retry: true }]);
});
