/** How device receive turns a C2D body into msg.payload. */
import { isUtf8 } from 'node:buffer';
import { IotHubError } from './core/errors';

export type PayloadOutput = 'auto' | 'string' | 'buffer' | 'json';

function isJsonType(ct: string | undefined): boolean {
  return !!ct && /^application\/([\w.+-]*\+)?json\b/i.test(ct.trim());
}


export function decodePayload(body: Buffer, contentType: string | undefined, output: PayloadOutput): unknown {
  switch (output) {
    case 'buffer': return body;
    case 'string': return body.toString('utf8');
    case 'json':
      try {
        return JSON.parse(body.toString('utf8'));
      } catch {
        throw new IotHubError('INVALID_MESSAGE', 'the message body is not JSON: set the node\'s output to "auto" or "string"', { field: 'payload' });
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
