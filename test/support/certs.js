'use strict';
// X.509 material for tests, made at run time with the openssl command into a temp dir (never committed):
// self-signed device certificates, a CA, certificates it issues, expired ones (openssl ca takes any start and end date).
const { execFileSync } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const CONFIG = `
[ ca ]
default_ca = ca_default
[ ca_default ]
dir = DIR
database = $dir/index.txt
new_certs_dir = $dir
serial = $dir/serial
default_md = sha256
policy = policy_any
unique_subject = no
email_in_dn = no
copy_extensions = none
[ policy_any ]
commonName = supplied
[ leaf ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = clientAuth,serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[ server ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = $ENV::SAN
[ ca_ext ]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign,digitalSignature
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
`;

/** openssl's date form: YYYYMMDDHHMMSSZ. */
const stamp = (ms) => new Date(ms).toISOString().replace(/[-:T]/g, '').slice(0, 14) + 'Z';
const DAY = 86400_000;

class CertFactory {
  constructor() {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iothub-x509-'));
    fs.writeFileSync(path.join(this.dir, 'index.txt'), '');
    fs.writeFileSync(path.join(this.dir, 'serial'), '1000\n');
    this.config = path.join(this.dir, 'openssl.cnf');
    fs.writeFileSync(this.config, CONFIG.replace('DIR', this.dir));
    this.n = 0;
  }

  run(args, env = {}) {
    return execFileSync('openssl', args, {
      cwd: this.dir,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, SAN: 'DNS:x', ...env },
    });
  }

  /**
   * A key and certificate for subject CN `cn`, signed by `issuer` (from this factory) or by itself.
   * from/to: validity in ms since the epoch (default: an hour ago to 2 days ahead). ca: a CA certificate.
   * san: DNS names for a server certificate.
   */
  make(cn, { issuer, from = Date.now() - 3600_000, to = Date.now() + 2 * DAY, ca = false, san } = {}) {
    const base = path.join(this.dir, `c${++this.n}`);
    this.run(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', `${base}.ec`]);
    this.run(['pkcs8', '-topk8', '-nocrypt', '-in', `${base}.ec`, '-out', `${base}.key`]);
    this.run(['req', '-new', '-key', `${base}.key`, '-subj', `/CN=${cn}`, '-out', `${base}.csr`]);
    const sign = issuer
      ? ['-cert', issuer.certFile, '-keyfile', issuer.keyFile]
      : ['-selfsign', '-keyfile', `${base}.key`];
    const ext = ca ? 'ca_ext' : san ? 'server' : 'leaf';
    const env = san ? { SAN: san.map((n) => `DNS:${n}`).join(',') } : {};
    this.run(
      [
        'ca',
        '-batch',
        '-notext',
        '-config',
        this.config,
        '-in',
        `${base}.csr`,
        '-out',
        `${base}.pem`,
        '-extensions',
        ext,
        '-startdate',
        stamp(from),
        '-enddate',
        stamp(to),
        ...sign,
      ],
      env,
    );
    const certPem = fs.readFileSync(`${base}.pem`, 'utf8');
    const keyPem = fs.readFileSync(`${base}.key`, 'utf8');
    const x = new crypto.X509Certificate(certPem);
    return {
      cn,
      certPem,
      keyPem,
      certFile: `${base}.pem`,
      keyFile: `${base}.key`,
      sha1: x.fingerprint.replace(/:/g, ''),
      sha256: x.fingerprint256.replace(/:/g, ''),
    };
  }

  /** The key of `c` encrypted with a passphrase (PKCS#8, AES-256). */
  encryptedKey(c, passphrase) {
    return this.run([
      'pkcs8',
      '-topk8',
      '-in',
      c.keyFile,
      '-v2',
      'aes-256-cbc',
      '-passout',
      `pass:${passphrase}`,
    ]).toString();
  }

  expired(cn, opts = {}) {
    return this.make(cn, { ...opts, from: Date.now() - 10 * DAY, to: Date.now() - DAY });
  }

  remove() {
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

module.exports = { CertFactory };
