'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const rhea = require('rhea');
const { toAmqpMessage, fromAmqpMessage } = require('../../nodes/core/amqp-codec.js');
const { deviceIdOfC2dAddress, c2dAddress } = require('../../nodes/core/amqp-address.js');
const { parseFeedbackBody, encodeFeedbackBody } = require('../../nodes/core/feedback.js');
const { RetryPolicy } = require('../../nodes/core/retry.js');
const { fromAmqpError, fromConnackCode, redact, AMQP_CONDITIONS } = require('../../nodes/core/errors.js');

// Encode to AMQP bytes and back, as the wire would.
function wire(m) {
  return rhea.message.decode(rhea.message.encode(m));
}

test('a C2D message survives the AMQP wire with every field', () => {
  const id = '6f1c3e2a-8b4d-4c5e-9f60-123456789abc';
  const m = {
    body: Buffer.from('{"a":1}'),
    messageId: id,
    correlationId: 'corr & = % + # / $ é',
    userId: 'user',
    contentType: 'application/json',
    contentEncoding: 'utf-8',
    expiryTimeUtc: Date.UTC(2030, 0, 1),
    ack: 'full',
    properties: { 'k é': 'v 漢字', empty: '' },
  };
  const a = toAmqpMessage('dev/1 é', m);
  assert.equal(a.to, '/devices/dev%2F1%20%C3%A9/messages/devicebound');
  assert.ok(Buffer.isBuffer(a.message_id) && a.message_id.length === 16, 'UUID-shaped id as AMQP uuid');
  assert.equal(a.correlation_id, m.correlationId);
  assert.equal(a.body.typecode, 0x75, 'one data section');
  const back = fromAmqpMessage(wire(a));
  assert.equal(back.messageId, id);
  assert.equal(back.correlationId, m.correlationId);
  assert.equal(back.userId, 'user');
  assert.equal(back.contentType, m.contentType);
  assert.equal(back.contentEncoding, m.contentEncoding);
  assert.equal(back.expiryTimeUtc, m.expiryTimeUtc);
  assert.equal(back.ack, 'full');
  assert.deepEqual(back.properties, m.properties);
  assert.deepEqual(back.body, m.body);
  assert.equal(deviceIdOfC2dAddress(back.to), 'dev/1 é');
  assert.equal(deviceIdOfC2dAddress('/devices/x/messages/deviceBound'), 'x');
  assert.equal(deviceIdOfC2dAddress('/devices/x/messages/events'), undefined);
  assert.equal(deviceIdOfC2dAddress('amqps://hub.azure-devices.net/devices/x%2By/messages/devicebound'), 'x+y');
  assert.equal(c2dAddress('a b'), '/devices/a%20b/messages/devicebound');
});

test('non-UUID and uppercase ids stay strings; 64 KB bodies pass', () => {
  const a = toAmqpMessage('d', {
    body: Buffer.alloc(65536, 1),
    messageId: '6F1C3E2A-8B4D-4C5E-9F60-123456789ABC',
    properties: {},
  });
  assert.equal(typeof a.message_id, 'string');
  assert.equal(fromAmqpMessage(wire(a)).body.length, 65536);
});

test('hub annotations: lock token, sequence number, enqueued time, delivery count', () => {
  const lock = '11111111-2222-4333-8444-555555555555';
  const msg = {
    body: rhea.message.data_section(Buffer.from('x')),
    message_annotations: {
      'x-opt-lock-token': rhea.string_to_uuid(lock),
      'x-opt-sequence-number': 7,
      'iothub-enqueuedtime': new Date(5000),
      'iothub-deliverycount': 2,
    },
  };
  const r = fromAmqpMessage(wire(msg));
  assert.equal(r.lockToken, lock);
  assert.equal(r.sequenceNumber, 7);
  assert.equal(r.enqueuedTimeUtc, 5000);
  assert.equal(r.deliveryCount, 2);
  assert.equal(fromAmqpMessage({ body: undefined }).body.length, 0);
});

test('feedback: camelCase, PascalCase, numeric codes, rhea data sections', () => {
  const records = [
    {
      originalMessageId: 'm1',
      deviceId: 'd',
      statusCode: 'Success',
      description: 'Success',
      enqueuedTimeUtc: '2030-01-01T00:00:00Z',
      deviceGenerationId: 'g',
    },
  ];
  assert.deepEqual(parseFeedbackBody(encodeFeedbackBody(records)), records);
  assert.deepEqual(parseFeedbackBody(rhea.message.data_section(encodeFeedbackBody(records))), records);
  const pascal = JSON.stringify([
    { OriginalMessageId: 'm2', DeviceId: 'd', StatusCode: 3, Description: 'x', EnqueuedTimeUtc: 't' },
    { originalMessageId: 'm3', statusCode: '4' },
  ]);
  const p = parseFeedbackBody(pascal);
  assert.equal(p[0].statusCode, 'Rejected');
  assert.equal(p[0].originalMessageId, 'm2');
  assert.equal(p[1].statusCode, 'Purged');
  assert.deepEqual(parseFeedbackBody('[]'), []);
});

test('feedback bodies that are not JSON arrays of records are typed errors', () => {
  for (const b of [
    '',
    'not json',
    '{}',
    '"x"',
    '[1]',
    '[null]',
    '[[]]',
    '[{"statusCode":"Weird"}]',
    '[{"statusCode":9}]',
    '[{"statusCode":"Success","deviceId":{}}]',
    Buffer.from([0xff, 0xfe]),
    42,
    null,
    undefined,
  ]) {
    assert.throws(
      () => parseFeedbackBody(b),
      (e) => e.code === 'PROTOCOL_ERROR' && /^feedback: /.test(e.message),
      String(b),
    );
  }
});

test('retry: capped exponential backoff, bounded jitter, slower after unauthorized', () => {
  const p = new RetryPolicy({ initialDelayMs: 100, maxDelayMs: 1000, jitter: 0 });
  assert.deepEqual(
    [1, 2, 3, 4, 5, 6, 50].map((n) => p.delay(n)),
    [100, 200, 400, 800, 1000, 1000, 1000],
  );
  const j = new RetryPolicy({ initialDelayMs: 1000, jitter: 0.2 });
  assert.equal(
    j.delay(1, () => 0),
    800,
  );
  assert.equal(
    j.delay(1, () => 1),
    1200,
  );
  assert.equal(
    j.delay(1, () => 0.5),
    1000,
  );
  for (let i = 0; i < 1000; i++) {
    const d = j.delay(3);
    assert.ok(d >= 3200 && d <= 4800, String(d));
  }
  const u = new RetryPolicy({ jitter: 0 });
  assert.ok(u.unauthorizedDelay(1) >= 10 * u.delay(1));
  assert.equal(u.unauthorizedDelay(100), 300000);
  assert.equal(
    new RetryPolicy().delay(0, () => 0.5),
    1000,
  );
});

test('AMQP conditions and CONNACK codes map to stable codes; tokens are redacted', () => {
  const cases = [
    [AMQP_CONDITIONS.notFound, 'DEVICE_NOT_FOUND'],
    [AMQP_CONDITIONS.resourceLimitExceeded, 'QUEUE_FULL'],
    [AMQP_CONDITIONS.messageSizeExceeded, 'MESSAGE_TOO_LARGE'],
    [AMQP_CONDITIONS.unauthorized, 'UNAUTHORIZED'],
    [AMQP_CONDITIONS.quotaExceeded, 'QUOTA_EXCEEDED'],
    [AMQP_CONDITIONS.throttled, 'THROTTLED'],
    ['x:unknown', 'PROTOCOL_ERROR'],
  ];
  for (const [condition, code] of cases) assert.equal(fromAmqpError({ condition }).code, code);
  const json = fromAmqpError({
    condition: 'amqp:not-found',
    description: JSON.stringify({ errorCode: 404001, message: 'Device d1 not registered' }),
  });
  assert.match(json.message, /Device d1 not registered/);
  assert.equal(fromAmqpError(undefined).code, 'PROTOCOL_ERROR');
  assert.equal(fromAmqpError({ condition: 'amqp:internal-error' }).retryable, true);
  const leak = fromAmqpError({
    condition: 'amqp:unauthorized-access',
    description: 'bad SharedAccessSignature sr=h&sig=abc%3D&se=1 and SharedAccessKey=xyz=',
  });
  assert.ok(!/abc|xyz/.test(leak.message), leak.message);
  assert.equal(fromConnackCode(5).code, 'UNAUTHORIZED');
  assert.equal(fromConnackCode(4).code, 'UNAUTHORIZED');
  assert.equal(fromConnackCode(3).retryable, true);
  assert.equal(fromConnackCode(99).code, 'PROTOCOL_ERROR');
  assert.equal(redact('sig=abc&se=1'), 'sig=<redacted>&se=1');
});
