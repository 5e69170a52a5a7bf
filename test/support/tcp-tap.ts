// A pass-through TCP proxy in front of a server port that records what
// clients send, so a test can see a command reach the wire (even while the
// server is SIGSTOPped and cannot answer yet).
import { connect, createServer, type Socket } from 'node:net';

export interface Tap {
  port: number;
  /** How often `needle` (case-insensitive, e.g. a RESP-encoded command) was sent by clients so far. */
  count(needle: string): number;
  close(): Promise<void>;
}

export async function startTap(targetPort: number): Promise<Tap> {
  const sockets = new Set<Socket>();
  let sent = '';
  const server = createServer((downstream) => {
    const upstream = connect({ host: '127.0.0.1', port: targetPort });
    sockets.add(downstream);
    sockets.add(upstream);
    downstream.on('data', (chunk: Buffer) => {
      sent += chunk.toString('latin1').toLowerCase();
    });
    downstream.pipe(upstream);
    upstream.pipe(downstream);
    const drop = () => {
      downstream.destroy();
      upstream.destroy();
      sockets.delete(downstream);
      sockets.delete(upstream);
    };
    downstream.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port: 0 }, resolve);
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('tap: unexpected address');
  return {
    port: address.port,
    count(needle) {
      const lower = needle.toLowerCase();
      let n = 0;
      for (let at = sent.indexOf(lower); at >= 0; at = sent.indexOf(lower, at + lower.length)) n++;
      return n;
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
