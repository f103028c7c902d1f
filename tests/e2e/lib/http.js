// HTTP helpers shared by the gateway's end-to-end tests: one request with fetch (JSON body,
// the answer parsed when it is JSON) and the check of the gateway's error shape
// {"success":false,"error":code,"message":sentence}.
'use strict';
const assert = require('node:assert');

// method + url; opts: headers, body (sent as JSON, or as is with raw), signal.
// Resolves {status, headers, text, json} (json undefined when the body is not JSON).
async function request(method, url, { headers = {}, body, raw, signal } = {}) {
  const init = { method, headers: { ...headers }, signal };
  if (body !== undefined) {
    init.body = raw ? body : JSON.stringify(body);
    init.headers['content-type'] = 'application/json';
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

module.exports = { request, assertError };
