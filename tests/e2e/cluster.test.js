// Cluster mode end to end (REDIS_CLUSTER): a real Redis Cluster on loopback (three masters,
// a replica each), the real gateway and one real agent per job type. Jobs POSTed over HTTP
// with real tokens from several users all reach `done`; their keys are spread over several
// masters (asked of each master); presence shows the agents; `queue` and `job list` work.
// Then a slot moved between masters while jobs flow (redis-cli --cluster reshard) and a master
// killed under load with REDIS_WAIT_REPLICAS=1 lose no acknowledged (202) job and run none
// twice. Generous deadlines: a loaded two-core machine runs this. With QUEUE_SHARDS=N in the
// environment (ctest runs it with 6 too: e2e/cluster:shards6) every process spreads each type
// over N slots (`{type.s}`); the slot a test moves or kills is the one the first user's shard
// of the type is in, and counts add every shard up.
'use strict';
const test = require('node:test');
const assert = require('node:assert');
const jwt = require('jsonwebtoken');
const Redis = require('ioredis');
const { startSwitchboard, runSwitchboard, waitFor, freePort, keptAliveSockets, postsInOneTurn } = require('./lib/harness');
const { startCluster, redisCli, keySlot, shardOfUser, queueName } = require('./lib/cluster');
const { recordingSocket } = require('./lib/sio');

const SECRET = 'e2e-cluster-secret';
let cl, gw, base, cc;
const agents = [];

const SHARDS = Number(process.env.QUEUE_SHARDS || 1);

function user(n) {
  const pk = `PK-cl-${process.pid}-${n}`;
  const token = jwt.sign({ sub: `u${n}`, publicKey: pk, role: 'user' }, SECRET,
    { algorithm: 'HS256', expiresIn: '1h' });
  return { pk, auth: { authorization: `Bearer ${token}` } };
}
const USERS = [1, 2, 3, 4, 5, 6].map(user);
// the queue shard of USERS[0]'s jobs (0 without shards): its slot is the one moved or killed
const S0 = shardOfUser(USERS[0].pk, SHARDS);
// the hash tag of type t's keys in shard s
const tag = (t, s = S0) => `{${queueName(t, s)}}`;

// A type name (not rebalance) whose shard S0's hash tag falls on slot `slot` exactly, so that
// redis-cli --cluster reshard (which moves a master's lowest slots first) moves it.
function typeOnSlot(slot, stem) {
  for (let i = 0; ; i++) if (keySlot(tag(`${stem}${i}`)) === slot) return `${stem}${i}`;
}

// The three masters' lowest slots (0, 5461, 10923 after --cluster create): one type each, so
// the jobs' keys spread over every master.
const TYPES = [typeOnSlot(0, 'ta'), typeOnSlot(5461, 'tb'), typeOnSlot(10923, 'tc')];

// The jobs of type t created so far, over every shard.
async function created(t) {
  let n = 0;
  for (let s = 0; s < SHARDS; s++) n += Number(await cc.zcard(`agent:${tag(t, s)}:index`));
  return n;
}

async function post(type, u, body) {
  try {
    const r = await fetch(`${base}/api/v1/agent/${type}`, { method: 'POST',
      headers: { ...u.auth, 'content-type': 'application/json' }, body: JSON.stringify(body) });
    return { status: r.status, json: await r.json().catch(() => null) };
  } catch (e) { return { status: 0, error: String(e) }; }
}

async function getJob(type, u, id) {
  try {
    const r = await fetch(`${base}/api/v1/agent/${type}/${id}`, { headers: u.auth });
    return r.status === 200 ? await r.json() : null;
  } catch { return null; }
}

// POSTs every job of list ({type, u, n}) with `width` in flight, until stop() says so;
// returns [{...job, status, id}].
async function postAll(list, width = 16, stop = () => false) {
  const out = [];
  let next = 0;
  async function lane() {
    while (next < list.length && !stop()) {
      const j = list[next++];
      const r = await post(j.type, j.u, { amount: j.n, i: j.n });
      out.push({ ...j, status: r.status, id: r.json && r.json.jobId, answer: r.json || r.error });
    }
  }
  await Promise.all(Array.from({ length: width }, lane));
  return out;
}

// Waits until every job of list is done (polling GET with a deadline); returns the records.
async function allDone(list, timeoutMs = 180000) {
  const recs = new Map();
  await waitFor(async () => {
    const left = list.filter((j) => !recs.has(j.id));
    for (let i = 0; i < left.length; i += 32) {
      const got = await Promise.all(left.slice(i, i + 32).map((j) => getJob(j.type, j.u, j.id)));
      got.forEach((rec, k) => { if (rec && rec.status === 'done') recs.set(left[i + k].id, rec); });
    }
    return recs.size === list.length;
  }, { timeoutMs, intervalMs: 300, what: `${list.length} jobs done` });
  return recs;
}

function startAgent(type) {
  const a = startSwitchboard(['agent', '--type', type, '--concurrency', '4', '--exec', 'cat',
    '--grace', '1'], { REDIS_CLUSTER: cl.seeds, RECOVERY_INTERVAL: '2', JOB_LEASE_TTL: '6',
    HEARTBEAT_INTERVAL: '2' }, `agent-${type}`);
  agents.push(a);
  return a;
}

// The master serving slot now, as its port (CLUSTER SLOTS of a live node).
async function ownerOf(slot) {
  for (const n of cl.nodes) {
    if (n.proc.exitCode !== null || n.proc.signalCode !== null) continue;
    const slots = await cl.node(n.port, (c) => c.call('CLUSTER', 'SLOTS')).catch(() => null);
    const range = slots && slots.find((s) => s[0] <= slot && slot <= s[1]);
    if (range) return Number(range[2][1]);
  }
  return -1;
}

async function nodeId(port) {
  return cl.node(port, (c) => c.call('CLUSTER', 'MYID'));
}

test.before(async () => {
  cl = await startCluster({ masters: 3, replicas: 1 });
  cc = new Redis.Cluster(cl.seeds.split(',').map((s) => ({ host: '127.0.0.1', port: Number(s.split(':')[1]) })));
  cc.on('error', () => {});
  await new Promise((resolve) => cc.once('ready', resolve));
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  // the gateway's first seed (its home node: pub/sub) is a master that does not hold the
  // presence keys, so that their expiry events reach it only if it subscribes on their master
  const presence = await ownerOf(keySlot('{agents}'));
  const first = (await cl.masters()).find((m) => m !== presence);
  const seeds = [`127.0.0.1:${first}`, ...cl.seeds.split(',').filter((x) => x !== `127.0.0.1:${first}`)];
  gw = startSwitchboard(['gateway'], { REDIS_CLUSTER: seeds.join(','), JWT_SECRET: SECRET,
    PORT: String(port), BIND: '127.0.0.1', JOB_TYPES: TYPES.join(','), RATE_LIMIT: '100000',
    REDIS_WAIT_REPLICAS: '1', REDIS_WAIT_TIMEOUT_MS: '2000' }, 'gateway');
  await gw.waitForOutput(/listening on/, 60000);
  await waitFor(async () => {
    try { return (await fetch(`${base}/readyz`)).status === 200; } catch { return false; }
  }, { timeoutMs: 60000, what: 'gateway /readyz' });
  for (const t of TYPES) startAgent(t);
});

test.after(async () => {
  for (const p of [gw, ...agents]) if (p && p.exitCode === null) p.kill('SIGKILL');
  if (cc) cc.disconnect();
  if (cl) await cl.stop();
});

test('REDIS_CLUSTER with Sentinels or a database number is refused (exit 2)', async () => {
  const a = await runSwitchboard(['queue'], { REDIS_CLUSTER: cl.seeds,
    REDIS_SENTINELS: '127.0.0.1:1', REDIS_SENTINEL_MASTER: 'm' });
  assert.strictEqual(a.code, 2, a.stderr);
  assert.match(a.stderr, /REDIS_CLUSTER cannot be used with REDIS_SENTINELS/);
  const b = await runSwitchboard(['queue'], { REDIS_CLUSTER: cl.seeds, REDIS_DB: '2' });
  assert.strictEqual(b.code, 2, b.stderr);
  const c = await runSwitchboard(['queue'], { REDIS_CLUSTER: 'nonsense' });
  assert.strictEqual(c.code, 2, c.stderr);
  assert.match(c.stderr, /bad setting REDIS_CLUSTER='nonsense'/);
});

test('300 jobs from six users over three types all reach done, keys on every master', async () => {
  const list = [];
  for (let n = 0; n < 300; n++) list.push({ type: TYPES[n % 3], u: USERS[n % 6], n });
  const sent = await postAll(list);
  const bad = sent.filter((j) => j.status !== 202);
  assert.strictEqual(bad.length, 0, `not 202: ${JSON.stringify(bad.slice(0, 3).map((j) => j.answer))}`);
  const recs = await allDone(sent);
  for (const j of sent) {
    const rec = recs.get(j.id);
    assert.strictEqual(rec.user.publicKey, j.u.pk);
    assert.strictEqual(rec.attempts, 1);
  }
  // every master holds keys of its type: asked of the master itself
  const masters = await cl.masters();
  assert.strictEqual(masters.length, 3);
  const holding = [];
  for (const t of TYPES) {
    let n = 0; // over the type's shards' slots
    for (let s = 0; s < SHARDS; s++) {
      const owner = await ownerOf(keySlot(tag(t, s)));
      const k = await cl.node(owner, (c) => c.call('CLUSTER', 'COUNTKEYSINSLOT', keySlot(tag(t, s))));
      if (k > 0) holding.push(owner);
      n += k;
    }
    assert.ok(n >= 100, `type ${t}: ${n} keys in its slots`);
  }
  for (const m of masters) {
    const size = await cl.node(m, (c) => c.dbsize());
    assert.ok(size > 0, `master :${m} holds no key`);
  }
  assert.strictEqual(new Set(holding).size, 3, 'the jobs\' keys are on the three masters');
  // the audit stream kept its name and has every job.created entry
  assert.ok(await cc.xlen('agent:stream:job.created') >= 300);
});

test('group commit per slot: one loop turn of POSTs interleaving slots is one script call per slot', async () => {
  // 36 POSTs whose slot changes at every one (type fastest), written while the gateway is
  // stopped so that it reads them in one poll phase; agents stopped so that only the
  // gateway's script calls are counted, on every master
  const list = [];
  for (let r = 0; r < 2; r++) for (const u of USERS) for (const t of TYPES) list.push({ type: t, u });
  const slots = new Set(list.map((j) => keySlot(tag(j.type, shardOfUser(j.u.pk, SHARDS)))));
  const port = Number(new URL(base).port);
  // script calls on every master, and ZCOUNTs: the gateway's periodic queue-state refresh for
  // /metrics (admin.c, every 5 s; a script call per type and shard, then a ZCOUNT per type)
  // would add its calls to a window it lands in, so such a window is measured again
  const counts = async () => {
    let n = 0, refresh = 0;
    for (const m of await cl.masters()) {
      const stats = await cl.node(m, (c) => c.info('commandstats'));
      const calls = (c) => Number((new RegExp(`cmdstat_${c}:calls=(\\d+)`).exec(stats) || [0, 0])[1]);
      n += calls('evalsha') + calls('eval');
      refresh += calls('zcount');
    }
    return { n, refresh };
  };
  // one window: the POSTs written while the gateway is stopped, so that it reads them in one
  // poll phase; returns the jobs, the script calls in the window, and whether the refresh ran
  const window = async () => {
    const socks = await keptAliveSockets(port, list.length);
    try {
      const c0 = await counts();
      const got = await postsInOneTurn(gw, socks, list.map((j, i) => ({ path: `/api/v1/agent/${j.type}`,
        authorization: j.u.auth.authorization, body: JSON.stringify({ amount: i + 1 }) })));
      assert.deepStrictEqual(got.map((a) => a.status), list.map(() => 202), JSON.stringify(got.slice(0, 2)));
      const c1 = await counts();
      await new Promise((res) => setTimeout(res, 200)); // a refresh's ZCOUNT follows its scripts
      const c2 = await counts();
      return { jobs: got.map((a, i) => ({ ...list[i], id: JSON.parse(a.body).jobId })),
        calls: c1.n - c0.n, refreshed: c2.refresh !== c0.refresh };
    } finally {
      for (const sk of socks) sk.destroy();
    }
  };
  const jobs = [];
  let w;
  for (const a of agents) a.kill('SIGSTOP'); // agents stopped: only the gateway's calls count
  try {
    for (let attempt = 0; attempt < 3 && (!w || w.refreshed); attempt++) {
      w = await window();
      jobs.push(...w.jobs);
    }
  } finally {
    for (const a of agents) a.kill('SIGCONT');
  }
  assert.ok(!w.refreshed, 'the periodic refresh landed in three windows in a row');
  // one per slot, or two if lws split the requests over two poll phases; without per-slot
  // groups every slot change sent the group: 36 calls
  assert.ok(w.calls >= slots.size && w.calls <= 2 * slots.size + 2,
    `${w.calls} script calls for ${list.length} POSTs on ${slots.size} slots`);
  await allDone(jobs);
});

test('presence shows every agent online; queue and job list work on the cluster', async () => {
  const online = await waitFor(async () => {
    const r = await fetch(`${base}/api/v1/agent-status/online`, { headers: USERS[0].auth });
    const j = await r.json();
    const types = j.data.agents.filter((a) => a.status === 'online').map((a) => a.job_type);
    return TYPES.every((t) => types.includes(t)) && j.data.agents;
  }, { timeoutMs: 30000, what: 'the three agents online' });
  assert.ok(online.length >= 3);
  // presence keys share the {agents} tag
  assert.strictEqual(await cc.scard('{agents}:all') >= 3, true);
  const env = { REDIS_CLUSTER: cl.seeds };
  const q = await runSwitchboard(['queue', '--type', TYPES[0]], env);
  assert.strictEqual(q.code, 0, q.stderr);
  assert.match(q.stdout, /^pending: 0 /m);
  const l = await runSwitchboard(['job', 'list', '--type', TYPES[1], '--limit', '5'], env);
  assert.strictEqual(l.code, 0, l.stderr);
  assert.strictEqual(l.stdout.trim().split('\n').filter((x) => / done /.test(x)).length, 5);
  const p = await runSwitchboard(['presence'], env);
  assert.strictEqual(p.code, 0, p.stderr);
  for (const t of TYPES) assert.match(p.stdout, new RegExp(`\\(${t}\\)`));
  const d = await runSwitchboard(['doctor'], env);
  assert.strictEqual(d.code, 0, d.stdout + d.stderr);
  assert.match(d.stdout, /cluster +3 masters, 16384\/16384 slots/);
});

test('a Socket.IO client connecting later gets the replay of its jobs of every type (every master)', async () => {
  const u = user(7);
  const list = TYPES.map((type, n) => ({ type, u, n: 3000 + n }));
  const sent = await postAll(list, 3);
  assert.deepStrictEqual(sent.map((j) => j.status), [202, 202, 202]);
  await allDone(sent);
  const sockets = new Set();
  const token = u.auth.authorization.slice(7);
  const s = recordingSocket(sockets, base, token, { transports: ['websocket'] });
  try {
    await s.connected$();
    for (const j of sent) {
      const e = await s.next(`${j.type}:done`, (d) => d.jobId === j.id);
      assert.strictEqual(e.data.replay, true);
    }
  } finally {
    for (const x of sockets) x.disconnect();
  }
});

async function metric(name) {
  const text = await (await fetch(`${base}/metrics`)).text();
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : NaN;
}

// Starts an agent with a 2 s presence TTL, kills it without a word, and waits until the
// gateway has received the expiry event of its presence key (and the agent is offline).
async function expiryHeard(id) {
  await waitFor(async () => (await metric('gateway_presence_keyspace_notifications')) === 1,
    { timeoutMs: 30000, what: 'keyspace notifications on at the presence master' });
  const before = await metric('gateway_presence_expiries_total');
  const a = startSwitchboard(['agent', '--type', TYPES[1], '--exec', 'cat', '--agent-id', id],
    { REDIS_CLUSTER: cl.seeds, AGENT_STATUS_TTL: '2', HEARTBEAT_INTERVAL: '1' }, `agent-${id}`);
  const online = async () => {
    const r = await fetch(`${base}/api/v1/agent-status/online`, { headers: USERS[0].auth });
    return (await r.json()).data.agents.some((x) => x.agent_id === id);
  };
  await waitFor(online, { timeoutMs: 30000, what: `${id} online` });
  a.kill('SIGKILL');
  await a.exited;
  await waitFor(async () => !(await online()) &&
    (await metric('gateway_presence_expiries_total')) > before,
  { timeoutMs: 30000, what: `the expiry event of ${id}` });
}

test('an agent gone without a word is announced offline from the presence master\'s expiry event', async () => {
  await expiryHeard('short-lived');
});

test('an agent with AUDIT_EVENTS=0 finishes jobs on the cluster too (no audit key in its scripts)', async () => {
  const a = startSwitchboard(['agent', '--type', 'quiet', '--exec', 'cat'],
    { REDIS_CLUSTER: cl.seeds, AUDIT_EVENTS: '0' }, 'agent-quiet');
  const r = await runSwitchboard(['enqueue', '--type', 'quiet', '--wait', '--timeout', '60',
    '{"n":1}'], { REDIS_CLUSTER: cl.seeds });
  a.kill('SIGTERM');
  await a.exited;
  assert.strictEqual(r.code, 0, r.stdout + r.stderr + a.output.slice(-2000));
  assert.match(r.stdout, /done/);
});

test('a slot moved between masters while jobs flow loses nothing and runs nothing twice', async () => {
  const type = TYPES[1];
  const slot = keySlot(tag(type));
  const from = await ownerOf(slot);
  const to = (await cl.masters()).find((m) => m !== from);
  const list = [];
  for (let n = 0; n < 150; n++) list.push({ type, u: USERS[n % 6], n: 1000 + n });
  const before = await created(type);
  const sending = postAll(list, 4);
  await waitFor(async () => await created(type) > before + 20, { timeoutMs: 30000, what: 'load' });
  await redisCli(['--cluster', 'reshard', `127.0.0.1:${from}`, '--cluster-from', await nodeId(from),
    '--cluster-to', await nodeId(to), '--cluster-slots', '1', '--cluster-yes']);
  assert.strictEqual(await ownerOf(slot), to, 'the type\'s slot moved');
  const sent = await sending;
  const ok = sent.filter((j) => j.status === 202);
  assert.strictEqual(ok.length, 150, `refused: ${sent.filter((j) => j.status !== 202).map((j) => j.status)}`);
  const recs = await allDone(ok);
  for (const j of ok) assert.strictEqual(recs.get(j.id).attempts, 1, `job ${j.id} ran twice`);
  const n = await cl.node(to, (c) => c.call('CLUSTER', 'COUNTKEYSINSLOT', slot));
  assert.ok(n > 0, 'the keys moved with the slot');
});

test('a master killed under load (REDIS_WAIT_REPLICAS=1) loses no acknowledged job', async () => {
  const type = TYPES[0]; // its master also holds the presence keys: see the next test
  const slot = keySlot(tag(type));
  const master = await ownerOf(slot);
  assert.strictEqual(await ownerOf(keySlot('{agents}')), master);
  const list = [];
  for (let n = 0; n < 400; n++) list.push({ type, u: USERS[n % 6], n: 2000 + n });
  // posting stops once the replica is master: it has no replica of its own, so every WAIT 1
  // after that times out (503, as it should)
  let promoted = false;
  const before = await created(type);
  const sending = postAll(list, 4, () => promoted);
  await waitFor(async () => await created(type) > before + 30, { timeoutMs: 30000, what: 'load' });
  await cl.kill(master);
  await waitFor(async () => { const o = await ownerOf(slot).catch(() => -1); return o > 0 && o !== master; },
    { timeoutMs: 60000, intervalMs: 200, what: 'the replica promoted' });
  promoted = true;
  const sent = await sending;
  const acked = sent.filter((j) => j.status === 202);
  assert.ok(acked.length >= 30, `only ${acked.length} acknowledged`);
  const recs = await allDone(acked);
  for (const j of acked) assert.strictEqual(recs.get(j.id).status, 'done');
});

test('after the presence master failed over, expiry events come from the new one', async () => {
  await expiryHeard('short-lived-2');
});
