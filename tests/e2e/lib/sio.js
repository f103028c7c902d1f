// A socket.io-client socket that records what it receives, for end-to-end tests: every event
// (s.events), connects and disconnect reasons; s.next(name, pred) waits for an event,
// s.connected$() for the connection. Sockets are added to the caller's set so that it can
// disconnect them all after the tests.
'use strict';
const { io } = require('socket.io-client');
const { waitFor } = require('./harness');

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

module.exports = { recordingSocket };
