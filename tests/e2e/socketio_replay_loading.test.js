// The replay on connect of a client that connected while Redis was down, when Redis comes back
// still loading its data (SPEC §6: an update missed while disconnected is not lost). The
// command connection is up again while Redis still answers scripts with -LOADING, so the
// replay is refused first; it must be sent again (backoff.h) until Redis answers. The loading
// is held with Redis's own seams, key-load-delay (100 ms per key) over filler keys and
// loading-process-events-interval-bytes (Redis answers while it loads), until the test has
// seen the gateway meet LOADING; then CONFIG SET key-load-delay 0 (allowed while loading)
// lets it finish. No fixed sleeps: every wait is on a log line or a received event.
'use strict';
const test = require('node:test');
const assert = require('node:assert');
const { waitFor } = require('./lib/harness');
const { recordingSocket, gatewayFixture } = require('./lib/sio');

const SECRET = 'e2e-replay-loading-secret';
let f, redis, rc, gw, base, sockets;

test.before(async () => {
  f = await gatewayFixture(SECRET, { args: ['--key-load-delay', '100000',
    '--loading-process-events-interval-bytes', '1024', '--rdbcompression', 'no'] });
  ({ redis, rc, gw, base, sockets } = f);
});

test.after(async () => {
  if (f) await f.stop();
});

test('a replay refused with LOADING after Redis comes back is sent again and delivered', async () => {
  const pk = `RLOAD-${process.pid}`;
  const tok = f.token(pk);
  // changed 60 s ago: within the replay window, older than the catch-up after the gap
  const id = `${Date.now() - 61000}-10ad0001`;
  const at = new Date(Date.now() - 60000).toISOString();
  const m = rc.multi();
  m.set(`agent:rebalance:job:${id}`, JSON.stringify({ jobId: id, type: 'rebalance',
    status: 'done', user: { publicKey: pk }, payload: {}, createdAt: at, updatedAt: at,
    result: { ok: 7 } }), 'EX', 3600);
  m.zadd(`agent:rebalance:user:${pk}`, Date.now() - 61000, id);
  for (let i = 0; i < 600; i++) m.set(`filler:${i}`, 'x'.repeat(2048)); // 60 s of loading
  await m.exec();
  await rc.save();
  const mark = gw.output.length;
  await redis.kill();
  await waitFor(() => /redis \(commands\) unavailable/.test(gw.output.slice(mark)),
    { what: 'the gateway to see Redis go' });
  const s = recordingSocket(sockets, base, tok, { transports: ['websocket'] });
  await s.connected$();
  const started = redis.start(); // resolves once the loading is over
  let admin;
  try {
    await waitFor(() => /replay to socket .*LOADING/.test(gw.output.slice(mark)),
      { what: 'the replay to meet LOADING', timeoutMs: 30000 });
    admin = redis.client({ enableReadyCheck: false, maxRetriesPerRequest: 1 });
    await admin.config('SET', 'key-load-delay', '0');
  } finally {
    await started;
    if (admin) admin.disconnect();
  }
  const ev = await s.next('rebalance:done', (d) => d.jobId === id);
  assert.strictEqual(ev.data.replay, true);
  assert.deepStrictEqual(ev.data.result, { ok: 7 });
});
