// TLS helpers for end-to-end tests: a private CA and server certificates made with the real
// `openssl` command line (subjectAltName localhost and 127.0.0.1), and https requests that
// trust that CA only, so an answer proves the certificate chain the gateway serves.
'use strict';
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const https = require('node:https');
const os = require('node:os');
const path = require('node:path');
const tls = require('node:tls');

function openssl(args, cwd) { execFileSync('openssl', args, { cwd, stdio: 'pipe' }); }

// Makes dir/ca.pem (+ ca.key); returns {dir, ca, cert(name)}: cert(name) makes name.pem and
// name.key signed by the CA and returns their paths.
function makeCa() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sb-e2e-tls-'));
  openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem',
    '-days', '2', '-subj', '/CN=Switchboard test CA'], dir);
  fs.writeFileSync(path.join(dir, 'ext'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n');
  let serial = 0;
  const cert = (name) => {
    openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`,
      '-subj', `/CN=${name}`], dir);
    openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key',
      '-set_serial', String(1000 + ++serial), '-out', `${name}.pem`, '-days', '2',
      '-extfile', 'ext'], dir);
    return { cert: path.join(dir, `${name}.pem`), key: path.join(dir, `${name}.key`) };
  };
  return { dir, ca: fs.readFileSync(path.join(dir, 'ca.pem')), cert,
    remove: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

// One https request trusting ca only; resolves {status, text, json, peerCN}.
function httpsRequest(url, ca, { method = 'GET', headers = {}, body } = {}) {
  return new Promise((resolve, reject) => {
    const req = https.request(url, { method, ca, headers, agent: false }, (res) => {
      let text = '';
      const peerCN = res.socket.getPeerCertificate().subject?.CN;
      res.on('data', (d) => { text += d; });
      res.on('end', () => {
        let json;
        try { json = JSON.parse(text); } catch { json = undefined; }
        resolve({ status: res.statusCode, text, json, peerCN });
      });
    });
    req.on('error', reject);
    if (body !== undefined) req.end(typeof body === 'string' ? body : JSON.stringify(body));
    else req.end();
  });
}

// The subject CN of the certificate a new TLS connection to port gets (trusting ca).
function peerCN(port, ca) {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, ca, servername: 'localhost' }, () => {
      const cn = s.getPeerCertificate().subject.CN;
      s.end();
      resolve(cn);
    });
    s.on('error', reject);
  });
}

module.exports = { makeCa, httpsRequest, peerCN };
