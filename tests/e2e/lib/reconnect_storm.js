// A reconnect storm, run in a worker thread so that the test's own event loop (which times
// another user's requests) is not the one kept busy: `loops` parallel loops of raw Engine.IO
// WebSocket connects (handshake, CONNECT with the token, until `40` or `44` or a refused
// upgrade, then close), each loop at most one connect per `minMs`, while the parent says so.
// The parent posts 'storm' to start the loops, 'calm' to pause them and 'stop' to end them;
// the worker posts 'paused' when it is loaded and whenever a 'calm' took effect (no connect
// in flight), and after 'stop' { seen: a Map-like array of [what the server said, count],
// ms: each connect's time from the handshake to the answer }. One worker
// for all the rounds: starting one per round costs seconds on a loaded machine.
'use strict';
const { parentPort, workerData } = require('node:worker_threads');
const { rawWs } = require('./sio');

function connectOnce(base, tok) {
  return new Promise((resolve) => {
    const ws = rawWs(base);
    ws.opened.catch(() => {}); // a refused upgrade is an answer here
    let said = 'closed';
    const done = () => { try { ws.terminate(); } catch { /* gone */ } resolve(said); };
    ws.on('message', (m) => {
      const s = m.toString();
      if (s.startsWith('0')) ws.send(`40${JSON.stringify({ token: tok })}`);
      else if (s.startsWith('40')) { said = 'connected'; done(); }
      else if (s.startsWith('44')) { said = s; done(); }
    });
    ws.on('unexpected-response', (req, res) => { said = `http ${res.statusCode}`; done(); });
    ws.on('error', () => done());
    ws.on('close', () => done());
  });
}

let mode = 'calm';
let busy = 0;
let reopen = null;
let gate = null;

function paused() {
  if (mode === 'calm' && busy === 0) parentPort.postMessage('paused');
}

parentPort.on('message', (m) => {
  mode = m;
  if (mode !== 'calm' && reopen) { reopen(); gate = reopen = null; }
  paused();
});

async function loop({ base, token, minMs }, seen, ms) {
  for (;;) {
    while (mode === 'calm') {
      if (!gate) gate = new Promise((r) => { reopen = r; });
      await gate;
    }
    if (mode === 'stop') return;
    const t0 = Date.now();
    busy++;
    const said = await connectOnce(base, token);
    busy--;
    ms.push(Date.now() - t0);
    seen.set(said, (seen.get(said) || 0) + 1);
    paused();
    const left = minMs - (Date.now() - t0);
    if (left > 0) await new Promise((r) => setTimeout(r, left));
  }
}

(async () => {
  const seen = new Map();
  const ms = [];
  const loops = [];
  for (let i = 0; i < workerData.loops; i++) loops.push(loop(workerData, seen, ms));
  paused();
  await Promise.all(loops);
  parentPort.postMessage({ seen: [...seen], ms });
})();
