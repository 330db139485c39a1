/**
 * Turns what a flow hands the c2d send node (payload plus evaluated mapping rows)
 * into a C2DMessage, or a clear error that names the row and the fix. Pure: no I/O.
 */
import { randomUUID } from 'node:crypto';
import Mustache from 'mustache';
import { IotHubError } from './errors';
import { payloadToBody } from './payload';
import { AckMode, ACK_MODES, C2DMessage, MAX_C2D_MESSAGE_BYTES, MAX_MESSAGE_ID_LENGTH, messageSize } from './message';

/** A row of the node's mapping table as saved in the flow. */
export interface MappingRow {
  name: string;
  value: string;
  valueType: string;
}

/** A mapping row after its value was evaluated against the msg. */
export interface EvaluatedRow {
  name: string;
  value: unknown;
  /** 1-based row number, for error messages. */
  row: number;
}

/** Mapping names that set a system property instead of an application property. */
export const SYSTEM_PROPERTY_NAMES = ['messageId', 'correlationId', 'contentType', 'contentEncoding'] as const;
type SystemPropertyName = (typeof SYSTEM_PROPERTY_NAMES)[number];

export const MAPPING_VALUE_TYPES = [
  'msg',
  'flow',
  'global',
  'env',
  'str',
  'num',
  'json',
  'jsonata',
  'template',
] as const;

function invalid(field: string, text: string): IotHubError {
  return new IotHubError('INVALID_MESSAGE', text, { field });
}

/** Renders a mustache template against the msg without HTML escaping (values go on the wire, not into a page). */
export function renderTemplate(template: string, view: unknown): string {
  return Mustache.render(template, view, {}, { escape: (s: string) => s });
}

/** Reads an ack mode from the msg or the node setting. */
export function parseAck(value: unknown, field: string): AckMode {
  if (typeof value === 'string' && (ACK_MODES as readonly string[]).includes(value)) return value as AckMode;
  throw invalid(field, `${field} must be one of ${ACK_MODES.join(', ')} (got ${JSON.stringify(value)})`);
}

/** Absolute expiry in ms from a Date, epoch ms or ISO text. */
export function parseExpiry(value: unknown, field: string): number {
  const ms =
    value instanceof Date
      ? value.getTime()
      : typeof value === 'number'
        ? value
        : typeof value === 'string'
          ? Date.parse(value)
          : NaN;
  if (!Number.isFinite(ms) || ms <= 0) {
    throw invalid(field, `${field} must be a Date, an ISO 8601 time or epoch milliseconds`);
  }
  return ms;
}

function propertyText(r: EvaluatedRow): string {
  const v = r.value;
  if (typeof v === 'string') return v;
  if (typeof v === 'number' && Number.isFinite(v)) return String(v);
  if (typeof v === 'boolean' || typeof v === 'bigint') return String(v);
  const what =
    v === undefined
      ? 'is undefined'
      : v === null
        ? 'is null'
        : typeof v === 'number'
          ? `is ${v}`
          : `is ${Array.isArray(v) ? 'an array' : typeof v === 'object' ? 'an object' : 'a ' + typeof v}`;
  throw invalid(
    `mappings[${r.row}]`,
    `property row ${r.row} "${r.name}": its value ${what}; it must be a string, a finite number or a boolean`,
  );
}

export interface OutgoingInput {
  payload: unknown;
  rows: EvaluatedRow[];
  ack: AckMode;
  /** Relative time to live in seconds (node setting). */
  ttlSec?: number;
  /** Absolute expiry in ms (msg.expiryTimeUtc); wins over ttlSec. */
  expiryTimeUtc?: number;
  now?: number;
  newId?: () => string;
}

/** Builds and validates the message; throws IotHubError('INVALID_MESSAGE') naming the field. */
export function buildC2DMessage(input: OutgoingInput): C2DMessage {
  const { body, contentType } = payloadToBody(input.payload);
  const m: C2DMessage = { body, properties: {}, ack: input.ack };
  if (contentType) m.contentType = contentType;
  for (const r of input.rows) {
    const name = typeof r.name === 'string' ? r.name.trim() : '';
    if (!name)
      throw invalid(`mappings[${r.row}]`, `property row ${r.row} has no name: give it a name or remove the row`);
    const value = propertyText(r);
    if ((SYSTEM_PROPERTY_NAMES as readonly string[]).includes(name)) {
      m[name as SystemPropertyName] = value;
    } else if (name.toLowerCase() === 'iothub-ack') {
      throw invalid(
        `mappings[${r.row}]`,
        `property row ${r.row}: "iothub-ack" is set by the node's acknowledgement setting or msg.ack, not by a row`,
      );
    } else if (name === '__proto__') {
      // AMQP maps decode into plain objects (rhea, the local hub, AMQP devices), where this name cannot be a key.
      throw invalid(
        `mappings[${r.row}]`,
        `property row ${r.row}: "__proto__" cannot travel as a property name over AMQP; rename the property`,
      );
    } else if (name.startsWith('$') || name.toLowerCase().startsWith('iothub-')) {
      // On MQTT an application property "$.mid" is written exactly as the system one: the device would take it for the message id.
      throw invalid(
        `mappings[${r.row}]`,
        `property row ${r.row}: "${name}" starts with ${name.startsWith('$') ? '"$"' : '"iothub-"'}, which IoT Hub keeps for its system properties; rename the property`,
      );
    } else {
      m.properties[name] = value;
    }
  }
  if (m.messageId === undefined) m.messageId = (input.newId ?? randomUUID)();
  if (m.messageId.length === 0 || m.messageId.length > MAX_MESSAGE_ID_LENGTH || !/^[\x20-\x7e]+$/.test(m.messageId)) {
    throw invalid(
      'messageId',
      `messageId must be 1 to ${MAX_MESSAGE_ID_LENGTH} printable ASCII characters (got ${m.messageId.length})`,
    );
  }
  if (input.expiryTimeUtc !== undefined) m.expiryTimeUtc = input.expiryTimeUtc;
  else if (input.ttlSec !== undefined && input.ttlSec > 0)
    m.expiryTimeUtc = (input.now ?? Date.now()) + input.ttlSec * 1000;
  const size = messageSize(m);
  if (size > MAX_C2D_MESSAGE_BYTES) {
    throw invalid(
      'payload',
      `the message is ${size} bytes; IoT Hub accepts at most ${MAX_C2D_MESSAGE_BYTES} (body plus properties): make the payload smaller`,
    );
  }
  return m;
}
