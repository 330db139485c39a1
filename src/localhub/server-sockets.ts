import type * as net from 'node:net';

/**
 * The listening servers of one endpoint and every socket they accepted, so stop() ends them all. Sockets are tracked
 * from the TCP accept, not from the TLS handshake: a client still in its handshake when the hub stopped was in no set,
 * and server.close() waited for it until the handshake timed out (120 s), which hung a hub restart on a busy machine.
 */
export class ServerSockets {
  private readonly servers: net.Server[] = [];
  private readonly sockets = new Set<net.Socket>();
  private closing = false;

  add(server: net.Server): void {
    this.servers.push(server);
    server.on('connection', (socket: net.Socket) => {
      if (this.closing) {
        socket.destroy();
        return;
      }
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
  }

  async close(): Promise<void> {
    this.closing = true;
    for (const s of this.sockets) s.destroy();
    await Promise.all(this.servers.map((s) => new Promise((r) => s.close(() => r(undefined)))));
  }
}
