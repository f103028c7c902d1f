// HTTP helpers shared by the gateway's end-to-end tests: one request with fetch (JSON body,
// the answer parsed when it is JSON), raw bytes on one TCP connection (for what fetch cannot
// send: pipelining, HTTP/1.0, odd header whitespace), and the check of the gateway's error
// shape {"success":false,"error":code,"message":sentence}.
'use strict';
const assert = require('node:assert');
const net = require('node:net');

// method + url; opts: headers, body (sent as JSON, or as is with raw), contentType (of the
// body; application/json unless given), signal.
// Resolves {status, headers, text, json} (json undefined when the body is not JSON).
async function request(method, url, { headers = {}, body, raw, signal, contentType = 'application/json' } = {}) {
  const init = { method, headers: { ...headers }, signal };
  if (body !== undefined) {
    init.body = raw ? body : JSON.stringify(body);
    init.headers['content-type'] = contentType;
  }
  const res = await fetch(url, init);
  const text = await res.text();
  let json;
  try { json = JSON.parse(text); } catch { json = undefined; }
  return { status: res.status, headers: res.headers, text, json };
}

// Asserts an error answer with status and code; needle (a RegExp) must match the message.
function assertError(r, status, code, needle) {
  assert.strictEqual(r.status, status, `expected ${status}, got ${r.status}: ${r.text}`);
  assert.strictEqual(r.json.success, false);
  assert.strictEqual(r.json.error, code);
  assert.strictEqual(typeof r.json.message, 'string');
  if (needle) assert.match(r.json.message, needle);
}

// Writes parts on one TCP connection to 127.0.0.1:port and collects what comes back. A part is
// a string, or {afterAnswers: n, data} to be written only once n answers have arrived (so the
// server has read everything before it). Resolves {text, statuses, last, closed} when the
// server closes the connection, or once `answers` answers have arrived (closed false; the
// client closes); last is the last answer's body parsed as JSON (undefined if it is not).
// Rejects when nothing arrives for timeoutMs.
function rawExchange(port, parts, { answers = Infinity, timeoutMs = 5000 } = {}) {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    let text = '', next = 0, done = false;
    const statuses = () => [...text.matchAll(/HTTP\/1\.[01] (\d{3}) /g)].map((m) => Number(m[1]));
    const finish = (closed) => {
      if (done) return;
      done = true;
      s.destroy();
      let last;
      try { last = JSON.parse(text.slice(text.lastIndexOf('\r\n\r\n') + 4)); } catch { last = undefined; }
      resolve({ text, statuses: statuses(), last, closed });
    };
    const pump = () => {
      for (; next < parts.length; next++) {
        const p = typeof parts[next] === 'string' ? { data: parts[next] } : parts[next];
        if (statuses().length < (p.afterAnswers || 0)) return;
        s.write(p.data);
      }
    };
    s.on('connect', pump);
    s.on('data', (d) => {
      text += d;
      if (statuses().length >= answers) finish(false);
      else pump();
    });
    s.on('error', () => {}); // e.g. a write after the server closed: 'close' follows
    s.on('close', () => finish(true));
    s.setTimeout(timeoutMs, () => {
      if (done) return;
      done = true;
      s.destroy();
      reject(new Error(`nothing for ${timeoutMs} ms; got ${JSON.stringify(text)}`));
    });
  });
}

module.exports = { request, assertError, rawExchange };
