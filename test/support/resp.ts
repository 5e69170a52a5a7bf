// RESP, the Redis wire protocol, spoken over a raw socket, so readiness checks
// depend on neither ioredis (which the library under test uses) nor redis-cli.
import { connect } from 'node:net';

/**
 * A command as clients put it on the wire: a RESP array of bulk strings. The
 * array form, not the inline one, because nutcracker rejects inline commands;
 * and it is what ioredis sends, so a tap can count a command by these bytes.
 */
export function resp(...args: string[]): string {
  return `*${args.length}\r\n${args.map((arg) => `$${Buffer.byteLength(arg)}\r\n${arg}\r\n`).join('')}`;
}

const PING = resp('PING');

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
