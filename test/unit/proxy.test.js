'use strict';
// Which proxy applies (the config node's URL, HTTPS_PROXY with NO_PROXY, none), how its URL is read, and that a user
// and password never appear in what is shown.
const test = require('node:test');
const assert = require('node:assert/strict');
const { parseProxyUrl, proxyFor, noProxy } = require('../../nodes/core/proxy.js');

test('a proxy URL: http://host:port, the port defaults to 80, credentials apart from the URL', () => {
  const p = parseProxyUrl('http://proxy.example.com:3128', 'me', 's3cret');
  assert.equal(p.host, 'proxy.example.com');
  assert.equal(p.port, 3128);
  assert.equal(p.authorization, `Basic ${Buffer.from('me:s3cret').toString('base64')}`);
  assert.equal(p.label, 'proxy proxy.example.com:3128');
  assert.equal(parseProxyUrl('proxy.local').port, 80);
  assert.equal(parseProxyUrl('http://[::1]:8080').host, '::1');
  assert.equal(parseProxyUrl('http://proxy:1').authorization, undefined);
});

test('a bad proxy URL is refused naming the field, and a URL holding a password is refused unless from the environment', () => {
  for (const bad of ['https://proxy:443', 'socks5://proxy:1080', 'http://']) {
    assert.throws(
      () => parseProxyUrl(bad),
      (e) => e.field === 'proxy' && e.reason === 'bad proxy URL',
      bad,
    );
  }
  assert.throws(() => parseProxyUrl('http://me:pw@proxy:3128'), /must not hold a user or password/);
  const fromEnv = parseProxyUrl('http://me:p%40ss@proxy:3128', undefined, undefined, true);
  assert.equal(fromEnv.authorization, `Basic ${Buffer.from('me:p@ss').toString('base64')}`);
  assert.ok(!fromEnv.label.includes('p@ss') && !fromEnv.label.includes('me'));
});

test('NO_PROXY: *, hosts, domains with or without a dot, ports', () => {
  assert.equal(noProxy('*', 'a.b'), true);
  assert.equal(noProxy('azure-devices.net', 'hub.azure-devices.net'), true);
  assert.equal(noProxy('.azure-devices.net', 'hub.azure-devices.net'), true);
  assert.equal(noProxy('*.azure-devices.net', 'hub.azure-devices.net'), true);
  assert.equal(noProxy('hub.azure-devices.net', 'HUB.azure-devices.net'), true);
  assert.equal(noProxy('devices.net', 'hub.azure-devices.net'), false);
  assert.equal(noProxy('other.example, ,intra.local', 'hub.azure-devices.net'), false);
  assert.equal(noProxy('hub.example:443', 'hub.example', 443), true);
  assert.equal(noProxy('hub.example:443', 'hub.example', 8883), false);
  assert.equal(noProxy('hub.example:443', 'hub.example'), false);
  assert.equal(noProxy(undefined, 'hub.example'), false);
});

test('which proxy: none, the URL, or HTTPS_PROXY unless NO_PROXY or the loopback', () => {
  const env = { HTTPS_PROXY: 'http://corp:8080', NO_PROXY: '.internal' };
  assert.equal(proxyFor('none', 'hub.azure-devices.net', { env }), undefined);
  assert.equal(proxyFor('env', 'hub.azure-devices.net', { env }).label, 'proxy corp:8080');
  assert.equal(proxyFor('env', 'gw.internal', { env }), undefined);
  assert.equal(proxyFor('env', '127.0.0.1', { env }), undefined);
  assert.equal(proxyFor('env', 'localhost', { env }), undefined);
  assert.equal(proxyFor('env', 'hub.azure-devices.net', { env: { https_proxy: 'http://lower:1' } }).port, 1);
  assert.equal(proxyFor('env', 'hub.azure-devices.net', { env: {} }), undefined);
  assert.equal(proxyFor('url', '127.0.0.1', { url: 'http://p:3', env }).label, 'proxy p:3');
  assert.throws(
    () => proxyFor('url', 'h', {}),
    (e) => e.field === 'proxy' && e.reason === 'no proxy URL',
  );
});

test('a tunnel given up before the proxy answers leaves no socket or timer behind', async () => {
  const net = require('node:net');
  const { openTunnel } = require('../../nodes/core/proxy.js');
  const held = new Set();
  // A proxy that takes the CONNECT and never answers.
  const mute = net.createServer((s) => {
    held.add(s);
    s.on('error', () => undefined).resume();
  });
  await new Promise((r) => mute.listen(0, '127.0.0.1', r));
  const before = process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
  const t = openTunnel(parseProxyUrl(`http://127.0.0.1:${mute.address().port}`), 'hub.example', 443, 60_000);
  t.on('error', () => undefined);
  await new Promise((r) => mute.once('connection', () => setImmediate(r)));
  t.destroy();
  await new Promise((r) => setImmediate(r));
  assert.equal(
    process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length,
    before,
    "the tunnel's timer is gone",
  );
  for (const s of held) s.destroy();
  await new Promise((r) => mute.close(r));
});
