// A RESP PING over a raw socket, so readiness checks depend on neither ioredis
// (which the library under test uses) nor redis-cli. Array form because
// nutcracker rejects inline commands.
import { connect } from 'node:net';

const PING = '*1\r\n$4\r\nPING\r\n';

/** True if 127.0.0.1:port answers +PONG within timeoutMs; never throws. */
export function ping(port: number, timeoutMs = 1_000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    let reply = '';
    const finish = (ok: boolean): void => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => finish(false));
    socket.once('error', () => finish(false));
    socket.once('connect', () => socket.write(PING));
    socket.on('data', (chunk: Buffer) => {
      reply += chunk.toString('latin1');
      if (reply.includes('\r\n')) finish(reply.startsWith('+PONG\r\n'));
    });
    socket.once('end', () => finish(false));
  });
}
