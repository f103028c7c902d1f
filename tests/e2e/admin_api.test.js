// The admin job-control API (/api/v1/admin/..., /api/admin/...) and the owner's
// POST /{type}/{jobId}/cancel against a real gateway, agent and redis-server: list and search,
// counts, detail, retry, retry all dead, cancel queued and running, delete, pause / resume and
// the paused state (also in /metrics); 401/403/404/409 and bad input. And the CLI's
// `job list|retry|cancel|delete` and `queue pause|resume` with --json on the same jobs.
'use strict';
const test = require('node:test');
const assert = require('node:assert');
const jwt = require('jsonwebtoken');
const { startRedis, startSwitchboard, runSwitchboard, waitFor, freePort } = require('./lib/harness');
const { request, assertError } = require('./lib/http');
const { recordingSocket } = require('./lib/sio');

const SECRET = 'e2e-admin-secret';
// sleep:true runs until cancelled; fail:true fails for good (dead); anything else is done
const SCRIPT = 'read -r job; case "$job" in *\'"sleep":true\'*) exec sleep 60;; ' +
  '*\'"fail":true\'*) echo boom >&2; exit 65;; esac; echo \'{"ok":true}\'';
let redis, gw, agent, base, env;
let seq = 0;

function user(role = 'user') {
  const n = ++seq;
  const pk = `PK-adm-${process.pid}-${n}`;
  const token = jwt.sign({ sub: `u-${n}`, publicKey: pk, role }, SECRET, { algorithm: 'HS256', expiresIn: '1h' });
  return { pk, auth: { authorization: `Bearer ${token}` } };
}
const admin = user('admin');
const alice = user('user');
const bob = user('user');
const call = (method, path, who = admin, body) =>
  request(method, `${base}/api/v1${path}`, { headers: who ? who.auth : {}, body });

async function submit(who, payload) {
  const r = await call('POST', '/agent/report', who, payload);
  assert.strictEqual(r.status, 202, r.text);
  return r.json.jobId;
}
async function stateOf(id) {
  const r = await call('GET', `/admin/jobs/report/${id}`);
  return r.status === 200 ? r.json.state : `http ${r.status}`;
}
const waitState = (id, state) => waitFor(async () => (await stateOf(id)) === state,
  { what: `job ${id} to be ${state}` });
async function pausedMetric() {
  const text = await (await fetch(`${base}/metrics`)).text();
  const m = text.match(/^switchboard_queue_paused\{type="report"\} (\d)$/m);
  return m ? m[1] : null;
}

// After a pause: waits until no worker is blocked in BLMOVE on the queue. A take already
// waiting when the pause lands may still take one more job (jobctl.h); a worker that is not
// waiting asks the take script, which honours the pause. Read from CLIENT LIST, not a sleep.
async function noTakeWaiting() {
  const rc = redis.client();
  try {
    await waitFor(async () => !(await rc.client('LIST')).split('\n')
      .some((l) => / flags=\S*b/.test(l) && / cmd=blmove\b/.test(l)), { what: 'no BLMOVE waiting' });
  } finally { rc.disconnect(); }
}

test.before(async () => {
  redis = await startRedis();
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  env = { REDIS_URL: redis.url };
  gw = startSwitchboard(['gateway'], { ...env, JWT_SECRET: SECRET, PORT: String(port),
    BIND: '127.0.0.1', JOB_TYPES: 'rebalance,report', RATE_LIMIT: '1000' }, 'gateway');
  await gw.waitForOutput(/listening on/);
  agent = startSwitchboard(['agent', '--type', 'report', '--grace', '1', '--exec', SCRIPT], env, 'agent');
  await agent.waitForOutput(/online/);
});

test.after(async () => {
  for (const p of [agent, gw]) if (p && p.exitCode === null) { p.kill('SIGTERM'); await p.exited; }
  await redis.stop();
});

const ADMIN_ROUTES = [
  ['GET', '/admin/jobs?type=report'], ['GET', '/admin/jobs/report/1-abcdef01'],
  ['DELETE', '/admin/jobs/report/1-abcdef01'], ['POST', '/admin/jobs/report/1-abcdef01/retry'],
  ['POST', '/admin/jobs/report/1-abcdef01/cancel'], ['GET', '/admin/queues'],
  ['GET', '/admin/queues/report'], ['POST', '/admin/queues/report/retry-dead'],
  ['POST', '/admin/queues/report/pause'], ['POST', '/admin/queues/report/resume'],
  ['GET', '/admin/queues/report/paused'], ['GET', '/admin/workers'], ['GET', '/admin/events'],
];

test('every admin route: 401 without a token, 403 for a user or agent token, under /api and /api/v1', async () => {
  const agentTok = user('agent');
  for (const [method, path] of ADMIN_ROUTES) {
    for (const prefix of ['/api/v1', '/api']) {
      assertError(await request(method, base + prefix + path), 401, 'unauthorized');
      assertError(await request(method, base + prefix + path, { headers: alice.auth }), 403, 'forbidden', /role user/);
      assertError(await request(method, base + prefix + path, { headers: agentTok.auth }), 403, 'forbidden', /role agent/);
    }
  }
  assert.strictEqual((await call('GET', '/admin/queues/report/paused')).json.paused, false, 'nothing was paused');
});

test('list, search, counts, detail, retry, retry all dead, cancel a running job, delete', async () => {
  const dead = await submit(alice, { fail: true });
  const done = await submit(bob, { n: 1 });
  await waitState(dead, 'dead');
  await waitState(done, 'done');

  const all = await call('GET', '/admin/jobs?type=report');
  assert.strictEqual(all.status, 200, all.text);
  const ids = all.json.jobs.map((j) => j.jobId);
  assert.ok(ids.includes(dead) && ids.includes(done), all.text);
  const byState = await call('GET', '/admin/jobs?type=report&state=dead');
  assert.deepStrictEqual(byState.json.jobs.map((j) => j.jobId), [dead]);
  const byUser = await call('GET', `/admin/jobs?type=report&user=${bob.pk}`);
  assert.deepStrictEqual(byUser.json.jobs.map((j) => j.jobId), [done]);
  const byId = await call('GET', `/admin/jobs?type=report&id=${dead}`);
  assert.deepStrictEqual(byId.json.jobs.map((j) => [j.jobId, j.state]), [[dead, 'dead']]);
  assert.deepStrictEqual((await call('GET', `/admin/jobs?type=report&id=${dead}&state=done`)).json.jobs, []);
  const byIdUser = await call('GET', `/admin/jobs?type=report&id=${dead}&user=${alice.pk}`);
  assert.deepStrictEqual(byIdUser.json.jobs.map((j) => j.jobId), [dead], 'id and its owner together find it');
  assert.deepStrictEqual((await call('GET', `/admin/jobs?type=report&id=${dead}&user=${bob.pk}`)).json.jobs, []);
  const page1 = await request('GET', `${base}/api/admin/jobs?type=report&limit=1`, { headers: admin.auth });
  assert.strictEqual(page1.json.jobs.length, 1);
  assert.notStrictEqual(page1.json.next, null);
  const page2 = await call('GET', `/admin/jobs?type=report&limit=1&cursor=${page1.json.next}`);
  assert.strictEqual(page2.json.jobs.length, 1);
  assert.notStrictEqual(page2.json.jobs[0].jobId, page1.json.jobs[0].jobId);

  const counts = await call('GET', '/admin/queues/report');
  assert.strictEqual(counts.json.counts.dead, 1, counts.text);
  assert.strictEqual(counts.json.counts.done, 1, counts.text);
  assert.strictEqual(counts.json.paused, false);
  const queues = await call('GET', '/admin/queues');
  assert.deepStrictEqual(queues.json.queues.map((q) => q.type), ['rebalance', 'report']);

  const detail = await call('GET', `/admin/jobs/report/${dead}`);
  assert.strictEqual(detail.json.state, 'dead');
  assert.ok(detail.json.history.some((h) => h.status === 'queued'), detail.text);

  // retry: a done job is refused naming its state; a dead one runs again (and dies again)
  const refused = await call('POST', `/admin/jobs/report/${done}/retry`);
  assertError(refused, 409, 'conflict', new RegExp(`${done} is done`));
  assert.strictEqual(refused.json.state, 'done');
  const retried = await call('POST', `/admin/jobs/report/${dead}/retry`);
  assert.strictEqual(retried.status, 200, retried.text);
  assert.strictEqual(retried.json.previousState, 'dead');
  await waitFor(async () => (await call('GET', `/admin/jobs/report/${dead}`)).json.history
    .filter((h) => h.by && h.by.startsWith('admin:')).length >= 1 && (await stateOf(dead)) === 'dead',
  { what: 'the retried job to die again' });
  assertError(await call('POST', '/admin/queues/report/retry-dead?limit=1001'), 400, 'bad_request', /limit/);
  const rd = await call('POST', '/admin/queues/report/retry-dead?limit=5');
  assert.deepStrictEqual(rd.json, { success: true, type: 'report', retried: 1 });
  await waitState(dead, 'dead');

  // a running job: retry is 409 "processing"; cancel stops it; a second cancel is 409
  const running = await submit(alice, { sleep: true });
  await waitState(running, 'processing');
  const r409 = await call('POST', `/admin/jobs/report/${running}/retry`);
  assertError(r409, 409, 'conflict', /processing/);
  assert.strictEqual(r409.json.state, 'processing');
  const cancelled = await request('POST', `${base}/api/admin/jobs/report/${running}/cancel`, { headers: admin.auth });
  assert.strictEqual(cancelled.status, 200, cancelled.text);
  assert.strictEqual(cancelled.json.previousState, 'processing');
  await waitState(running, 'cancelled');
  const again = await call('POST', `/admin/jobs/report/${running}/cancel`);
  assertError(again, 409, 'conflict', /cancelled/);
  assert.strictEqual(again.json.state, 'cancelled');

  // delete, then every route names the id it does not know
  const del = await request('DELETE', `${base}/api/admin/jobs/report/${done}`, { headers: admin.auth });
  assert.strictEqual(del.status, 200, del.text);
  for (const [method, path] of [['GET', ''], ['DELETE', ''], ['POST', '/retry'], ['POST', '/cancel']])
    assertError(await call(method, `/admin/jobs/report/${done}${path}`), 404, 'not_found', new RegExp(done));
  const rc = redis.client();
  assert.strictEqual(await rc.exists(`agent:report:job:${done}`), 0);
  rc.disconnect();
});

test('bad input: 400 and nothing done; unknown type 404', async () => {
  assertError(await call('GET', '/admin/jobs'), 400, 'bad_request', /type/);
  assertError(await call('GET', '/admin/jobs?type=report&state=bogus'), 400, 'bad_request', /bogus/);
  assertError(await call('GET', '/admin/jobs?type=report&limit=0'), 400, 'bad_request', /limit/);
  assertError(await call('GET', '/admin/jobs?type=report&id=nope'), 400, 'bad_request', /job id/);
  assertError(await call('GET', '/admin/jobs?type=nosuch'), 404, 'not_found', /nosuch/);
  assertError(await call('POST', '/admin/queues/nosuch/pause'), 404, 'not_found', /nosuch/);
  assertError(await call('POST', '/admin/jobs/report/nope/retry'), 400, 'bad_request', /job id/);
});

test('pause / resume: the paused state in the API and in /metrics; the owner cancels a queued job', async () => {
  assert.strictEqual(await pausedMetric(), '0');
  const p = await call('POST', '/admin/queues/report/pause');
  assert.deepStrictEqual(p.json, { success: true, type: 'report', paused: true, changed: true });
  assert.strictEqual((await call('POST', '/admin/queues/report/pause')).json.changed, false);
  assert.strictEqual((await call('GET', '/admin/queues/report/paused')).json.paused, true);
  assert.strictEqual((await call('GET', '/admin/queues/report')).json.paused, true);
  assert.strictEqual(await pausedMetric(), '1');
  await noTakeWaiting();

  const mine = await submit(alice, { n: 2 });
  const other = await submit(alice, { n: 3 });
  assert.strictEqual(await stateOf(mine), 'queued');
  assertError(await call('POST', `/report/${mine}/cancel`, bob), 404, 'not_found');
  assertError(await call('POST', `/report/${mine}/cancel`, null), 401, 'unauthorized');
  const c = await call('POST', `/report/${mine}/cancel`, alice);
  assert.strictEqual(c.status, 200, c.text);
  assert.strictEqual(await stateOf(mine), 'cancelled');
  const c2 = await request('POST', `${base}/api/report/${mine}/cancel`, { headers: alice.auth });
  assertError(c2, 409, 'conflict', /cancelled/);
  assert.strictEqual(c2.json.state, 'cancelled');
  assertError(await call('POST', '/report/1-abcdef01/cancel', alice), 404, 'not_found');

  const r = await call('POST', '/admin/queues/report/resume');
  assert.deepStrictEqual(r.json, { success: true, type: 'report', paused: false, changed: true });
  await waitState(other, 'done');
  assert.strictEqual(await stateOf(mine), 'cancelled', 'a cancelled job is never run');
  assert.strictEqual(await pausedMetric(), '0');
  assertError(await call('POST', `/report/${other}/cancel`, alice), 409, 'conflict', /done/);
});

test('CLI: job list/retry/cancel/delete and queue pause/resume with --json; /metrics sees a pause made elsewhere', async () => {
  const sb = (args) => runSwitchboard(args, env);
  const paused = await sb(['queue', 'pause', '--type', 'report', '--json']);
  assert.strictEqual(paused.code, 0, paused.stderr);
  assert.strictEqual(JSON.parse(paused.stdout).paused, true, paused.stdout);
  await waitFor(async () => (await pausedMetric()) === '1', { what: '/metrics to show the CLI\'s pause' });
  await noTakeWaiting();

  const queued = await submit(bob, { n: 4 });
  const list = await sb(['job', 'list', '--type', 'report', '--state', 'queued', '--json']);
  assert.strictEqual(list.code, 0, list.stderr);
  assert.deepStrictEqual(JSON.parse(list.stdout).jobs.map((j) => j.jobId), [queued]);
  const cancel = await sb(['job', 'cancel', '--type', 'report', '--json', queued]);
  assert.strictEqual(cancel.code, 0, cancel.stderr);
  assert.strictEqual(await stateOf(queued), 'cancelled');
  const cancel2 = await sb(['job', 'cancel', '--type', 'report', '--json', queued]);
  assert.strictEqual(cancel2.code, 1, cancel2.stdout);
  assert.match(cancel2.stdout + cancel2.stderr, /cancelled/);
  const retry = await sb(['job', 'retry', '--type', 'report', '--json', queued]);
  assert.strictEqual(retry.code, 0, retry.stderr);
  assert.strictEqual(await stateOf(queued), 'queued');

  const resumed = await sb(['queue', 'resume', '--type', 'report', '--json']);
  assert.strictEqual(resumed.code, 0, resumed.stderr);
  assert.strictEqual(JSON.parse(resumed.stdout).paused, false, resumed.stdout);
  await waitState(queued, 'done');
  await waitFor(async () => (await pausedMetric()) === '0', { what: '/metrics to show the resume' });
  const retryDone = await sb(['job', 'retry', '--type', 'report', '--json', queued]);
  assert.strictEqual(retryDone.code, 1);
  assert.match(retryDone.stdout + retryDone.stderr, /done/);

  const del = await sb(['job', 'delete', '--type', 'report', '--json', queued]);
  assert.strictEqual(del.code, 0, del.stderr);
  assertError(await call('GET', `/admin/jobs/report/${queued}`), 404, 'not_found', new RegExp(queued));
  const del2 = await sb(['job', 'delete', '--type', 'report', '--json', queued]);
  assert.strictEqual(del2.code, 1);
});

test('GET /admin/workers: the agent with host, type, pid, start, concurrency and its job in hand', async () => {
  const id = await submit(alice, { sleep: true, n: 'workers' });
  await waitState(id, 'processing');
  const r = await call('GET', '/admin/workers');
  assert.strictEqual(r.status, 200, r.text);
  const w = r.json.agents.find((a) => a.job_type === 'report');
  assert.ok(w, `no report worker in ${r.text}`);
  assert.strictEqual(r.json.count, r.json.agents.length);
  assert.strictEqual(w.department_id, 'workers');
  assert.strictEqual(w.host, require('node:os').hostname());
  assert.strictEqual(w.pid, agent.pid);
  assert.ok(Date.parse(w.started_at) <= Date.now() && Date.parse(w.started_at) > Date.now() - 600000, w.started_at);
  assert.ok(w.max_chats >= 1, 'concurrency');
  assert.ok(Date.parse(w.last_heartbeat) > 0);
  assert.deepStrictEqual(w.jobs, [id]);
  assert.ok(w.current_chats >= 0 && w.current_chats <= w.max_chats, 'jobs in flight at the last heartbeat');
  const c = await call('POST', `/admin/jobs/report/${id}/cancel`);
  assert.strictEqual(c.status, 200, c.text);
  await waitFor(async () => {
    const again = await call('GET', '/admin/workers');
    return again.json.agents.find((a) => a.job_type === 'report').jobs.length === 0;
  }, { what: 'the cancelled job to leave the worker' });
});

test('GET /admin/events: streams, consumer groups with pending and lag, dead letters', async () => {
  const type = `console.test${process.pid}`;
  for (const n of [1, 2, 3]) {
    const p = await runSwitchboard(['events', 'publish', type, JSON.stringify({ n })], env);
    assert.strictEqual(p.code, 0, p.stderr);
  }
  // a consumer that fails every delivery: two events pending, then dead-lettered
  const consumer = startSwitchboard(['events', 'consume', type, '--exec', 'exit 1',
    '--max-deliveries', '1', '--min-idle-ms', '50', '--block-ms', '100', '--from', '0'], env, 'consume');
  let r, s;
  try {
    await waitFor(async () => {
      r = await call('GET', '/admin/events');
      s = r.status === 200 && r.json.streams.find((x) => x.type === type);
      return s && s.dead.length >= 1;
    }, { what: 'a dead letter in /admin/events' });
  } finally {
    consumer.kill('SIGTERM');
    await consumer.exited;
  }
  assert.ok(s, r.text);
  assert.strictEqual(s.name, `agent:stream:${type}`);
  assert.strictEqual(s.length, 3);
  assert.match(s.lastId, /^\d+-\d+$/);
  assert.strictEqual(s.groups.length, 1);
  assert.strictEqual(s.groups[0].name, 'agent-group');
  assert.strictEqual(typeof s.groups[0].pending, 'number');
  assert.ok(s.dead.length >= 1, `dead letters: ${JSON.stringify(s.dead)}`);
  assert.strictEqual(s.dead.stream, `agent:stream:dead:${type}`);
  assert.ok(s.dead.recent.length >= 1 && s.dead.recent[0].id, JSON.stringify(s.dead));
  assert.ok(!r.json.streams.some((x) => x.name.startsWith('agent:stream:dead:')), 'dead streams are not listed as streams');
});

test('Socket.IO: console admins get admin:jobs, admin:queues and admin:action; other admins and users get none of them', async () => {
  const sockets = new Set();
  const tok = (who) => who.auth.authorization.slice(7);
  const adm = recordingSocket(sockets, base, tok(admin), { auth: { token: tok(admin), console: true } });
  const plain = recordingSocket(sockets, base, tok(admin)); // an admin's script: no console feed
  const usr = recordingSocket(sockets, base, tok(bob), { auth: { token: tok(bob), console: true } });
  try {
    await adm.connected$();
    await plain.connected$();
    await usr.connected$();
    // 30 jobs of another user: their changes reach the admin coalesced, never one event per job
    const ids = [];
    for (let i = 0; i < 30; i++) ids.push(await submit(alice, { n: `feed-${i}` }));
    await waitFor(() => {
      const seen = new Set(adm.events.filter((e) => e.name === 'admin:jobs')
        .flatMap((e) => e.data.changes || []).filter((c) => c.status === 'done').map((c) => c.jobId));
      return ids.every((id) => seen.has(id));
    }, { what: 'every job done in admin:jobs', timeoutMs: 30000 });
    const batches = adm.events.filter((e) => e.name === 'admin:jobs');
    assert.ok(batches.length < 30 * 3, `${batches.length} admin:jobs events for 90 changes: not coalesced`);
    const change = batches.flatMap((e) => e.data.changes).find((c) => c.jobId === ids[0] && c.status === 'done');
    assert.deepStrictEqual(change, { type: 'report', jobId: ids[0], status: 'done', userId: alice.pk });
    // the queue counters with a rate, and an action announced
    const q = await adm.next('admin:queues', (d) => Array.isArray(d.queues));
    assert.deepStrictEqual(q.data.queues.map((x) => x.type), ['rebalance', 'report']);
    assert.ok('oldestPendingAgeMs' in q.data.queues[1] && typeof q.data.rates.report === 'number', JSON.stringify(q.data));
    assert.strictEqual((await call('POST', '/admin/queues/report/pause')).status, 200);
    const a = await adm.next('admin:action', (d) => d.action === 'paused');
    assert.deepStrictEqual(a.data, { action: 'paused', type: 'report', changed: true, by: 'admin:u-1' });
    await adm.next('admin:queues', (d) => d.queues[1].paused === true, 'admin:queues showing the pause');
    assert.strictEqual((await call('POST', '/admin/queues/report/resume')).status, 200);
    await adm.next('admin:action', (d) => d.action === 'resumed');
    assert.deepStrictEqual(usr.events.filter((e) => e.name.startsWith('admin:')), [], 'a user gets no admin events');
    assert.deepStrictEqual(plain.events.filter((e) => e.name.startsWith('admin:')), [],
      'an admin socket that did not ask for the console feed gets none of it');
  } finally {
    for (const s of sockets) s.disconnect();
  }
});

test('ADMIN_FEED=0: that gateway sends admins no admin:* feed; statuses and the other gateway unchanged', async () => {
  const port = await freePort();
  const off = `http://127.0.0.1:${port}`;
  const quiet = startSwitchboard(['gateway'], { ...env, JWT_SECRET: SECRET, PORT: String(port),
    BIND: '127.0.0.1', JOB_TYPES: 'rebalance,report', RATE_LIMIT: '1000', ADMIN_FEED: '0' }, 'gateway-nofeed');
  const sockets = new Set();
  const tok = admin.auth.authorization.slice(7);
  try {
    await quiet.waitForOutput(/subscribed to agent:report:events/);
    const on = recordingSocket(sockets, base, tok, { auth: { token: tok, console: true } });
    const offAdm = recordingSocket(sockets, off, tok, { auth: { token: tok, console: true } });
    await on.connected$();
    await offAdm.connected$();
    const r = await request('POST', `${off}/api/v1/agent/report`, { headers: admin.auth, body: { n: 'nofeed' } });
    assert.strictEqual(r.status, 202, r.text);
    await offAdm.next('report:done', (d) => d.jobId === r.json.jobId, 'the admin\'s own status');
    // the feed of the other gateway carries the job, then two counter ticks (≥ 1 s: both
    // gateways' 500 ms windows and 1 s ticks have run since the job finished)
    await on.next('admin:jobs', (d) => (d.changes || []).some((c) => c.jobId === r.json.jobId && c.status === 'done'));
    const ticks = () => on.events.filter((e) => e.name === 'admin:queues').length;
    const t0 = ticks();
    await waitFor(() => ticks() >= t0 + 2, { what: 'two admin:queues on the gateway with the feed' });
    assert.deepStrictEqual(offAdm.events.filter((e) => e.name.startsWith('admin:')).map((e) => e.name), [],
      'ADMIN_FEED=0 sends no admin:* events');
  } finally {
    for (const s of sockets) s.disconnect();
    quiet.kill('SIGTERM');
    await quiet.exited;
  }
});
