// The CLI verbs that report on a running installation: `bench` sends jobs to the running
// agents and measures them; `metrics` reads the summary of SPEC §4; both against a real
// redis-server and a real `switchboard agent`. And what every verb shares: each takes only its
// own flags, and one exit status means one thing (README "Exit codes").
'use strict';
const test = require('node:test');
const assert = require('node:assert');
const { startRedis, startSwitchboard, runSwitchboard } = require('./lib/harness');
const { recordingSocket } = require('./lib/sio');

let redis;
test.before(async () => { redis = await startRedis(); });
test.after(async () => { await redis.stop(); });

test('bench with no agent running times out and says why', async () => {
  const r = await runSwitchboard(['bench', '--jobs', '10', '--timeout', '1'], { REDIS_URL: redis.url });
  assert.strictEqual(r.code, 4, r.stderr); /* timed out */
  assert.match(r.stdout, /10 sent, 0 finished/);
  assert.match(r.stderr, /are agents running/);
  const j = await runSwitchboard(['bench', '--jobs', '7', '--timeout', '1', '--json'], { REDIS_URL: redis.url });
  assert.strictEqual(j.code, 4, j.stderr);
  const doc = JSON.parse(j.stdout); /* stdout is the document alone: progress is on stderr */
  assert.strictEqual(doc.type, 'rebalance');
  assert.deepStrictEqual([doc.sent, doc.finished, doc.failed, doc.unfinished], [7, 0, 0, 7]);
  assert.strictEqual(doc.jobs_per_second, 0);
  assert.ok(doc.elapsed_ms >= 1000, j.stdout);
  assert.strictEqual(doc.latency_ms, null);
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
    const j = await runSwitchboard(['bench', '--jobs', '300', '--timeout', '60', '--json'], { REDIS_URL: redis.url });
    assert.strictEqual(j.code, 0, j.stderr);
    const res = JSON.parse(j.stdout);
    assert.deepStrictEqual([res.type, res.sent, res.finished, res.failed, res.unfinished],
      ['rebalance', 300, 300, 0, 0]);
    assert.ok(res.elapsed_ms > 0 && res.jobs_per_second > 0, j.stdout);
    assert.strictEqual(res.jobs_per_second, Math.round(300 * 1000 / res.elapsed_ms));
    const l = res.latency_ms;
    assert.ok(l.p50 >= 0 && l.p50 <= l.p95 && l.p95 <= l.p99 && l.p99 <= l.max, j.stdout);
    assert.ok(l.max <= res.elapsed_ms, j.stdout);
    const after = await runSwitchboard(['metrics', '--json'], { REDIS_URL: redis.url });
    assert.strictEqual(JSON.parse(after.stdout).doneJobs, 800, 'the 300 really ran');
  } finally {
    agent.kill('SIGTERM');
    await agent.exited;
  }
});

test('each verb takes only its own flags; other verbs\' environment is ignored', async () => {
  const r = await runSwitchboard(['token', '--role', 'user', '--public-key', 'PK', '--concurrency', '8',
    '--maxlen', '5'], { JWT_SECRET: 's' });
  assert.strictEqual(r.code, 2, r.stderr);
  assert.match(r.stderr, /^switchboard token: --concurrency is not an option of this command/);
  assert.strictEqual(r.stdout, '');
  const ok = await runSwitchboard(['token', '--role', 'user', '--public-key', 'PK'],
    { JWT_SECRET: 's', CONCURRENCY: 'lots', EVENTS_MAXLEN: '-1' });
  assert.strictEqual(ok.code, 0, ok.stderr);
  const help = await runSwitchboard(['token', '--help']);
  const flags = [...help.stdout.matchAll(/^ {2}--([a-z-]+)/gm)].map((m) => m[1]);
  assert.deepStrictEqual(flags.sort(), ['department', 'department-id', 'email', 'jwt-secret', 'name',
    'public-key', 'role', 'sub', 'ttl']);
  // AUDIT_EVENTS belongs to the gateway and the agent (their environment is read: a bad value stops them)
  for (const verb of ['gateway', 'agent']) {
    const bad = await runSwitchboard([verb], { AUDIT_EVENTS: '2', JWT_SECRET: 's' });
    assert.strictEqual(bad.code, 2, bad.stderr);
    assert.match(bad.stderr, new RegExp(`^switchboard ${verb}: bad setting AUDIT_EVENTS='2'`));
  }
  // a verb that takes no arguments refuses one (a forgotten `--flag` before its value), before
  // it touches Redis or binds a port
  for (const verb of ['up', 'gateway', 'agent', 'token', 'metrics', 'doctor', 'bench']) {
    const extra = await runSwitchboard([verb, 'maybe'], { JWT_SECRET: 's' });
    assert.strictEqual(extra.code, 2, `${verb}: ${extra.stderr}`);
    assert.match(extra.stderr, new RegExp(`^switchboard ${verb}: unexpected argument 'maybe'`));
    assert.strictEqual(extra.stdout, '');
  }
  const unknown = await runSwitchboard(['job', '--nope', '1-a']);
  assert.strictEqual(unknown.code, 2);
  assert.match(unknown.stderr, /switchboard job: unknown option '--nope'/);
});

test('exit statuses: usage 2, not found 1, Redis unavailable 3, timed out 4', async () => {
  const bare = await runSwitchboard([]);
  assert.strictEqual(bare.code, 2);
  assert.match(bare.stderr, /usage:/);
  const help = await runSwitchboard(['--help']);
  assert.strictEqual(help.code, 0);
  assert.match(help.stdout, /exit status \(every verb\): 0 ok, 1 failed .*\n +2 usage or bad input, 3 Redis unavailable, 4 timed out/);
  const env = { REDIS_URL: redis.url };
  assert.strictEqual((await runSwitchboard(['job', 'not-an-id'], env)).code, 2);
  const missing = await runSwitchboard(['job', '123-abc'], env); /* well-formed (SPEC §2), absent */
  assert.strictEqual(missing.code, 1);
  assert.match(missing.stderr, /no such job/);
  const noRedis = { REDIS_URL: 'redis://127.0.0.1:1' };
  assert.strictEqual((await runSwitchboard(['job', '123-abc'], noRedis)).code, 3);
  assert.strictEqual((await runSwitchboard(['enqueue', '{}'], noRedis)).code, 3);
  assert.strictEqual((await runSwitchboard(['enqueue', 'not json'], env)).code, 2);
  const waited = await runSwitchboard(['enqueue', '--wait', '--timeout', '1', '{"amount":1}'], env);
  assert.strictEqual(waited.code, 4, waited.stderr);
  assert.match(waited.stderr, /timed out after 1\.\d s waiting for job/);
  assert.doesNotMatch(waited.stderr, /connection lost|lost redis/);
  const watch = await runSwitchboard(['presence', 'watch', '--timeout', '1', '--max-events', '1'], env);
  assert.strictEqual(watch.code, 4, watch.stderr);
  const watched = await runSwitchboard(['presence', 'watch', '--timeout', '1'], env);
  assert.strictEqual(watched.code, 0, watched.stderr);
  const c = redis.client();
  await c.flushall();
  c.disconnect();
});

test('switchboard enqueue announces {type}:created to the owner\'s sockets, as the POST does', async () => {
  const env = { REDIS_URL: redis.url, JWT_SECRET: 'cli-secret' };
  const gw = startSwitchboard(['gateway', '--port', '0', '--bind', '127.0.0.1'], env);
  const sockets = new Set();
  try {
    await gw.waitForOutput(/listening on http:\/\/127\.0\.0\.1:\d+/);
    const base = gw.output.match(/listening on (http:\/\/127\.0\.0\.1:\d+)/)[1];
    const mint = async (pk) => (await runSwitchboard(['token', '--role', 'user', '--public-key', pk],
      env)).stdout.trim();
    const mine = recordingSocket(sockets, base, await mint('PK-enq'));
    const other = recordingSocket(sockets, base, await mint('PK-other'));
    await mine.connected$();
    await other.connected$();
    const q = await runSwitchboard(['enqueue', '--user', 'PK-enq', '{"amount":5}'], env);
    assert.strictEqual(q.code, 0, q.stderr);
    const id = q.stdout.trim();
    const ev = await mine.next('rebalance:created', (d) => d.jobId === id);
    assert.deepStrictEqual(ev.data, { jobId: id });
    const marker = await runSwitchboard(['enqueue', '--user', 'PK-other', '{"amount":6}'], env);
    await other.next('rebalance:created', (d) => d.jobId === marker.stdout.trim());
    assert.deepStrictEqual(other.events.filter((e) => e.name === 'rebalance:created').map((e) => e.data.jobId),
      [marker.stdout.trim()], 'only the owner hears of a job');
  } finally {
    for (const s of sockets) s.disconnect();
    gw.kill('SIGTERM');
    await gw.exited;
    const c = redis.client();
    await c.flushall();
    c.disconnect();
  }
});

test('events pending and info --json report the group\'s real state', async () => {
  const env = { REDIS_URL: redis.url };
  const key = 'agent:stream:t.json';
  const ids = [];
  for (let i = 0; i < 5; i++) {
    const p = await runSwitchboard(['events', 'publish', 't.json', `{"n":${i}}`, '--json'], env);
    assert.strictEqual(p.code, 0, p.stderr);
    ids.push(JSON.parse(p.stdout).id);
  }
  const c = redis.client();
  try {
    await c.xgroup('CREATE', key, 'g', '0');
    await c.xreadgroup('GROUP', 'g', 'c1', 'COUNT', 3, 'STREAMS', key, '>');
    await c.xreadgroup('GROUP', 'g', 'c2', 'COUNT', 2, 'STREAMS', key, '>');
    assert.strictEqual(await c.xack(key, 'g', ids[0]), 1);
    await c.xadd('agent:stream:dead:t.json', '*', 'x', '1');
    /* 4 unacked: ids[1], ids[2] held by c1, ids[3], ids[4] by c2 */
    const p = await runSwitchboard(['events', 'pending', 't.json', '--group', 'g', '--json'], env);
    assert.strictEqual(p.code, 0, p.stderr);
    const pend = JSON.parse(p.stdout);
    assert.deepStrictEqual({ ...pend, entries: undefined }, {
      stream: key, group: 'g', pending: 4, first_id: ids[1], last_id: ids[4],
      consumers: [{ name: 'c1', pending: 2 }, { name: 'c2', pending: 2 }], entries: undefined });
    assert.deepStrictEqual(pend.entries.map((e) => [e.id, e.consumer, e.deliveries]),
      [[ids[1], 'c1', 1], [ids[2], 'c1', 1], [ids[3], 'c2', 1], [ids[4], 'c2', 1]]);
    assert.ok(pend.entries.every((e) => Number.isInteger(e.idle_ms) && e.idle_ms >= 0));
    const limited = JSON.parse((await runSwitchboard(['events', 'pending', 't.json', '--group', 'g',
      '--limit', '2', '--json'], env)).stdout);
    assert.strictEqual(limited.pending, 4);
    assert.deepStrictEqual(limited.entries.map((e) => e.id), [ids[1], ids[2]]);

    const i = await runSwitchboard(['events', 'info', 't.json', '--json'], env);
    assert.strictEqual(i.code, 0, i.stderr);
    const [s] = JSON.parse(i.stdout).streams;
    assert.deepStrictEqual({ ...s, groups: undefined }, {
      type: 't.json', stream: key, length: 5, first_id: ids[0], last_id: ids[4],
      last_generated_id: ids[4], dead_letters: 1, groups: undefined });
    assert.strictEqual(s.groups.length, 1);
    const g = s.groups[0];
    assert.deepStrictEqual([g.name, g.pending, g.last_delivered_id, g.lag], ['g', 4, ids[4], 0]);
    assert.deepStrictEqual(g.consumers.map((x) => [x.name, x.pending]), [['c1', 2], ['c2', 2]]);
    assert.ok(g.consumers.every((x) => Number.isInteger(x.idle_ms)));

    const all = await runSwitchboard(['events', 'info', '--json'], env);
    assert.strictEqual(all.code, 0, all.stderr);
    const streams = JSON.parse(all.stdout).streams;
    assert.deepStrictEqual(streams.find((x) => x.stream === key), { stream: key, length: 5 });
    assert.deepStrictEqual(streams.find((x) => x.stream === 'agent:stream:dead:t.json'),
      { stream: 'agent:stream:dead:t.json', length: 1 });

    /* a type without a stream: left out, said on stderr, exit 1; Redis gone: exit 3, no JSON */
    const some = await runSwitchboard(['events', 'info', 't.none', 't.json', '--json'], env);
    assert.strictEqual(some.code, 1);
    assert.match(some.stderr, /agent:stream:t\.none/);
    assert.deepStrictEqual(JSON.parse(some.stdout).streams.map((x) => x.type), ['t.json']);
    const nogroup = await runSwitchboard(['events', 'pending', 't.json', '--group', 'nope', '--json'], env);
    assert.strictEqual(nogroup.code, 1);
    assert.strictEqual(nogroup.stdout, '');
    const gone = { REDIS_URL: 'redis://127.0.0.1:1' };
    for (const args of [['events', 'info', '--json'], ['events', 'pending', 't.json', '--json']]) {
      const r = await runSwitchboard(args, gone);
      assert.strictEqual(r.code, 3, r.stderr);
      assert.strictEqual(r.stdout, '');
    }
  } finally {
    await c.flushall();
    c.disconnect();
  }
});
