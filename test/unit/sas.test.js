'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const {
  createSasToken,
  parseSasToken,
  verifySasToken,
  scopeCovers,
  deviceResourceUri,
  secondsToExpiry,
} = require('../../nodes/core/sas.js');

const KEY = crypto.randomBytes(32).toString('base64');
const future = Math.floor(Date.now() / 1000) + 3600;

function cStyleToken(resource, key, se, skn) {
  // The C SDK signs and sends the raw, unencoded path.
  const sig = crypto.createHmac('sha256', Buffer.from(key, 'base64')).update(`${resource}\n${se}`).digest('base64');
  return `SharedAccessSignature sr=${resource}&sig=${encodeURIComponent(sig)}&se=${se}${skn ? `&skn=${skn}` : ''}`;
}

test('device token: create, parse, verify', () => {
  const t = createSasToken({ resourceUri: 'hub.azure-devices.net/devices/d1', key: KEY, expiresAt: future });
  assert.match(t, /^SharedAccessSignature sr=hub.azure-devices.net%2Fdevices%2Fd1&sig=[^&]+&se=\d+$/);
  const p = parseSasToken(t);
  assert.equal(p.resource, 'hub.azure-devices.net/devices/d1');
  assert.equal(p.se, future);
  assert.equal(p.skn, undefined);
  assert.ok(verifySasToken(t, KEY));
  assert.ok(!verifySasToken(t, crypto.randomBytes(32).toString('base64')));
});

test('service token with skn, fields in any order (Python/C order)', () => {
  const t = createSasToken({ resourceUri: 'hub.azure-devices.net', key: KEY, keyName: 'service', expiresAt: future });
  assert.match(t, /&skn=service&se=/);
  const p = parseSasToken(t);
  const reordered = `SharedAccessSignature sr=${p.sr}&sig=${encodeURIComponent(p.sig)}&se=${p.se}&skn=service`;
  assert.equal(parseSasToken(reordered).skn, 'service');
  assert.ok(verifySasToken(reordered, KEY));
});

test('C-style raw sr verifies; a tampered sr does not', () => {
  const t = cStyleToken('hub.azure-devices.net/devices/d1', KEY, future);
  assert.ok(verifySasToken(t, KEY));
  assert.equal(parseSasToken(t).resource, 'hub.azure-devices.net/devices/d1');
  assert.ok(!verifySasToken(t.replace('/d1', '/d2'), KEY));
});

test('expired tokens are refused', () => {
  const t = createSasToken({ resourceUri: 'h/devices/d', key: KEY, expiresAt: 1000 });
  assert.equal(verifySasToken(t, KEY), false);
  assert.equal(verifySasToken(t, KEY, 999), true);
  assert.ok(secondsToExpiry(createSasToken({ resourceUri: 'h', key: KEY, expiresAt: future }), future - 10) === 10);
});

test('a + in the signature is not a space', () => {
  // Find a key whose signature contains '+', then check verification keeps it.
  for (let i = 0; i < 200; i++) {
    const k = crypto.randomBytes(32).toString('base64');
    const t = createSasToken({ resourceUri: `h/devices/d${i}`, key: k, expiresAt: future });
    const sig = parseSasToken(t).sig;
    if (sig.includes('+')) {
      assert.ok(verifySasToken(t, k));
      const raw = t.replace(/sig=[^&]+/, `sig=${sig}`); // unencoded '+'
      assert.ok(verifySasToken(raw, k));
      return;
    }
  }
  assert.fail('no signature with + found');
});

test('malformed tokens throw INVALID_TOKEN without echoing the signature', () => {
  for (const t of [
    '',
    'sr=a&sig=b&se=1',
    'SharedAccessSignature ',
    'SharedAccessSignature sr=a&se=1',
    'SharedAccessSignature sr=a&sig=b',
    'SharedAccessSignature sr=a&sig=b&se=soon',
    'SharedAccessSignature sr=%E0%A4%A&sig=b&se=1',
    'SharedAccessSignature sr=a&sig=b&se=1&se=2',
    'SharedAccessSignature sr=a&sig&se=1',
  ]) {
    assert.throws(
      () => parseSasToken(t),
      (e) => e.code === 'INVALID_TOKEN' && !/sig=b/.test(e.message),
      t,
    );
  }
  assert.throws(
    () => parseSasToken(undefined),
    (e) => e.code === 'INVALID_TOKEN',
  );
});

test('scope covers by path segment, case-insensitively, ignoring scheme and encoding', () => {
  assert.ok(scopeCovers('hub.azure-devices.net', 'hub.azure-devices.net/devices/d1'));
  assert.ok(scopeCovers('hub.azure-devices.net/devices/d1', 'HUB.azure-devices.net/devices/d1'));
  assert.ok(scopeCovers('https://hub.azure-devices.net/devices', 'hub.azure-devices.net/devices/d1/modules/m'));
  assert.ok(scopeCovers('hub.azure-devices.net%2Fdevices%2Fd1', 'hub.azure-devices.net/devices/d1'));
  assert.ok(!scopeCovers('hub.azure-devices.net/devices/d1', 'hub.azure-devices.net/devices/d10'));
  assert.ok(!scopeCovers('hub.azure-devices.net/devices/d1', 'hub.azure-devices.net/devices'));
  assert.ok(!scopeCovers('', 'hub'));
  assert.equal(deviceResourceUri('h', 'a b'), 'h/devices/a b');
});
