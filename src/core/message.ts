/**
 * The one C2D message model shared by both codecs (MQTT property bag, AMQP),
 * the clients, the nodes and the local hub.
 */
import { IotHubError } from './errors';

export type AckMode = 'none' | 'positive' | 'negative' | 'full';
export const ACK_MODES: readonly AckMode[] = ['none', 'positive', 'negative', 'full'];

/** A cloud-to-device message as a back end sends it. */
export interface C2DMessage {
  body: Buffer;
  messageId?: string;
  correlationId?: string;
  userId?: string;
  /** `/devices/{id}/messages/devicebound`; filled in by the sender when absent. */
  to?: string;
  /** Absolute expiry, milliseconds since the epoch. */
  expiryTimeUtc?: number;
  contentType?: string;
  contentEncoding?: string;
  /** Feedback requested (`iothub-ack`); travels as an application property on the wire. */
  ack?: AckMode;
  /** Application properties, without `iothub-ack`. */
  properties: Record<string, string>;
}

/** A C2D message as a device receives it: the model plus what the hub adds. */
export interface ReceivedC2DMessage extends C2DMessage {
  /** AMQP only: `x-opt-lock-token`. */
  lockToken?: string;
  sequenceNumber?: number;
  enqueuedTimeUtc?: number;
  deliveryCount?: number;
  /** Every system property as it arrived, keyed by its wire name (`$.mid`, `message_id`, ...). */
  systemProperties: Record<string, string | number>;
}

/** IoT Hub's limit on a C2D message: body + system property values + user property names and values. */
export const MAX_C2D_MESSAGE_BYTES = 64 * 1024;
export const MAX_MESSAGE_ID_LENGTH = 128;

// IoT Hub's rule for a device id: 1 to 128 ASCII letters, digits and - : . + % _ # * ? ! ( ) , = @ ; $ '
const DEVICE_ID = /^[A-Za-z0-9\-:.+%_#*?!(),=@;$']{1,128}$/;

/** The device id as IoT Hub accepts it, or a typed error naming the field and what is allowed. */
export function checkDeviceId(id: string, field = 'deviceId'): string {
  if (DEVICE_ID.test(id)) return id;
  const shown = JSON.stringify(id.length > 40 ? `${id.slice(0, 40)}…` : id);
  const why =
    id.length === 0
      ? 'is empty'
      : id.length > 128
        ? `has ${id.length} characters (at most 128)`
        : `holds ${JSON.stringify([...id].find((c) => !DEVICE_ID.test(c)))}`;
  throw new IotHubError(
    'INVALID_ARGUMENT',
    `device id ${shown} ${why}: IoT Hub allows 1 to 128 ASCII letters, digits and - : . + % _ # * ? ! ( ) , = @ ; $ '`,
    { field },
  );
}

/** Size of a message as IoT Hub counts it against the 64 KB limit. */
export function messageSize(m: C2DMessage): number {
  let n = m.body.length;
  for (const v of [m.messageId, m.correlationId, m.userId, m.to, m.contentType, m.contentEncoding]) {
    if (v !== undefined) n += Buffer.byteLength(v);
  }
  if (m.expiryTimeUtc !== undefined) n += 8;
  for (const [k, v] of Object.entries(m.properties)) n += Buffer.byteLength(k) + Buffer.byteLength(v);
  if (m.ack !== undefined) n += Buffer.byteLength('iothub-ack') + Buffer.byteLength(m.ack);
  return n;
}

export type FeedbackStatus = 'Success' | 'Expired' | 'DeliveryCountExceeded' | 'Rejected' | 'Purged';

/** One delivery acknowledgement from the hub's feedback endpoint. */
export interface FeedbackRecord {
  originalMessageId: string;
  deviceId: string;
  statusCode: FeedbackStatus;
  description: string;
  /** ISO 8601 text as the hub sends it. */
  enqueuedTimeUtc: string;
  deviceGenerationId?: string;
}
