/**
 * The device key a symmetric-key enrollment group gives one registration id: base64(HMAC-SHA256(base64-decoded group
 * key, registration id)), as the Device Provisioning Service and its SDKs' docs derive it (docs/PROTOCOL.md, section
 * "Device Provisioning Service").
 */
import { createHmac } from 'node:crypto';

export function deriveDeviceKey(groupKey: string, registrationId: string): string {
  return createHmac('sha256', Buffer.from(groupKey, 'base64')).update(registrationId, 'utf8').digest('base64');
}
