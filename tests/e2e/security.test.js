// Abuse with bounded memory (SPEC §9): slowloris-style requests, oversized bodies and headers,
// WebSocket floods and oversized frames against one real gateway. Each attack must be cut off
// (the connection closed or refused), the gateway must keep serving a well-behaved client
// meanwhile, and its resident memory must stay bounded.
'use strict';
const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const net = require('node:net');
const jwt = require('jsonwebtoken');
const WebSocket = require('ws');
const { io } = require('socket.io-client');
const { startRedis, startSwitchboard, waitFor, freePort } = require('./lib/harness');

const SECRET = 'e2e-security-secret';
let redis, gw, port, base;

const rssKb = (pid) => Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);
const token = (pk, role = 'user') => jwt.sign({ sub: pk, publicKey: pk, role }, SECRET,
  { algorithm: 'HS256', expiresIn: '1h' });

// A raw TCP connection; .gone resolves when it closes.
function rawConnect() {
  const s = net.connect(port, '127.0.0.1');
  s.on('error', () => {});
  s.data = '';
  s.on('data', (d) => { s.data += d; });
  s.gone = new Promise((resolve) => s.on('close', resolve));
  return new Promise((resolve) => s.on('connect', () => resolve(s)));
}

async function healthyWithin(ms) {
  const t0 = Date.now();
  const res = await fetch(`${base}/healthz`, { signal: AbortSignal.timeout(ms) });
  assert.strictEqual(res.status, 200);
  return Date.now() - t0;
}

test.before(async () => {
  redis = await startRedis();
  port = await freePort();
  base = `http://127.0.0.1:${port}`;
  // Under ASan, freed memory sits in a quarantine (256 MB by default) that would read as
  // growth: keep it small so the bound measures what the gateway really holds.
  gw = startSwitchboard(['gateway'], { REDIS_URL: redis.url, JWT_SECRET: SECRET,
    PORT: String(port), BIND: '127.0.0.1',
    ASAN_OPTIONS: `${process.env.ASAN_OPTIONS ? `${process.env.ASAN_OPTIONS}:` : ''}quarantine_size_mb=16` },
  'gateway');
  await gw.waitForOutput(/listening on/);
  await waitFor(async () => {
    try { return (await fetch(`${base}/readyz`)).status === 200; } catch { return false; }
  }, { what: 'gateway ready' });
});
test.after(async () => {
  gw.kill('SIGTERM');
  await gw.exited;
  await redis.stop();
});

test('slowloris: 200 connections trickling headers are cut off; others are served meanwhile', async () => {
  const before = rssKb(gw.pid);
  const socks = await Promise.all(Array.from({ length: 200 }, rawConnect));
  for (const s of socks) s.write('POST /api/v1/agent/rebalance HTTP/1.1\r\nHost: x\r\n');
  const trickle = setInterval(() => { for (const s of socks) if (!s.destroyed) s.write('X'); }, 500);
  try {
    assert.ok(await healthyWithin(2000) < 2000, 'a normal request is served during the attack');
    // the server must close every trickling connection on its own (lws header timeout)
    await waitFor(() => socks.every((s) => s.destroyed || s.readyState === 'closed'),
      { timeoutMs: 60000, intervalMs: 200, what: 'all slowloris connections closed by the server' });
  } finally {
    clearInterval(trickle);
    for (const s of socks) s.destroy();
  }
  assert.ok(rssKb(gw.pid) - before < 64 * 1024, 'memory stays bounded');
});

// lws times a body out only between two pieces: a byte every 2 s held the request (and its
// connection) open for ever. The whole body now has 30 s from its headers: 408, connection:
// close, closed. Long-poll GETs and WebSockets carry no body and are not touched by it.
test('a body trickled a byte every 2 s gets 408 after 30 s and is closed', async () => {
  const s = await rawConnect();
  const t0 = Date.now();
  s.write(`POST /api/v1/agent/rebalance HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token('slow')}\r\n` +
    'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{');
  const trickle = setInterval(() => { if (!s.destroyed) s.write(' '); }, 2000);
  try {
    assert.ok(await healthyWithin(2000) < 2000, 'others are served meanwhile');
    let bound;
    await Promise.race([s.gone, new Promise((_, reject) => {
      bound = setTimeout(() => reject(new Error(`still open after 40 s: ${JSON.stringify(s.data)}`)), 40000);
    })]);
    clearTimeout(bound);
  } finally {
    clearInterval(trickle);
    s.destroy();
  }
  const took = Date.now() - t0;
  assert.ok(took >= 30000 && took < 36000, `closed after ${took} ms`);
  assert.match(s.data, /^HTTP\/1\.1 408 Request Timeout\r\n/);
  assert.match(s.data, /\r\nconnection: close\r\n/i);
  const body = JSON.parse(s.data.slice(s.data.indexOf('\r\n\r\n') + 4));
  assert.strictEqual(body.error, 'request_timeout');
  assert.match(body.message, /30 s/);
});

test('oversized body: 413 without reading it; oversized headers: refused', async () => {
  const s = await rawConnect();
  s.write(`POST /api/v1/agent/rebalance HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token('big')}\r\n` +
    'Content-Type: application/json\r\nContent-Length: 104857600\r\n\r\n{"amount":');
  await waitFor(() => /^HTTP\/1\.1 413/.test(s.data) || s.destroyed,
    { what: '413 for a 100 MB Content-Length' });
  assert.match(s.data, /^HTTP\/1\.1 413/);
  s.destroy();
  const h = await rawConnect();
  h.write(`GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(256 * 1024)}\r\n\r\n`);
  await h.gone; // refused: answered with an error and/or closed, never served
  assert.doesNotMatch(h.data, /^HTTP\/1\.1 200/);
  assert.ok(await healthyWithin(2000) < 2000);
});

test('WebSocket floods and oversized frames close only that session; others keep receiving', async () => {
  const pk = 'SEC-WATCHER';
  const watcher = io(base, { auth: { token: token(pk) }, transports: ['websocket'], forceNew: true });
  const got = [];
  watcher.on('rebalance:done', (d) => got.push(d.jobId));
  await new Promise((resolve, reject) => { watcher.on('connect', resolve); watcher.on('connect_error', reject); });
  const before = rssKb(gw.pid);
  const open = () => new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/socket.io/?EIO=4&transport=websocket`);
    ws.closed = new Promise((r) => ws.on('close', r));
    ws.on('open', () => resolve(ws));
    ws.on('error', reject);
  });
  // 1. one frame over maxPayload (1 MB)
  const big = await open();
  big.send(`4${'x'.repeat(2 * 1024 * 1024)}`);
  await big.closed;
  // 2. a flood of garbage frames
  const flood = await open();
  for (let i = 0; i < 20000 && flood.readyState === WebSocket.OPEN; i++) flood.send('\u0001garbage');
  await flood.closed;
  // 3. a flood of valid-looking but unauthenticated events
  const spam = await open();
  for (let i = 0; i < 20000 && spam.readyState === WebSocket.OPEN; i++) spam.send('42["rebalance:done",{}]');
  spam.close();
  await spam.closed;
  // the well-behaved client still gets its events
  const rc = redis.client();
  await rc.publish('agent:rebalance:status', JSON.stringify({ jobId: '1-sec', status: 'done', userId: pk }));
  await waitFor(() => got.includes('1-sec'), { what: 'watcher still receives its events' });
  rc.disconnect();
  watcher.close();
  assert.ok(rssKb(gw.pid) - before < 64 * 1024, 'memory stays bounded');
  assert.ok(await healthyWithin(2000) < 2000);
});
