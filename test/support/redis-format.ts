// The cache's Redis format (the default codec, standard msgpack) read and
// written with another implementation, @msgpack/msgpack, taught the extension
// types the README documents: a test that decodes what the cache wrote, or
// writes what the cache must read, checks the documented format rather than
// the cache's own code.
import type { Redis } from 'ioredis';
import { ExtensionCodec, decode as decodeMsgpack, decodeMulti, encode as encodeMsgpack } from '@msgpack/msgpack';

const extensions = new ExtensionCodec();
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
