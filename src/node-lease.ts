/**
 * What the three nodes that use a connection do alike: take a lease from the config node, show in the node's status
 * why none could be had, and give it back when the node closes (removed: at once; a restart: the session lingers).
 */
import { IotHubError } from './core/errors';
import type { Node, NodeAPI, NodeStatus } from './node-red';

/** A failure as a short translated status text; the node's log carries the whole message. */
export function failureStatus(RED: NodeAPI, err: unknown): NodeStatus {
  const code = err instanceof IotHubError ? err.code : 'INTERNAL';
  const key = `iothub-connection.errorCode.${code}`;
  const text = RED._(key);
  return { fill: 'red', shape: 'ring', text: text && text !== key ? text : code.toLowerCase().replace(/_/g, ' ') };
}

export interface Releasable {
  release(removed: boolean): Promise<void>;
}

export interface HeldLease<L> {
  /** The lease while the node holds it. */
  readonly lease: L | undefined;
  /** Why there is none, once acquiring failed. */
  readonly error: Error | undefined;
}

/**
 * Holds the lease `acquiring` resolves to until the node closes. `use` runs once it is there; a lease that arrives
 * after the node closed goes straight back. `beforeRelease` runs first in the node's close (timers, warnings).
 */
export function holdLease<L extends Releasable>(
  RED: NodeAPI,
  node: Node,
  acquiring: Promise<L>,
  use: (l: L) => void,
  beforeRelease?: () => void,
): HeldLease<L> {
  const held: { lease: L | undefined; error: Error | undefined } = { lease: undefined, error: undefined };
  let closing = false;
  acquiring.then(
    (l) => {
      if (closing) {
        void l.release(false);
        return;
      }
      held.lease = l;
      use(l);
    },
    (err: Error) => {
      held.error = err;
      node.status(failureStatus(RED, err));
      node.error(err.message);
    },
  );
  node.on('close', (removed, done) => {
    closing = true;
    beforeRelease?.();
    const l = held.lease;
    held.lease = undefined;
    (l ? l.release(removed) : Promise.resolve()).then(
      () => done(),
      () => done(),
    );
  });
  return held;
}
