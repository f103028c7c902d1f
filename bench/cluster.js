// Redis Cluster bench (bench/cluster.sh): jobs/s and Redis CPU per job per node with 1 master
// and with 3 masters, in the same run. For each topology: a private cluster on loopback
// (tests/e2e/lib/cluster.js), one `switchboard agent --worker` per job type (a sed one-liner
// answers each job: the handler costs next to nothing), then `switchboard bench` for every type
// at once (the submission script pipelined, each job followed to `done` by its status message).
// Redis CPU is INFO CPU used_cpu_sys + used_cpu_user of each master, before and after.
// Knobs: JOBS (per type, 4000), TYPES (3), CONCURRENCY (per agent, 8), QUEUE_SHARDS (passed
// through to every process, for the sharded queues when they exist).
'use strict';
const path = require('node:path');
const { execFile } = require('node:child_process');
const { startCluster, keySlot } = require('../tests/e2e/lib/cluster');
const { startSwitchboard } = require('../tests/e2e/lib/harness');

const SB = process.env.SB_BIN;
const JOBS = Number(process.env.JOBS || 4000);
const NTYPES = Number(process.env.TYPES || 3);
const CONC = String(process.env.CONCURRENCY || 8);
const WORKER = 'sed -u \'s/^\\({"jobId":"[^"]*"\\).*/\\1,"result":1}/\'';
const EXTRA = process.env.QUEUE_SHARDS ? { QUEUE_SHARDS: process.env.QUEUE_SHARDS } : {};

// One type per third of the slot space, so that 3 masters get one type each.
function types() {
  const out = [];
  for (let k = 0; k < NTYPES; k++) {
    const lo = Math.floor((16384 * (k % 3)) / 3) + 100;
    for (let i = 0; ; i++) {
      const s = keySlot(`{b${k}x${i}}`);
      if (s >= lo && s < lo + 5000) { out.push(`b${k}x${i}`); break; }
    }
  }
  return out;
}

function run(args, env) {
  return new Promise((resolve, reject) => {
    execFile(SB, args, { env: { ...process.env, ...env }, maxBuffer: 1 << 24 },
      (err, stdout, stderr) => (err ? reject(new Error(`${args.join(' ')}: ${stderr}`)) : resolve(stdout)));
  });
}

async function cpu(cl, ports) {
  const out = {};
  for (const p of ports) {
    const info = await cl.node(p, (c) => c.info('cpu'));
    out[p] = Number(/used_cpu_sys:([\d.]+)/.exec(info)[1]) + Number(/used_cpu_user:([\d.]+)/.exec(info)[1]);
  }
  return out;
}

async function topology(masters, ts) {
  const cl = await startCluster({ masters });
  const env = { REDIS_CLUSTER: cl.seeds, LOG_LEVEL: 'warn', ...EXTRA };
  const agents = ts.map((t) => startSwitchboard(['agent', '--type', t, '--concurrency', CONC,
    '--worker', WORKER], env, `agent-${t}`));
  await new Promise((r) => setTimeout(r, 1000));
  const ports = await cl.masters();
  const before = await cpu(cl, ports);
  const t0 = Date.now();
  const res = await Promise.all(ts.map((t) => run(['bench', '--type', t, '--jobs', String(JOBS),
    '--json', '--timeout', '120'], env).then(JSON.parse)));
  const secs = (Date.now() - t0) / 1000;
  const after = await cpu(cl, ports);
  for (const a of agents) a.kill('SIGTERM');
  await Promise.all(agents.map((a) => a.exited));
  await cl.stop();
  const done = res.reduce((n, r) => n + r.finished, 0);
  const nodes = ports.map((p) => ({ port: p, cpu_s: after[p] - before[p] }));
  return { masters, types: ts.length, jobs: done, secs, jobs_per_s: Math.round(done / secs),
    per_type: res.map((r) => r.jobs_per_second),
    cpu_us_per_job: nodes.map((n) => Math.round((n.cpu_s * 1e6) / done)),
    cpu_s: nodes.map((n) => Number(n.cpu_s.toFixed(2))) };
}

(async () => {
  const ts = types();
  const rows = [];
  for (const m of [1, 3]) rows.push(await topology(m, ts));
  console.log(`Redis Cluster bench: ${ts.length} types (${ts.join(', ')}), ${JOBS} jobs each, ` +
    `agent --worker concurrency ${CONC} per type${EXTRA.QUEUE_SHARDS ? `, QUEUE_SHARDS=${EXTRA.QUEUE_SHARDS}` : ''}`);
  console.log('masters  jobs   secs  jobs/s  per-type jobs/s       Redis CPU s per master   CPU us/job per master');
  for (const r of rows) {
    console.log(`${String(r.masters).padStart(7)}  ${String(r.jobs).padStart(5)}  ${r.secs.toFixed(1).padStart(5)}  ` +
      `${String(r.jobs_per_s).padStart(6)}  ${r.per_type.join('/').padEnd(20)}  ${r.cpu_s.join(' / ').padEnd(23)}  ${r.cpu_us_per_job.join(' / ')}`);
  }
  if (process.env.JSON) console.log(JSON.stringify(rows));
  process.exit(0);
})().catch((e) => { console.error(e); process.exit(1); });
