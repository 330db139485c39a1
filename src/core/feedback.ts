/**
 * Feedback bodies (docs/PROTOCOL.md section 6): a UTF-8 JSON array of records. Readers accept camelCase
 * and PascalCase keys and numeric status codes (older docs); writers use camelCase.
 */
import { IotHubError } from './errors';
import { FeedbackRecord, FeedbackStatus } from './message';

export const FEEDBACK_CONTENT_TYPE = 'application/vnd.microsoft.iothub.feedback.json';

const STATUSES: FeedbackStatus[] = ['Success', 'Expired', 'DeliveryCountExceeded', 'Rejected', 'Purged'];

function bad(text: string): IotHubError {
  return new IotHubError('PROTOCOL_ERROR', `feedback: ${text}`);
}

function pick(o: Record<string, unknown>, camel: string): unknown {
  if (o[camel] !== undefined) return o[camel];
  const pascal = camel[0].toUpperCase() + camel.slice(1);
  return o[pascal];
}

function status(v: unknown): FeedbackStatus {
  if (typeof v === 'number' && Number.isInteger(v) && v >= 0 && v < STATUSES.length) return STATUSES[v];
  if (typeof v === 'string') {
    const s = STATUSES.find((x) => x.toLowerCase() === v.toLowerCase());
    if (s) return s;
    if (/^\d$/.test(v)) return status(Number(v));
  }
  throw bad(`unknown status code ${JSON.stringify(v)?.slice(0, 40)}`);
}

function text(v: unknown): string {
  if (v === undefined || v === null) return '';
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  throw bad('a record field is not text');
}

/** rhea hands a data section as `{typecode: 0x75, content: Buffer}`, or a plain Buffer. */
export function bodyText(body: unknown): string {
  if (typeof body === 'string') return body;
  if (Buffer.isBuffer(body)) return body.toString('utf8');
  if (body instanceof Uint8Array) return Buffer.from(body).toString('utf8');
  if (body && typeof body === 'object' && 'content' in body) return bodyText((body as { content: unknown }).content);
  throw bad('the body is not text');
}

export function parseFeedbackBody(body: unknown): FeedbackRecord[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(bodyText(body));
  } catch (err) {
    if (err instanceof IotHubError) throw err;
    throw bad('the body is not JSON');
  }
  if (!Array.isArray(parsed)) throw bad('the body is not a JSON array of records');
  return parsed.map((r) => {
    if (!r || typeof r !== 'object' || Array.isArray(r)) throw bad('a record is not an object');
    const o = r as Record<string, unknown>;
    const rec: FeedbackRecord = {
      originalMessageId: text(pick(o, 'originalMessageId')),
      deviceId: text(pick(o, 'deviceId')),
      statusCode: status(pick(o, 'statusCode')),
      description: text(pick(o, 'description')),
      enqueuedTimeUtc: text(pick(o, 'enqueuedTimeUtc')),
    };
    const gen = pick(o, 'deviceGenerationId');
    if (gen !== undefined && gen !== null) rec.deviceGenerationId = text(gen);
    return rec;
  });
}

export function encodeFeedbackBody(records: FeedbackRecord[]): Buffer {
  return Buffer.from(
    JSON.stringify(
      records.map((r) => ({
        originalMessageId: r.originalMessageId,
        description: r.description || r.statusCode,
        deviceGenerationId: r.deviceGenerationId ?? '',
        deviceId: r.deviceId,
        enqueuedTimeUtc: r.enqueuedTimeUtc,
        statusCode: r.statusCode,
      })),
    ),
    'utf8',
  );
}
