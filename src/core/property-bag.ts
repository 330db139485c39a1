/**
 * The MQTT property bag (docs/PROTOCOL.md section 3): C2D topics are
 * `devices/{id}/messages/devicebound/{bag}` where the bag is `&`-joined url-encoded `key=value`
 * pairs and system keys start with `$.`, written `%24.`.
 */
import { IotHubError } from './errors';
import { AckMode, ACK_MODES, C2DMessage, ReceivedC2DMessage } from './message';

/** Wire names of the system properties, in the order a real hub writes them. */
const SYSTEM_KEYS: [string, keyof C2DMessage][] = [
  ['$.mid', 'messageId'],
  ['$.to', 'to'],
  ['$.cid', 'correlationId'],
  ['$.uid', 'userId'],
  ['$.ct', 'contentType'],
  ['$.ce', 'contentEncoding'],
  ['$.exp', 'expiryTimeUtc'],
];
const SYSTEM_BY_WIRE = new Map(SYSTEM_KEYS);

/** encodeURIComponent leaves `! ' ( ) *` alone, which the hub accepts; it escapes `$ / & = % + #` and space. */
function enc(s: string): string {
  return encodeURIComponent(s);
}

function dec(s: string): string {
  // Most keys and values hold no escape: skip the decoder for them (it is most of the cost of reading a topic).
  const escape = s.indexOf('%');
  if (escape < 0) return s;
  // System keys: `%24.mid` and the like.
  if (escape === 0 && s.startsWith('%24.') && !s.includes('%', 4)) return `$.${s.slice(4)}`;
  try {
    return decodeURIComponent(s);
  } catch {
    throw new IotHubError('PROTOCOL_ERROR', 'the MQTT topic has malformed percent-encoding in its property bag');
  }
}

export function encodePropertyBag(m: C2DMessage): string {
  const pairs: string[] = [];
  for (const [wire, field] of SYSTEM_KEYS) {
    const v = m[field];
    if (v === undefined) continue;
    const text = field === 'expiryTimeUtc' ? new Date(v as number).toISOString() : String(v);
    pairs.push(`${enc(wire)}=${enc(text)}`);
  }
  for (const [k, v] of Object.entries(m.properties)) pairs.push(`${enc(k)}=${enc(v)}`);
  if (m.ack !== undefined) pairs.push(`iothub-ack=${enc(m.ack)}`);
  return pairs.join('&');
}

export function decodePropertyBag(bag: string): {
  message: Omit<C2DMessage, 'body'>;
  systemProperties: Record<string, string>;
} {
  const message: Omit<C2DMessage, 'body'> = { properties: {} };
  const systemProperties: Record<string, string> = {};
  if (!bag) return { message, systemProperties };
  for (const pair of bag.split('&')) {
    if (!pair) continue;
    const eq = pair.indexOf('=');
    const key = dec(eq < 0 ? pair : pair.slice(0, eq));
    // A bare key is a null value; the model has no null, so it reads as empty.
    const value = eq < 0 ? '' : dec(pair.slice(eq + 1));
    const field = SYSTEM_BY_WIRE.get(key);
    if (field) {
      systemProperties[key] = value;
      if (field === 'expiryTimeUtc') {
        const ms = Date.parse(value);
        if (Number.isFinite(ms)) message.expiryTimeUtc = ms;
      } else {
        (message as Record<string, unknown>)[field] = value;
      }
    } else if (key === 'iothub-ack') {
      systemProperties[key] = value;
      if ((ACK_MODES as readonly string[]).includes(value)) message.ack = value as AckMode;
    } else if (key.startsWith('$.')) {
      systemProperties[key] = value;
    } else {
      // An own "__proto__" key: a plain assignment would set the object's prototype and lose the value.
      if (key === '__proto__')
        Object.defineProperty(message.properties, key, { value, enumerable: true, writable: true, configurable: true });
      else message.properties[key] = value;
    }
  }
  return { message, systemProperties };
}

export function c2dTopicPrefix(deviceId: string): string {
  return `devices/${deviceId}/messages/devicebound/`;
}

/** The topic always keeps the `/` after devicebound, even with an empty bag. */
export function c2dTopic(deviceId: string, m: C2DMessage): string {
  return c2dTopicPrefix(deviceId) + encodePropertyBag(m);
}

export function c2dSubscription(deviceId: string): string {
  return `devices/${deviceId}/messages/devicebound/#`;
}

const TOPIC = /^devices\/([^/]+)\/messages\/devicebound(?:\/(.*))?$/s;

/** Tolerates a topic without the trailing `/` (the Node SDK drops those silently; we do not). */
export function parseC2DTopic(topic: string): { deviceId: string; bag: string } | undefined {
  const m = TOPIC.exec(topic);
  if (!m) return undefined;
  return { deviceId: m[1], bag: m[2] ?? '' };
}

export function decodeC2DPublish(topic: string, payload: Buffer): ReceivedC2DMessage {
  const parsed = parseC2DTopic(topic);
  if (!parsed) throw new IotHubError('PROTOCOL_ERROR', 'an MQTT message arrived on a topic that is not a C2D topic');
  const { message, systemProperties } = decodePropertyBag(parsed.bag);
  const received = message as ReceivedC2DMessage;
  received.body = payload;
  received.systemProperties = systemProperties;
  return received;
}
