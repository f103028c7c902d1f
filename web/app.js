// Switchboard dashboard (SPEC §8): plain browser JavaScript, no build step.
//
// State lives in one object (`state`); every change goes through a small function that
// updates it and re-renders the part of the page it affects. Sources of truth:
//   - REST (/api/v1): the job list, job records, metrics, presence, development tokens;
//   - Socket.IO (official client from /vendor/socket.io.min.js): `rebalance:created`,
//     `rebalance:processing|done|error` for the signed-in user's room, and for admins
//     `agent:online|offline|status`. While the socket is not connected, jobs still in
//     flight are polled over HTTP, so the page never gets stuck (and says so).
// Routes that may not exist on this gateway (presence) degrade to a message on 404.
// Admins also get the operator console (console.js, window.SBConsole): it is started with the
// helpers below (consoleCtx) on an admin sign-in, after the socket exists, and stopped on
// sign-out.
// A token is checked for shape before use (whitespace dropped, three base64url parts); sign-out
// puts every per-user part of the page back as it was loaded (resetUserUi).
'use strict';

(() => {
  const API = '/api/v1';
  const TYPE = 'rebalance';
  const TOKEN_KEY = 'switchboard.token';
  const FEED_MAX = 60;
  const POLL_MS = 2000;
  const REFRESH_MS = 20000;
  const TERMINAL = new Set(['done', 'error']);

  const state = {
    token: null,
    claims: null,
    socket: null,
    live: false,            // socket connected
    jobs: new Map(),        // jobId -> record (+ via: 'live' | 'http')
    pending: new Map(),     // jobId -> live update that arrived before the job was listed
    session: 0,             // bumped on sign-in and sign-out; answers from an older one are dropped
    timers: [],
    view: null,             // console view named by /#token=...&view=NAME, for the sign-in
    metricsTimer: null,
    lastMetrics: null,      // last summary drawn (redrawn on resize)
  };

  const $ = (id) => document.getElementById(id);
  const INITIAL = {};       // texts and values of the page as loaded (see resetUserUi)

  // ---- small helpers -----------------------------------------------------------------------

  function el(tag, attrs = {}, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') e.className = v;
      else if (k === 'text') e.textContent = v;
      else if (k.startsWith('data-')) e.setAttribute(k, v);
      else e[k] = v;
    }
    for (const c of children) if (c !== null && c !== undefined) e.append(c);
    return e;
  }

  function svg(tag, attrs = {}, text) {
    const e = document.createElementNS('http://www.w3.org/2000/svg', tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }

  // A JWT is three base64url parts joined by dots; HS256 tokens have a non-empty signature.
  const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

  function base64urlJson(part) {
    const b64 = part.replace(/-/g, '+').replace(/_/g, '/');
    const json = decodeURIComponent(Array.from(atob(b64.padEnd(b64.length + (4 - b64.length % 4) % 4, '=')),
      (c) => '%' + c.charCodeAt(0).toString(16).padStart(2, '0')).join(''));
    const v = JSON.parse(json);
    if (!v || typeof v !== 'object' || Array.isArray(v)) throw new Error('not a JSON object');
    return v;
  }

  // Reads a pasted token: whitespace anywhere (a trailing newline, a token wrapped over lines)
  // is dropped, since a JWT never contains any. Returns {token, claims}; throws an Error whose
  // message says what is wrong when the text is not a well-formed JWT.
  function parseToken(raw) {
    const token = String(raw || '').replace(/\s+/g, '');
    if (!JWT_SHAPE.test(token))
      throw new Error('a token is three base64url parts joined by dots (header.payload.signature)');
    const [header, payload] = token.split('.');
    try { base64urlJson(header); } catch { throw new Error('its header is not base64url-encoded JSON'); }
    try { return { token, claims: base64urlJson(payload) }; } catch {
      throw new Error('its payload is not base64url-encoded JSON');
    }
  }

  function fmtTime(iso) {
    if (!iso) return '';
    const d = new Date(iso);
    return isNaN(d) ? iso : d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23' });
  }

  function fmtDateTime(iso) {
    const d = new Date(iso);
    if (isNaN(d)) return iso || '';
    const today = new Date().toDateString() === d.toDateString();
    return today ? fmtTime(iso) : d.toLocaleString([], { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' });
  }

  function fmtMs(ms) {
    if (!Number.isFinite(ms)) return '–';
    if (ms < 1000) return `${Math.round(ms)} ms`;
    return `${(ms / 1000).toFixed(ms < 10000 ? 2 : 1)} s`;
  }

  function fmtNum(n) {
    return Number.isFinite(n) ? n.toLocaleString() : '–';
  }

  // Every answer is checked against the session it was asked in: a reply that arrives after a
  // sign-out (or a sign-in as someone else) is dropped instead of leaking into the new session.
  async function api(method, path, body, { anySession = false } = {}) {
    const session = state.session;
    const headers = {};
    if (state.token) headers.Authorization = `Bearer ${state.token}`;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    let res;
    try {
      res = await fetch(API + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (e) {
      return { status: 0, ok: false, json: null, message: 'the gateway is unreachable' };
    }
    let json = null;
    try { json = await res.json(); } catch { /* not JSON */ }
    if (!anySession && session !== state.session) return { status: 0, ok: false, stale: true, json: null, message: 'signed out' };
    const message = (json && json.message) || `HTTP ${res.status}`;
    if (res.status === 401 && state.token) signOut(`Signed out: ${message}`);
    return { status: res.status, ok: res.ok, json, message };
  }

  // ---- sign in -----------------------------------------------------------------------------

  // Signs in with a token (pasted, minted, saved or from /#token=); false with a message in the
  // sign-in form when it is not a well-formed, unexpired JWT.
  function signIn(raw) {
    let parsed;
    try {
      parsed = parseToken(raw);
    } catch (e) {
      showSignInError(`That is not a JWT: ${e.message}.`);
      return false;
    }
    const { token, claims } = parsed;
    if (claims.exp && claims.exp * 1000 < Date.now()) {
      showSignInError('That token has expired.');
      return false;
    }
    state.session++;
    state.token = token;
    state.claims = claims;
    try { localStorage.setItem(TOKEN_KEY, token); } catch { /* private mode */ }
    showSignInError('');
    $('token-input').value = '';
    $('signin').hidden = true;
    $('app').hidden = false;
    renderWho();
    connectSocket();
    if (claims.role === 'admin' && window.SBConsole) window.SBConsole.start(consoleCtx(), state.view);
    state.view = null;
    loadJobs();
    loadAgents();
    loadMetrics();
    state.timers.push(setInterval(pollActive, POLL_MS));
    state.timers.push(setInterval(() => { loadAgents(); loadMetrics(); }, REFRESH_MS));
    return true;
  }

  function signOut(reason) {
    if (window.SBConsole) window.SBConsole.stop();
    if (state.socket) { state.socket.removeAllListeners(); state.socket.disconnect(); }
    state.timers.forEach(clearInterval);
    clearTimeout(state.metricsTimer);
    Object.assign(state, { token: null, claims: null, socket: null, live: false, timers: [],
      metricsTimer: null, lastMetrics: null });
    state.session++;
    state.jobs.clear();
    state.pending.clear();
    try { localStorage.removeItem(TOKEN_KEY); } catch { /* private mode */ }
    resetUserUi();
    $('app').hidden = true;
    $('signin').hidden = false;
    setConn('off', 'signed out');
    showSignInError(reason || '');
  }

  // Puts every part of the page that shows something of the signed-in user back as the page
  // was loaded, so nothing of one user (a form note, a list, a count, a chart) is shown to the
  // next one.
  function resetUserUi() {
    $('job-form').reset();
    $('job-submit').disabled = false;
    setNote('', '');
    renderJobs();
    $('jobs-empty').textContent = INITIAL.jobsEmpty;
    $('feed').replaceChildren();
    $('feed-empty').hidden = false;
    $('agents').replaceChildren();
    $('agents-msg').textContent = '';
    $('agents-count').textContent = '';
    for (const id of ['metrics-tiles', 'chart-daily', 'chart-exec']) $(id).replaceChildren();
    for (const id of ['exec-caption', 'exec-stats']) $(id).textContent = '';
    $('metrics-days').value = INITIAL.metricsDays;
    metricsMessage('');
    $('metrics-days').hidden = false;
    for (const id of ['who-key', 'who-role', 'who-exp']) $(id).textContent = '';
    $('who-role').dataset.role = '';
    $('who').hidden = true;
  }

  // /#token=JWT signs in with that token (ending any session) and takes it out of the address
  // bar and history. False when the address holds no token.
  function signInFromHash() {
    const params = new URLSearchParams(location.hash.slice(1));
    const token = params.get('token');
    if (token === null) return false;
    state.view = params.get('view'); // the console view to open (admins), e.g. view=queues
    history.replaceState(null, '', location.pathname + location.search);
    if (state.token) signOut();
    signIn(token);
    return true;
  }

  function showSignInError(msg) { $('signin-error').textContent = msg; }

  function renderWho() {
    const c = state.claims;
    $('who').hidden = false;
    $('who-key').textContent = c.publicKey || c.sub || '(no publicKey)';
    $('who-role').textContent = c.role || 'no role';
    $('who-role').dataset.role = c.role || '';
    $('who-exp').textContent = c.exp ? `until ${fmtDateTime(new Date(c.exp * 1000).toISOString())}` : '';
  }

  async function probeDevMode() {
    const r = await api('GET', '/dev/token', undefined, { anySession: true }); // about the gateway
    $('dev-box').hidden = !(r.ok && r.json && r.json.devMode);
  }

  async function mintDevToken(ev) {
    ev.preventDefault();
    const publicKey = $('dev-pk').value.trim();
    const role = $('dev-role').value;
    $('dev-mint').disabled = true;
    const r = await api('POST', '/dev/token', { publicKey, role });
    $('dev-mint').disabled = false;
    if (r.ok && r.json && r.json.token) signIn(r.json.token);
    else if (r.status === 404) showSignInError('This gateway is not in development mode: paste a token instead.');
    else showSignInError(`Could not mint a token: ${r.message}`);
  }

  // ---- real time ---------------------------------------------------------------------------

  function setConn(kind, text) {
    $('conn').dataset.state = kind;
    $('conn-text').textContent = text;
  }

  function connectSocket() {
    if (typeof window.io !== 'function') {
      setConn('poll', 'live updates unavailable · polling');
      return;
    }
    setConn('wait', 'connecting…');
    // console: an admin's socket also gets the operator console's feed (admin:jobs, ...)
    const socket = window.io({ auth: { token: state.token, console: true }, reconnectionDelayMax: 5000 });
    state.socket = socket;
    socket.on('connect', () => {
      state.live = true;
      setConn('live', `live · ${socket.io.engine.transport.name}`);
      socket.io.engine.once('upgrade', (t) => setConn('live', `live · ${t.name}`));
      loadJobs(); // catch up on anything missed while disconnected
    });
    socket.on('disconnect', (reason) => {
      state.live = false;
      setConn('wait', `reconnecting… (${reason}) · polling`);
    });
    socket.on('connect_error', (err) => {
      state.live = false;
      if (socket.active) setConn('wait', 'cannot reach the live endpoint · polling');
      else setConn('bad', `live updates refused: ${err.message} · polling`);
    });
    socket.on(`${TYPE}:created`, (d) => onJobEvent(`${TYPE}:created`, { status: 'queued', ...d }));
    for (const status of ['processing', 'done', 'error'])
      socket.on(`${TYPE}:${status}`, (d) => onJobEvent(`${TYPE}:${status}`, { status, ...d }));
    for (const name of ['agent:online', 'agent:offline', 'agent:status'])
      socket.on(name, (d) => { addFeed(name, d, agentLabel(d)); loadAgents(); });
  }

  function agentLabel(d) {
    const a = (d && (d.agent || d)) || {};
    return [a.name || a.agent_id, a.status].filter(Boolean).join(' · ');
  }

  // ---- jobs --------------------------------------------------------------------------------

  const STATUS_RANK = { queued: 0, processing: 1, done: 2, error: 2 };

  // Applies a status update (from the socket or a poll) to the job it names.
  function applyUpdate(update, via) {
    const job = state.jobs.get(update.jobId);
    if (!job) return false;
    const newer = !job.updatedAt || !update.timestamp || update.timestamp >= job.updatedAt;
    const forward = (STATUS_RANK[update.status] ?? 0) >= (STATUS_RANK[job.status] ?? 0);
    if (!newer && !forward) return true; // stale: a replay of something older
    if (TERMINAL.has(job.status) && !TERMINAL.has(update.status) && !newer) return true;
    job.status = update.status || job.status;
    for (const k of ['result', 'error', 'details', 'attempts']) if (update[k] !== undefined) job[k] = update[k];
    if (update.timestamp) job.updatedAt = update.timestamp;
    job.via = via;
    renderJobs(update.jobId);
    if (TERMINAL.has(job.status)) scheduleMetrics();
    return true;
  }

  function onJobEvent(name, data) {
    if (!data || !data.jobId) return;
    if (data.error) addFeed(name, data, data.error, 'err');
    else addFeed(name, data, data.status === 'done' ? '' : data.details);
    if (applyUpdate(data, 'live')) return;
    // Not listed yet (its POST answer is still on the way, or it was made elsewhere): keep the
    // most advanced update until the job appears, and read the record meanwhile.
    const held = state.pending.get(data.jobId);
    if (!held || (STATUS_RANK[data.status] ?? 0) >= (STATUS_RANK[held.status] ?? 0))
      state.pending.set(data.jobId, data);
    if (!held) fetchJob(data.jobId);
  }

  // Adds a job to the list (if new) and applies a live update held for it.
  function addJob(job) {
    if (!state.jobs.has(job.jobId)) state.jobs.set(job.jobId, job);
    const held = state.pending.get(job.jobId);
    state.pending.delete(job.jobId);
    if (!held || !applyUpdate(held, 'live')) renderJobs(job.jobId);
  }

  // A job we did not know (made elsewhere, e.g. the CLI): read its record.
  async function fetchJob(jobId) {
    const r = await api('GET', `/agent/${TYPE}/${encodeURIComponent(jobId)}`);
    if (r.ok && r.json && r.json.jobId) addJob({ ...r.json, via: 'http' });
  }

  async function loadJobs() {
    const r = await api('GET', `/agent/${TYPE}/jobs?limit=50`);
    if (r.stale) return;
    if (!r.ok || !r.json) {
      $('jobs-empty').textContent = `Could not list jobs: ${r.message}`;
      return;
    }
    for (const rec of r.json.jobs || []) {
      const known = state.jobs.get(rec.jobId);
      // keep a live update that is newer than the stored record
      if (known && known.updatedAt && rec.updatedAt && known.updatedAt > rec.updatedAt) continue;
      state.jobs.set(rec.jobId, { ...rec, via: known ? known.via : 'http' });
    }
    for (const [id, held] of state.pending)
      if (state.jobs.has(id)) { state.pending.delete(id); applyUpdate(held, 'live'); }
    renderJobs();
  }

  // While the socket is down, jobs still in flight are read over HTTP.
  async function pollActive() {
    if (state.live || !state.token) return;
    const active = [...state.jobs.values()].filter((j) => !TERMINAL.has(j.status));
    for (const j of active.slice(0, 10)) {
      const r = await api('GET', `/agent/${TYPE}/${encodeURIComponent(j.jobId)}`);
      if (r.ok && r.json && r.json.status !== j.status)
        applyUpdate({ ...r.json, timestamp: r.json.updatedAt }, 'http');
    }
  }

  function setNote(kind, text) {
    const note = $('job-note');
    if (kind) note.dataset.kind = kind; else delete note.dataset.kind;
    note.textContent = text;
  }

  async function createJob(ev) {
    ev.preventDefault();
    const amount = Number($('job-amount').value);
    const priority = $('job-priority').value;
    if (!(amount > 0)) {
      setNote('error', 'Amount must be a number greater than 0.');
      return;
    }
    $('job-submit').disabled = true;
    const body = priority ? { amount, priority } : { amount };
    const r = await api('POST', `/agent/${TYPE}`, body);
    if (r.stale) return; // signed out meanwhile: the answer belongs to nobody on this page
    $('job-submit').disabled = false;
    if (r.status === 202 && r.json && r.json.jobId) {
      const now = new Date().toISOString();
      const id = r.json.jobId;
      // updatedAt stays unknown: the browser's clock is not the agents' clock
      addJob({ jobId: id, type: TYPE, status: 'queued', payload: body, attempts: 0,
        createdAt: now, via: 'http' });
      setNote('ok', `Queued ${id}`);
    } else {
      const retry = r.status === 429 ? ' (rate limited)' : '';
      setNote('error', `Not queued${retry}: ${r.message}`);
    }
  }

  function outcome(job) {
    if (job.status === 'error') return el('span', { class: 'outcome err', text: job.error || 'failed', title: job.details || '' });
    if (job.status === 'done') {
      const r = job.result;
      let text;
      if (r && typeof r === 'object' && 'fee' in r && 'remainingAmount' in r)
        text = `fee ${fmtNum(r.fee)} · remaining ${fmtNum(r.remainingAmount)}`;
      else text = r === undefined || r === null ? 'done' : JSON.stringify(r);
      return el('span', { class: 'outcome ok', text, title: JSON.stringify(r) });
    }
    const attempts = job.attempts > 1 ? `attempt ${job.attempts}` : '';
    return el('span', { class: 'outcome muted', text: [job.details, attempts].filter(Boolean).join(' · ') });
  }

  function jobRow(job, flash) {
    const p = job.payload || {};
    const pill = el('span', { class: 'pill', 'data-status': job.status, text: job.status });
    const via = el('span', { class: 'via', text: job.via === 'live' ? 'live' : '', title: 'last update arrived over Socket.IO' });
    return el('tr', { 'data-job-id': job.jobId, 'data-status': job.status, 'data-via': job.via || 'http', class: flash ? 'flash' : '' },
      el('td', { class: 'mono', text: job.jobId, title: job.jobId }),
      el('td', { class: 'status' }, pill, via),
      el('td', { class: 'num', text: fmtNum(Number(p.amount)) }),
      el('td', { text: p.priority || '–' }),
      el('td', { text: fmtDateTime(job.createdAt), title: job.createdAt || '' }),
      el('td', {}, outcome(job)));
  }

  function renderJobs(changedId) {
    const jobs = [...state.jobs.values()].sort((a, b) => (b.createdAt || '').localeCompare(a.createdAt || ''));
    $('jobs').tBodies[0].replaceChildren(...jobs.map((j) => jobRow(j, j.jobId === changedId)));
    $('jobs-empty').hidden = jobs.length > 0;
    const active = jobs.filter((j) => !TERMINAL.has(j.status)).length;
    $('jobs-count').textContent = jobs.length ? `${jobs.length} shown${active ? ` · ${active} in flight` : ''}` : '';
  }

  // ---- live feed ---------------------------------------------------------------------------

  function addFeed(name, data, extra, kind) {
    const feed = $('feed');
    const status = name.split(':')[1];
    const item = el('li', { 'data-event': name, 'data-job-id': data.jobId || '' },
      el('time', { text: fmtTime(data.timestamp || new Date().toISOString()) }),
      el('span', { class: 'ev', 'data-status': status, text: name }),
      el('span', { class: 'mono', text: data.jobId || '' }),
      extra ? el('span', { class: 'extra', 'data-kind': kind || '', text: extra }) : null);
    feed.prepend(item);
    while (feed.children.length > FEED_MAX) feed.lastChild.remove();
    $('feed-empty').hidden = true;
  }

  // ---- presence ----------------------------------------------------------------------------

  // GET /agent-status/online answers {success, data: {count, agents: [records…]}} (README,
  // "HTTP API"); null for any other shape, which the panel reports instead of "no agent".
  function agentsOf(json) {
    const agents = json && json.data && json.data.agents;
    return Array.isArray(agents) ? agents : null;
  }

  function agentItem(a) {
    return el('li', { 'data-agent-id': a.agent_id || '', 'data-status': a.status || 'online' },
      el('span', { class: 'dot' }),
      el('span', { class: 'agent-name', text: a.name || a.agent_id || '?', title: a.agent_id || '' }),
      el('span', { class: 'muted', text: a.max_chats ? `${a.current_chats || 0}/${a.max_chats}` : (a.status || '') }));
  }

  function agentsMessage(text) {
    $('agents').replaceChildren();
    $('agents-msg').textContent = text;
    $('agents-count').textContent = '';
  }

  async function loadAgents() {
    if (!state.token) return;
    const r = await api('GET', '/agent-status/online');
    if (r.stale) return;
    if (r.status === 404 || r.status === 405) {
      agentsMessage('Presence is not available on this gateway yet.');
      return;
    }
    const agents = r.ok ? agentsOf(r.json) : null;
    if (!agents) {
      agentsMessage(`Could not load agents: ${r.ok ? 'unexpected answer' : r.message}`);
      return;
    }
    const byDept = new Map();
    for (const a of agents) {
      const dept = a.department || a.department_id || 'no department';
      if (!byDept.has(dept)) byDept.set(dept, []);
      byDept.get(dept).push(a);
    }
    const groups = [...byDept.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([dept, list]) =>
      el('div', { class: 'dept', 'data-department': dept },
        el('h3', {}, dept, el('span', { class: 'muted', text: ` ${list.length}` })),
        el('ul', {}, ...list.map(agentItem))));
    $('agents').replaceChildren(...groups);
    $('agents-msg').textContent = agents.length ? '' : 'No agent is online.';
    $('agents-count').textContent = agents.length ? `${agents.length} online` : '';
  }

  // ---- metrics -----------------------------------------------------------------------------

  function scheduleMetrics() {
    clearTimeout(state.metricsTimer);
    state.metricsTimer = setTimeout(loadMetrics, 800);
  }

  function metricsMessage(text) {
    $('metrics-body').hidden = !!text;
    $('metrics-msg').hidden = !text;
    $('metrics-msg').textContent = text || '';
    $('metrics-days').hidden = !!text && state.claims && state.claims.role !== 'admin';
  }

  async function loadMetrics() {
    if (!state.token) return;
    if (state.claims.role !== 'admin') {
      metricsMessage('Metrics are for admins: sign in with an admin token to see them.');
      return;
    }
    const days = $('metrics-days').value;
    const r = await api('GET', `/agent/${TYPE}/metrics?days=${days}`);
    if (r.stale) return;
    if (!r.ok || !r.json) {
      metricsMessage(`Could not load metrics: ${r.message}`);
      return;
    }
    metricsMessage('');
    renderMetrics(r.json);
  }

  function tile(label, value, kind, title) {
    return el('div', { class: 'tile', 'data-kind': kind || '', title },
      el('div', { class: 'tile-value', text: value }), el('div', { class: 'tile-label', text: label }));
  }

  function renderMetrics(m) {
    state.lastMetrics = m;
    const rl = m.rateLimit || {};
    const finished = (m.doneJobs || 0) + (m.failedJobs || 0);
    const rate = finished ? `${Math.round((100 * (m.failedJobs || 0)) / finished)} %` : '–';
    $('metrics-tiles').replaceChildren(
      tile('jobs', fmtNum(m.totalJobs)),
      tile('done', fmtNum(m.doneJobs), 'ok'),
      tile('failed', fmtNum(m.failedJobs), m.failedJobs ? 'err' : ''),
      tile('failure rate', rate),
      tile('avg time', fmtMs(m.avgExecutionTime)),
      tile('p95 time', fmtMs(m.p95ExecutionTime)),
      tile('rate-limited', fmtNum(rl.blocked || 0), rl.blocked ? 'err' : '',
        `${fmtNum(rl.blocked || 0)} of ${fmtNum(rl.hits || 0)} job requests refused by the rate limit`));
    const daily = m.daily || [];
    barChart($('chart-daily'), {
      labels: daily.map((d) => d.date.slice(5)),
      series: [
        { name: 'submitted', cls: 's-jobs', values: daily.map((d) => d.jobs) },
        { name: 'done', cls: 's-done', values: daily.map((d) => d.done) },
        { name: 'failed', cls: 's-failed', values: daily.map((d) => d.failed) },
      ],
    });
    const ex = m.executionTimes || { histogram: [] };
    const hist = ex.histogram || [];
    $('exec-caption').textContent = ex.count ? `(${fmtNum(ex.count)} recent job${ex.count === 1 ? '' : 's'})` : '';
    $('exec-stats').textContent = ex.count ? `p50 ${fmtMs(ex.p50)} · p95 ${fmtMs(ex.p95)} · max ${fmtMs(ex.max)}` : '';
    barChart($('chart-exec'), {
      labels: hist.map((b, i) => (b.le === null ? `>${shortMs(hist[i - 1] ? hist[i - 1].le : 0)}` : shortMs(b.le))),
      series: [{ name: 'jobs', cls: 's-exec', values: hist.map((b) => b.count) }],
      empty: 'No finished jobs yet.',
    });
  }

  function shortMs(ms) { return ms >= 1000 ? `${ms / 1000}s` : `${ms}ms`; }

  // A grouped bar chart in inline SVG: labels on x, one bar per series in each group.
  function barChart(box, { labels, series, empty }) {
    const W = Math.max(240, Math.round(box.clientWidth || 420)), H = 180, L = 34, R = 6, T = 10, B = 20;
    const max = Math.max(0, ...series.flatMap((s) => s.values));
    if (!labels.length || (empty && max === 0)) {
      box.replaceChildren(el('p', { class: 'empty muted', text: empty || 'No data.' }));
      return;
    }
    const top = niceMax(max);
    const root = svg('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', class: 'bars' });
    const plotH = H - T - B, plotW = W - L - R;
    for (let i = 0; i <= 4; i++) {
      const v = (top * i) / 4, y = T + plotH - (plotH * i) / 4;
      root.append(svg('line', { x1: L, x2: W - R, y1: y, y2: y, class: i ? 'grid' : 'axis' }));
      root.append(svg('text', { x: L - 4, y: y + 3, class: 'tick', 'text-anchor': 'end' }, fmtTick(v)));
    }
    const gw = plotW / labels.length, pad = Math.min(8, gw * 0.2), bw = Math.max(1, (gw - 2 * pad) / series.length);
    const longest = Math.max(...labels.map((l) => l.length));
    const every = Math.max(1, Math.ceil((longest * 6.5 + 8) / gw)); // labels never overlap
    labels.forEach((label, i) => {
      const x0 = L + i * gw + pad;
      series.forEach((s, k) => {
        const v = s.values[i] || 0, h = top ? (plotH * v) / top : 0;
        const rect = svg('rect', { x: x0 + k * bw, y: T + plotH - h, width: Math.max(1, bw - 1), height: h, class: s.cls });
        rect.append(svg('title', {}, `${label}: ${v} ${s.name}`));
        root.append(rect);
      });
      if (i % every === 0)
        root.append(svg('text', { x: L + i * gw + gw / 2, y: H - 6, class: 'tick', 'text-anchor': 'middle' }, label));
    });
    const legend = series.length > 1 ? el('div', { class: 'legend' }, ...series.map((s) =>
      el('span', {}, el('i', { class: s.cls }), s.name))) : null;
    box.replaceChildren(root, ...(legend ? [legend] : []));
  }

  function niceMax(v) {
    if (v <= 4) return 4;
    const p = 10 ** Math.floor(Math.log10(v));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }

  function fmtTick(v) { return v >= 1000 ? `${+(v / 1000).toFixed(1)}k` : `${+v.toFixed(1)}`; }

  // What the operator console (console.js) uses of this page: the session-checked API, the
  // socket, whether it is connected, the DOM and format helpers and the live feed.
  function consoleCtx() {
    return { api, socket: state.socket, live: () => state.live, el, svg, fmtTime, fmtDateTime,
      fmtNum, fmtMs, addFeed };
  }

  // ---- start -------------------------------------------------------------------------------

  function start() {
    INITIAL.jobsEmpty = $('jobs-empty').textContent;
    INITIAL.metricsDays = $('metrics-days').value;
    $('token-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const t = $('token-input').value;
      if (t.trim()) signIn(t); else showSignInError('Paste a token first.');
    });
    $('dev-form').addEventListener('submit', mintDevToken);
    $('sign-out').addEventListener('click', () => signOut());
    $('job-form').addEventListener('submit', createJob);
    $('jobs-refresh').addEventListener('click', loadJobs);
    $('metrics-days').addEventListener('change', loadMetrics);
    let resizeTimer = null;
    window.addEventListener('resize', () => {
      clearTimeout(resizeTimer);
      resizeTimer = setTimeout(() => { if (state.lastMetrics && state.token) renderMetrics(state.lastMetrics); }, 150);
    });
    probeDevMode();
    window.addEventListener('hashchange', signInFromHash);
    if (signInFromHash()) return;
    let saved = null;
    try { saved = localStorage.getItem(TOKEN_KEY); } catch { /* private mode */ }
    if (saved && !signIn(saved)) {
      try { localStorage.removeItem(TOKEN_KEY); } catch { /* private mode */ }
    }
  }

  start();
})();
