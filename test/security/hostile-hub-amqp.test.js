'use strict';
// A hostile AMQP hub (issue 15, part 4): a rhea server playing IoT Hub's device, C2D send and feedback endpoints, sending
// what a broken or malicious hub could: every property and annotation of a C2D message in a wrong type (numbers for text,
// lists, maps, maps with a "toString" key, binary, null, NaN and out-of-range times, huge strings), application
// properties of every AMQP type, bodies of every section type and over 256 KB, a transfer that is not an AMQP message,
// bytes that do not decode, frames cut in half, a peer that closes mid-frame, an attach or a token that is never
// answered, detaches and rejections with hostile conditions, and feedback of every wrong shape.
// Each case: the node reports it (Catch with what came, status) or delivers what can be read, the runtime stays up
// (no uncaught exception, no unhandled rejection), and the next good message (or feedback record, or send) gets through.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const rhea = require('rhea');
const terminus = require('rhea/lib/terminus.js');
const { watchCrashes } = require('../support/crash-watch');
const { helper, nodeModules, waitFor } = require('../support/flows');
const { ensureTlsMaterial } = require('../../nodes/localhub/tls.js');

// Anything that escapes a handler fails the case it happened in.
const crashes = watchCrashes();

const T = rhea.types;
const DEVICE = 'hostile-a';
const C2D = `/devices/${DEVICE}/messages/devicebound`;
const FEEDBACK = '/messages/servicebound/feedback';
const KEEPALIVE_S = 3;
const record = (id, statusCode = 'Success') => ({
  originalMessageId: id,
  deviceId: DEVICE,
  statusCode,
  description: statusCode,
  enqueuedTimeUtc: new Date().toISOString(),
});
const json = (v) => rhea.message.data_section(Buffer.from(JSON.stringify(v)));

async function hostileAmqpHub(material) {
  const container = rhea.create_container({ id: 'hostile-hub' });
  container.sasl_server_mechanisms.enable_anonymous();
  container.sasl_server_mechanisms.MSSBCBS = () => ({ start: () => undefined, outcome: true, step: () => undefined });
  const h = {
    conns: [],
    c2d: [],
    feedback: [],
    outcomes: new Map(),
    sent: [],
    /** (frame) => true: this attach goes unanswered. */
    ignoreAttach: undefined,
    /** Put-tokens go unanswered. */
    silentCbs: false,
    /** How the C2D send endpoint settles what the service sends: (delivery) => void; default accept. */
    settleSend: undefined,
  };
  const cbsReply = new Map();
  container.on('connection_open', (ctx) => {
    const conn = ctx.connection;
    h.conns.push(conn);
    const onAttach = conn.on_attach.bind(conn);
    conn.on_attach = (frame) => {
      // The terminus is still encoded here (rhea unwraps it in the link).
      if (h.ignoreAttach?.(terminus.unwrap(frame.performative.source) ?? {})) return;
      onAttach(frame);
    };
  });
  container.on('sender_open', (ctx) => {
    const address = String(ctx.sender.source?.address ?? '');
    if (address === '$cbs') cbsReply.set(ctx.connection, ctx.sender);
    else if (address.toLowerCase() === C2D) h.c2d.push(ctx.sender);
    else if (address.toLowerCase() === FEEDBACK) h.feedback.push(ctx.sender);
  });
  container.on('message', (ctx) => {
    if (ctx.receiver.target?.address === '$cbs') {
      if (h.silentCbs) return;
      cbsReply.get(ctx.connection).send({
        correlation_id: ctx.message.message_id,
        application_properties: { 'status-code': 200, 'status-description': 'OK' },
      });
    } else if (ctx.receiver.target?.address === '/messages/devicebound') {
      h.sent.push(ctx.message);
      if (h.settleSend) h.settleSend(ctx.delivery);
      else ctx.delivery.accept();
    }
  });
  for (const kind of ['accepted', 'rejected', 'released', 'modified'])
    container.on(kind, (ctx) => h.outcomes.set(ctx.delivery, kind));
  container.on('error', () => undefined);
  container.on('protocol_error', () => undefined);
  container.on('disconnected', () => undefined);
  const server = container.listen({
    port: 0,
    host: '127.0.0.1',
    transport: 'tls',
    key: material.keyPem,
    cert: material.certPem,
  });
  await new Promise((r) => server.once('listening', r));
  const open = (links) =>
    links.findLast(
      (l) => l.is_open() && !l.connection.is_closed() && l.connection.socket && !l.connection.socket.destroyed,
    );
  return Object.assign(h, {
    port: server.address().port,
    liveC2D: () => open(h.c2d),
    liveFeedback: () => open(h.feedback),
    close: () => {
      // rhea's own abort: a socket destroyed under it leaves its heartbeat timer running for ever.
      for (const c of h.conns) if (c.socket) c.abort_socket(c.socket);
      return new Promise((r) => server.close(r));
    },
  });
}

// rhea's encoder writes each property in its declared type (a number for `to` fails to encode): write the sections by hand.
const PROPERTY_FIELDS = [
  'message_id',
  'user_id',
  'to',
  'subject',
  'reply_to',
  'correlation_id',
  'content_type',
  'content_encoding',
  'absolute_expiry_time',
  'creation_time',
  'group_id',
  'group_sequence',
  'reply_to_group_id',
];
function rawMessage(props, body = Buffer.from('x')) {
  const last = Math.max(...Object.keys(props).map((k) => PROPERTY_FIELDS.indexOf(k)));
  const fields = PROPERTY_FIELDS.slice(0, last + 1).map((k) => (props[k] === undefined ? null : props[k]));
  const w = new T.Writer();
  w.write(T.described(T.wrap_ulong(0x73), T.wrap_list(fields)));
  w.write(T.described(T.wrap_ulong(0x75), T.wrap_binary(body)));
  return w.toBuffer();
}
const sendRaw = (l, props, body) => l.send(rawMessage(props, body), undefined, 0);

const text = (m) =>
  Buffer.isBuffer(m.payload)
    ? m.payload.toString('utf8')
    : typeof m.payload === 'string'
      ? m.payload
      : JSON.stringify(m.payload);
const send = (h, l, msg) => l.send({ body: 'x', ...msg });

// Device receive cases. 'arrives': the message is delivered with its fields as read (check) and accepted on the hub;
// 'unreadable': no msg can be made: Catch gets what came, the status counts it, the hub sees it rejected;
// 'reconnect': the connection or link is unusable: the status says so and the device connects again.
const EVERY_TYPE = {
  nul: null,
  bool: T.wrap_boolean(true),
  ubyte: T.wrap_ubyte(255),
  ushort: T.wrap_ushort(65535),
  uint: T.wrap_uint(4294967295),
  ulong: T.wrap_ulong(9007199254740991),
  hugeUlong: T.wrap_ulong(Buffer.from('ffffffffffffffff', 'hex')),
  byte: T.wrap_byte(-128),
  short: T.wrap_short(-32768),
  int: T.wrap_int(-2147483648),
  long: T.wrap_long(-9007199254740991),
  float: T.wrap_float(1.5),
  double: T.wrap_double(-0.25),
  nan: T.wrap_double(NaN),
  inf: T.wrap_double(-Infinity),
  char: T.wrap_char(0x1f642),
  timestamp: T.wrap_timestamp(0),
  uuid: T.wrap_uuid(Buffer.from('0123456789abcdef0123456789abcdef', 'hex')),
  binary: T.wrap_binary(Buffer.from([0xc3, 0xa9])),
  string: T.wrap_string('é'),
  symbol: T.wrap_symbol('sym'),
  list: T.wrap_list([1, 'a', null]),
  map: T.wrap_map({ k: 'v' }),
  toStringMap: T.wrap_map({ toString: 1, valueOf: 2 }),
  array: T.wrap_array([1, 2, 3], 0x71),
  'iothub-ack': T.wrap_ulong(5),
  ['__proto__']: 'p',
};
const NASTY_MAP = T.wrap_map({ toString: 1, valueOf: 2 });

const CASES = [
  // Wrong types in the properties: delivered, each field as text read from what came.
  ...[
    ['message_id as ulong', { message_id: 42 }, (m) => assert.equal(m.messageId, '42')],
    [
      'message_id as uuid',
      { message_id: T.wrap_uuid(Buffer.from('0123456789abcdef0123456789abcdef', 'hex')) },
      (m) => assert.equal(m.messageId, '01234567-89ab-cdef-0123-456789abcdef'),
    ],
    [
      'message_id as binary',
      { message_id: T.wrap_binary(Buffer.from('bin')) },
      (m) => assert.equal(m.messageId, 'bin'),
    ],
    ['message_id as a list', { message_id: T.wrap_list([1, 'a']) }, (m) => assert.equal(m.messageId, '[1,"a"]')],
    [
      'message_id as a map with toString and valueOf keys',
      { message_id: NASTY_MAP },
      (m) => assert.equal(m.messageId, '{"toString":1,"valueOf":2}'),
    ],
    ['message_id as a boolean', { message_id: T.wrap_boolean(false) }, (m) => assert.equal(m.messageId, 'false')],
    ['message_id as NaN', { message_id: T.wrap_double(NaN) }, (m) => assert.equal(m.messageId, 'NaN')],
    [
      'message_id of 300,000 characters',
      { message_id: 'i'.repeat(300_000) },
      (m) => assert.equal(m.messageId.length, 300_000),
    ],
    [
      'correlation_id as a timestamp',
      { correlation_id: T.wrap_timestamp(86_400_000) },
      (m) => assert.equal(m.correlationId, '1970-01-02T00:00:00.000Z'),
    ],
    [
      'correlation_id as a map with toString',
      { correlation_id: NASTY_MAP },
      (m) => assert.equal(m.correlationId, '{"toString":1,"valueOf":2}'),
    ],
    ['user_id as a string, not binary', { user_id: T.wrap_string('u') }, (m) => assert.equal(m.userId, 'u')],
    ['to as a number', { to: T.wrap_uint(7) }, (m) => assert.equal(m.systemProperties.to, '7')],
    [
      'to as a map with toString',
      { to: NASTY_MAP },
      (m) => assert.equal(m.systemProperties.to, '{"toString":1,"valueOf":2}'),
    ],
    [
      'content_type as a number (auto output reads it)',
      { content_type: T.wrap_ulong(5), raw: Buffer.from('{"a":1}') },
      (m) => {
        assert.equal(m.contentType, '5');
        assert.equal(m.payload, '{"a":1}');
      },
    ],
    [
      'content_type as a list',
      { content_type: T.wrap_list(['application/json']) },
      (m) => assert.equal(m.contentType, '["application/json"]'),
    ],
    [
      'content_encoding as a map',
      { content_encoding: T.wrap_map({ a: 1 }) },
      (m) => assert.equal(m.contentEncoding, '{"a":1}'),
    ],
    [
      'absolute_expiry_time as NaN',
      { absolute_expiry_time: T.wrap_double(NaN) },
      (m) => assert.equal(m.expiryTimeUtc, undefined),
    ],
    [
      'absolute_expiry_time as 1e300',
      { absolute_expiry_time: T.wrap_double(1e300) },
      (m) => assert.equal(m.expiryTimeUtc, undefined),
    ],
    [
      "absolute_expiry_time past a Date's range (int64)",
      { absolute_expiry_time: T.wrap_timestamp(2 ** 53 - 1) },
      (m) => assert.equal(m.expiryTimeUtc, undefined),
    ],
    [
      'absolute_expiry_time as text',
      { absolute_expiry_time: T.wrap_string('tomorrow') },
      (m) => assert.equal(m.expiryTimeUtc, undefined),
    ],
    [
      'absolute_expiry_time before 1970',
      { absolute_expiry_time: T.wrap_timestamp(-1) },
      (m) => assert.equal(m.expiryTimeUtc, '1969-12-31T23:59:59.999Z'),
    ],
    [
      'creation_time, group_sequence, reply_to, subject of wrong types',
      {
        creation_time: T.wrap_string('x'),
        group_sequence: T.wrap_string('y'),
        reply_to: T.wrap_map({ a: 1 }),
        subject: T.wrap_list([]),
      },
      (m) => assert.equal(m.payload, 'x'),
    ],
  ].map(([name, msg, check]) => ({
    name,
    expect: 'arrives',
    act: (h, l) => {
      const { raw, ...props } = msg;
      return sendRaw(l, props, raw);
    },
    check,
  })),

  // Wrong types in the annotations.
  ...[
    ['x-opt-lock-token as a number', { 'x-opt-lock-token': 12 }, (m) => assert.equal(m.lockToken, '12')],
    [
      'x-opt-lock-token as a map with toString',
      { 'x-opt-lock-token': NASTY_MAP },
      (m) => assert.equal(m.lockToken, '{"toString":1,"valueOf":2}'),
    ],
    ['x-opt-lock-token as null', { 'x-opt-lock-token': null }, (m) => assert.equal(typeof m.lockToken, 'string')],
    [
      'x-opt-sequence-number as text',
      { 'x-opt-sequence-number': 'abc' },
      (m) => assert.equal(m.sequenceNumber, undefined),
    ],
    [
      'x-opt-sequence-number as numeric text',
      { 'x-opt-sequence-number': '42' },
      (m) => assert.equal(m.sequenceNumber, 42),
    ],
    [
      'x-opt-sequence-number as a map with valueOf',
      { 'x-opt-sequence-number': NASTY_MAP },
      (m) => assert.equal(m.sequenceNumber, undefined),
    ],
    [
      'x-opt-sequence-number as a ulong past 2^53',
      { 'x-opt-sequence-number': T.wrap_ulong(Buffer.from('ffffffffffffffff', 'hex')) },
      (m) => assert.equal(m.sequenceNumber, undefined),
    ],
    [
      'iothub-enqueuedtime as NaN',
      { 'iothub-enqueuedtime': T.wrap_double(NaN) },
      (m) => assert.equal(m.enqueuedTimeUtc, undefined),
    ],
    [
      'iothub-enqueuedtime as 1e300',
      { 'iothub-enqueuedtime': T.wrap_double(1e300) },
      (m) => assert.equal(m.enqueuedTimeUtc, undefined),
    ],
    [
      'iothub-enqueuedtime as a list',
      { 'iothub-enqueuedtime': T.wrap_list([1]) },
      (m) => assert.equal(m.enqueuedTimeUtc, undefined),
    ],
    ['iothub-deliverycount as text', { 'iothub-deliverycount': '3' }, (m) => assert.equal(m.deliveryCount, 3)],
    [
      'iothub-deliverycount as a list',
      { 'iothub-deliverycount': T.wrap_list([3]) },
      (m) => assert.equal(m.deliveryCount, undefined),
    ],
  ].map(([name, ann, check]) => ({
    name,
    expect: 'arrives',
    act: (h, l) => send(h, l, { message_annotations: ann }),
    check,
  })),
  {
    name: 'the same lock token on two messages in flight',
    expect: 'arrives',
    count: 2,
    act: (h, l) => {
      h.dup = [
        send(h, l, { body: 'd1', message_annotations: { 'x-opt-lock-token': 'same' } }),
        send(h, l, { body: 'd2', message_annotations: { 'x-opt-lock-token': 'same' } }),
      ];
    },
    check: (m, all, h) =>
      waitFor(() => h.dup.every((d) => h.outcomes.get(d) === 'accepted'), 'both accepted on the hub'),
  },

  // Application properties of every AMQP type.
  {
    name: `application properties of every AMQP type (${Object.keys(EVERY_TYPE).length})`,
    expect: 'arrives',
    act: (h, l) => send(h, l, { application_properties: EVERY_TYPE }),
    check: (m) => {
      assert.deepEqual(
        { ...m.properties },
        {
          nul: '',
          bool: 'true',
          ubyte: '255',
          ushort: '65535',
          uint: '4294967295',
          ulong: '9007199254740991',
          hugeUlong: '\ufffd'.repeat(8),
          byte: '-128',
          short: '-32768',
          int: '-2147483648',
          long: '-9007199254740991',
          float: '1.5',
          double: '-0.25',
          nan: 'NaN',
          inf: '-Infinity',
          char: '128578',
          timestamp: '1970-01-01T00:00:00.000Z',
          uuid: Buffer.from('0123456789abcdef0123456789abcdef', 'hex').toString('utf8'),
          binary: 'é',
          string: 'é',
          symbol: 'sym',
          list: '[1,"a",null]',
          map: '{"k":"v"}',
          toStringMap: '{"toString":1,"valueOf":2}',
          array: '[1,2,3]',
        },
        "each as text (a char as rhea reads it, its code point; a uuid as its bytes, as any binary; __proto__ is dropped by rhea's map decoding)",
      );
      assert.equal(m.systemProperties['iothub-ack'], '5');
      assert.equal(m.ack, undefined);
    },
  },

  // Bodies.
  ...[
    ['an amqp-value number body', { body: 5 }, (m) => assert.equal(m.payload, '5')],
    [
      'an amqp-value map body',
      { body: { a: NASTY_MAP } },
      (m) => assert.equal(m.payload, '{"a":{"toString":1,"valueOf":2}}'),
    ],
    ['an amqp-value null body', { body: null }, (m) => assert.equal(m.payload, '')],
    [
      'an amqp-sequence body',
      { body: rhea.message.sequence_section([1, 2]) },
      (m) => assert.equal(typeof m.payload, 'string'),
    ],
    [
      'a data body of 300 KB (over 256 KB)',
      { body: rhea.message.data_section(Buffer.alloc(300 * 1024, 0x62)) },
      (m) => assert.equal(text(m).length, 300 * 1024),
    ],
  ].map(([name, msg, check]) => ({ name, expect: 'arrives', act: (h, l) => send(h, l, msg), check })),

  // Nothing to deliver: dead-lettered and reported.
  {
    name: 'a transfer of message format 7 (not an AMQP message)',
    expect: 'unreadable',
    act: (h, l) => l.send(Buffer.from('raw bytes'), undefined, 7),
  },

  // Unusable connections and links.
  {
    name: 'message bytes that do not decode (a data section claiming 4 GB)',
    expect: 'reconnect',
    act: (h, l) => l.send(Buffer.from([0x00, 0x53, 0x75, 0xb0, 0xff, 0xff, 0xff, 0xf0, 0x61]), undefined, 0),
  },
  {
    name: 'a frame with an unknown performative',
    expect: 'reconnect',
    act: (h, l) => l.connection.socket.write(Buffer.from([0, 0, 0, 12, 2, 0, 0, 0, 0x00, 0x53, 0x7f, 0x45])),
  },
  {
    name: 'a frame whose size is below its header',
    expect: 'reconnect',
    act: (h, l) => l.connection.socket.write(Buffer.from([0, 0, 0, 2, 2, 0, 0, 0])),
  },
  {
    name: 'half a frame, then the hub closes',
    expect: 'reconnect',
    act: (h, l) => l.connection.socket.end(Buffer.from([0, 0, 0, 64, 2, 0, 0, 0, 0x00, 0x53])),
  },
  {
    name: 'half a transfer frame, then the hub destroys the socket',
    expect: 'reconnect',
    act: (h, l) => {
      l.connection.socket.write(Buffer.from([0, 0, 1, 0, 2, 0, 0, 0, 0x00, 0x53, 0x14, 0xc0]), () =>
        l.connection.socket.destroy(),
      );
    },
  },
  {
    name: 'a frame header announcing 4 GB, then silence (idle time-out)',
    expect: 'reconnect',
    slow: true,
    act: (h, l) => {
      l.connection.socket.write(Buffer.from([0xff, 0xff, 0xff, 0xf0, 2, 0, 0, 0]));
    },
  },
  {
    name: 'the C2D link detached with condition "constructor"',
    expect: 'reconnect',
    act: (h, l) => l.close({ condition: 'constructor', description: 'moved' }),
  },
  {
    name: 'the connection closed with condition "__proto__"',
    expect: 'reconnect',
    act: (h, l) => l.connection.close({ condition: '__proto__', description: 'bye' }),
  },
  {
    name: 'the C2D attach never answered',
    expect: 'reconnect',
    slow: true,
    act: (h, l) => {
      h.ignoreAttach = (source) => String(source.address ?? '').toLowerCase() === C2D;
      l.connection.socket.destroy();
    },
    after: async (h, mark) => {
      await waitFor(
        () => h.conns.slice(mark.conns).some((c) => c.socket?.destroyed),
        'the device to give up on the attach',
        20_000,
      );
      h.ignoreAttach = undefined;
    },
  },
  {
    name: 'the put-token never answered',
    expect: 'reconnect',
    slow: true,
    act: (h, l) => {
      h.silentCbs = true;
      l.connection.socket.destroy();
    },
    after: async (h, mark) => {
      await waitFor(
        () => h.conns.slice(mark.conns).some((c) => c.socket?.destroyed),
        'the device to give up on the token',
        20_000,
      );
      h.silentCbs = false;
    },
  },
];

// Feedback cases: 'unreadable': Catch on the feedback node with the body as it came, rejected on the hub; 'arrives': records out.
const FEEDBACK_CASES = [
  ['an amqp-value number body', { body: 5 }],
  ['an amqp-value map body with toString', { body: { toString: 1 } }],
  ['an amqp-value null body', { body: null }],
  ['an amqp-value list of records (not a data section)', { body: [record('x')] }, 'arrives-or-unreadable'],
  ['an amqp-sequence body', { body: rhea.message.sequence_section([1]) }],
  ['a record whose statusCode is a map', { body: json([{ ...record('x'), statusCode: { a: 1 } }]) }],
  ['a record whose deviceId is a list', { body: json([{ ...record('x'), deviceId: ['d'] }]) }],
  ['a record whose statusCode is 9', { body: json([{ ...record('x'), statusCode: 9 }]) }],
  [
    'nested arrays 10,000 deep',
    { body: rhea.message.data_section(Buffer.from('['.repeat(10_000) + ']'.repeat(10_000))) },
  ],
  ['a body of 300 KB that is not JSON', { body: rhea.message.data_section(Buffer.alloc(300 * 1024, 0x7b)) }],
  [
    '2,500 good records in one 300 KB body',
    { body: json(Array.from({ length: 2500 }, (_, i) => record(`bulk-${i}`))) },
    'arrives',
    2500,
  ],
  [
    'a good record with hostile properties and annotations',
    {
      body: json([record('odd')]),
      message_id: NASTY_MAP,
      message_annotations: { 'x-opt-lock-token': NASTY_MAP },
      application_properties: EVERY_TYPE,
    },
    'arrives',
    1,
  ],
];

// Send cases: the hub settles a C2D send with something odd: the send fails to the Catch node with a typed error.
const SEND_CASES = [
  ['rejected with condition "constructor"', (d) => d.reject({ condition: 'constructor', description: 'x' })],
  [
    'rejected with condition "__proto__" and a map for description',
    (d) => d.reject({ condition: '__proto__', description: NASTY_MAP }),
  ],
  [
    'rejected with a JSON description whose message is a map',
    (d) => d.reject({ condition: 'amqp:not-found', description: '{"message":{"a":1}}' }),
  ],
  ['released', (d) => d.release()],
  ['modified', (d) => d.modified({ delivery_failed: true })],
];

test(
  `hostile AMQP hub: ${CASES.length} device, ${FEEDBACK_CASES.length} feedback and ${SEND_CASES.length} send cases, no crash, the next good one gets through`,
  { timeout: 170_000 },
  async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iothub-hostile-amqp-'));
    const material = ensureTlsMaterial(dir, ['localhost']);
    const hub = await hostileAmqpHub(material);
    await helper.startServer();
    const key = Buffer.alloc(32, 5).toString('base64');
    const at = (n) => ({ x: 1, y: 1, z: 'tab', ...n });
    const flow = [
      { id: 'tab', type: 'tab' },
      {
        id: 'cfg',
        type: 'iothub-connection',
        mode: 'azure',
        deviceTransport: 'amqp',
        serviceTransport: 'amqp',
        amqpPort: hub.port,
        keepAlive: KEEPALIVE_S,
      },
      at({
        id: 'ra',
        type: 'iothub-device-receive',
        connection: 'cfg',
        deviceId: DEVICE,
        output: 'auto',
        settle: 'auto',
        wires: [['out']],
      }),
      at({ id: 'fb', type: 'iothub-c2d-feedback', connection: 'cfg', split: true, wires: [['fbout']] }),
      at({
        id: 'send',
        type: 'iothub-c2d-send',
        connection: 'cfg',
        deviceId: DEVICE,
        deviceIdType: 'str',
        ack: 'none',
        ttl: '',
        trackDelivery: false,
        mappings: [],
        wires: [[]],
      }),
      at({ id: 'catch', type: 'catch', scope: null, uncaught: false, wires: [['caught']] }),
      at({ id: 'complete', type: 'complete', scope: ['send'], uncaught: false, wires: [['sent']] }),
      at({ id: 'out', type: 'helper' }),
      at({ id: 'fbout', type: 'helper' }),
      at({ id: 'caught', type: 'helper' }),
      at({ id: 'sent', type: 'helper' }),
    ];
    const results = [];
    const seen = { out: [], fbout: [], caught: [], sent: [], statuses: [] };
    const since = (list, n) => list.slice(n);
    const clean = () => {
      crashes.assertNone();
    };
    const run = async (kind, name, expect, body) => {
      const started = Date.now();
      try {
        await body();
        clean();
        results.push({ kind, name, expect, ok: true, ms: Date.now() - started });
      } catch (err) {
        results.push({ kind, name, expect, ok: false, err: err.message.replace(/\s+/g, ' ').slice(0, 3000) });
        crashes.clear();
        Object.assign(hub, { ignoreAttach: undefined, silentCbs: false, settleSend: undefined });
      }
    };
    try {
      await helper.load(nodeModules, flow, {
        cfg: {
          connectionString: `HostName=localhost;SharedAccessKeyName=iothubowner;SharedAccessKey=${key}`,
          ca: material.caPem,
        },
      });
      for (const id of ['out', 'fbout', 'caught', 'sent']) helper.getNode(id).on('input', (m) => seen[id].push(m));
      helper.getNode('ra').on('call:status', (c) => seen.statuses.push(c.args[0]));
      await waitFor(() => hub.liveC2D() && hub.liveFeedback(), 'the device and feedback links attached', 20_000);

      for (const [i, c] of CASES.entries()) {
        await run('device', c.name, c.expect, async () => {
          const link = await waitFor(() => hub.liveC2D(), 'a C2D link', 20_000);
          const mark = {
            out: seen.out.length,
            caught: seen.caught.length,
            statuses: seen.statuses.length,
            conns: hub.conns.length,
          };
          if (c.expect === 'arrives') {
            await c.act(hub, link);
            const got = await waitFor(
              () => seen.out.length >= mark.out + (c.count ?? 1) && since(seen.out, mark.out),
              'the odd message delivered',
            );
            try {
              await c.check(got[0], got, hub);
            } catch (err) {
              err.message += ` (got ${JSON.stringify(got[0], (k, v) => (typeof v === 'string' && v.length > 200 ? `${v.slice(0, 20)}…` : v)).slice(0, 1500)})`;
              throw err;
            }
            assert.equal(
              seen.caught.length,
              mark.caught,
              `no error for it: ${since(seen.caught, mark.caught).map((m) => m.error.message)}`,
            );
          } else if (c.expect === 'unreadable') {
            const d = c.act(hub, link);
            const got = await waitFor(
              () => since(seen.caught, mark.caught)[0],
              'the unreadable message on the Catch node',
            );
            assert.match(got.error.message, /unreadable.*format 7/i);
            assert.equal(got.error.source.id, 'ra');
            assert.ok(
              Buffer.isBuffer(got.payload) && got.payload.toString() === 'raw bytes',
              'Catch gets the bytes as they came',
            );
            await waitFor(() => hub.outcomes.get(d) === 'rejected', 'the message rejected (dead-lettered)');
            assert.ok(
              since(seen.statuses, mark.statuses).some((s) => /unreadable/.test(s.text)),
              'the status counts it',
            );
            assert.equal(seen.out.length, mark.out, 'nothing delivered for it');
          } else {
            c.act(hub, link);
            await waitFor(
              () => !link.is_open() || link.connection.socket?.destroyed || link.connection.is_closed(),
              'the link or connection gone',
              10_000,
            );
            if (c.after) await c.after(hub, mark);
            await waitFor(
              () => since(seen.statuses, mark.statuses).some((s) => /reconnecting/.test(s.text)),
              'a reconnecting status',
              20_000,
            );
          }
          const good = `good-${i}`;
          const live = await waitFor(() => hub.liveC2D(), 'the C2D link attached again', 30_000);
          send(hub, live, { message_id: good, body: rhea.message.data_section(Buffer.from('good')) });
          await waitFor(
            () => seen.out.some((m) => m.messageId === good && m.payload === 'good'),
            `${good} delivered`,
            15_000,
          );
        });
      }

      for (const [i, [name, msg, expect = 'unreadable', count]] of FEEDBACK_CASES.entries()) {
        await run('feedback', name, expect, async () => {
          const link = await waitFor(() => hub.liveFeedback(), 'a feedback link', 20_000);
          const mark = { fbout: seen.fbout.length, caught: seen.caught.length };
          const d = link.send(msg);
          await waitFor(() => hub.outcomes.get(d), 'the feedback message settled');
          if (expect === 'arrives' || (expect === 'arrives-or-unreadable' && hub.outcomes.get(d) === 'accepted')) {
            assert.equal(hub.outcomes.get(d), 'accepted');
            await waitFor(() => seen.fbout.length >= mark.fbout + (count ?? 1), 'the records out');
          } else {
            assert.equal(hub.outcomes.get(d), 'rejected', 'dead-lettered');
            const got = await waitFor(() => since(seen.caught, mark.caught)[0], 'the feedback error on the Catch node');
            assert.equal(got.error.source.id, 'fb');
            assert.match(got.error.message, /unreadable/i);
            assert.equal(seen.fbout.length, mark.fbout, 'no record out for it');
          }
          const good = `fb-good-${i}`;
          link.send({ body: json([record(good)]) });
          await waitFor(() => seen.fbout.some((m) => m.originalMessageId === good), `${good} out`, 15_000);
        });
      }

      for (const [i, [name, settle]] of SEND_CASES.entries()) {
        await run('send', name, 'fails', async () => {
          const mark = { caught: seen.caught.length, sent: seen.sent.length };
          hub.settleSend = settle;
          helper.getNode('send').receive({ payload: `bad-${i}` });
          const got = await waitFor(() => since(seen.caught, mark.caught)[0], 'the failed send on the Catch node');
          assert.equal(got.error.source.id, 'send');
          assert.equal(got.payload, `bad-${i}`);
          assert.ok(got.error.message.length > 0);
          hub.settleSend = undefined;
          helper.getNode('send').receive({ payload: `ok-${i}` });
          await waitFor(() => since(seen.sent, mark.sent).some((m) => m.payload === `ok-${i}`), `ok-${i} sent`, 15_000);
          assert.ok(
            hub.sent.some((m) => Buffer.from(m.body.content ?? m.body).toString() === `ok-${i}`),
            'the hub has it',
          );
        });
      }

      const failed = results.filter((r) => !r.ok);
      const by = (k) => results.filter((r) => r.kind === k).length;
      console.log(
        `# hostile AMQP hub: ${results.length} cases tried (device ${by('device')}, feedback ${by('feedback')}, send ${by('send')}), ${failed.length} failed; crashes 0, unhandled rejections 0 (checked per case); next good one through ${results.filter((r) => r.ok).length}/${results.length}`,
      );
      for (const r of results)
        console.log(
          `#  ${r.ok ? 'ok ' : 'FAIL'} ${r.kind} [${r.expect}] ${r.name}${r.ok ? ` (${r.ms} ms)` : `: ${r.err}`}`,
        );
      assert.deepEqual(failed, []);
    } finally {
      await helper.unload().catch(() => undefined);
      await helper.stopServer();
      await hub.close();
      fs.rmSync(dir, { recursive: true, force: true });
      crashes.stop();
    }
  },
);
