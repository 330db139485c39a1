/**
 * IoT Hub's tiers in the local hub: the C2D send throttle of Microsoft's quota table ("IoT Hub quotas and throttling",
 * learn.microsoft.com/azure/iot-hub/iot-hub-devguide-quotas-throttling): cloud-to-device sends 1.67/sec/unit
 * (100/min/unit) for Free, B1 and S1 and for B2 and S2, 83.33/sec/unit (5,000/min/unit) for B3 and S3. Throttles "are
 * applied in minute ranges": here a sliding minute, so no 60 s holds more than the tier's per-minute figure. A send
 * over it is refused as IoT Hub refuses it, with the AMQP condition `com.microsoft:device-container-throttled` that the
 * official SDKs map to ThrottlingError (azure-iothub's dist/common-amqp/amqp_common_errors.js; azure-iot-amqp-base has the same table). No tier: unthrottled.
 */
import { AMQP_CONDITIONS, IotHubError } from '../core/errors';

export type Tier = 'F1' | 'S1' | 'S2' | 'S3';
export const TIERS: readonly Tier[] = ['F1', 'S1', 'S2', 'S3'];

/** Cloud-to-device sends per minute per unit. */
export const C2D_SENDS_PER_MINUTE: Record<Tier, number> = { F1: 100, S1: 100, S2: 100, S3: 5000 };
/** The most units a hub of the tier can have (F1: one hub, one unit; S1 and S2: 200; S3: 10). */
export const MAX_UNITS: Record<Tier, number> = { F1: 1, S1: 200, S2: 200, S3: 10 };

/** The tier and units, checked; throws naming the setting and what is allowed. */
export function checkTier(tier: unknown, units: unknown): { tier: Tier; units: number } {
  const t = typeof tier === 'string' ? (tier.toUpperCase() as Tier) : undefined;
  if (!t || !TIERS.includes(t)) throw new Error(`tier ${JSON.stringify(tier)} is not one of ${TIERS.join(', ')}`);
  const n = units === undefined || units === '' ? 1 : Number(units);
  if (!Number.isInteger(n) || n < 1 || n > MAX_UNITS[t])
    throw new Error(`units must be a whole number from 1 to ${MAX_UNITS[t]} for tier ${t} (got ${String(units)})`);
  return { tier: t, units: n };
}

/** At most `limit` operations in any `windowMs`: a ring of the last `limit` accepted times. */
export class C2DThrottle {
  private readonly times: number[] = [];
  private head = 0;
  readonly limit: number;

  constructor(
    readonly tier: Tier,
    readonly units: number,
    private readonly windowMs = 60_000,
  ) {
    this.limit = C2D_SENDS_PER_MINUTE[tier] * units;
  }

  /** Takes one send, or throws the hub's throttling error. */
  take(now = Date.now()): void {
    if (this.times.length < this.limit) {
      this.times.push(now);
      return;
    }
    const oldest = this.times[this.head];
    if (now - oldest < this.windowMs) {
      throw new IotHubError(
        'THROTTLED',
        JSON.stringify({
          errorCode: 429001,
          message: `ThrottlingException: cloud-to-device sends exceed ${this.limit} per minute (tier ${this.tier}, ${this.units} unit${this.units > 1 ? 's' : ''}); retry in ${Math.ceil((this.windowMs - (now - oldest)) / 1000)} s`,
          timestampUtc: new Date(now).toISOString(),
        }),
        { amqpCondition: AMQP_CONDITIONS.throttled },
      );
    }
    this.times[this.head] = now;
    this.head = (this.head + 1) % this.limit;
  }

  /** A taken send that did not happen after all (the queue refused it): its slot is freed. */
  refund(): void {
    if (this.times.length < this.limit) this.times.pop();
    else {
      this.head = (this.head - 1 + this.limit) % this.limit;
      this.times[this.head] = 0;
    }
  }
}
