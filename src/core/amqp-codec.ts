/**
 * C2D messages <-> rhea AMQP messages, encoded field by field as azure-iothub does
 * (azure-iot-amqp-base AmqpMessage.fromMessage): UUID-shaped ids as AMQP uuid, one data section body.
 */
import { message as rheaMessage, Message, string_to_uuid, uuid_to_string } from 'rhea';
import { peerText } from './errors';
import { AckMode, ACK_MODES, C2DMessage, ReceivedC2DMessage } from './message';
import { c2dAddress } from './amqp-address';

// The SDK's own test: only such ids travel as AMQP uuid (lowercase, version 1-5, RFC variant).
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[1-5][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

function encodeId(id: string): string | Buffer {
  return UUID.test(id) ? string_to_uuid(id) : id;
}

function decodeId(v: unknown): string | undefined {
  if (Buffer.isBuffer(v) && v.length === 16) return uuid_to_string(v);
  return peerText(v);
}

/** The application properties on the wire: `iothub-ack` first, then the message's own. */
function applicationProperties(m: C2DMessage): Record<string, string> {
  // Spread, not Object.assign: it copies every own name as data, "__proto__" included.
  // "none" is IoT Hub's default: left out, as azure-iothub does, it costs neither side a properties map.
  return m.ack && m.ack !== 'none' ? { 'iothub-ack': m.ack, ...m.properties } : { ...m.properties };
}

export function toAmqpMessage(deviceId: string, m: C2DMessage): Message {
  const out: Message = { to: m.to ?? c2dAddress(deviceId), body: undefined };
  if (m.expiryTimeUtc !== undefined) out.absolute_expiry_time = m.expiryTimeUtc as unknown as Date;
  if (m.messageId) out.message_id = encodeId(m.messageId);
  if (m.correlationId) out.correlation_id = encodeId(m.correlationId);
  if (m.userId) out.user_id = m.userId;
  if (m.contentEncoding) out.content_encoding = m.contentEncoding;
  if (m.contentType) out.content_type = m.contentType;
  const props = applicationProperties(m);
  if (Object.keys(props).length > 0) out.application_properties = props;
  out.body = rheaMessage.data_section(m.body);
  return out;
}

// AMQP 1.0 encodings (part 1.6): a string, binary or symbol of up to 255 bytes has a 1-byte length, else 4 bytes.
const NULL = 0x40;
const UUID_CODE = 0x98;
const TIMESTAMP = 0x83;
const STR8 = 0xa1;
const STR32 = 0xb1;
const VBIN8 = 0xa0;
const VBIN32 = 0xb0;
const SYM8 = 0xa3;
const SYM32 = 0xb3;
const LIST32 = 0xd0;
const MAP32 = 0xd1;
const NON_ASCII = /[^\x20-\x7e]/;

/** One field of the properties list: its AMQP constructor and bytes, or null. */
type Field =
  { code8: number; code32: number; bytes: Buffer | string } | { uuid: string } | { timestamp: number } | null;

function idField(id: string | undefined): Field {
  if (!id) return null;
  return UUID.test(id) ? { uuid: id } : { code8: STR8, code32: STR32, bytes: id };
}

function fieldSize(f: Field): number {
  if (f === null) return 1;
  if ('uuid' in f) return 17;
  if ('timestamp' in f) return 9;
  const n = typeof f.bytes === 'string' ? Buffer.byteLength(f.bytes) : f.bytes.length;
  return n <= 255 ? 2 + n : 5 + n;
}

function writeField(buf: Buffer, o: number, f: Field): number {
  if (f === null) {
    buf[o] = NULL;
    return o + 1;
  }
  if ('uuid' in f) {
    buf[o] = UUID_CODE;
    buf.write(f.uuid.replace(/-/g, ''), o + 1, 'hex');
    return o + 17;
  }
  if ('timestamp' in f) {
    buf[o] = TIMESTAMP;
    buf.writeBigInt64BE(BigInt(f.timestamp), o + 1);
    return o + 9;
  }
  const n = typeof f.bytes === 'string' ? Buffer.byteLength(f.bytes) : f.bytes.length;
  if (n <= 255) {
    buf[o] = f.code8;
    buf[o + 1] = n;
    o += 2;
  } else {
    buf[o] = f.code32;
    buf.writeUInt32BE(n, o + 1);
    o += 5;
  }
  // Symbols are printable ASCII here (checked before), where UTF-8 writes the same bytes.
  if (typeof f.bytes === 'string') buf.write(f.bytes, o, 'utf8');
  else f.bytes.copy(buf, o);
  return o + n;
}

/** A described section's head: 0x00, smallulong descriptor. */
function writeDescriptor(buf: Buffer, o: number, code: number): number {
  buf[o] = 0x00;
  buf[o + 1] = 0x53;
  buf[o + 2] = code;
  return o + 3;
}

function writeCompound(buf: Buffer, o: number, code: number, fields: Field[]): number {
  const start = o;
  buf[o] = code;
  o += 5;
  buf.writeUInt32BE(fields.length, o);
  o += 4;
  for (const f of fields) o = writeField(buf, o, f);
  buf.writeUInt32BE(o - start - 5, start + 1);
  return o;
}

/**
 * The bytes `rhea.message.encode(toAmqpMessage(deviceId, m))` gives, written straight into one buffer: a send then
 * costs no intermediate objects (rhea builds a typed wrapper per field). The test suite holds both byte for byte;
 * anything outside the common shape (a symbol outside printable ASCII, a fractional expiry, a non-string property) goes through rhea.
 */
export function encodeC2DMessage(deviceId: string, m: C2DMessage): Buffer {
  const props = applicationProperties(m);
  const contentType = m.contentType || undefined;
  const contentEncoding = m.contentEncoding || undefined;
  const values = Object.values(props);
  if (
    (contentType && NON_ASCII.test(contentType)) ||
    (contentEncoding && NON_ASCII.test(contentEncoding)) ||
    (m.expiryTimeUtc !== undefined && !Number.isSafeInteger(m.expiryTimeUtc)) ||
    values.some((v) => typeof v !== 'string')
  ) {
    return rheaMessage.encode(toAmqpMessage(deviceId, m));
  }
  const fields: Field[] = [
    idField(m.messageId),
    m.userId ? { code8: VBIN8, code32: VBIN32, bytes: Buffer.from(m.userId, 'utf8') } : null,
    { code8: STR8, code32: STR32, bytes: m.to ?? c2dAddress(deviceId) },
    null,
    null,
    idField(m.correlationId),
    contentType ? { code8: SYM8, code32: SYM32, bytes: contentType } : null,
    contentEncoding ? { code8: SYM8, code32: SYM32, bytes: contentEncoding } : null,
    m.expiryTimeUtc !== undefined ? { timestamp: m.expiryTimeUtc } : null,
  ];
  while (fields[fields.length - 1] === null) fields.pop();
  const entries: Field[] = [];
  for (const [k, v] of Object.entries(props))
    entries.push({ code8: STR8, code32: STR32, bytes: k }, { code8: STR8, code32: STR32, bytes: v });

  let size = 4 + 3 + 9 + 3 + (m.body.length <= 255 ? 2 : 5) + m.body.length;
  for (const f of fields) size += fieldSize(f);
  if (entries.length > 0) {
    size += 3 + 9;
    for (const f of entries) size += fieldSize(f);
  }
  const buf = Buffer.allocUnsafe(size);
  // An empty header section (list0), as rhea writes.
  let o = writeDescriptor(buf, 0, 0x70);
  buf[o++] = 0x45;
  o = writeDescriptor(buf, o, 0x73);
  o = writeCompound(buf, o, LIST32, fields);
  if (entries.length > 0) {
    o = writeDescriptor(buf, o, 0x74);
    o = writeCompound(buf, o, MAP32, entries);
  }
  o = writeDescriptor(buf, o, 0x75);
  writeField(buf, o, { code8: VBIN8, code32: VBIN32, bytes: m.body });
  return buf;
}

function bodyOf(body: unknown): Buffer {
  if (body === undefined || body === null) return Buffer.alloc(0);
  if (Buffer.isBuffer(body)) return body;
  if (typeof body === 'object' && body !== null && 'content' in body) {
    const c = (body as { content: unknown }).content;
    if (Buffer.isBuffer(c)) return c;
    if (Array.isArray(c)) return Buffer.concat(c.map((x) => bodyOf(x)));
    return bodyOf(c);
  }
  if (typeof body === 'string') return Buffer.from(body, 'utf8');
  return Buffer.from(peerText(body) ?? '', 'utf8');
}

// The range of a JavaScript Date: a time outside it (NaN, 1e300, an int64 timestamp) has no ISO text, and
// new Date(t).toISOString() threw in device receive, inside rhea's frame handler: the process went down.
const MAX_TIME = 8.64e15;

function timeOf(v: unknown): number | undefined {
  const t = v instanceof Date ? v.getTime() : typeof v === 'number' ? v : NaN;
  return Number.isFinite(t) && Math.abs(t) <= MAX_TIME ? t : undefined;
}

/** A count or sequence number: a number, or numeric text; anything else (a map, a list, a huge ulong as bytes) is none. */
function countOf(v: unknown): number | undefined {
  const n =
    typeof v === 'number'
      ? v
      : typeof v === 'string' && v.trim() !== ''
        ? Number(v)
        : typeof v === 'bigint'
          ? Number(v)
          : NaN;
  return Number.isFinite(n) ? n : undefined;
}

/** A section that should be a map, or an empty one: a hostile hub can put any type there. */
function mapOf(v: unknown): Record<string, unknown> {
  return v && typeof v === 'object' && !Array.isArray(v) && !Buffer.isBuffer(v) && !(v instanceof Date)
    ? (v as Record<string, unknown>)
    : {};
}

/** Reads a C2D message as a device receives it, with the hub's annotations. */
export function fromAmqpMessage(msg: Message): ReceivedC2DMessage {
  const systemProperties: Record<string, string | number> = {};
  const out: ReceivedC2DMessage = { body: bodyOf(msg.body), properties: {}, systemProperties };
  const set = <K extends keyof ReceivedC2DMessage>(k: K, wire: string, v: ReceivedC2DMessage[K] | undefined) => {
    if (v === undefined) return;
    out[k] = v;
    systemProperties[wire] = v as string | number;
  };
  set('messageId', 'message_id', decodeId(msg.message_id));
  set('correlationId', 'correlation_id', decodeId(msg.correlation_id));
  set('userId', 'user_id', decodeId(msg.user_id));
  // Each field read as its type should be whatever type it came as (the SDK passes them through; text fields stay text here).
  set('to', 'to', peerText(msg.to));
  set('contentType', 'content_type', peerText(msg.content_type));
  set('contentEncoding', 'content_encoding', peerText(msg.content_encoding));
  set('expiryTimeUtc', 'absolute_expiry_time', timeOf(msg.absolute_expiry_time));
  for (const [k, v] of Object.entries(mapOf(msg.application_properties))) {
    const text = peerText(v) ?? '';
    if (k === 'iothub-ack') {
      systemProperties[k] = text;
      if ((ACK_MODES as readonly string[]).includes(text)) out.ack = text as AckMode;
    } else {
      out.properties[k] = text;
    }
  }
  const ann = mapOf(msg.message_annotations);
  const lock = decodeId(ann['x-opt-lock-token']);
  if (lock !== undefined) {
    out.lockToken = lock;
    systemProperties['x-opt-lock-token'] = lock;
  }
  set('sequenceNumber', 'x-opt-sequence-number', countOf(ann['x-opt-sequence-number']));
  set('enqueuedTimeUtc', 'iothub-enqueuedtime', timeOf(ann['iothub-enqueuedtime']));
  set('deliveryCount', 'iothub-deliverycount', countOf(ann['iothub-deliverycount']));
  return out;
}
