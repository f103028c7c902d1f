// sio-conformance-server (tests/conformance), the server the official protocol suites run
// against, driven by the npm socket.io-client v4 in each transport mode and by raw Engine.IO
// on /engine.io/, so that it keeps doing what the suites expect without the suites at hand
// (they are fetched, not part of this repository: see tests/conformance/run-official.sh).
'use strict';
const test = require('node:test');
const assert = require('node:assert');
const { spawn } = require('node:child_process');
const { io } = require('socket.io-client');
const { waitFor } = require('./lib/harness');
const { WebSocket } = require('ws');

const BIN = process.env.SB_CONFORMANCE_BIN;
let server, base;

test.before(async () => {
  assert.ok(BIN, 'SB_CONFORMANCE_BIN names the sio-conformance-server binary');
  server = spawn(BIN, ['--port', '0'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise((resolve, reject) => {
    let out = '';
    server.stdout.on('data', (d) => {
      out += d;
      const m = /listening on (\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    server.on('exit', (code) => reject(new Error(`exited ${code} before listening`)));
  });
  base = `http://127.0.0.1:${port}`;
});

test.after(async () => {
  if (server && server.exitCode === null) server.kill('SIGKILL');
});

const MODES = {
  websocket: { transports: ['websocket'] },
  polling: { transports: ['polling'] },
  upgrade: { transports: ['polling', 'websocket'] },
};

function once(socket, event) {
  return new Promise((resolve) => socket.once(event, (...args) => resolve(args)));
}

// A socket of namespace nsp whose "auth" event was registered before it connected.
function connect(nsp, opts) {
  const socket = io(`${base}${nsp}`, { forceNew: true, reconnection: false, ...opts });
  const auth = once(socket, 'auth');
  return { socket, auth };
}

for (const [mode, opts] of Object.entries(MODES)) {
  test(`${mode}: "/" and "/custom" echo the auth, message-back and acks, binary included`, async () => {
    const main = connect('/', { ...opts, auth: { token: 'abc' } });
    assert.deepStrictEqual(await main.auth, [{ token: 'abc' }]);
    const custom = connect('/custom', opts);
    assert.deepStrictEqual(await custom.auth, [{}]);
    for (const s of [main.socket, custom.socket]) {
      const back = once(s, 'message-back');
      s.emit('message', 1, '2', { 3: [true] });
      assert.deepStrictEqual(await back, [1, '2', { 3: [true] }]);
      const acked = await new Promise((resolve) =>
        s.emit('message-with-ack', 'x', [false], (...args) => resolve(args)));
      assert.deepStrictEqual(acked, ['x', [false]]);
      const binBack = once(s, 'message-back');
      s.emit('message', Buffer.from([1, 2, 3]), { nested: Buffer.from([4, 5, 6]) }, 'text');
      const [b1, b2, t] = await binBack;
      assert.ok(Buffer.from(b1).equals(Buffer.from([1, 2, 3])), `${mode}: ${b1}`);
      assert.ok(Buffer.from(b2.nested).equals(Buffer.from([4, 5, 6])));
      assert.strictEqual(t, 'text');
      const binAck = await new Promise((resolve) =>
        s.emit('message-with-ack', Buffer.from([7]), (...args) => resolve(args)));
      assert.ok(Buffer.from(binAck[0]).equals(Buffer.from([7])));
    }
    main.socket.close();
    custom.socket.close();
  });

  test(`${mode}: a namespace not served is refused with "Invalid namespace"`, async () => {
    const socket = io(`${base}/random`, { forceNew: true, reconnection: false, ...opts });
    const [err] = await once(socket, 'connect_error');
    assert.strictEqual(err.message, 'Invalid namespace');
    socket.close();
  });
}

test('/engine.io/ echoes text and binary, over the WebSocket and over polling', async () => {
  const sock = new WebSocket(`${base.replace('http', 'ws')}/engine.io/?EIO=4&transport=websocket`);
  const msgs = [];
  sock.on('message', (m, isBinary) => msgs.push(isBinary ? Buffer.from(m) : m.toString()));
  await new Promise((resolve) => sock.on('open', resolve));
  await waitFor(() => msgs.length >= 1, { what: 'open packet' });
  const open = JSON.parse(msgs[0].slice(1));
  assert.strictEqual(open.pingInterval, 300);
  assert.strictEqual(open.pingTimeout, 200);
  sock.send('4hello');
  sock.send(Buffer.from([1, 2, 3, 4]));
  await waitFor(() => msgs.length >= 3, { what: 'echoes' });
  assert.strictEqual(msgs[1], '4hello');
  assert.ok(Buffer.isBuffer(msgs[2]) && msgs[2].equals(Buffer.from([1, 2, 3, 4])));
  sock.close();

  const hs = await (await fetch(`${base}/engine.io/?EIO=4&transport=polling`)).text();
  const { sid } = JSON.parse(hs.slice(1));
  const url = `${base}/engine.io/?EIO=4&transport=polling&sid=${sid}`;
  const post = await fetch(url, { method: 'POST', body: '4hello\x1ebAQIDBA==' });
  assert.strictEqual(await post.text(), 'ok');
  assert.strictEqual(await (await fetch(url)).text(), '4hello\x1ebAQIDBA==');
});

test('outside its two paths it answers 404; SIGTERM stops it cleanly (exit 0)', async () => {
  assert.strictEqual((await fetch(`${base}/api/v1/jobs`)).status, 404);
  const exited = new Promise((resolve) => server.on('exit', (code) => resolve(code)));
  server.kill('SIGTERM');
  assert.strictEqual(await exited, 0);
});
