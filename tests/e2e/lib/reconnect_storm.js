// A reconnect storm, run in a worker thread so that the test's own event loop (which times
// another user's requests) is not the one kept busy: `loops` parallel loops of raw Engine.IO
// WebSocket connects (handshake, CONNECT with the token, until `40` or `44` or a refused
// upgrade, then close), each loop at most one connect per `minMs`, until `untilMs` (unix ms).
// Posts back a Map-like array of [what the server said, count].
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

async function loop({ base, token, untilMs, minMs }, seen) {
  while (Date.now() < untilMs) {
    const t0 = Date.now();
    const said = await connectOnce(base, token);
    seen.set(said, (seen.get(said) || 0) + 1);
    const left = minMs - (Date.now() - t0);
    if (left > 0) await new Promise((r) => setTimeout(r, left));
  }
}

(async () => {
  const seen = new Map();
  const loops = [];
  for (let i = 0; i < workerData.loops; i++) loops.push(loop(workerData, seen));
  await Promise.all(loops);
  parentPort.postMessage([...seen]);
})();
