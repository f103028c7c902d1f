// Catch-up after a Redis restart that answers LOADING for a while (issue #15): the gateway's
// SUBSCRIBE connection comes back while Redis is still reading its data from disk (SUBSCRIBE is
// allowed then, scripts are not: -LOADING), so the catch-up of the connected users first gets
// LOADING. It must be sent again with backoff until Redis answers, and the connected user must
// get the state its job reached while the gateway could not see it. The loading is held for a
// few seconds with Redis's own seams: key-load-delay (µs per key loaded) over 20000 filler keys,
// and loading-process-events-interval-bytes so that Redis answers (LOADING) while it loads.
'use strict';
const test = require('node:test');
const assert = require('node:assert');
const { waitFor } = require('./lib/harness');
const { recordingSocket, gatewayFixture } = require('./lib/sio');

const SECRET = 'e2e-catchup-secret';
let f, redis, rc, gw, base, sockets;

test.before(async () => {
  f = await gatewayFixture(SECRET, { args: ['--key-load-delay', '200',
    '--loading-process-events-interval-bytes', '1024'] });
  ({ redis, rc, gw, base, sockets } = f);
});

test.after(async () => {
  if (f) await f.stop();
});

test('the catch-up after a restart waits out LOADING and delivers the missed state', async () => {
  const pk = `CATCHUP-${process.pid}`;
  const tok = f.token(pk);
  const s = recordingSocket(sockets, base, tok);
  await s.connected$();
  // the job finished while this gateway was blind: in the record, never published to it
  const id = `${Date.now()}-cafe0001`;
  const at = new Date().toISOString();
  const m = rc.multi();
  m.set(`agent:rebalance:job:${id}`, JSON.stringify({ jobId: id, type: 'rebalance',
    status: 'done', user: { publicKey: pk }, payload: { amount: 1 }, attempts: 1,
    createdAt: at, updatedAt: at, result: { ok: true } }), 'EX', 86400);
  m.zadd(`agent:rebalance:user:${pk}`, Date.now(), id);
  for (let i = 0; i < 20000; i++) m.set(`filler:${i}`, 'x');
  await m.exec();
  await rc.save();
  const mark = gw.output.length;
  await redis.restart(); // resolves once Redis answers PING, i.e. after the loading
  // the catch-up met LOADING (the seam held), and still delivered
  await waitFor(() => /LOADING/.test(gw.output.slice(mark)), { what: 'the catch-up to meet LOADING' });
  const ev = await s.next('rebalance:done', (d) => d.jobId === id);
  assert.strictEqual(ev.data.replay, true);
  assert.deepStrictEqual(ev.data.result, { ok: true });
});
