// Failover under load (issue 17): one master, one replica and three Sentinels
// (`redis-server --sentinel`, down-after 1 s) on loopback. A gateway with REDIS_WAIT_REPLICAS=1
// and two agents find the master through the Sentinels. Jobs are POSTed at a steady pace, each
// until a 202; the master is killed with SIGKILL mid-way, the Sentinels promote the replica,
// and the old master is started again (empty) so the Sentinels make it the new replica and
// WAIT 1 can succeed again. Afterwards every acknowledged job must be `done` on the promoted
// replica, finished once (one job.completed entry each), and the gateway's and agents' logs
// must show them following the failover. Bounded to well under 90 s.
'use strict';
const test = require('node:test');
const assert = require('node:assert');
const jwt = require('jsonwebtoken');
const Redis = require('ioredis');
const { startRedis, waitFor } = require('../e2e/lib/harness');
const { ask, startSentinel, startSentinelSystem, waitSentinelsReady } = require('../e2e/lib/sentinel');

const SECRET = 'sentinel-secret';
const MASTER = 'sbmaster';
const BEFORE = 30; // jobs acknowledged before the kill
const AFTER = 30;  // and after it
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

test('sentinel: kill -9 the master under paced POSTs with WAIT 1: every acknowledged job done once', async () => {
  const t0 = Date.now();
  const master = await startRedis();
  const replica = await startRedis({ args: ['--replicaof', '127.0.0.1', String(master.port)] });
  const sentinels = [];
  const procs = [];
  try {
    await waitFor(async () => /master_link_status:up/.test(await ask(replica.port, (c) => c.info('replication')) || ''),
      { what: 'the replica in sync' });
    for (let i = 0; i < 3; i++) sentinels.push(await startSentinel(MASTER, master.port));
    await waitSentinelsReady(sentinels, MASTER, 1);

    const { port, gw } = await startSentinelSystem(sentinels, MASTER, SECRET, procs);

    const token = jwt.sign({ sub: 'sentinel-user', publicKey: 'PK-sentinel', role: 'user' }, SECRET,
      { algorithm: 'HS256', expiresIn: '1h' });
    const acked = [];
    const latency = [];
    let refused = 0;
    // One job: POSTed every 20 ms until a 202.
    const post = async (n) => {
      for (;;) {
        const t = Date.now();
        try {
          const res = await fetch(`http://127.0.0.1:${port}/api/v1/agent/rebalance`, {
            method: 'POST', signal: AbortSignal.timeout(5000),
            headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
            body: JSON.stringify({ amount: 100 + n }) });
          if (res.status === 202) {
            acked.push((await res.json()).jobId);
            latency.push(Date.now() - t);
            return;
          }
          await res.text();
        } catch { /* gateway busy reconnecting */ }
        refused++;
        await sleep(20);
      }
    };
    let n = 0;
    while (acked.length < BEFORE) { await post(n++); await sleep(10); }

    // The fault, while the producer keeps going.
    let producing = true;
    const producer = (async () => { while (producing) { await post(n++); await sleep(10); } })();
    await master.kill('SIGKILL');
    const killedAt = Date.now();
    const ackedAtKill = acked.length;
    let promoted;
    await waitFor(async () => {
      const m = await sentinels[0].masterOf();
      if (m && Number(m[1]) === replica.port) promoted = m;
      return promoted;
    }, { timeoutMs: 20000, intervalMs: 100, what: 'the Sentinels to promote the replica' });
    const failoverMs = Date.now() - killedAt;
    await master.start(); // empty; the Sentinels turn it into the new master's replica
    await waitFor(() => acked.length >= ackedAtKill + AFTER,
      { timeoutMs: 40000, intervalMs: 50, what: `${AFTER} jobs acknowledged after the failover` });
    producing = false;
    await producer;

    const r = new Redis({ port: replica.port, host: '127.0.0.1' });
    r.on('error', () => {});
    try {
      const status = async () => (await r.mget(acked.map((id) => `agent:rebalance:job:${id}`)))
        .map((x) => (x ? JSON.parse(x).status : 'missing'));
      await waitFor(async () => (await status()).every((s) => s === 'done'),
        { timeoutMs: 20000, intervalMs: 100, what: 'every acknowledged job done on the promoted replica' })
        .catch(() => {});
      const final = await status();
      const completed = new Map();
      for (const [, fields] of await r.xrange('agent:stream:job.completed', '-', '+')) {
        const data = JSON.parse(fields[fields.indexOf('data') + 1]);
        completed.set(data.jobId, (completed.get(data.jobId) || 0) + 1);
      }
      const lost = acked.filter((id, i) => final[i] !== 'done');
      const twice = acked.filter((id) => (completed.get(id) || 0) !== 1);
      latency.sort((a, b) => a - b);
      console.log(`sentinel: acknowledged=${acked.length} (before kill ${ackedAtKill}) refused=${refused} ` +
        `failover=${failoverMs} ms lost=${lost.length} not-completed-once=${twice.length} ` +
        `p50=${latency[latency.length >> 1]} ms total=${Date.now() - t0} ms`);
      assert.deepStrictEqual(lost, [], 'every acknowledged job is done on the promoted replica');
      assert.deepStrictEqual(twice, [], 'every acknowledged job completed exactly once');
      assert.match(gw.output, /following the failover/, 'the gateway followed the failover');
      for (const a of procs.slice(1))
        assert.match(a.output, /moved from 127\.0\.0\.1:\d+ to 127\.0\.0\.1:\d+: following the failover/,
          `${a.name} followed the failover`);
    } finally { r.disconnect(); }
  } finally {
    for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL');
    for (const s of sentinels) await s.stop();
    await master.stop();
    await replica.stop();
  }
});
