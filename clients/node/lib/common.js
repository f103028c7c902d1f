// What the Node client shares: settings from the environment (the binaries' names), the Lua
// scripts of scripts/lua (this package's lua/ links there: the bytes the C build embeds), ids,
// times and validation, as the C code does them.
'use strict';
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');

const JOB_TTL = 86400;
const METRICS_TTL = 7 * 86400;
const AUDIT_MAXLEN = 10000;
const HIST_BOUNDS = [10, 50, 100, 250, 500, 1000, 5000, 10000, 30000, 60000];
const TYPE_RE = /^[a-z][a-z0-9_-]{0,31}$/;
const JOB_ID_RE = /^[0-9]{1,16}-[0-9a-z]{1,32}$/;
const EVENT_TYPE_RE = /^[A-Za-z0-9._:-]{1,128}$/;

// The bytes of scripts/lua/{name}.lua (a string: they are ASCII).
function lua(name) {
  return fs.readFileSync(path.join(__dirname, '..', 'lua', `${name}.lua`), 'utf8');
}

function envInt(name, dflt) {
  const v = process.env[name];
  if (v === undefined || v === '') return dflt;
  if (!/^-?\d+$/.test(v)) throw new Error(`${name} must be an integer, not '${v}'`);
  return Number(v);
}

// REDIS_URL, or one built from REDIS_HOST/REDIS_PORT/REDIS_PASSWORD/REDIS_DB.
function redisUrl() {
  if (process.env.REDIS_URL) return process.env.REDIS_URL;
  const pw = process.env.REDIS_PASSWORD ? `:${encodeURIComponent(process.env.REDIS_PASSWORD)}@` : '';
  return `redis://${pw}${process.env.REDIS_HOST || '127.0.0.1'}:${envInt('REDIS_PORT', 6379)}/${envInt('REDIS_DB', 0)}`;
}

const iso = (ms = Date.now()) => new Date(ms).toISOString();
const utcDate = (ms) => new Date(ms).toISOString().slice(0, 10);
const newJobId = () => `${Date.now()}-${crypto.randomBytes(4).toString('hex')}`;
const uuid = () => crypto.randomUUID();

function check(ok, msg) { if (!ok) throw new TypeError(msg); }
const checkType = (t) => { check(typeof t === 'string' && TYPE_RE.test(t), `bad job type '${t}'`); return t; };
const checkJobId = (i) => { check(typeof i === 'string' && JOB_ID_RE.test(i), `bad job id '${i}'`); return i; };
const checkEventType = (t) => {
  check(typeof t === 'string' && EVENT_TYPE_RE.test(t), `bad event type '${t}'`); return t;
};
const checkPublicKey = (pk) => {
  check(typeof pk === 'string' && /^[\x21-\x7e]{1,128}$/.test(pk),
    'bad user publicKey: 1-128 printable ASCII characters, no spaces');
  return pk;
};

// JSON.stringify that refuses what is not JSON (NaN, Infinity, undefined) instead of writing
// null in its place.
function dumps(v) {
  const text = JSON.stringify(v, (_k, x) => {
    if (typeof x === 'number' && !Number.isFinite(x)) throw new TypeError('NaN/Infinity is not JSON');
    return x;
  });
  if (text === undefined) throw new TypeError('value is not JSON');
  return text;
}

module.exports = { JOB_TTL, METRICS_TTL, AUDIT_MAXLEN, HIST_BOUNDS, EVENT_TYPE_RE, lua, envInt,
  redisUrl, iso, utcDate, newJobId, uuid, checkType, checkJobId, checkEventType,
  checkPublicKey, dumps };
