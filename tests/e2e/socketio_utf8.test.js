// Nothing that is not UTF-8 reaches a WebSocket text frame (issue #15): a status message whose
// bytes are not valid UTF-8 (any publisher can send one) is dropped and counted, not forwarded;
// a client that received one would see an invalid text frame (the `ws` library closes with
// 1007, browsers drop the connection and socket.io-client reconnects in a loop). The valid
// message published after it arrives, on the same still-open connection.
'use strict';
const test = require('node:test');
const assert = require('node:assert');
const { waitFor } = require('./lib/harness');
const { rawWs, gatewayFixture } = require('./lib/sio');

const SECRET = 'e2e-utf8-secret';
let f, rc, gw, base;

test.before(async () => {
  f = await gatewayFixture(SECRET);
  ({ rc, gw, base } = f);
});

test.after(async () => {
  if (f) await f.stop();
});

test('a status message that is not UTF-8 is dropped, the next one arrives', async () => {
  const pk = `UTF8-${process.pid}`;
  const tok = f.token(pk);
  const ws = rawWs(base);
  let closedWith = null;
  ws.closed.then((code) => { closedWith = code; });
  await ws.opened;
  await waitFor(() => ws.msgs.some((m) => m.startsWith('0')), { what: 'the handshake' });
  ws.send(`40${JSON.stringify({ token: tok })}`);
  await waitFor(() => ws.msgs.some((m) => m.startsWith('40')), { what: 'CONNECT' });
  const head = Buffer.from(`{"jobId":"1-bad","status":"done","userId":"${pk}","result":"`);
  for (const bad of [[0xff], [0xc0, 0xaf], [0xed, 0xa0, 0x80], [0xe2, 0x82]]) {
    await rc.publish('agent:rebalance:status',
      Buffer.concat([head, Buffer.from(bad), Buffer.from('"}')]));
  }
  await rc.publish('agent:rebalance:status',
    JSON.stringify({ jobId: '1-good', status: 'done', userId: pk, result: 'caf\u00e9' }));
  await waitFor(() => closedWith !== null || ws.msgs.some((m) => m.includes('1-good')),
    { what: 'the valid message' });
  assert.strictEqual(closedWith, null, `the connection closed (${closedWith})`);
  assert.ok(!ws.msgs.some((m) => m.includes('1-bad')), 'an invalid message was forwarded');
  const metrics = await (await fetch(`${base}/metrics`)).text();
  assert.match(metrics, /^gateway_status_messages_dropped_total 4$/m);
  assert.match(gw.output, /not valid UTF-8/);
  ws.close();
});
