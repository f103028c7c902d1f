// Load generator worker of bench/socketio_fanout.sh: holds `count` raw WebSocket clients
// speaking the Engine.IO v4 / Socket.IO v5 text protocol (open → `40{token}` → `40{sid}`,
// answers pings, counts `42` frames of the bench's `rebalance:*` events, not a gateway's
// operator feed `admin:*`), spread over several loopback source addresses so more than one
// ephemeral port range is available. Driven over IPC by the driver:
//   {cmd:"count"} → {type:"count", received, connected, errors, settled}. Every client is an
// admin (so all of them share room `admins` for the one-room fan-out) with its own publicKey
// (its own room user:{publicKey} for the many-rooms fan-out).
'use strict';
const WebSocket = require('ws');
const jwt = require('jsonwebtoken');

const [url, countS, firstS, sameUser, secret, addrsS] = process.argv.slice(2);
const count = Number(countS), first = Number(firstS);
const addrs = addrsS.split(',');
const INFLIGHT = 200;
let received = 0, connected = 0, errors = 0, started = 0, settled = 0;
const tokens = new Map();

function token(pk) {
  if (!tokens.has(pk)) {
    tokens.set(pk, jwt.sign({ sub: pk, publicKey: pk, role: 'admin' }, secret,
      { algorithm: 'HS256', expiresIn: '2h' }));
  }
  return tokens.get(pk);
}

function open(i) {
  const pk = sameUser === '1' ? 'BENCH-ALL' : `BENCH-${i}`;
  const ws = new WebSocket(`${url}/socket.io/?EIO=4&transport=websocket`,
    { localAddress: addrs[i % addrs.length], perMessageDeflate: false });
  let ok = false;
  const done = () => { settled++; next(); };
  ws.on('message', (data) => {
    if (data[0] === 0x34 && data[1] === 0x32) { // `42`: an event
      if (data[4] === 0x72) received++; // 42["r…: the bench's rebalance:* (not admin:* feeds)
      return;
    }
    const s = data.toString();
    if (s === '2') { ws.send('3'); return; }
    if (s[0] === '0') { ws.send(`40${JSON.stringify({ token: token(pk) })}`); return; }
    if (s.startsWith('40')) { ok = true; connected++; done(); return; }
    if (s.startsWith('44')) { errors++; done(); }
  });
  ws.on('error', () => { if (!ok) { errors++; done(); } });
  ws.on('close', () => { if (ok) connected--; });
}

function next() {
  while (started < count && started - settled < INFLIGHT) open(first + started++);
}

process.on('message', (m) => {
  if (m.cmd === 'count') process.send({ type: 'count', received, connected, errors, settled });
  if (m.cmd === 'exit') process.exit(0);
});
next();
