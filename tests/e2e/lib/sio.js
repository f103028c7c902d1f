// Socket.IO clients for end-to-end tests. recordingSocket: a socket.io-client socket that
// records what it receives: every event (s.events), connects and disconnect reasons;
// s.next(name, pred) waits for an event, s.connected$() for the connection. Sockets are added
// to the caller's set so that it can disconnect them all after the tests. rawWs: an Engine.IO
// WebSocket without a client library, every text message kept. gatewayFixture: a private
// redis-server and one gateway (job type rebalance) subscribed to it, with user tokens.
'use strict';
const WebSocket = require('ws');
const jwt = require('jsonwebtoken');
const { io } = require('socket.io-client');
const { startRedis, startSwitchboard, waitFor, freePort } = require('./harness');

function recordingSocket(sockets, base, token, opts = {}) {
  const s = io(base, { auth: { token }, reconnectionDelay: 100, reconnectionDelayMax: 200,
    forceNew: true, ...opts });
  sockets.add(s);
  s.events = [];
  s.connects = 0;
  s.disconnects = [];
  s.on('connect', () => { s.connects++; });
  s.on('disconnect', (reason) => { s.disconnects.push(reason); });
  s.onAny((name, data) => s.events.push({ name, data }));
  s.next = (name, pred = () => true, what = name) => waitFor(
    () => s.events.find((e) => e.name === name && pred(e.data)), { what });
  s.connected$ = () => new Promise((resolve, reject) => {
    if (s.connected) return resolve();
    s.once('connect', resolve);
    s.once('connect_error', reject);
  });
  return s;
}

function rawWs(base, query = 'EIO=4&transport=websocket') {
  const ws = new WebSocket(`${base.replace('http', 'ws')}/socket.io/?${query}`);
  ws.msgs = [];
  ws.on('message', (m) => ws.msgs.push(m.toString()));
  ws.on('error', () => {});
  ws.closed = new Promise((resolve) => ws.on('close', (code) => resolve(code)));
  ws.opened = new Promise((resolve, reject) => { ws.on('open', resolve); ws.on('error', reject); });
  return ws;
}

/* { redis, rc (an ioredis client), gw, base (its URL), sockets (for recordingSocket), token(pk),
 * stop() } once the gateway has subscribed; redisOpts go to startRedis. */
async function gatewayFixture(secret, redisOpts = {}) {
  const redis = await startRedis(redisOpts);
  const rc = redis.client();
  rc.on('error', () => {}); // while a test has Redis down
  const port = await freePort();
  const gw = startSwitchboard(['gateway'], { REDIS_URL: redis.url, JWT_SECRET: secret,
    PORT: String(port), BIND: '127.0.0.1', JOB_TYPES: 'rebalance' }, 'gateway');
  const f = {
    redis, rc, gw, base: `http://127.0.0.1:${port}`, sockets: new Set(),
    token: (pk) => jwt.sign({ sub: pk, publicKey: pk, role: 'user' }, secret,
      { algorithm: 'HS256', expiresIn: '1h' }),
    async stop() {
      for (const s of f.sockets) s.disconnect();
      if (gw.exitCode === null) gw.kill('SIGKILL');
      rc.disconnect();
      await redis.stop();
    },
  };
  await gw.waitForOutput(/subscribed to agent:rebalance:events/);
  return f;
}

module.exports = { recordingSocket, rawWs, gatewayFixture };
