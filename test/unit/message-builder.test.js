'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const { buildC2DMessage, parseExpiry, parseAck, renderTemplate } = require('../../nodes/core/message-builder.js');
const { payloadToBody } = require('../../nodes/core/payload.js');
const { MAX_C2D_MESSAGE_BYTES } = require('../../nodes/core/message.js');

const base = { rows: [], ack: 'none' };

test('payload types become bodies; objects become JSON with a content type', () => {
  assert.deepEqual(payloadToBody('hé'), { body: Buffer.from('hé') });
  assert.deepEqual(payloadToBody(42).body.toString(), '42');
  assert.deepEqual(payloadToBody(false).body.toString(), 'false');
  const b = Buffer.from([0, 255]);
  assert.equal(payloadToBody(b).body, b);
  assert.deepEqual(payloadToBody({ a: 1 }), { body: Buffer.from('{"a":1}'), contentType: 'application/json' });
});

test('an empty or circular payload is an error naming payload', () => {
  for (const p of [undefined, null]) {
    assert.throws(
      () => payloadToBody(p),
      (e) => e.code === 'INVALID_MESSAGE' && e.field === 'payload' && /msg\.payload/.test(e.message),
    );
  }
  const c = {};
  c.self = c;
  assert.throws(
    () => payloadToBody(c),
    (e) => e.field === 'payload' && /JSON/.test(e.message),
  );
});

test('rows set system and application properties; a mapped contentType wins over JSON', () => {
  const m = buildC2DMessage({
    ...base,
    payload: { x: 1 },
    rows: [
      { name: 'messageId', value: 'order-7', row: 1 },
      { name: 'correlationId', value: 'c & = % + # / $ é', row: 2 },
      { name: 'contentType', value: 'application/vnd.x+json', row: 3 },
      { name: 'prop with space', value: 12, row: 4 },
      { name: 'flag', value: true, row: 5 },
    ],
  });
  assert.equal(m.messageId, 'order-7');
  assert.equal(m.correlationId, 'c & = % + # / $ é');
  assert.equal(m.contentType, 'application/vnd.x+json');
  assert.deepEqual(m.properties, { 'prop with space': '12', flag: 'true' });
});

test('a new UUID messageId unless mapped', () => {
  const a = buildC2DMessage({ ...base, payload: 'x' });
  const b = buildC2DMessage({ ...base, payload: 'x' });
  assert.match(a.messageId, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  assert.notEqual(a.messageId, b.messageId);
});

test('bad rows are errors that name the row', () => {
  const cases = [
    [{ name: '', value: 'x', row: 3 }, /row 3 has no name/],
    [{ name: '  ', value: 'x', row: 1 }, /row 1 has no name/],
    [{ name: 'a', value: undefined, row: 2 }, /row 2 "a".*undefined/],
    [{ name: 'a', value: null, row: 2 }, /is null/],
    [{ name: 'a', value: { o: 1 }, row: 4 }, /row 4 .*object/],
    [{ name: 'a', value: [1], row: 4 }, /array/],
    [{ name: 'a', value: NaN, row: 5 }, /row 5/],
    [{ name: 'iothub-ack', value: 'full', row: 6 }, /row 6.*acknowledgement/],
  ];
  for (const [row, re] of cases) {
    assert.throws(
      () => buildC2DMessage({ ...base, payload: 'x', rows: [row] }),
      (e) => e.code === 'INVALID_MESSAGE' && e.field === `mappings[${row.row}]` && re.test(e.message),
      String(re),
    );
  }
});

test('messageId over 128 characters or not printable ASCII is refused', () => {
  assert.doesNotThrow(() =>
    buildC2DMessage({ ...base, payload: 'x', rows: [{ name: 'messageId', value: 'm'.repeat(128), row: 1 }] }),
  );
  assert.throws(
    () => buildC2DMessage({ ...base, payload: 'x', rows: [{ name: 'messageId', value: 'm'.repeat(129), row: 1 }] }),
    (e) => e.field === 'messageId' && /128/.test(e.message),
  );
  assert.throws(
    () => buildC2DMessage({ ...base, payload: 'x', rows: [{ name: 'messageId', value: 'é', row: 1 }] }),
    (e) => e.field === 'messageId',
  );
});

test('the 64 KB limit counts body and properties', () => {
  const ok = buildC2DMessage({ ...base, payload: Buffer.alloc(60 * 1024) });
  assert.equal(ok.body.length, 60 * 1024);
  assert.throws(
    () => buildC2DMessage({ ...base, payload: Buffer.alloc(70 * 1024) }),
    (e) => e.field === 'payload' && /65536/.test(e.message),
  );
  // Body alone fits; the properties push it over.
  assert.throws(
    () =>
      buildC2DMessage({
        ...base,
        payload: Buffer.alloc(MAX_C2D_MESSAGE_BYTES - 100),
        rows: [{ name: 'p', value: 'v'.repeat(200), row: 1 }],
      }),
    (e) => e.code === 'INVALID_MESSAGE',
  );
});

test('expiry: ttl seconds relative to now, msg.expiryTimeUtc absolute and winning', () => {
  const m = buildC2DMessage({ ...base, payload: 'x', ttlSec: 5, now: 1_000_000 });
  assert.equal(m.expiryTimeUtc, 1_005_000);
  const n = buildC2DMessage({ ...base, payload: 'x', ttlSec: 5, expiryTimeUtc: 42 });
  assert.equal(n.expiryTimeUtc, 42);
  assert.equal(parseExpiry('2030-01-01T00:00:00Z', 'f'), Date.UTC(2030, 0, 1));
  assert.equal(parseExpiry(new Date(7), 'f'), 7);
  assert.throws(() => parseExpiry('soon', 'msg.expiryTimeUtc'), /msg\.expiryTimeUtc/);
});

test('ack modes are validated', () => {
  assert.equal(parseAck('full', 'msg.ack'), 'full');
  assert.throws(
    () => parseAck('all', 'msg.ack'),
    (e) => e.field === 'msg.ack' && /none, positive, negative, full/.test(e.message),
  );
});

test('templates render against the msg without HTML escaping', () => {
  assert.equal(renderTemplate('order-{{payload.id}}', { payload: { id: '<7&>' } }), 'order-<7&>');
  assert.equal(renderTemplate('{{missing}}x', {}), 'x');
});
