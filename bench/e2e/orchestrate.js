// The orchestrator of bench/e2e.sh (see its header for what is measured). It starts one
// private redis-server, then for each run and each system, one after the other (never two at
// once): FLUSHALL, start the system, fork the load generators (loadgen.js), warm up, measure
// the saturation rate in a closed loop, then the latency in an open loop paced at
// LATENCY_LOAD × that rate, stop the system, and finally print one table with the ratios and
// the per-command breakdown. Exit status 1 when any job did not reach `done`.
// The Node design runs first in each run (when it is measured): its paced rate is then also
// offered to the other systems, so their latency is known at the same load as well as at
// their own 50 % (COMMON_LOAD=0 turns that extra window off).
'use strict';
const { spawn, fork, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const Redis = require('ioredis');

const ROOT = path.resolve(__dirname, '../..');
const PEERS = path.join(ROOT, 'bench/peers');
const env = (k, d) => (process.env[k] === undefined || process.env[k] === '' ? d : process.env[k]);
const cfg = {
  sbBin: path.resolve(ROOT, env('SB_BIN', 'build/switchboard')),
  duration: Number(env('DURATION', 10)),        // s per measurement window
  warmup: Number(env('WARMUP', 3)),             // s before each window
  users: Number(env('USERS', 64)),              // socket.io clients, one per user
  connections: Number(env('CONNECTIONS', 32)),  // keep-alive HTTP connections in total
  inflight: Number(env('INFLIGHT', 256)),       // closed loop: jobs in flight in total
  concurrency: Number(env('CONCURRENCY', 8)),   // agent/worker concurrency in total
  agentProcs: Number(env('AGENT_PROCS', 2)),    // agent/worker processes (concurrency split)
  loadgenProcs: Number(env('LOADGEN_PROCS', 2)),
  latencyLoad: Number(env('LATENCY_LOAD', 0.5)), // open-loop rate as a fraction of saturation
  commonLoad: env('COMMON_LOAD', '1') !== '0',  // also pace every system at the Node design's rate
  runs: Number(env('RUNS', 2)),
  systems: env('SYSTEMS', 'switchboard,node-design,bullmq').split(',').map((s) => s.trim()).filter(Boolean),
  secret: 'bench-secret',
  tls: env('REDIS_TLS', '0') === '1',            // Redis over TLS (rediss://, certificates made here)
};
const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'sb-e2e.'));
const children = new Set();

// ---- small helpers ---------------------------------------------------------------------------

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (...a) => console.error('[e2e]', ...a);

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
    s.on('error', reject);
  });
}

function start(name, cmd, args, extraEnv = {}) {
  const out = fs.openSync(path.join(work, `${name}.log`), 'a');
  const child = spawn(cmd, args, { env: { ...process.env, ...extraEnv }, stdio: ['ignore', out, out] });
  child.label = name;
  children.add(child);
  child.on('exit', (code, sig) => {
    children.delete(child);
    if (!child.stopping) log(`${name} exited unexpectedly (${code ?? sig}); see ${work}/${name}.log`);
  });
  return child;
}

async function stop(child) {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  child.stopping = true;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), 15000);
  await exited;
  clearTimeout(t);
}

// Polls fn until it resolves truthy (readiness of a process we started, not a correctness check).
async function until(what, fn, timeoutMs = 20000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try { if (await fn()) return; } catch { /* not yet */ }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/** CPU seconds of a process so far, from /proc/PID/stat: user + system, or one of them. */
function cpuSeconds(pid, which = 'all') {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const user = Number(f[11]), sys = Number(f[12]); // utime, stime (fields 14, 15)
  return (which === 'user' ? user : which === 'sys' ? sys : user + sys) / CLK_TCK;
}

/** {command: {calls, usec}} from INFO commandstats, without the orchestrator's own commands. */
async function commandStats(admin) {
  const stats = {};
  for (const line of (await admin.info('commandstats')).split('\n')) {
    const m = /^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/.exec(line.trim());
    if (m && !['info', 'config|resetstat', 'flushall', 'ping', 'config'].includes(m[1])) {
      stats[m[1]] = { calls: Number(m[2]), usec: Number(m[3]) };
    }
  }
  return stats;
}

const quantile = (sorted, q) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] : NaN);

// ---- the systems -----------------------------------------------------------------------------

function split(total, parts) {
  return Array.from({ length: parts }, (_, i) => Math.floor(total / parts) + (i < total % parts ? 1 : 0));
}

// Each returns {gateway?: child, agents: [child], driver, options(users)}.
const systems = {
  async switchboard(redisUrl) {
    const port = await freePort();
    const common = { REDIS_URL: redisUrl, JWT_SECRET: cfg.secret, RATE_LIMIT: '1000000', RATE_WINDOW: '1' };
    const gateway = start('switchboard-gateway', cfg.sbBin, ['gateway'], { ...common, PORT: String(port),
      BIND: '127.0.0.1', SIO_CONNECT_RATE_IP: '0' }); // every client is on 127.0.0.1
    const agents = split(cfg.concurrency, cfg.agentProcs).map((n, i) =>
      start(`switchboard-agent-${i}`, cfg.sbBin, ['agent', '--concurrency', String(n)], common));
    const url = `http://127.0.0.1:${port}`;
    await until('switchboard gateway /readyz', async () => (await fetch(`${url}/readyz`)).status === 200);
    return { gateway, agents, driver: path.join(__dirname, 'http_sio_driver.js'), options: { url } };
  },
  async 'node-design'(redisUrl) {
    const port = await freePort();
    const common = { REDIS_URL: redisUrl, JWT_SECRET: cfg.secret, RATE_LIMIT: '1000000', RATE_WINDOW: '1' };
    const dir = path.join(PEERS, 'node-design');
    const gateway = start('node-design-server', process.execPath, [path.join(dir, 'server.js')], { ...common, PORT: String(port) });
    const agents = split(cfg.concurrency, cfg.agentProcs).map((n, i) =>
      start(`node-design-agent-${i}`, process.execPath, [path.join(dir, 'agent.js')], { ...common, LOOPS: String(n) }));
    const url = `http://127.0.0.1:${port}`;
    await until('node-design server', async () => (await fetch(`${url}/socket.io/?EIO=4&transport=polling`)).status === 200);
    return { gateway, agents, driver: path.join(__dirname, 'http_sio_driver.js'), options: { url } };
  },
  async bullmq(redisUrl) {
    const dir = path.join(PEERS, 'bullmq');
    const agents = split(cfg.concurrency, cfg.agentProcs).map((n, i) =>
      start(`bullmq-worker-${i}`, process.execPath, [path.join(dir, 'worker.js')], { REDIS_URL: redisUrl, LOOPS: String(n) }));
    return { gateway: null, agents, driver: path.join(dir, 'driver.js'), options: { redisUrl } };
  },
};

function mintUsers() {
  return Array.from({ length: cfg.users }, (_, i) => {
    const publicKey = `BenchUser${String(i).padStart(4, '0')}PublicKey`;
    const token = execFileSync(cfg.sbBin, ['token', '--role', 'user', '--public-key', publicKey,
      '--sub', `bench-${i}`, '--ttl', '86400'], { env: { ...process.env, JWT_SECRET: cfg.secret } }).toString().trim();
    return { publicKey, token };
  });
}

// ---- load generators -------------------------------------------------------------------------

function loadgens(sys, users, name) {
  const slices = split(users.length, cfg.loadgenProcs);
  const conns = split(cfg.connections, cfg.loadgenProcs);
  let at = 0;
  return Promise.all(slices.map((n, i) => new Promise((resolve, reject) => {
    const child = fork(path.join(__dirname, 'loadgen.js'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    child.label = `${name}-loadgen-${i}`;
    children.add(child);
    child.on('exit', () => children.delete(child));
    const slice = users.slice(at, at + n);
    at += n;
    child.waiting = null;
    child.on('message', (m) => {
      if (m.type === 'error') { log(`${child.label}: ${m.message}`); if (child.waiting) child.waiting.reject(new Error(m.message)); return; }
      if (child.waiting) { const w = child.waiting; child.waiting = null; w.resolve(m); }
    });
    child.request = (msg) => new Promise((res, rej) => { child.waiting = { resolve: res, reject: rej }; child.send(msg); });
    child.request({ cmd: 'init', driver: sys.driver,
      options: { ...sys.options, users: slice.map((u) => ({ ...u })), connections: conns[i] } })
      .then(() => resolve(child), reject);
  })));
}

/** Snapshot of everything we divide by jobs: Redis commands and CPU, per-process CPU. */
async function snapshot(admin, redisPid, sys, gens) {
  return {
    t: process.hrtime.bigint(),
    commands: await commandStats(admin),
    redisCpu: cpuSeconds(redisPid),
    redisUser: cpuSeconds(redisPid, 'user'),
    gatewayCpu: sys.gateway ? cpuSeconds(sys.gateway.pid) : 0,
    gatewayUser: sys.gateway ? cpuSeconds(sys.gateway.pid, 'user') : 0,
    agentCpu: sys.agents.reduce((s, a) => s + cpuSeconds(a.pid), 0),
    loadgenCpu: gens.reduce((s, g) => s + cpuSeconds(g.pid), 0),
  };
}

/** Runs one phase (closed or open) on all load generators; returns window results. */
async function phase(admin, redisPid, sys, gens, spec) {
  const shares = spec.mode === 'closed' ? split(spec.inflight, gens.length) : gens.map(() => spec.rate / gens.length);
  gens.forEach((g, i) => g.send({ cmd: 'start', mode: spec.mode, inflight: shares[i], rate: shares[i] }));
  await sleep(cfg.warmup * 1000);
  const a = await snapshot(admin, redisPid, sys, gens);
  gens.forEach((g) => g.send({ cmd: 'mark' }));
  await sleep(cfg.duration * 1000);
  const b = await snapshot(admin, redisPid, sys, gens);
  const replies = await Promise.all(gens.map((g) => g.request({ cmd: 'stop' })));
  const secs = Number(b.t - a.t) / 1e9;
  const done = replies.reduce((s, r) => s + r.window.done, 0);
  const latencies = replies.flatMap((r) => r.window.latencies).sort((x, y) => x - y);
  if (env('LAT_DUMP', '0') === '1') dumpLatencies(spec.mode, latencies, replies);
  const commands = {}; // per job: calls, and µs Redis spent in them (a script's own time includes its calls)
  for (const [k, v] of Object.entries(b.commands)) {
    const calls = v.calls - (a.commands[k]?.calls || 0);
    if (calls > 0) commands[k] = { calls: calls / done, usec: (v.usec - (a.commands[k]?.usec || 0)) / done };
  }
  return {
    secs, done, rate: done / secs,
    p50: quantile(latencies, 0.5), p99: quantile(latencies, 0.99),
    loopP99: Math.max(...replies.map((r) => r.loopP99)),
    ...Object.fromEntries(['lag', 'answer', 'tail'].map((k) => [`${k}P99`,
      quantile(replies.flatMap((r) => r.window[k]).sort((x, y) => x - y), 0.99)])),
    commands, commandsPerJob: Object.values(commands).reduce((s, v) => s + v.calls, 0),
    redisUs: ((b.redisCpu - a.redisCpu) / done) * 1e6,
    gatewayUs: ((b.gatewayCpu - a.gatewayCpu) / done) * 1e6,
    redisUserUs: ((b.redisUser - a.redisUser) / done) * 1e6,
    gatewayUserUs: ((b.gatewayUser - a.gatewayUser) / done) * 1e6,
    agentUs: ((b.agentCpu - a.agentCpu) / done) * 1e6,
    loadgenCores: (b.loadgenCpu - a.loadgenCpu) / secs,
    redisCores: (b.redisCpu - a.redisCpu) / secs,
    totals: replies.reduce((s, r) => ({ posted: s.posted + r.posted, done: s.done + r.done,
      failed: s.failed + r.failed, errors: s.errors.concat(r.errors) }), { posted: 0, done: 0, failed: 0, errors: [] }),
  };
}

async function measure(name, admin, redis, users, commonRate) {
  await admin.flushall();
  await admin.config('RESETSTAT');
  const sys = await systems[name](redis.url);
  const gens = await loadgens(sys, users, name);
  try {
    log(`${name}: closed loop, ${cfg.inflight} jobs in flight over ${cfg.users} users`);
    const sat = await phase(admin, redis.pid, sys, gens, { mode: 'closed', inflight: cfg.inflight });
    const rate = Math.max(1, Math.round(sat.rate * cfg.latencyLoad));
    log(`${name}: ${sat.rate.toFixed(0)} jobs/s; open loop at ${rate} jobs/s`);
    const lat = await phase(admin, redis.pid, sys, gens, { mode: 'open', rate });
    let common = null;
    if (commonRate && name !== 'node-design') {
      log(`${name}: open loop at the Node design's ${commonRate} jobs/s`);
      common = await phase(admin, redis.pid, sys, gens, { mode: 'open', rate: commonRate });
    }
    // the load generators' totals are cumulative: the last phase's reply covers the whole run
    const totals = (common || lat).totals;
    return { name, sat, lat, common, rate, totals };
  } finally {
    await Promise.all(gens.map((g) => new Promise((r) => { g.once('exit', r); g.send({ cmd: 'close' }); })));
    await Promise.all([sys.gateway, ...sys.agents].map(stop));
  }
}

// LAT_DUMP=1: the shape of a window's latencies (ms), whole and by part, on stderr.
function dumpLatencies(mode, latencies, replies) {
  const qs = (sorted, list) => list.map((q) => `p${q * 100}=${f(quantile(sorted, q), 1)}`).join(' ');
  process.stderr.write(`[lat] ${mode} loop: ${qs(latencies, [0.5, 0.75, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999, 1])}\n`);
  for (const k of ['lag', 'answer', 'tail']) {
    const v = replies.flatMap((r) => r.window[k]).sort((x, y) => x - y);
    process.stderr.write(`[lat]   ${k}: ${qs(v, [0.5, 0.9, 0.99, 0.999, 1])}\n`);
  }
}

// ---- the floor ---------------------------------------------------------------------------------

// The Redis work a job with Switchboard's guarantees (SPEC §2-§4) cannot do without, run as plain
// commands, pipelined FLOOR_GROUP jobs at a time from one client: no Lua, no audit stream, no
// per-job round trips. Per job: the sliding window (ZREMRANGEBYSCORE, ZCARD, ZADD, PEXPIRE, INCR
// rate_hits), the enqueue (SET record EX, LPUSH, ZADD + EXPIRE user index, INCR jobs, PUBLISH
// created, ZADD all-jobs index, RPUSH + EXPIRE history), the take (LMOVE, GET), `processing`
// (SET, PUBLISH, RPUSH + EXPIRE history), the finish (LREM, SET, PUBLISH, INCR done, HINCRBY
// execution-time bucket, ZADD done index, RPUSH + EXPIRE history): 28 commands. A lower bound:
// the real thing needs scripts for atomicity (a job queued whole or not at all, a finish only
// by the holder), which cost Redis more per command than a pipeline does.
const FLOOR_COMMANDS = 28;
// Leaner data models than SPEC's, measured the same way (FLOOR_MODELS=1): what a job would cost
// without the history list, with a one-key rate limiter, without the `processing` record write
// and the done index. Each drops something SPEC or its seed tools rely on.
const FLOOR_MODELS = [
  ['the floor', { history: true, window: true, processingRecord: true, doneIndex: true }],
  ['without the history list', { window: true, processingRecord: true, doneIndex: true }],
  ['and a one-key rate limiter', { processingRecord: true, doneIndex: true }],
  ['and no processing record, no done index', {}],
];
const FLOOR_RECORD = JSON.stringify({ jobId: '0', type: 'rebalance', status: 'queued', user: { publicKey: 'pk' },
  payload: { amount: 100, priority: 'high' }, attempts: 0, createdAt: new Date().toISOString() });

// One job's commands of a data model m, onto pipeline p.
function floorJob(p, m, j, now) {
  const id = `${now}-${j.toString(16)}`, u = `u${j % cfg.users}`, rec = `agent:f:job:${id}`, h = `agent:f:hist:${id}`;
  const win = `metrics:agent:f:rate:${u}`, record = FLOOR_RECORD;
  if (m.window) p.zremrangebyscore(win, '-inf', now - 60000).zcard(win).zadd(win, now, id).pexpire(win, 60000);
  else p.set(win, String(now), 'PX', 60000);
  p.incr('metrics:agent:f:counters:d:rate_hits')
    .set(rec, record, 'EX', 86400).lpush('agent:f:jobs', id).zadd(`agent:f:user:${u}`, now, id)
    .expire(`agent:f:user:${u}`, 86400).incr('metrics:agent:f:counters:d:jobs')
    .publish('agent:f:events', `{"event":"f:created","room":"user:${u}","data":{"jobId":"${id}"}}`)
    .zadd('agent:f:index', now, id);
  if (m.history) p.rpush(h, 'queued', u, 'now', 'enqueued').expire(h, 86400);
  p.lmove('agent:f:jobs', 'agent:f:processing:a', 'RIGHT', 'LEFT').get(rec);
  if (m.processingRecord) p.set(rec, record, 'EX', 86400);
  p.publish('agent:f:status', `{"jobId":"${id}","status":"processing"}`);
  if (m.history) p.rpush(h, 'processing', 'a', 'now', 'attempt 1').expire(h, 86400);
  p.lrem('agent:f:processing:a', 1, id).set(rec, record, 'EX', 86400)
    .publish('agent:f:status', `{"jobId":"${id}","status":"done"}`).incr('metrics:agent:f:counters:d:done')
    .hincrby('metrics:agent:f:exec', 'le_1', 1);
  if (m.doneIndex) p.zadd('agent:f:done', now, id);
  if (m.history) p.rpush(h, 'done', 'a', 'now', 'done in 0 ms').expire(h, 86400);
}

async function measureFloor(admin, redisPid, model = FLOOR_MODELS[0][1]) {
  const jobs = Number(env('FLOOR_JOBS', 20000)), group = 64;
  await admin.flushall();
  await admin.config('RESETSTAT');
  const c = admin.duplicate();
  const a = { cpu: cpuSeconds(redisPid), user: cpuSeconds(redisPid, 'user'), cmds: await commandStats(admin) };
  for (let j0 = 0; j0 < jobs; j0 += group) {
    const p = c.pipeline();
    const now = Date.now();
    for (let j = j0; j < Math.min(jobs, j0 + group); j++) floorJob(p, model, j, now);
    await p.exec();
  }
  const b = { cpu: cpuSeconds(redisPid), user: cpuSeconds(redisPid, 'user'), cmds: await commandStats(admin) };
  c.disconnect();
  const calls = Object.entries(b.cmds).reduce((s, [k, v]) => s + v.calls - (a.cmds[k]?.calls || 0), 0);
  await admin.flushall();
  return { commandsPerJob: calls / jobs, redisUs: ((b.cpu - a.cpu) / jobs) * 1e6,
    redisUserUs: ((b.user - a.user) / jobs) * 1e6 };
}

// FLOOR_MODELS=1: the floor of each leaner data model, one after the other on the same Redis.
async function measureFloorModels(admin, redisPid) {
  const rows = [];
  for (const [name, model] of FLOOR_MODELS) rows.push({ name, ...(await measureFloor(admin, redisPid, model)) });
  return rows;
}

// ---- report ----------------------------------------------------------------------------------

function reportFloorModels(models, results) {
  const bull = results.filter((r) => r.name === 'bullmq').map((r) => r.sat.redisUs);
  const theirs = bull.length ? bull.reduce((s, x) => s + x, 0) / bull.length : NaN;
  console.log('\nThe floor of leaner data models (FLOOR_MODELS=1; pipelined, no scripts, same Redis):\n');
  console.log('| data model | commands per job | Redis CPU µs/job | vs BullMQ this run |');
  console.log('|---|---:|---:|---:|');
  for (const m of models)
    console.log(`| ${m.name} | ${m.commandsPerJob.toFixed(1)} | ${m.redisUs.toFixed(1)} | ${Number.isFinite(theirs) ? `${(m.redisUs / theirs).toFixed(2)}×` : '–'} |`);
}

const LABEL = { switchboard: 'switchboard', 'node-design': 'node design (seeds)', bullmq: 'bullmq (no HTTP)' };
const f = (x, d = 0) => (Number.isFinite(x) ? x.toFixed(d) : '–');
const mean = (xs) => xs.reduce((s, x) => s + x, 0) / xs.length;

// The three goals of issue #23, each beside its peer from this run and the floor. The fan-out
// ratio comes from bench/socketio_fanout.sh, which `make bench` (bench/run.sh) runs before this
// and which leaves its figures in SB_BENCH_SUMMARY.
function goals(p, sb, bull, node, floor) {
  p('\nGoals (issue #23; peers from this run):');
  if (sb.length && bull.length) {
    const mine = mean(sb.map((r) => r.sat.redisUs)), theirs = mean(bull.map((r) => r.sat.redisUs));
    p(`- Redis CPU per job vs BullMQ: ${f(mine, 1)} vs ${f(theirs, 1)} µs = **${f(mine / theirs, 2)}×** (goal ≤ 0.33×; ` +
      `the floor: ${floor ? `${f(floor.redisUs, 1)} µs = ${f(floor.redisUs / theirs, 2)}×` : 'not measured'})`);
  }
  if (sb.length && node.length) {
    const mine = mean(sb.map((r) => r.lat.p99)), theirs = mean(node.map((r) => r.lat.p99));
    p(`- p99 at each system's own ${cfg.latencyLoad * 100} % load vs the Node design: ${f(mine, 2)} vs ${f(theirs, 2)} ms = ` +
      `**${f(mine / theirs, 2)}×** (goal ≤ 0.2×); end to end throughput ` +
      `**${f(mean(sb.map((r) => r.sat.rate)) / mean(node.map((r) => r.sat.rate)), 2)}×** the Node design's (goal ≥ 5×)`);
  }
  const file = process.env.SB_BENCH_SUMMARY;
  const fan = file && fs.existsSync(file) ? fs.readFileSync(file, 'utf8').split('\n').filter(Boolean)
    .map((l) => JSON.parse(l)).filter((x) => x.bench === 'socketio_fanout').pop() : null;
  p(fan ? `- many-rooms fan-out vs socket.io + redis-adapter: **${f(fan.manyRoomsRatio, 2)}×** on the wall clock, ` +
    `**${f(fan.manyRoomsPerCpuRatio, 2)}×** per server CPU-second (N = ${fan.n}; goal ≥ 5×)`
    : '- many-rooms fan-out vs socket.io: run by bench/socketio_fanout.sh (`make bench` prints it here)');
}

function report(results, floor) {
  const out = [];
  const p = (s = '') => out.push(s);
  p(`\nEnd to end: POST → agent → \`done\` on the owner's socket.io-client (bullmq: Queue.add → Worker → QueueEvents completed)`);
  p(`${os.cpus().length} cores (${os.cpus()[0].model.trim()}), ${execFileSync('redis-server', ['--version']).toString().match(/v=(\S+)/)[1]}, node ${process.version}; ` +
    `window ${cfg.duration} s after ${cfg.warmup} s warm-up; ${cfg.users} users, ${cfg.connections} HTTP connections, ` +
    `${cfg.inflight} jobs in flight (closed loop); concurrency ${cfg.concurrency} in ${cfg.agentProcs} agent processes; ` +
    `${cfg.loadgenProcs} load-generator processes; latency at ${cfg.latencyLoad * 100} % of each system's saturation rate\n`);
  p('| system | run | jobs/s (saturation) | paced at jobs/s | p50 ms | p99 ms | p99 of: release lag / answer / answer→done ms | load-gen loop delay p99 ms | Redis cmds/job | Redis CPU µs/job | gateway CPU µs/job | agents CPU µs/job | Redis cores busy | load-gen cores | jobs posted | not done |');
  p('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const r of results) {
    p(`| ${LABEL[r.name]} | ${r.run} | ${f(r.sat.rate)} | ${f(r.lat.rate)} | ${f(r.lat.p50, 2)} | ${f(r.lat.p99, 2)} | ` +
      `${f(r.lat.lagP99, 2)} / ${f(r.lat.answerP99, 2)} / ${f(r.lat.tailP99, 2)} | ${f(r.lat.loopP99, 2)} | ` +
      `${f(r.sat.commandsPerJob, 1)} | ${f(r.sat.redisUs, 1)} | ${r.name === 'bullmq' ? '–' : f(r.sat.gatewayUs, 1)} | ` +
      `${f(r.sat.agentUs, 1)} | ${f(r.sat.redisCores, 2)} | ${f(r.sat.loadgenCores, 2)} | ${r.totals.posted} | ${r.totals.posted - r.totals.done} |`);
  }
  const by = (n) => results.filter((r) => r.name === n);
  const sb = by('switchboard');
  const same = results.filter((r) => r.common || (r.name === 'node-design' && results.some((o) => o.common)));
  if (same.length) {
    p(`\nSame offered load: every system paced at the Node design's rate of that run (${cfg.latencyLoad * 100} % of its saturation)\n`);
    p('| system | run | paced at jobs/s | p50 ms | p99 ms | p99 of: release lag / answer / answer→done ms |');
    p('|---|---:|---:|---:|---:|---:|');
    for (const r of same) {
      const w = r.common || r.lat;
      p(`| ${LABEL[r.name]} | ${r.run} | ${f(w.rate)} | ${f(w.p50, 2)} | ${f(w.p99, 2)} | ` +
        `${f(w.lagP99, 2)} / ${f(w.answerP99, 2)} / ${f(w.tailP99, 2)} |`);
    }
  }
  // What one Redis core could carry if nothing else limited the system: 1 / Redis CPU per job.
  const ceiling = (rs) => 1e6 / mean(rs.map((r) => r.sat.redisUs));
  const ratioLine = (peer, label) => {
    const pr = by(peer);
    if (!sb.length || !pr.length) return;
    p(`- vs ${label}: throughput **${f(mean(sb.map((r) => r.sat.rate)) / mean(pr.map((r) => r.sat.rate)), 2)}×**; ` +
      `p99 latency ${f(mean(sb.map((r) => r.lat.p99)), 2)} ms vs ${f(mean(pr.map((r) => r.lat.p99)), 2)} ms ` +
      `(**${f(mean(sb.map((r) => r.lat.p99)) / mean(pr.map((r) => r.lat.p99)), 2)}×** of the peer's); ` +
      `Redis commands/job ${f(mean(sb.map((r) => r.sat.commandsPerJob)), 1)} vs ${f(mean(pr.map((r) => r.sat.commandsPerJob)), 1)}; ` +
      `Redis CPU/job ${f(mean(sb.map((r) => r.sat.redisUs)), 1)} µs vs ${f(mean(pr.map((r) => r.sat.redisUs)), 1)} µs ` +
      `(Redis-bound ceiling, one Redis core for jobs alone: ${f(ceiling(sb))} vs ${f(ceiling(pr))} jobs/s, ` +
      `**${f(ceiling(sb) / ceiling(pr), 2)}×**)`);
  };
  p('\nRatios (switchboard / peer, means over runs):');
  ratioLine('bullmq', 'BullMQ');
  ratioLine('node-design', 'the Node design');
  const nodeRuns = by('node-design');
  if (sb.some((r) => r.common) && nodeRuns.length) {
    const mine = mean(sb.filter((r) => r.common).map((r) => r.common.p99));
    const theirs = mean(nodeRuns.map((r) => r.lat.p99));
    p(`- at the same offered load (the Node design's 50 % rate): p99 ${f(mine, 2)} ms vs ${f(theirs, 2)} ms ` +
      `(**${f(mine / theirs, 2)}×** of the Node design's)`);
  }
  if (sb.length) {
    p(`- switchboard gateway CPU per job / Redis CPU per job: **${f(mean(sb.map((r) => r.sat.gatewayUs / r.sat.redisUs)), 2)}**` +
      ` (user time only: gateway ${f(mean(sb.map((r) => r.sat.gatewayUserUs)), 1)} µs vs Redis ` +
      `${f(mean(sb.map((r) => r.sat.redisUserUs)), 1)} µs per job, ` +
      `${f(mean(sb.map((r) => r.sat.gatewayUserUs / r.sat.redisUserUs)), 2)}; the rest is kernel time: ` +
      `TCP on loopback, where a sender also runs the receiver's input path, and epoll)`);
  }
  const nd = by('node-design');
  if (nd.length) p(`- node design server CPU per job / Redis CPU per job: ${f(mean(nd.map((r) => r.sat.gatewayUs / r.sat.redisUs)), 2)}`);

  if (floor && sb.length) {
    const sbUs = mean(sb.map((r) => r.sat.redisUs)), sbCmds = mean(sb.map((r) => r.sat.commandsPerJob));
    p(`- the floor (the ${FLOOR_COMMANDS} commands a job's guarantees need, pipelined, no scripts; measured on the same ` +
      `Redis after the systems): ${f(floor.commandsPerJob, 1)} commands, ${f(floor.redisUs, 1)} µs of Redis CPU per job ` +
      `(${f(floor.redisUserUs, 1)} µs user); switchboard is at ${f(sbCmds / floor.commandsPerJob, 2)}× the floor's commands ` +
      `and ${f(sbUs / floor.redisUs, 2)}× its Redis CPU`);
  }
  goals(p, sb, by('bullmq'), by('node-design'), floor);

  p('\nRedis commands per job by command, saturation window of the first run: calls/job (µs/job inside Redis).');
  p('Commands run by scripts and MULTI are counted, and their time is also inside the eval/evalsha/exec time.\n');
  const firsts = cfg.systems.map((n) => by(n)[0]).filter(Boolean);
  const calls = (r, c) => r.sat.commands[c]?.calls || 0;
  const names = [...new Set(firsts.flatMap((r) => Object.keys(r.sat.commands)))]
    .sort((x, y) => Math.max(...firsts.map((r) => calls(r, y))) - Math.max(...firsts.map((r) => calls(r, x))) || x.localeCompare(y));
  p(`| command | ${firsts.map((r) => LABEL[r.name]).join(' | ')} |`);
  p(`|---|${firsts.map(() => '---:').join('|')}|`);
  for (const c of names) {
    if (Math.max(...firsts.map((r) => calls(r, c))) < 0.005) continue;
    p(`| ${c} | ${firsts.map((r) => (r.sat.commands[c] ? `${f(r.sat.commands[c].calls, 2)} (${f(r.sat.commands[c].usec, 1)})` : '')).join(' | ')} |`);
  }
  p(`| **all** | ${firsts.map((r) => `**${f(r.sat.commandsPerJob, 1)}**`).join(' | ')} |`);
  const failures = results.filter((r) => r.totals.failed || r.totals.posted !== r.totals.done);
  p(failures.length ? `\nFAILED: ${failures.map((r) => `${r.name} run ${r.run}: ${r.totals.posted - r.totals.done} of ${r.totals.posted} jobs did not reach done (${r.totals.errors.slice(0, 3).join('; ')})`).join('\n')}`
    : `\nEvery posted job reached \`done\` at its owner (${results.reduce((s, r) => s + r.totals.posted, 0)} jobs).`);
  console.log(out.join('\n'));
  return failures.length === 0;
}

// ---- main ------------------------------------------------------------------------------------

async function main() {
  const port = await freePort();
  // REDIS_TLS=1: Redis serves TLS only, with certificates made by tests/e2e/lib/certs.js, and
  // every system connects with rediss:// and the CA (ioredis: the tls option)
  const certs = cfg.tls ? require(path.join(ROOT, 'tests/e2e/lib/certs.js')).makeCerts() : null;
  const listen = certs ? ['--port', '0', '--tls-port', String(port), '--tls-cert-file', certs.server.cert,
    '--tls-key-file', certs.server.key, '--tls-ca-cert-file', certs.ca.cert, '--tls-auth-clients', 'no']
    : ['--port', String(port)];
  const redisProc = start('redis', 'redis-server', [...listen, '--bind', '127.0.0.1', '--save', '',
    '--appendonly', 'no', '--dir', work, '--loglevel', 'warning']);
  const redis = { url: `${certs ? 'rediss' : 'redis'}://127.0.0.1:${port}`, pid: redisProc.pid };
  if (certs) process.env.REDIS_TLS_CA = certs.ca.cert; // inherited by the systems started below
  const admin = new Redis({ host: '127.0.0.1', port, lazyConnect: true,
    ...(certs ? { tls: { ca: fs.readFileSync(certs.ca.cert) } } : {}) });
  admin.on('error', () => {}); // refused until redis-server listens; until() retries
  await until('redis-server', async () => { await admin.connect().catch(() => {}); return (await admin.ping()) === 'PONG'; });
  const users = mintUsers();
  const results = [];
  const order = [...cfg.systems].sort((a, b) => (b === 'node-design') - (a === 'node-design'));
  for (let run = 1; run <= cfg.runs; run++) {
    let commonRate = null;
    for (const name of order) {
      if (!systems[name]) throw new Error(`unknown system ${name}`);
      const r = await measure(name, admin, redis, users, commonRate);
      if (name === 'node-design' && cfg.commonLoad) commonRate = r.rate;
      results.push({ run, ...r });
    }
  }
  let floor = null, models = null;
  if (cfg.systems.includes('switchboard') && env('FLOOR', '1') !== '0') {
    log('floor: the commands a job needs, pipelined');
    floor = await measureFloor(admin, redis.pid);
  }
  if (env('FLOOR_MODELS', '0') === '1') {
    log('floor of leaner data models');
    models = await measureFloorModels(admin, redis.pid);
  }
  const ok = report(results, floor);
  if (models) reportFloorModels(models, results);
  admin.disconnect();
  await stop(redisProc);
  if (certs) certs.cleanup();
  return ok;
}

const cleanup = () => { for (const c of children) { c.stopping = true; c.kill('SIGKILL'); } };
process.on('SIGINT', () => { cleanup(); process.exit(130); });
process.on('SIGTERM', () => { cleanup(); process.exit(143); });
main().then((ok) => {
  if (ok) fs.rmSync(work, { recursive: true, force: true });
  else log(`logs kept in ${work}`);
  process.exit(ok ? 0 : 1);
}, (e) => {
  log(e.stack || e.message);
  log(`logs kept in ${work}`);
  cleanup();
  process.exit(1);
});
