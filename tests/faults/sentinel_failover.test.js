// Planned failovers (`SENTINEL FAILOVER`) under paced jobs (issue 17): one master, one
// replica, three Sentinels on loopback (a second replica joins the new master after the
// promotion: with two replicas from the start, WAIT 1 could be answered by the one that is not
// promoted, and a job acknowledged in the failover window would be lost by design); a gateway with REDIS_WAIT_REPLICAS=1 and two agents
// find the master through the Sentinels. Mid-way a Sentinel is told to fail over:
//  - "demoted": the old master stays up and becomes a replica; the agents' commands there get
//    READONLY (or are unblocked) and they go back through the Sentinels;
//  - "cut off": the old master cannot be reconfigured (REPLICAOF/SLAVEOF renamed away), so it
//    stays up as a master nobody else follows, like a master cut off from the Sentinels. Only
//    the agents' check of the Sentinels' view (each lease renewal) moves them.
// Either way every acknowledged job must be `done` on the new master, finished once (one
// job.completed entry there), and the agents must have moved to the new master.
'use strict';
const test = require('node:test');
const assert = require('node:assert');
const jwt = require('jsonwebtoken');
const Redis = require('ioredis');
const { startRedis, waitFor } = require('../e2e/lib/harness');
const { ask, startSentinel, startSentinelSystem, waitSentinelsReady } = require('../e2e/lib/sentinel');

const SECRET = 'failover-secret';
const MASTER = 'fomaster';
const BEFORE = 20;
const AFTER = 20;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const synced = async (port) => /master_link_status:up/.test(await ask(port, (c) => c.info('replication')) || '');

async function failover(cutOff) {
  const master = await startRedis({ args: cutOff ? ['--rename-command', 'REPLICAOF', '',
    '--rename-command', 'SLAVEOF', ''] : [] });
  const replicas = [];
  const sentinels = [];
  const procs = [];
  try {
    replicas.push(await startRedis({ args: ['--replicaof', '127.0.0.1', String(master.port)] }));
    await waitFor(() => synced(replicas[0].port), { what: 'the replica in sync' });
    for (let i = 0; i < 3; i++) sentinels.push(await startSentinel(MASTER, master.port));
    await waitSentinelsReady(sentinels, MASTER, 1);

    const { env, port } = await startSentinelSystem(sentinels, MASTER, SECRET, procs);

    const token = jwt.sign({ sub: 'fo-user', publicKey: 'PK-fo', role: 'user' }, SECRET,
      { algorithm: 'HS256', expiresIn: '1h' });
    const acked = [];
    const post = async (n) => {
      for (;;) {
        try {
          const res = await fetch(`http://127.0.0.1:${port}/api/v1/agent/rebalance`, {
            method: 'POST', signal: AbortSignal.timeout(5000),
            headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
            body: JSON.stringify({ amount: 100 + n }) });
          if (res.status === 202) { acked.push((await res.json()).jobId); return; }
          await res.text();
        } catch { /* gateway busy reconnecting */ }
        await sleep(20);
      }
    };
    let n = 0;
    while (acked.length < BEFORE) { await post(n++); await sleep(10); }

    let producing = true;
    const producer = (async () => { while (producing) { await post(n++); await sleep(10); } })();
    const ackedAtFailover = acked.length;
    assert.strictEqual(await sentinels[0].ask((c) => c.call('SENTINEL', 'FAILOVER', MASTER)), 'OK');
    let promoted;
    await waitFor(async () => {
      const m = await sentinels[0].masterOf();
      if (m && Number(m[1]) !== master.port) promoted = replicas.find((r) => r.port === Number(m[1]));
      return promoted;
    }, { timeoutMs: 20000, intervalMs: 100, what: 'the Sentinels to promote the replica' });
    // a second replica for the new master, so that WAIT 1 can succeed again whatever became of
    // the old one (a cut-off master never joins the new one)
    replicas.push(await startRedis({ args: ['--replicaof', '127.0.0.1', String(promoted.port)] }));
    await waitFor(() => acked.length >= ackedAtFailover + AFTER,
      { timeoutMs: 40000, intervalMs: 50, what: `${AFTER} jobs acknowledged after the failover` });
    producing = false;
    await producer;

    const r = promoted.client();
    r.on('error', () => {});
    try {
      const status = async () => (await r.mget(acked.map((id) => `agent:rebalance:job:${id}`)))
        .map((x) => (x ? JSON.parse(x).status : 'missing'));
      await waitFor(async () => (await status()).every((s) => s === 'done'),
        { timeoutMs: 20000, intervalMs: 100, what: 'every acknowledged job done on the new master' })
        .catch(() => {});
      const final = await status();
      const completed = new Map();
      for (const [, fields] of await r.xrange('agent:stream:job.completed', '-', '+')) {
        const data = JSON.parse(fields[fields.indexOf('data') + 1]);
        completed.set(data.jobId, (completed.get(data.jobId) || 0) + 1);
      }
      const lost = acked.filter((id, i) => final[i] !== 'done');
      const twice = acked.filter((id) => (completed.get(id) || 0) !== 1);
      console.log(`failover (${cutOff ? 'cut off' : 'demoted'}): acknowledged=${acked.length} ` +
        `lost=${lost.length} not-completed-once=${twice.length}`);
      if (lost.length && process.env.SB_DEBUG) { console.log(acked.map((id, i) => final[i]).join(' ')); for (const p of procs) console.log(p.name, p.output.slice(-3000)); }
      assert.deepStrictEqual(lost, [], 'every acknowledged job is done on the new master');
      assert.deepStrictEqual(twice, [], 'every acknowledged job completed exactly once');
      for (const a of procs.slice(1))
        assert.match(a.output, new RegExp(`to 127\\.0\\.0\\.1:${promoted.port}: following the failover`),
          `${a.name} moved to the new master`);
      if (cutOff)
        assert.strictEqual((await ask(master.port, (c) => c.call('ROLE')))[0], 'master',
          'the old master is still up as a master');
    } finally { r.disconnect(); }
  } finally {
    for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL');
    for (const s of sentinels) await s.stop();
    await master.stop();
    for (const r of replicas) await r.stop();
  }
}

test('sentinel failover: demoted master (READONLY): agents follow, every job done once', () => failover(false));
test('sentinel failover: master cut off but still up: agents follow the Sentinels, every job done once', () => failover(true));
