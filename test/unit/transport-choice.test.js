'use strict';
// Transport auto's choice, with the look at the own port faked: what it picks, how long it looks, what it remembers,
// and that one look serves many connections. And the causes a failed dial is given (the status words, the fix).
const test = require('node:test');
const assert = require('node:assert/strict');
const net = require('node:net');
const { TransportChooser, tlsAnswers } = require('../../nodes/core/transport-choice.js');
const { fromSocketError } = require('../../nodes/core/errors.js');

const target = { host: 'hub.example', port: 8883, servername: 'hub.example' };

function fakeLooks(answers) {
  const looks = [];
  const answer = (t, ms) => {
    looks.push(ms);
    return Promise.resolve(answers.shift());
  };
  return { looks, answer };
}

test('auto: the own port when it answers, WebSockets when not; after WebSockets worked, a short look', async () => {
  const { looks, answer } = fakeLooks([false, true, false]);
  const c = new TransportChooser(target, { shareMs: 0 }, answer);
  assert.equal(await c.choose(), 'ws');
  assert.deepEqual(looks, [5000], 'the first look waits 5 s');
  c.worked('ws');
  await new Promise((r) => setTimeout(r, 5));
  assert.equal(await c.choose(), 'own', 'the port answers again: taken');
  assert.deepEqual(looks, [5000, 1500], 'after WebSockets worked, 1.5 s');
  c.worked('own');
  await new Promise((r) => setTimeout(r, 5));
  assert.equal(await c.choose(), 'ws');
  assert.deepEqual(looks, [5000, 1500, 5000]);
});

test('auto: one look serves every connection that asks while it is under way; a lost connection looks afresh', async () => {
  let resolve;
  let n = 0;
  const c = new TransportChooser(target, {}, () => {
    n++;
    return new Promise((r) => (resolve = r));
  });
  const all = Array.from({ length: 100 }, () => c.choose());
  resolve(false);
  assert.deepEqual([...new Set(await Promise.all(all))], ['ws']);
  assert.equal(n, 1, 'one look for 100 connections');
  c.lost();
  const again = c.choose();
  resolve(true);
  assert.equal(await again, 'own');
  assert.equal(n, 2);
});

test('auto: an own port that answered the look and then failed is skipped once', async () => {
  const c = new TransportChooser(target, {}, () => Promise.resolve(true));
  assert.equal(await c.choose(), 'own');
  c.ownFailed();
  assert.equal(await c.choose(), 'ws');
  assert.equal(await c.choose(), 'own');
});

test('the look: a refused port and a silent one do not answer; neither leaves a handle', async () => {
  // Reads and says nothing, as a middlebox that swallows the handshake.
  const silent = net.createServer((s) => s.on('error', () => undefined).resume());
  await new Promise((r) => silent.listen(0, '127.0.0.1', r));
  const { port } = silent.address();
  const started = Date.now();
  assert.equal(await tlsAnswers({ host: '127.0.0.1', port, servername: 'localhost' }, 300), false);
  assert.ok(Date.now() - started >= 290, 'the silent port got its whole look');
  await new Promise((r) => silent.close(r));
  assert.equal(await tlsAnswers({ host: '127.0.0.1', port, servername: 'localhost' }, 300), false);
});

test('failed dials name their cause: the status words and the fix', () => {
  const cases = [
    [{ code: 'ENOTFOUND', hostname: 'x.invalid' }, 'cannot resolve x.invalid', /check the HostName/],
    [{ code: 'EAI_AGAIN', hostname: 'x.example' }, 'cannot resolve x.example', /DNS/],
    [{ code: 'ECONNREFUSED', address: '10.0.0.1', port: 8883 }, 'refused', /hub:1 refused/],
    [{ code: 'ETIMEDOUT' }, 'timed out', /firewall/],
    [{ code: 'SELF_SIGNED_CERT_IN_CHAIN' }, 'certificate not trusted', /put it in the config node/],
    [{ code: 'CERT_HAS_EXPIRED' }, 'certificate not trusted', /clock/],
    [{ code: 'EPROXY', statusCode: 403, proxy: 'proxy p:1' }, 'proxy refused (403)', /proxy p:1 refused/],
    [{ code: 'EPROXY', statusCode: 407, proxy: 'proxy p:1' }, 'proxy auth required (407)', /user name and password/],
    [{ code: 'EPROXYDOWN', proxy: 'proxy p:1', message: 'ECONNREFUSED' }, 'proxy down', /cannot be reached/],
    // ws hands rhea an ErrorEvent that carries the socket's error.
    [{ type: 'error', error: { code: 'ECONNREFUSED' } }, 'refused', /refused the connection/],
  ];
  for (const [err, reason, fix] of cases) {
    const e = fromSocketError(err, { host: 'hub', port: 1 });
    assert.equal(e.reason, reason, JSON.stringify(err));
    assert.match(e.message, fix);
  }
  assert.equal(fromSocketError({ code: 'EWHATEVER' }), undefined);
  assert.equal(fromSocketError(new Error('no code')), undefined);
  assert.equal(fromSocketError(undefined), undefined);
});
