// The dashboard (SPEC §8) in a real headless Chromium (Debian `chromium`, driven by
// playwright-core) against a real redis-server, a gateway in development mode and a real
// `switchboard agent`: sign in by minting a development token, create a job and watch its
// status arrive live over Socket.IO until `done`, see an error job show its error, find both
// in the list after a reload, read the metrics and charts; the online agents panel lists the
// worker and a person agent that comes and goes live; sign-out leaves nothing of one user for
// the next; pasted tokens are normalised or refused with a message. Also the static file server
// (traversal and unknown files refused, ETag revalidation, CSP) and the development-only
// /dev/token route (404 without SB_DEV). A screenshot is saved next to the binary and in /tmp.
'use strict';
const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const crypto = require('node:crypto');
const path = require('node:path');
const jwt = require('jsonwebtoken');
const { chromium } = require('playwright-core');
const { SB_BIN, startRedis, startSwitchboard, runSwitchboard, waitFor, freePort } = require('./lib/harness');

const SECRET = 'e2e-dashboard-secret';
const JSON_TYPE = { 'content-type': 'application/json' };
const CHROMIUM = process.env.SB_CHROMIUM || '/usr/bin/chromium';
const SHOTS = [path.join(path.dirname(SB_BIN), 'dashboard.png'), path.join(os.tmpdir(), 'switchboard-dashboard.png')];
let redis, gw, agent, workerId, base, browser, profile;

async function startGateway(env) {
  const port = await freePort();
  const g = startSwitchboard(['gateway'], { REDIS_URL: redis.url, JWT_SECRET: SECRET,
    PORT: String(port), BIND: '127.0.0.1', RATE_LIMIT: '1000', ...env }, 'gateway');
  await g.waitForOutput(/listening on/);
  g.base = `http://127.0.0.1:${port}`;
  await waitFor(async () => {
    try { return (await fetch(`${g.base}/readyz`)).status === 200; } catch { return false; }
  }, { what: 'gateway /readyz' });
  return g;
}

// Sends a request line as written (fetch would normalise "..") and resolves {status, text}.
function rawGet(baseUrl, target) {
  const { hostname, port } = new URL(baseUrl);
  return new Promise((resolve, reject) => {
    const s = net.connect(Number(port), hostname, () =>
      s.end(`GET ${target} HTTP/1.1\r\nHost: ${hostname}\r\nConnection: close\r\n\r\n`));
    let text = '';
    s.on('data', (d) => { text += d; });
    s.on('error', reject);
    s.on('close', () => resolve({ status: Number((text.match(/^HTTP\/1\.1 (\d{3})/) || [])[1]), text }));
  });
}

// A new tab on baseUrl with no token kept from an earlier test (the profile is shared).
async function freshPage(baseUrl = base) {
  const page = await browser.newPage();
  await page.goto(`${baseUrl}/`);
  await page.evaluate(() => localStorage.clear());
  await page.reload();
  return page;
}

// Signs the page in through the development form as publicKey pk with role.
async function mintSignIn(page, pk, role) {
  await page.locator('#dev-box').waitFor({ state: 'visible' });
  await page.fill('#dev-pk', pk);
  await page.selectOption('#dev-role', role);
  await page.click('#dev-mint');
  await page.locator('#app').waitFor({ state: 'visible' });
  assert.strictEqual(await page.textContent('#who-key'), pk);
}

// POST /agent-status/{what} with an agent's token; asserts 200.
async function presencePost(token, what, body = {}) {
  const r = await fetch(`${base}/api/v1/agent-status/${what}`, { method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
  assert.strictEqual(r.status, 200, `${what}: ${await r.text()}`);
}

test.before(async () => {
  redis = await startRedis();
  gw = await startGateway({ SB_DEV: '1' });
  base = gw.base;
  agent = startSwitchboard(['agent'], { REDIS_URL: redis.url }, 'agent');
  // the worker is online once its presence record exists: that is what the panel must list
  const r = redis.client();
  try {
    workerId = await waitFor(async () => {
      const [id] = await r.smembers('agents:dept:workers');
      return id && (await r.exists(`agent:online:${id}`)) ? id : null;
    }, { what: 'the agent to heartbeat its presence' });
  } finally { r.disconnect(); }
  profile = fs.mkdtempSync(path.join(os.tmpdir(), 'sb-chromium-'));
  browser = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1280, height: 800 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--disable-quic', '--no-first-run'],
  });
});

test.after(async () => {
  if (browser) await browser.close();
  for (const p of [agent, gw]) if (p && p.exitCode === null) p.kill('SIGKILL');
  await redis.stop();
  fs.rmSync(profile, { recursive: true, force: true });
});

test('static files: page, assets and the socket.io client; ETag revalidation; CSP', async () => {
  const page = await fetch(`${base}/`);
  assert.strictEqual(page.status, 200);
  assert.match(page.headers.get('content-type'), /^text\/html/);
  assert.match(page.headers.get('content-security-policy'), /script-src 'self'/);
  assert.strictEqual(page.headers.get('x-content-type-options'), 'nosniff');
  assert.strictEqual(page.headers.get('cache-control'), 'no-cache');
  const html = await page.text();
  assert.match(html, /<script src="\/vendor\/socket\.io\.min\.js"/);
  const etag = page.headers.get('etag');
  assert.match(etag, /^"[0-9a-f]{16}-[0-9a-f]+"$/);
  const again = await fetch(`${base}/`, { headers: { 'if-none-match': etag } });
  assert.strictEqual(again.status, 304);
  assert.strictEqual((await again.text()).length, 0);
  for (const [p, type] of [['/web/app.js', /^text\/javascript/], ['/web/style.css', /^text\/css/],
    ['/web/index.html', /^text\/html/], ['/vendor/socket.io.min.js', /^text\/javascript/]]) {
    const r = await fetch(base + p);
    assert.strictEqual(r.status, 200, p);
    assert.match(r.headers.get('content-type'), type, p);
    assert.ok((await r.text()).length > 100, p);
  }
  // the Engine.IO endpoint is not a file path: no client script is served from there
  const sio = await fetch(`${base}/socket.io/socket.io.js`);
  assert.strictEqual(sio.status, 404);
  assert.strictEqual((await sio.json()).error, 'not_found');
});

test('static files: traversal and unknown files are refused with 404', async () => {
  for (const target of ['/..%2f..%2fetc/passwd', '/web/..%2f..%2fetc/passwd', '/web/../../etc/passwd',
    '/../../etc/passwd', '/web/%2e%2e/%2e%2e/etc/passwd', '/web/..%5c..%5cetc%5cpasswd',
    '/vendor/..%2f..%2fCMakeLists.txt', '/web/../CMakeLists.txt', '/web/package.json',
    '/web/node_modules/socket.io-client/package.json', '/web/', '/web', '/web/nope.js',
    '/web/.hidden', '/vendor/socket.io.js', '/index.html', '/etc/passwd']) {
    const r = await rawGet(base, target);
    assert.strictEqual(r.status, 404, `${target}: ${r.text.slice(0, 200)}`);
    assert.doesNotMatch(r.text, /root:|cmake_minimum_required|"dependencies"/, target);
  }
  const r = await fetch(`${base}/web/nope.js`);
  assert.strictEqual(r.status, 404);
  assert.strictEqual((await r.json()).error, 'not_found');
  assert.strictEqual((await fetch(`${base}/web/app.js`, { method: 'POST' })).status, 405);
});

test('POST /dev/token mints a token in development mode; bad input is 400', async () => {
  const info = await fetch(`${base}/api/v1/dev/token`);
  assert.strictEqual(info.status, 200);
  assert.strictEqual((await info.json()).devMode, true);
  const r = await fetch(`${base}/api/v1/dev/token`, { method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ publicKey: 'dev-pk-1', role: 'admin', ttl: 600 }) });
  assert.strictEqual(r.status, 200);
  const body = await r.json();
  const claims = jwt.verify(body.token, SECRET, { algorithms: ['HS256'] });
  assert.strictEqual(claims.publicKey, 'dev-pk-1');
  assert.strictEqual(claims.role, 'admin');
  assert.strictEqual(claims.sub, 'dev-pk-1');
  assert.ok(claims.exp - claims.iat === 600);
  const jobs = await fetch(`${base}/api/v1/agent/rebalance/jobs`, { headers: { authorization: `Bearer ${body.token}` } });
  assert.strictEqual(jobs.status, 200);
  for (const bad of [{ role: 'root', publicKey: 'x' }, { role: 'user' }, { role: 'user', publicKey: 'a b' },
    { role: 'user', publicKey: 'x', ttl: 10 }, { role: 'user', publicKey: 'x', name: 5 }]) {
    const b = await fetch(`${base}/api/dev/token`, { method: 'POST', headers: JSON_TYPE, body: JSON.stringify(bad) });
    assert.strictEqual(b.status, 400, JSON.stringify(bad));
  }
  assert.strictEqual((await fetch(`${base}/api/v1/dev/token`, { method: 'POST', headers: JSON_TYPE, body: '{' })).status, 400);
  const dup = await fetch(`${base}/api/v1/dev/token`, { method: 'POST', headers: JSON_TYPE,
    body: '{"publicKey":"dev-pk-2","role":"user","role":"admin"}' });
  assert.strictEqual(dup.status, 400);
  assert.match((await dup.json()).message, /duplicate key "role"/);
});

test('/dev/token does not exist outside development mode (404)', async () => {
  const prod = await startGateway({ SB_DEV: '0' });
  try {
    for (const [method, p] of [['GET', '/api/v1/dev/token'], ['POST', '/api/v1/dev/token'], ['POST', '/api/dev/token']]) {
      const r = await fetch(prod.base + p, { method, body: method === 'POST' ? '{"publicKey":"x","role":"admin"}' : undefined });
      assert.strictEqual(r.status, 404, `${method} ${p}`);
      assert.strictEqual((await r.json()).error, 'not_found');
    }
    assert.strictEqual((await fetch(`${prod.base}/`)).status, 200, 'the page itself is served');
  } finally {
    prod.kill('SIGTERM');
    await prod.exited;
  }
});

test('browser: sign in, create a job, live status to done, an error job, list, metrics', async () => {
  const page = await browser.newPage();
  const problems = [];

  page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`console: ${m.text()} (${m.location().url})`);
  });
  await page.goto(`${base}/`);

  // development mode: the page offers to mint a token
  await page.locator('#dev-box').waitFor({ state: 'visible' });
  await page.fill('#dev-pk', 'dash-admin');
  await page.selectOption('#dev-role', 'admin');
  await page.click('#dev-mint');
  await page.locator('#app').waitFor({ state: 'visible' });
  assert.strictEqual(await page.textContent('#who-key'), 'dash-admin');
  await page.waitForSelector('#conn[data-state="live"]', { timeout: 10000 });

  // a job through the form: its status must arrive live over Socket.IO
  await page.fill('#job-amount', '1000');
  await page.selectOption('#job-priority', 'high');
  await page.click('#job-submit');
  await page.waitForSelector('#job-note[data-kind="ok"]');
  const jobId = (await page.textContent('#job-note')).replace('Queued ', '').trim();
  assert.match(jobId, /^\d{1,16}-[0-9a-f]{8}$/);
  const row = `#jobs tr[data-job-id="${jobId}"]`;
  await page.waitForSelector(`#feed li[data-event="rebalance:done"][data-job-id="${jobId}"]`, { timeout: 15000 });
  await page.waitForSelector(`${row}[data-status="done"][data-via="live"]`, { timeout: 15000 })
    .catch(async (e) => {
      // say what the page shows instead, so a failure explains itself
      e.message += `\nrow: ${await page.locator(row).evaluate((n) => n.outerHTML).catch(() => 'none')}`;
      throw e;
    });
  assert.match(await page.textContent(`${row} .outcome`), /fee 20 · remaining 980/);
  assert.ok(await page.locator(`#feed li[data-event="rebalance:processing"][data-job-id="${jobId}"]`).count() >= 1,
    'processing arrived live before done');

  // an error job (a producer that skipped validation): unknown to the page until its events
  const bad = await runSwitchboard(['enqueue', '--user', 'dash-admin', '{"amount":-5}'], { REDIS_URL: redis.url });
  assert.strictEqual(bad.code, 0, bad.stderr);
  const badId = bad.stdout.trim();
  await page.waitForSelector(`#feed li[data-event="rebalance:error"][data-job-id="${badId}"]`, { timeout: 15000 });
  await page.waitForSelector(`#jobs tr[data-job-id="${badId}"][data-status="error"]`);
  assert.match(await page.textContent(`#jobs tr[data-job-id="${badId}"] .outcome`), /Invalid amount/);

  // metrics (admin): tiles and both charts
  await waitFor(async () => Number((await page.textContent('#metrics-tiles .tile:first-child .tile-value')).replace(/\D/g, '')) >= 2,
    { what: 'metrics to count both jobs' });
  assert.ok(await page.locator('#chart-daily svg rect').count() >= 3);
  assert.ok(await page.locator('#chart-exec svg rect').count() >= 1);
  // presence: the running worker is listed under its department
  await page.waitForSelector(`#agents [data-department="workers"] li[data-agent-id="${workerId}"]`);

  for (const shot of SHOTS) await page.screenshot({ path: shot });

  // after a reload (token kept), the list comes from GET /jobs
  await page.reload();
  await page.waitForSelector(`#jobs tr[data-job-id="${jobId}"][data-status="done"]`);
  await page.waitForSelector(`#jobs tr[data-job-id="${badId}"][data-status="error"]`);

  // a user token sees no metrics, and sign-out returns to the sign-in form
  await page.click('#sign-out');
  await page.locator('#signin').waitFor({ state: 'visible' });
  await page.fill('#dev-pk', 'dash-user');
  await page.selectOption('#dev-role', 'user');
  await page.click('#dev-mint');
  await page.waitForSelector('#metrics-msg:not([hidden])');
  assert.match(await page.textContent('#metrics-msg'), /admins/);
  assert.strictEqual(await page.locator('#jobs tbody tr').count(), 0, 'another user sees none of those jobs');
  assert.deepStrictEqual(problems, []);
  await page.close();
});

test('browser: a pasted token works, a bad one is refused with a message', async () => {
  const page = await freshPage();
  const token = jwt.sign({ sub: 'u-paste', publicKey: 'paste-user', role: 'user' }, SECRET,
    { algorithm: 'HS256', expiresIn: '1h' });
  const [header, payload, sig] = token.split('.');
  const three = /^That is not a JWT: a token is three base64url parts joined by dots/;
  for (const [bad, why] of [['not-a-token', three], [`${header}.${payload}`, three],
    [`${token}.${sig}`, three], [`%%%.${payload}.${sig}`, three], [`${header}.${payload}.`, three],
    [`${header}.${payload}.si+g/`, three], [`aGVsbG8.${payload}.${sig}`, /header is not base64url-encoded JSON/],
    [`${header}.WzFd.${sig}`, /payload is not base64url-encoded JSON/]]) {
    await page.fill('#token-input', bad);
    await page.click('#token-form button');
    assert.match(await page.textContent('#signin-error'), why, bad);
    assert.ok(await page.locator('#app').isHidden(), `${bad}: not signed in`);
  }
  // whitespace anywhere is dropped: around it, and a token wrapped over lines by a terminal
  await page.fill('#token-input', `  ${token.slice(0, 40)}\n${token.slice(40, 90)}\r\n${token.slice(90)}\n`);
  await page.click('#token-form button');
  await page.waitForSelector('#conn[data-state="live"]', { timeout: 10000 });
  assert.strictEqual(await page.textContent('#who-key'), 'paste-user');
  assert.strictEqual(await page.textContent('#signin-error'), '');
  // and the gateway accepts it: a job is queued with it
  await page.click('#job-submit');
  await page.waitForSelector('#job-note[data-kind="ok"]');
  const forged = jwt.sign({ sub: 'x', publicKey: 'forged', role: 'user' }, 'wrong-secret', { expiresIn: '1h' });
  await page.click('#sign-out');
  await page.fill('#token-input', forged);
  await page.click('#token-form button');
  await page.locator('#signin').waitFor({ state: 'visible' });
  await waitFor(async () => /Signed out/.test(await page.textContent('#signin-error')), { what: 'forged token refused' });
  await page.close();
});

test('browser: /#token=JWT signs in and leaves the token out of the address bar', async () => {
  const token = jwt.sign({ sub: 'u-hash', publicKey: 'hash-user', role: 'user' }, SECRET,
    { algorithm: 'HS256', expiresIn: '1h' });
  // opened with the token, and given one while open (a hash change: the page is not reloaded)
  const opened = await browser.newPage();
  await opened.goto(`${base}/#token=${token}%0A`);
  const open = await freshPage();
  await open.goto(`${base}/#token=${token}`);
  for (const page of [opened, open]) {
    await page.locator('#app').waitFor({ state: 'visible' });
    assert.strictEqual(await page.textContent('#who-key'), 'hash-user');
    assert.strictEqual(await page.evaluate(() => location.hash), '');
    await page.waitForSelector('#conn[data-state="live"]', { timeout: 10000 });
    await page.close();
  }
});

test('browser: the online agents panel lists agents by department and follows them live', async () => {
  const page = await freshPage();
  await mintSignIn(page, 'dash-agents-admin', 'admin');
  await page.waitForSelector('#conn[data-state="live"]', { timeout: 10000 });
  const worker = page.locator(`#agents [data-department="workers"] li[data-agent-id="${workerId}"]`);
  await worker.waitFor();
  assert.strictEqual(await worker.locator('.agent-name').textContent(), 'switchboard agent (rebalance)');
  assert.strictEqual(await page.textContent('#agents-count'), '1 online');
  assert.strictEqual(await page.textContent('#agents-msg'), '');

  // a person agent comes online: admins get agent:online and the panel lists it at once
  // (well before the page's 20 s refresh)
  const sub = crypto.randomUUID();
  const token = jwt.sign({ sub, role: 'agent', name: 'Ada Lovelace', department_id: 'support',
    department: 'Support' }, SECRET, { algorithm: 'HS256', expiresIn: '1h' });
  await presencePost(token, 'heartbeat', { status: 'busy' });
  const ada = page.locator(`#agents [data-department="Support"] li[data-agent-id="${sub}"]`);
  await ada.waitFor({ timeout: 8000 });
  assert.strictEqual(await ada.locator('.agent-name').textContent(), 'Ada Lovelace');
  assert.strictEqual(await ada.getAttribute('data-status'), 'busy');
  assert.strictEqual(await page.textContent('#agents-count'), '2 online');
  assert.strictEqual(await page.locator('#feed li[data-event="agent:online"]').count(), 1);

  // and goes offline: agent:offline removes it, the worker stays
  await presencePost(token, 'offline');
  await ada.waitFor({ state: 'detached', timeout: 8000 });
  await page.waitForSelector('#feed li[data-event="agent:offline"]');
  assert.strictEqual(await worker.count(), 1);
  assert.strictEqual(await page.textContent('#agents-count'), '1 online');
  await page.close();
});

test('browser: sign-out leaves nothing of one user for the next', async () => {
  const limited = await startGateway({ SB_DEV: '1', RATE_LIMIT: '1' });
  const page = await freshPage(limited.base);
  try {
    await mintSignIn(page, 'dash-limited', 'admin');
    await page.waitForSelector('#conn[data-state="live"]', { timeout: 10000 });
    await page.fill('#job-amount', '7');
    await page.click('#job-submit');
    await page.waitForSelector('#job-note[data-kind="ok"]');
    await page.click('#job-submit');
    await waitFor(async () => /^Not queued \(rate limited\)/.test(await page.textContent('#job-note')),
      { what: 'the second job to be rate limited' });
    await page.waitForSelector('#jobs tbody tr');
    await page.waitForSelector('#feed li');
    await page.waitForSelector(`#agents li[data-agent-id="${workerId}"]`);
    await page.waitForSelector('#metrics-tiles .tile');

    await page.click('#sign-out');
    await page.locator('#signin').waitFor({ state: 'visible' });
    const shown = () => page.evaluate(() => {
      const $ = (id) => document.getElementById(id);
      return { note: $('job-note').textContent, noteKind: $('job-note').dataset.kind || '',
        amount: $('job-amount').value, jobs: $('jobs').tBodies[0].rows.length,
        feed: $('feed').children.length, agents: $('agents').children.length,
        agentsCount: $('agents-count').textContent, tiles: $('metrics-tiles').children.length,
        charts: $('chart-daily').children.length + $('chart-exec').children.length,
        who: $('who-key').textContent + $('who-role').textContent, whoHidden: $('who').hidden };
    });
    assert.deepStrictEqual(await shown(), { note: '', noteKind: '', amount: '1000', jobs: 0, feed: 0,
      agents: 0, agentsCount: '', tiles: 0, charts: 0, who: '', whoHidden: true });

    // the next user starts from a clean page: their own (empty) lists, no note of the last one
    await mintSignIn(page, 'dash-next', 'user');
    await page.waitForSelector(`#agents li[data-agent-id="${workerId}"]`);
    const next = await shown();
    assert.strictEqual(next.note, '');
    assert.strictEqual(next.noteKind, '');
    assert.strictEqual(next.jobs, 0);
    assert.strictEqual(next.feed, 0);
    assert.strictEqual(next.tiles, 0, 'a user sees no admin metrics');
  } finally {
    await page.close();
    limited.kill('SIGTERM');
    await limited.exited;
  }
});
