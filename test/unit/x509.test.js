'use strict';
// X.509 pieces without sockets: reading pasted PEM, explaining refusals and untrusted servers (src/core/x509.ts), and
// the local hub's certificate checks (src/localhub/x509-auth.ts, Registry.authenticateCertificate).
const test = require('node:test');
const assert = require('node:assert/strict');
const { X509Certificate } = require('node:crypto');
const {
  normalizePem,
  readClientCertificate,
  certificateRefused,
  untrustedServer,
} = require('../../nodes/core/x509.js');
const { IotHubError, reasonOf } = require('../../nodes/core/errors.js');
const { chainProblem, checkThumbprint } = require('../../nodes/localhub/x509-auth.js');
const { Registry } = require('../../nodes/localhub/registry.js');
const { CertFactory } = require('../support/certs');

const certs = new CertFactory();
test.after(() => certs.remove());
const DAY = 86400_000;

test('PEM flattened by a one-line field, with CRs or spaces, is rewrapped; other text is left alone', () => {
  const c = certs.make('pem');
  for (const mangled of [
    c.keyPem.replace(/\n/g, ''),
    c.keyPem.replace(/\n/g, '\r\n'),
    c.keyPem.replace(/\n/g, ' '),
    `  ${c.keyPem}  `,
  ]) {
    const read = readClientCertificate({ cert: c.certPem.replace(/\n/g, ''), key: mangled });
    assert.equal(read.key, c.keyPem);
    assert.equal(read.cert, c.certPem);
  }
  assert.equal(normalizePem('not pem'), 'not pem');
  // A chain stays a chain.
  const ca = certs.make('pem-ca', { ca: true });
  assert.equal(normalizePem((c.certPem + ca.certPem).replace(/\n/g, '')), c.certPem + ca.certPem);
});

test('a bad certificate, key or passphrase names the setting and never shows the key', () => {
  const c = certs.make('creds');
  const other = certs.make('creds');
  const enc = certs.encryptedKey(c, 'right');
  const cases = [
    [{ cert: 'garbage', key: c.keyPem }, 'cert', /not a PEM certificate/],
    [{ cert: c.certPem, key: 'garbage' }, 'key', /not a PEM private key/],
    [{ cert: c.certPem, key: other.keyPem }, 'key', /does not belong to the client certificate/],
    [{ cert: c.certPem, key: enc }, 'passphrase', /encrypted: give its passphrase/],
    [{ cert: c.certPem, key: enc, passphrase: 'wrong' }, 'passphrase', /passphrase is wrong/],
  ];
  for (const [input, field, text] of cases) {
    assert.throws(
      () => readClientCertificate(input),
      (e) =>
        e instanceof IotHubError &&
        e.field === field &&
        text.test(e.message) &&
        ![c.keyPem, other.keyPem, enc].some((k) => e.message.includes(k.split('\n')[1])),
    );
  }
  assert.equal(readClientCertificate({ cert: c.certPem, key: enc, passphrase: 'right' }).passphrase, 'right');
});

test('a refusal is explained from the certificate; the status is the part before ";"', () => {
  const ok = certs.make('dev');
  const old = certs.expired('dev');
  const later = certs.make('dev', { from: Date.now() + DAY, to: Date.now() + 2 * DAY });
  const refused = certificateRefused(ok.certPem, 'dev');
  assert.equal(refused.code, 'UNAUTHORIZED');
  assert.match(refused.message, new RegExp(`SHA-1 ${ok.sha1}\\) on device dev`));
  assert.equal(reasonOf(refused), 'certificate refused: the hub does not accept it');
  assert.match(reasonOf(certificateRefused(old.certPem, 'dev')), /^certificate refused: it expired on \d{4}-/);
  assert.match(certificateRefused(later.certPem, 'dev').message, /not valid before .*check the device clock/);
  // Any other refusal keeps the plain word.
  assert.equal(reasonOf(new IotHubError('UNAUTHORIZED', 'not authorized')), 'unauthorized');
});

test("Node's certificate verification codes become 'certificate not trusted: HOST' with the fix; other errors do not", () => {
  for (const code of ['UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'SELF_SIGNED_CERT_IN_CHAIN', 'ERR_TLS_CERT_ALTNAME_INVALID']) {
    const e = untrustedServer(Object.assign(new Error('x'), { code }), 'gw.example');
    assert.equal(reasonOf(e), 'certificate not trusted: gw.example');
    assert.ok(e.message.includes(code));
  }
  assert.match(
    untrustedServer({ code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' }, 'gw').message,
    /CA certificate \(PEM\) in the config node or in NODE_EXTRA_CA_CERTS/,
  );
  assert.equal(untrustedServer({ code: 'ECONNREFUSED' }, 'gw'), undefined);
  assert.equal(untrustedServer(undefined, 'gw'), undefined);
});

test('the registry: thumbprints of either hash, chains through intermediates, validity, CN, verification, status', () => {
  const now = Date.now();
  const x = (c) => new X509Certificate(c.certPem);
  const root = certs.make('U Root', { ca: true });
  const inter = certs.make('U Inter', { ca: true, issuer: root });
  const leaf = certs.make('u-ca', { issuer: inter });
  const oldInter = certs.make('U Old Inter', { ca: true, issuer: root, from: now - 10 * DAY, to: now - DAY });
  const leafOfOld = certs.make('u-ca', { issuer: oldInter, to: now + DAY });
  const cas = [{ name: 'root', pem: root.certPem, thumbprint: root.sha1, isVerified: true }];
  assert.equal(chainProblem([x(leaf), x(inter)], cas, now), undefined);
  assert.match(chainProblem([x(leaf)], cas, now), /does not chain to a CA registered/);
  assert.match(chainProblem([x(leafOfOld), x(oldInter)], cas, now), /intermediate certificate "U Old Inter" expired/);
  assert.match(chainProblem([x(leaf), x(inter)], [{ ...cas[0], isVerified: false }], now), /not verified/);
  const shortRoot = certs.make('U Short Root', { ca: true, to: now + DAY });
  const interOfShort = certs.make('U Inter 2', { ca: true, issuer: shortRoot, to: now + 3 * DAY });
  const leafOfShort = certs.make('u-ca', { issuer: interOfShort, to: now + 3 * DAY });
  const shortCas = [{ name: 'short', pem: shortRoot.certPem, thumbprint: shortRoot.sha1, isVerified: true }];
  assert.equal(chainProblem([x(leafOfShort), x(interOfShort)], shortCas, now), undefined);
  assert.match(
    chainProblem([x(leafOfShort), x(interOfShort)], shortCas, now + 2 * DAY),
    /the CA certificate "short" expired/,
  );

  assert.equal(checkThumbprint(`${'ab:'.repeat(19)}ab`, 'p'), 'AB'.repeat(20));
  assert.throws(() => checkThumbprint('abc', 'primaryThumbprint'), /primaryThumbprint must be a SHA-1/);

  const r = new Registry('hub.example');
  const ss = certs.make('u-ss');
  r.create('u-ss', { x509SecondaryThumbprint: ss.sha256.toLowerCase() });
  r.create('u-ca', { authType: 'certificateAuthority' });
  r.addCertificate('root', root.certPem, true);
  assert.equal(r.authenticateCertificate('u-ss', [x(ss)]).deviceId, 'u-ss');
  assert.equal(r.authenticateCertificate('u-ca', [x(leaf), x(inter)]).expiresAt, Infinity);
  assert.throws(() => r.authenticateCertificate('u-ca', [x(ss)]), /is for "u-ss" \(its CN\), not device u-ca/);
  assert.throws(() => r.authenticateCertificate('u-ss', [x(ss)], now + 3 * DAY), /expired on/);
  assert.throws(() => r.authenticateCertificate('nobody', [x(ss)]), /not registered/);
  r.update('u-ss', { status: 'disabled' });
  assert.throws(() => r.authenticateCertificate('u-ss', [x(ss)]), /disabled/);
  assert.throws(() => r.create('u-bad', { authType: 'selfSigned' }), /needs a primary or secondary thumbprint/);
  // Saved and loaded: the CA and the device types survive a restart.
  const again = new Registry('hub.example', JSON.parse(JSON.stringify(r.toJSON())));
  assert.equal(again.authenticateCertificate('u-ca', [x(leaf), x(inter)]).deviceId, 'u-ca');
});
