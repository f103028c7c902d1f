// Engine.IO / Socket.IO protocol conformance of the gateway seen from the wire, with raw HTTP
// and raw WebSockets (no client library to paper over deviations): refused WebSocket
// handshakes answered as engine.io's abortUpgrade does (400, the error's message as a
// text/html body, connection: close), WebSockets engine.io accepts only to close them (a
// transport that takes no upgrade, a second WebSocket for a session) closed after the 101,
// and server-initiated closes sending a WebSocket Close frame with a code (issue #22).
'use strict';
const net = require('node:net');
const test = require('node:test');
const assert = require('node:assert');
const jwt = require('jsonwebtoken');
const { startRedis, startSwitchboard, runSwitchboard, waitFor, freePort } = require('./lib/harness');
const { rawExchange } = require('./lib/http');
const { rawWs } = require('./lib/sio');

const SECRET = 'e2e-conformance-secret';
let redis, gw, port, base;

test.before(async () => {
  redis = await startRedis();
  port = await freePort();
  gw = startSwitchboard(['gateway'], { REDIS_URL: redis.url, JWT_SECRET: SECRET,
    PORT: String(port), BIND: '127.0.0.1', JOB_TYPES: 'rebalance' }, 'gateway');
  base = `http://127.0.0.1:${port}`;
  await waitFor(async () => {
    try { return (await fetch(`${base}/readyz`)).status === 200; } catch { return false; }
  }, { what: 'gateway /readyz' });
});

test.after(async () => {
  if (gw && gw.exitCode === null) gw.kill('SIGKILL');
  if (redis) await redis.stop();
});

function token() {
  return jwt.sign({ sub: 'u-conf', publicKey: 'PK-CONF', role: 'user' }, SECRET, { algorithm: 'HS256', expiresIn: '1h' });
}

// A WebSocket upgrade request on a raw TCP connection; resolves what the server answered.
function upgrade(query) {
  return rawExchange(port, [`GET /socket.io/?${query} HTTP/1.1\r\nHost: 127.0.0.1\r\n` +
    'Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n' +
    'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n'], { answers: 1 });
}

async function pollingSid() {
  const r = await fetch(`${base}/socket.io/?EIO=4&transport=polling`);
  const text = await r.text();
  return JSON.parse(text.slice(1)).sid;
}

// engine.io's abortUpgrade: `HTTP/1.1 400 Bad Request`, Connection: close, text/html, and the
// message alone as the body (engine.io 6.6.0 lib/server.ts). A bad EIO is refused so too,
// before the 101 (engine.io checks it after the 101 and writes its refusal into the upgraded
// stream; see README, Socket.IO conformance).
test('refused WebSocket handshakes are answered 400 with the message, as abortUpgrade', async () => {
  const cases = [
    ['transport=websocket', 'Unsupported protocol version'],
    ['EIO=abc&transport=websocket', 'Unsupported protocol version'],
    ['EIO=4', 'Transport unknown'],
    ['EIO=4&transport=tobi', 'Transport unknown'],
    ['EIO=4&transport=websocket&sid=AAAAAAAAAAAAAAAAAAAA', 'Session ID unknown'],
    ['EIO=4&transport=polling&sid=AAAAAAAAAAAAAAAAAAAA', 'Session ID unknown'],
  ];
  for (const [query, message] of cases) {
    const r = await upgrade(query);
    assert.deepStrictEqual(r.statuses, [400], `${query}: ${r.text}`);
    assert.match(r.text, /\r\nconnection: close\r\n/i, query);
    assert.match(r.text, /\r\ncontent-type: text\/html\r\n/i, query);
    assert.strictEqual(r.text.slice(r.text.indexOf('\r\n\r\n') + 4), message, query);
  }
});

// engine.io's onWebSocket accepts these and closes them at once (websocket.close()).
test('a WebSocket engine.io only accepts to close is closed after the 101', async () => {
  const sid = await pollingSid();
  for (const query of ['EIO=4&transport=polling', `EIO=4&transport=polling&sid=${sid}`]) {
    const ws = rawWs(base, query);
    await ws.opened;
    assert.strictEqual(await ws.closed, 1000, query);
    assert.deepStrictEqual(ws.msgs, [], query);
  }
  // the session named is untouched: it still polls
  const r = await fetch(`${base}/socket.io/?EIO=4&transport=polling&sid=${sid}&t=1`, {
    method: 'POST', body: '3' });
  assert.strictEqual(r.status, 200);
});

test('a second WebSocket for an upgraded session is closed after the 101', async () => {
  const sid = await pollingSid();
  const ws = rawWs(base, `EIO=4&transport=websocket&sid=${sid}`);
  await ws.opened;
  ws.send('2probe');
  await waitFor(() => ws.msgs.includes('3probe'), { what: '3probe' });
  ws.send('5');
  await waitFor(async () => (await fetch(`${base}/socket.io/?EIO=4&transport=polling&sid=${sid}`))
    .status === 400, { what: 'the upgrade done (polling refused)' });
  const ws2 = rawWs(base, `EIO=4&transport=websocket&sid=${sid}`);
  await ws2.opened;
  assert.strictEqual(await ws2.closed, 1000);
  ws.send('4still here'); // the first one goes on
  assert.strictEqual(ws.readyState, ws.OPEN);
  ws.close();
});

test('a session the server closes gets a WebSocket Close frame with a code', async () => {
  // garbage: the session is closed by the server (parse error)
  const ws = rawWs(base);
  await ws.opened;
  await waitFor(() => ws.msgs.length >= 1, { what: 'open packet' });
  ws.send('garbage');
  const code = await ws.closed;
  assert.strictEqual(code, 1002, 'a Close frame with 1002 (protocol error)');
});

// A raw WebSocket session connected to "/" (its CONNECT answered).
async function connectedWs() {
  const ws = rawWs(base);
  await ws.opened;
  await waitFor(() => ws.msgs.length >= 1, { what: 'open packet' });
  ws.send(`40${JSON.stringify({ token: token() })}`);
  await waitFor(() => ws.msgs.some((m) => m.startsWith('40')), { what: 'CONNECT reply' });
  return ws;
}

test('invalid-state packets close the connection, with a Close frame', async () => {
  const early = rawWs(base);
  await early.opened;
  early.send('42["before-connect"]');
  assert.strictEqual(await early.closed, 1000);
  const late = await connectedWs();
  late.send('41');
  late.send('42["after-disconnect"]');
  assert.strictEqual(await late.closed, 1000);
  const twice = await connectedWs();
  twice.send(`40${JSON.stringify({ token: token() })}`);
  assert.strictEqual(await twice.closed, 1000);
  const other = await connectedWs();
  other.send('42/other,["ev"]');
  assert.strictEqual(await other.closed, 1000);
});

test('a client event asking for an ack gets an error ack, not silence', async () => {
  const ws = await connectedWs();
  ws.send('4217["hello",{"a":1}]');
  await waitFor(() => ws.msgs.includes('4317[{"error":"client events are not supported"}]'),
    { what: 'the error ack' });
  ws.send('42["no-ack"]');  // dropped, the session stays
  ws.send('3');            // a pong the server did not ask for: harmless, proves it is open
  assert.strictEqual(ws.readyState, ws.OPEN);
  ws.close();
});

// engine.io-protocol, HTTP long-polling: a missing mandatory query parameter or an unknown sid
// gets 400; a POST is answered 200 `ok`; a second GET while one is held gets 400 and closes the
// session (the held GET is answered with a close packet). See docs/SOCKETIO_CONFORMANCE.md.
test('polling MUSTs on the wire: 400s, POST answered ok, duplicate GET closes the session', async () => {
  const url = (q) => `${base}/socket.io/?${q}`;
  for (const q of ['transport=polling', 'EIO=4', 'EIO=4&transport=polling&sid=AAAAAAAAAAAAAAAAAAAA'])
    assert.strictEqual((await fetch(url(q))).status, 400, `GET ${q}`);
  for (const q of ['EIO=4&transport=polling', 'EIO=4&transport=polling&sid=AAAAAAAAAAAAAAAAAAAA'])
    assert.strictEqual((await fetch(url(q), { method: 'POST', body: '3' })).status, 400, `POST ${q}`);
  const sid = await pollingSid();
  const post = await fetch(url(`EIO=4&transport=polling&sid=${sid}`), { method: 'POST', body: '3' });
  assert.strictEqual(post.status, 200);
  assert.strictEqual(await post.text(), 'ok');
  // two GETs at once: whichever arrives second gets 400, and the one held is answered `1`
  const answers = await Promise.all([1, 2].map(async (t) => {
    const r = await fetch(url(`EIO=4&transport=polling&sid=${sid}&t=${t}`));
    return [r.status, await r.text()];
  }));
  answers.sort((a, b) => a[0] - b[0]);
  assert.deepStrictEqual(answers.map((a) => a[0]), [200, 400]);
  assert.strictEqual(answers[0][1], '1');
  const after = await fetch(url(`EIO=4&transport=polling&sid=${sid}`), { method: 'POST', body: '3' });
  assert.strictEqual(after.status, 400, 'the session is closed');
});

// engine.io-protocol, Sending data: a second POST while another one's body is still arriving
// gets 400 and closes the session (engine.io's "data request overlap"). The first POST sends
// its headers and holds its body back; the second is sent until the gateway has read those
// headers (each try is a round trip; on loopback the first try is enough).
test('a second POST while another one\'s body arrives gets 400 and closes the session', async () => {
  const sid = await pollingSid();
  const path = `/socket.io/?EIO=4&transport=polling&sid=${sid}`;
  const first = net.connect(port, '127.0.0.1');
  let firstText = '';
  first.on('data', (d) => { firstText += d; });
  first.on('error', () => {});
  await new Promise((resolve) => first.on('connect', resolve));
  first.write(`POST ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain;charset=UTF-8\r\n` +
    'Content-Length: 1\r\n\r\n');
  let status;
  for (let i = 0; i < 50 && status !== 400; i++)
    status = (await fetch(`${base}${path}&t=${i}`, { method: 'POST', body: '6' })).status;
  assert.strictEqual(status, 400, 'the overlapping POST');
  first.write('6');
  await waitFor(() => /^HTTP\/1\.1 \d+/.test(firstText), { what: 'the first POST answered' });
  assert.match(firstText, /^HTTP\/1\.1 400/, 'the session is closed');
  first.destroy();
  assert.strictEqual((await fetch(`${base}${path}`)).status, 400);
  // one POST at a time is welcome: a new session takes several in a row, also after one the
  // HTTP layer refused at its headers (chunked: 411, answered once the core forgot it)
  const sid2 = await pollingSid();
  const path2 = `/socket.io/?EIO=4&transport=polling&sid=${sid2}`;
  const refused = await rawExchange(port, [`POST ${path2} HTTP/1.1\r\nHost: 127.0.0.1\r\n` +
    'Transfer-Encoding: chunked\r\n\r\n1\r\n6\r\n0\r\n\r\n'], { answers: 1 });
  assert.deepStrictEqual(refused.statuses, [411]);
  for (let i = 0; i < 3; i++) {
    const r = await fetch(`${base}${path2}&t=${i}`, { method: 'POST', body: '6' });
    assert.strictEqual(r.status, 200, `POST ${i}`);
  }
});

// socket.io-protocol: an EVENT whose payload is not a non-empty array, or an ACK whose payload is
// not an array (an ACK without a payload included), closes the connection with a Close frame.
test('an EVENT with an empty or non-array payload closes the connection', async () => {
  for (const bad of ['42[]', '42{}', '42"x"', '43{}', '431']) {
    const ws = await connectedWs();
    ws.send(bad);
    let timer;
    const deadline = new Promise((resolve) => { timer = setTimeout(() => resolve('still open'), 10000); });
    assert.strictEqual(await Promise.race([ws.closed, deadline]), 1000, bad);
    clearTimeout(timer);
  }
});

// A gateway with the Engine.IO settings given; resolves { g, base }.
async function gatewayWith(env) {
  const p = await freePort();
  const g = startSwitchboard(['gateway'], { REDIS_URL: redis.url, JWT_SECRET: SECRET,
    PORT: String(p), BIND: '127.0.0.1', JOB_TYPES: 'rebalance', ...env }, `gateway:${p}`);
  const b = `http://127.0.0.1:${p}`;
  await waitFor(async () => {
    try { return (await fetch(`${b}/readyz`)).status === 200; } catch { return false; }
  }, { what: 'gateway /readyz' });
  return { g, base: b };
}

test('PING_INTERVAL, PING_TIMEOUT, MAX_PAYLOAD are shown in the open packet; CONNECT_TIMEOUT', async () => {
  const { g, base: b } = await gatewayWith({ PING_INTERVAL: '300', PING_TIMEOUT: '200',
    CONNECT_TIMEOUT: '400', MAX_PAYLOAD: '2048' });
  try {
    const r = await fetch(`${b}/socket.io/?EIO=4&transport=polling`);
    const open = JSON.parse((await r.text()).slice(1));
    assert.strictEqual(open.pingInterval, 300);
    assert.strictEqual(open.pingTimeout, 200);
    assert.strictEqual(open.maxPayload, 2048);
    // a WebSocket that never sends CONNECT is closed after CONNECT_TIMEOUT (it answers pings)
    const ws = rawWs(b);
    ws.on('message', (m) => { if (m.toString() === '2') ws.send('3'); });
    const t0 = Date.now();
    assert.strictEqual(await ws.closed, 1000);
    assert.ok(Date.now() - t0 >= 350, `closed after ${Date.now() - t0} ms`);
    // a message over MAX_PAYLOAD closes the session
    const big = rawWs(b);
    await big.opened;
    big.send(`4${'x'.repeat(3000)}`);
    assert.strictEqual(await big.closed, 1009);
    assert.strictEqual(await fetch(`${b}/socket.io/?EIO=4&transport=polling&sid=${open.sid}`,
      { method: 'POST', body: `4${'x'.repeat(3000)}` }).then((res) => res.status), 413);
  } finally {
    g.kill('SIGKILL');
  }
});

test('bad Engine.IO settings are refused with a sentence naming them', async () => {
  for (const [name, value] of [['PING_INTERVAL', '5'], ['PING_TIMEOUT', 'x'],
    ['CONNECT_TIMEOUT', '0'], ['MAX_PAYLOAD', '99999999']]) {
    const r = await runSwitchboard(['gateway'], { REDIS_URL: redis.url, JWT_SECRET: SECRET,
      PORT: '0', [name]: value });
    assert.notStrictEqual(r.code, 0, name);
    assert.match(r.stderr, new RegExp(name), name);
  }
});

// Pings come pingInterval after the last pong, to within a few ms: a 250 ms tick made the
// gaps between pings with pingInterval 300 at least 500 ms.
test('heartbeats keep their own time (pingInterval 300: pings ~300 ms apart)', async () => {
  const { g, base: b } = await gatewayWith({ PING_INTERVAL: '300', PING_TIMEOUT: '200' });
  try {
    const ws = rawWs(b);
    const pings = [];
    ws.on('message', (m) => { if (m.toString() === '2') { pings.push(Date.now()); ws.send('3'); } });
    await waitFor(() => pings.length >= 6, { what: '6 pings' });
    const gaps = pings.slice(1).map((t, i) => t - pings[i]);
    // (a busy client sees some pings late; the quickest gap says the timer is not on a tick)
    assert.ok(Math.min(...gaps) >= 295, `gaps ${gaps}`);
    assert.ok(Math.min(...gaps) < 450, `gaps ${gaps}`);
    ws.close();
    // and a client that stops answering is dropped pingTimeout after the ping, not later:
    // three at once, as a loaded machine delays a ping's or a close's delivery by itself
    const late = await Promise.all([0, 1, 2].map(async () => {
      const mute = rawWs(b);
      let pinged = 0;
      mute.on('message', (m) => { if (m.toString() === '2' && !pinged) pinged = Date.now(); });
      await mute.closed;
      return Date.now() - pinged;
    }));
    late.sort((x, y) => x - y);
    assert.ok(late[2] >= 190 && late[1] < 400, `closed ${late} ms after the ping`);
  } finally {
    g.kill('SIGKILL');
  }
});
