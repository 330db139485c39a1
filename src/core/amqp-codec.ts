/**
 * C2D messages <-> rhea AMQP messages, encoded field by field as azure-iothub does
 * (azure-iot-amqp-base AmqpMessage.fromMessage): UUID-shaped ids as AMQP uuid, one data section body.
 */
import { message as rheaMessage, Message, string_to_uuid, uuid_to_string } from 'rhea';
import { AckMode, ACK_MODES, C2DMessage, ReceivedC2DMessage } from './message';

// The SDK's own test: only such ids travel as AMQP uuid (lowercase, version 1-5, RFC variant).
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[1-5][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

function encodeId(id: string): string | Buffer {
  return UUID.test(id) ? string_to_uuid(id) : id;
}

function decodeId(v: unknown): string | undefined {
  if (v === undefined || v === null) return undefined;
  if (Buffer.isBuffer(v) && v.length === 16) return uuid_to_string(v);
  if (Buffer.isBuffer(v)) return v.toString('utf8');
  return String(v);
}

export function c2dAddress(deviceId: string): string {
  return `/devices/${encodeURIComponent(deviceId)}/messages/devicebound`;
}

export function deviceIdFromTo(to: string): string | undefined {
  const m = /^\/devices\/([^/]+)\/messages\/devicebound$/i.exec(to);
  if (!m) return undefined;
  try {
    return decodeURIComponent(m[1]);
  } catch {
    return undefined;
  }
}

export function toAmqpMessage(deviceId: string, m: C2DMessage): Message {
  const out: Message = { to: m.to ?? c2dAddress(deviceId), body: undefined };
  if (m.expiryTimeUtc !== undefined) out.absolute_expiry_time = m.expiryTimeUtc as unknown as Date;
  if (m.messageId) out.message_id = encodeId(m.messageId);
  if (m.correlationId) out.correlation_id = encodeId(m.correlationId);
  if (m.userId) out.user_id = m.userId;
  if (m.contentEncoding) out.content_encoding = m.contentEncoding;
  if (m.contentType) out.content_type = m.contentType;
  // Spread, not Object.assign: it copies every own name as data, "__proto__" included.
  // "none" is IoT Hub's default: left out, as azure-iothub does, it costs neither side a properties map.
  const props: Record<string, string> = m.ack && m.ack !== 'none' ? { 'iothub-ack': m.ack, ...m.properties } : { ...m.properties };
  if (Object.keys(props).length > 0) out.application_properties = props;
  out.body = rheaMessage.data_section(m.body);
  return out;
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
  return Buffer.from(JSON.stringify(body), 'utf8');
}

function timeOf(v: unknown): number | undefined {
  if (v instanceof Date) return v.getTime();
  if (typeof v === 'number') return v;
  return undefined;
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
  set('to', 'to', msg.to ?? undefined);
  set('contentType', 'content_type', msg.content_type ?? undefined);
  set('contentEncoding', 'content_encoding', msg.content_encoding ?? undefined);
  set('expiryTimeUtc', 'absolute_expiry_time', timeOf(msg.absolute_expiry_time));
  for (const [k, v] of Object.entries(msg.application_properties ?? {})) {
    const text = v === null || v === undefined ? '' : String(v);
    if (k === 'iothub-ack') {
      systemProperties[k] = text;
      if ((ACK_MODES as readonly string[]).includes(text)) out.ack = text as AckMode;
    } else {
      out.properties[k] = text;
    }
  }
  const ann = (msg.message_annotations ?? {}) as Record<string, unknown>;
  const lock = decodeId(ann['x-opt-lock-token']);
  if (lock !== undefined) {
    out.lockToken = lock;
    systemProperties['x-opt-lock-token'] = lock;
  }
  const seq = Number(ann['x-opt-sequence-number']);
  if (ann['x-opt-sequence-number'] !== undefined && Number.isFinite(seq)) set('sequenceNumber', 'x-opt-sequence-number', seq);
  const enq = timeOf(ann['iothub-enqueuedtime']);
  if (enq !== undefined) set('enqueuedTimeUtc', 'iothub-enqueuedtime', enq);
  const count = Number(ann['iothub-deliverycount']);
  if (ann['iothub-deliverycount'] !== undefined && Number.isFinite(count)) set('deliveryCount', 'iothub-deliverycount', count);
  return out;
}
