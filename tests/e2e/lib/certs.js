// Certificates for TLS tests, made with the real `openssl` command in a temporary folder: a CA,
// a server certificate for 127.0.0.1 / localhost, a client certificate (mutual TLS), an expired
// server certificate and a second, unrelated CA (the "wrong CA"). Signed with `openssl ca`,
// which can backdate a certificate (-startdate/-enddate) to make the expired one.
'use strict';
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const CA_CNF = `[ ca ]
default_ca = dflt
[ dflt ]
database = index.txt
new_certs_dir = .
serial = serial
default_md = sha256
policy = any
copy_extensions = copy
unique_subject = no
[ any ]
commonName = supplied
`;

function openssl(dir, args) {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
}

// A self-signed CA named name: {cert, key} paths.
function makeCa(dir, name) {
  openssl(dir, ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`,
    '-out', `${name}.pem`, '-days', '3', '-subj', `/CN=${name}`]);
  return { cert: path.join(dir, `${name}.pem`), key: path.join(dir, `${name}.key`) };
}

// A key and a certificate signed by ca; san like 'IP:127.0.0.1,DNS:localhost' (or null);
// dates: ['-days', '2'] or ['-startdate', ..., '-enddate', ...].
function makeCert(dir, ca, name, san, dates) {
  const ext = san ? ['-addext', `subjectAltName=${san}`] : [];
  openssl(dir, ['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out',
    `${name}.csr`, '-subj', `/CN=${name}`, ...ext]);
  openssl(dir, ['ca', '-batch', '-config', 'ca.cnf', '-cert', ca.cert, '-keyfile', ca.key,
    '-in', `${name}.csr`, '-out', `${name}.pem`, ...dates]);
  return { cert: path.join(dir, `${name}.pem`), key: path.join(dir, `${name}.key`) };
}

// Makes the whole set; returns paths and a cleanup().
function makeCerts() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sb-tls-'));
  fs.writeFileSync(path.join(dir, 'ca.cnf'), CA_CNF);
  fs.writeFileSync(path.join(dir, 'index.txt'), '');
  fs.writeFileSync(path.join(dir, 'serial'), '01\n');
  const ca = makeCa(dir, 'test-ca');
  const wrongCa = makeCa(dir, 'other-ca');
  const days = ['-days', '2'];
  return {
    dir,
    ca,
    wrongCa,
    server: makeCert(dir, ca, 'server', 'IP:127.0.0.1,DNS:localhost', days),
    client: makeCert(dir, ca, 'client', null, days),
    expired: makeCert(dir, ca, 'expired', 'IP:127.0.0.1,DNS:localhost',
      ['-startdate', '20200101000000Z', '-enddate', '20200102000000Z']),
    cleanup: () => fs.rmSync(dir, { recursive: true, force: true }),
  };
}

module.exports = { makeCerts };
