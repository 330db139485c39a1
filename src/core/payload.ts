/** msg.payload and a C2D message body, both ways: what c2d send encodes and how device receive decodes it. */
import { isUtf8 } from 'node:buffer';
import { IotHubError } from './errors';

const invalidPayload = (text: string) => new IotHubError('INVALID_MESSAGE', text, { field: 'payload' });

/** Body and implied content type for a msg.payload. */
export function payloadToBody(payload: unknown): { body: Buffer; contentType?: string } {
  if (Buffer.isBuffer(payload)) return { body: payload };
  if (typeof payload === 'string') return { body: Buffer.from(payload, 'utf8') };
  if (typeof payload === 'number' || typeof payload === 'boolean')
    return { body: Buffer.from(String(payload), 'utf8') };
  if (payload === undefined || payload === null) {
    throw invalidPayload('msg.payload is empty: set it to a string, Buffer, number or object to send');
  }
  if (typeof payload === 'object') {
    let json: string;
    try {
      json = JSON.stringify(payload);
    } catch (err) {
      throw invalidPayload(
        `msg.payload cannot be serialised to JSON (${(err as Error).message}): send a string or Buffer instead`,
      );
    }
    return { body: Buffer.from(json, 'utf8'), contentType: 'application/json' };
  }
  throw invalidPayload(`msg.payload of type ${typeof payload} cannot be sent: use a string, Buffer, number or object`);
}

export type PayloadOutput = 'auto' | 'string' | 'buffer' | 'json';

function isJsonType(ct: string | undefined): boolean {
  return !!ct && /^application\/([\w.+-]*\+)?json\b/i.test(ct.trim());
}

export function decodePayload(body: Buffer, contentType: string | undefined, output: PayloadOutput): unknown {
  switch (output) {
    case 'buffer':
      return body;
    case 'string':
      return body.toString('utf8');
    case 'json':
      try {
        return JSON.parse(body.toString('utf8'));
      } catch {
        throw new IotHubError(
          'INVALID_MESSAGE',
          'the message body is not JSON: set the node\'s output to "auto" or "string"',
          { field: 'payload' },
        );
      }
    default:
      if (isJsonType(contentType)) {
        try {
          return JSON.parse(body.toString('utf8'));
        } catch {
          return body.toString('utf8');
        }
      }
      return isUtf8(body) ? body.toString('utf8') : body;
  }
}
