// Shared pieces of the Redis-tier integration tests (not a test file itself).
import { connect, createServer, type Socket } from 'node:net';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { Cluster, Redis, type RedisOptions } from 'ioredis';
import { ExtensionCodec, decode as decodeMsgpack, decodeMulti, encode as encodeMsgpack } from '@msgpack/msgpack';
import { expect } from 'vitest';
import { Piscina } from 'piscina';
import { waitUntil } from '../support/poll.js';
import { redisCli } from '../support/redis-cli.js';

/**
 * The cache's Redis format (the default codec, standard msgpack) read and
 * written with another implementation, @msgpack/msgpack, taught the
 * extension types the README documents: a test that decodes what the cache
 * wrote, or writes what the cache must read, checks the documented format
 * rather than the cache's own code.
 */
export const extensions = new ExtensionCodec();
extensions.register({
  type: 0x00,
  encode: () => null, // undefined is written by the cache only; nothing here writes it
  decode: () => undefined,
});
extensions.register({
  type: 0x42,
  encode: (value) => {
    if (typeof value !== 'bigint') return null;
    const hex = BigInt.asUintN(128, value).toString(16).padStart(32, '0');
    return Uint8Array.from(Buffer.from(hex, 'hex'));
  },
  decode: (data) => {
    let n = BigInt.asIntN(8, BigInt(data[0]!));
    for (let i = 1; i < data.length; i++) n = (n << 8n) | BigInt(data[i]!);
    return n;
  },
});
extensions.register({
  type: 0x4d,
  encode: (value) => {
    if (!(value instanceof Map)) return null;
    const header = value.size < 16 ? [0x80 | value.size] : [0xde, value.size >> 8, value.size & 0xff];
    const parts = [...value].flatMap(([k, v]) => [encode(k), encode(v)]);
    return Buffer.concat([Buffer.from(header), ...parts]);
  },
  decode: (data) => {
    const skip = data[0]! < 0x90 ? 1 : data[0] === 0xde ? 3 : 5;
    const items = [...decodeMulti(data.subarray(skip), { extensionCodec: extensions })].map(asBuffers);
    const map = new Map<unknown, unknown>();
    for (let i = 0; i < items.length; i += 2) map.set(items[i], items[i + 1]);
    return map;
  },
});
extensions.register({
  type: 0x53,
  encode: (value) => (value instanceof Set ? encode([...value]) : null),
  decode: (data) => new Set(decode(Buffer.from(data)) as unknown[]),
});

/** bin comes back from @msgpack/msgpack as a Uint8Array; the cache gives Buffers. */
function asBuffers(value: unknown): unknown {
  if (value instanceof Uint8Array) return Buffer.from(value);
  if (Array.isArray(value)) return value.map(asBuffers);
  if (value !== null && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    for (const key of Object.keys(value)) (value as Record<string, unknown>)[key] = asBuffers((value as Record<string, unknown>)[key]);
  }
  return value;
}

export function decode(bytes: Buffer): unknown {
  return asBuffers(decodeMsgpack(bytes, { extensionCodec: extensions, useBigInt64: false }));
}

export function encode(value: unknown): Buffer {
  return Buffer.from(encodeMsgpack(value, { extensionCodec: extensions }));
}

/** Lets the event loop turn once (timers and I/O run); used between chunks of writes, never to wait for a result. */
export function yieldToLoop(): Promise<void> {
  return nextTurn();
}

/** A plain ioredis client on a loopback port; connection errors are expected in some tests and only recorded. */
export function redisClient(port: number, extra: RedisOptions = {}): Redis {
  const client = new Redis({ host: '127.0.0.1', port, ...extra });
  client.on('error', () => {});
  return client;
}

/** The client options twemproxy needs with ioredis 6 (see MEASUREMENTS.md, "Gotchas"). */
export function twemproxyClient(port: number): Redis {
  return redisClient(port, { protocol: 2, enableReadyCheck: false, disableClientInfo: true });
}

export async function quit(client: Redis | Cluster): Promise<void> {
  try {
    await client.quit();
  } catch {
    client.disconnect();
  }
}

/** `cmdstat_<command>:calls=` from INFO commandstats, 0 if the command was not called since the last CONFIG RESETSTAT. */
export async function commandCalls(port: number, command: string): Promise<number> {
  const info = await redisCli(port, 'INFO', 'commandstats');
  const match = new RegExp(`^cmdstat_${command}:calls=(\\d+)`, 'm').exec(info);
  return match ? Number(match[1]) : 0;
}

export async function resetStats(port: number): Promise<void> {
  expect(await redisCli(port, 'CONFIG', 'RESETSTAT')).toBe('OK\n');
}

export async function dbsize(port: number): Promise<number> {
  return Number((await redisCli(port, 'DBSIZE')).trim());
}

/** Bounded poll of a condition (never a fixed sleep). */
export function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  return waitUntil(what, async () => check(), { timeoutMs, intervalMs: 10 });
}

/** Reads `keys` (without prefix) from Redis through `client` and decodes them; absent keys are missing from the map. */
export async function readRedis(client: Redis, prefix: string, keys: readonly string[]): Promise<Map<string, unknown>> {
  const out = new Map<string, unknown>();
  for (let start = 0; start < keys.length; start += 1000) {
    const part = keys.slice(start, start + 1000);
    const values = await client.mgetBuffer(...part.map((key) => prefix + key));
    part.forEach((key, i) => {
      const bytes = values[i];
      if (bytes) out.set(key, decode(bytes));
    });
  }
  return out;
}

export { prng } from '../support/prng.js';

/** A value of one of the shapes users cache, chosen by `random`; each round-trips through msgpackr unchanged. */
export function randomValue(random: () => number, n: number): unknown {
  switch (Math.floor(random() * 9)) {
    case 0: return n;
    case 1: return `value-${n}-${'x'.repeat(Math.floor(random() * 40))}`;
    case 2: return { id: n, name: `user ${n}`, tags: ['a', 'b', String(n % 7)], nested: { ok: n % 2 === 0, score: n / 8 } };
    case 3: return [n, null, true, 'three', [n * 2]];
    case 4: return new Map<string, unknown>([['n', n], ['list', [1, 2, 3]]]);
    case 5: return new Set([n, `s${n}`]);
    case 6: return new Date(1_700_000_000_000 + n);
    case 7: return Buffer.from([n & 255, (n >> 8) & 255, 7, 0]);
    default: return n % 3 === 0 ? null : -n - 0.5;
  }
}

/** Runs registered clean-up steps in reverse order; every step runs even if one fails. */
export class Cleanup {
  private readonly steps: Array<() => unknown> = [];

  add(step: () => unknown): void {
    this.steps.push(step);
  }

  async run(): Promise<void> {
    const errors: unknown[] = [];
    while (this.steps.length > 0) {
      const step = this.steps.pop()!;
      try {
        await step();
      } catch (error) {
        errors.push(error);
      }
    }
    if (errors.length > 0) throw new AggregateError(errors, 'clean-up failed');
  }
}

/** A piscina pool running test/integration/fixtures/cache-worker.mjs (which attaches to a cache by its handle). */
export function workerPool(threads = 2): Piscina {
  return new Piscina({
    filename: new URL('./fixtures/cache-worker.mjs', import.meta.url).href,
    minThreads: threads,
    maxThreads: threads,
  });
}

/**
 * A pass-through TCP proxy in front of a Redis port that records what clients
 * send, so a test can see a command reach the wire (even while Redis is
 * SIGSTOPped and cannot answer yet).
 */
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

/** A command as ioredis puts it on the wire (RESP array of bulk strings). */
export function resp(...args: string[]): string {
  return `*${args.length}\r\n${args.map((arg) => `$${Buffer.byteLength(arg)}\r\n${arg}\r\n`).join('')}`;
}
