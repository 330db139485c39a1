/** The AMQP address of a device's C2D queue, written by the clients and read by the local hub (docs/PROTOCOL.md section 4). */

export function c2dAddress(deviceId: string): string {
  return `/devices/${encodeURIComponent(deviceId)}/messages/devicebound`;
}

/**
 * The device id in a `/devices/{id}/messages/devicebound` address (a link's source or a message's `to`), as written:
 * an `amqps://host` prefix and the case of the fixed parts do not matter. undefined when it is no such address.
 */
export function deviceIdOfC2dAddress(address: string | undefined): string | undefined {
  const m = /^\/devices\/([^/]+)\/messages\/devicebound$/i.exec((address ?? '').replace(/^amqps?:\/\/[^/]+/i, ''));
  if (!m) return undefined;
  try {
    return decodeURIComponent(m[1]);
  } catch {
    return undefined;
  }
}
