// The write queue (src/memory/write-queue.ts): a single-producer
// single-consumer ring in shared memory, driven here from one thread.
import { describe, expect, it } from 'vitest';
import {
  DATA_OFFSET, OP_DELETE, OP_SET, R_HEAD, R_TAIL, RECORD_HEADER_BYTES, RingConsumer, RingProducer, createRing, recordBytes,
} from '../../dist/src/memory/write-queue.js';
import { prng } from '../support/prng.js';


interface Rec {
  op: number;
  hash: number;
  key: string;
  value: Buffer;
  expiresAt: number;
}

function tryPush(producer: RingProducer, rec: Rec): boolean {
  const size = recordBytes(rec.key.length, rec.value.length);
  const offset = producer.tryReserve(size);
  if (offset < 0) return false;
  // 8-byte aligned, inside the data, never straddling its end.
  if (offset % 8 !== 0 || offset < DATA_OFFSET || offset + size > DATA_OFFSET + producer.capacity) {
    throw new Error(`bad reservation: ${size} bytes at ${offset}`);
  }
  producer.writeRecord(offset, rec.op, rec.hash, rec.key, rec.value, rec.expiresAt, 0);
  producer.publish();
  return true;
}

function pop(consumer: RingConsumer): Rec | undefined {
  const offset = consumer.next();
  if (offset < 0) return undefined;
  const i32 = consumer.i32;
  const keyLength = i32[(offset + 12) >> 2]!;
  const valueLength = i32[(offset + 16) >> 2]!;
  const start = offset + RECORD_HEADER_BYTES + keyLength * 2;
  const rec: Rec = {
    op: i32[(offset + 4) >> 2]!,
    hash: i32[(offset + 8) >> 2]!,
    key: consumer.readKey(offset),
    value: Buffer.from(consumer.u8.subarray(start, start + valueLength)),
    expiresAt: consumer.f64[(offset + 24) >> 3]!,
  };
  if (i32[offset >> 2] !== recordBytes(keyLength, valueLength)) throw new Error(`bad record size at ${offset}`);
  consumer.done(offset);
  return rec;
}

function record(n: number, random: () => number): Rec {
  const keyLength = Math.floor(random() * 20);
  let key = '';
  for (let i = 0; i < keyLength; i++) key += String.fromCharCode(Math.floor(random() * 0x10000));
  const value = Buffer.alloc(Math.floor(random() * 200), n & 0xff);
  return { op: n % 3 === 0 ? OP_DELETE : OP_SET, hash: (n * 2654435761) | 0, key, value, expiresAt: n * 1.5 };
}

function ring(capacity: number, start = 0): { producer: RingProducer; consumer: RingConsumer } {
  const sab = createRing(capacity);
  const i32 = new Int32Array(sab);
  // Positions count bytes since the ring was made; start them anywhere to test wrapping at 2^31 and 2^32.
  i32[R_HEAD] = start;
  i32[R_TAIL] = start;
  return { producer: new RingProducer(sab), consumer: new RingConsumer(sab) };
}

describe('write queue ring', () => {
  it('refuses a capacity that is not a power of two', () => {
    expect(() => createRing(1000)).toThrow(/power of two/);
    expect(createRing(1024).byteLength).toBe(DATA_OFFSET + 1024);
  });

  it('is empty when made', () => {
    const { producer, consumer } = ring(1024);
    expect(consumer.next()).toBe(-1);
    expect(consumer.hasWork()).toBe(false);
    expect(producer.pending).toBe(0);
  });

  it('hands records to the consumer in order, with every field intact', () => {
    const { producer, consumer } = ring(1 << 16);
    const random = prng(7);
    const sent = Array.from({ length: 100 }, (_, n) => record(n, random));
    for (const rec of sent) expect(tryPush(producer, rec)).toBe(true);
    expect(consumer.hasWork()).toBe(true);
    for (const rec of sent) expect(pop(consumer)).toEqual(rec);
    expect(pop(consumer)).toBeUndefined();
    expect(producer.pending).toBe(0);
  });

  it('keeps keys as UTF-16 code units: empty, emoji, lone surrogates', () => {
    const { producer, consumer } = ring(4096);
    const keys = ['', '\u{1F600}', '\uD800', '\uDFFF', '__proto__', 'a\u0000b'];
    for (const key of keys) tryPush(producer, { op: OP_SET, hash: 1, key, value: Buffer.alloc(0), expiresAt: 0 });
    for (const key of keys) expect(pop(consumer)!.key).toBe(key);
  });

  it('returns -1 when full, publishes nothing then, and has room again once the consumer frees it', () => {
    const { producer, consumer } = ring(1024);
    const rec: Rec = { op: OP_SET, hash: 5, key: 'k', value: Buffer.alloc(94), expiresAt: 0 }; // 32 + 2 + 94 = 128 bytes
    expect(recordBytes(1, 94)).toBe(128);
    let pushed = 0;
    while (tryPush(producer, { ...rec, hash: pushed })) pushed++;
    expect(pushed).toBe(8);
    expect(producer.pending).toBe(1024);
    expect(producer.tryReserve(8)).toBe(-1);
    const headBefore = producer.head;
    expect(producer.tryReserve(128)).toBe(-1);
    expect(producer.head).toBe(headBefore);

    expect(pop(consumer)!.hash).toBe(0);
    expect(producer.pending).toBe(1024 - 128);
    expect(producer.tryReserve(136)).toBe(-1); // 8 bytes more than the freed room
    expect(tryPush(producer, { ...rec, hash: 100 })).toBe(true);
    const hashes: number[] = [];
    for (let r = pop(consumer); r !== undefined; r = pop(consumer)) hashes.push(r.hash);
    expect(hashes).toEqual([1, 2, 3, 4, 5, 6, 7, 100]);
  });

  it('waitForRoom returns at once when the consumer freed room after tryReserve found none', () => {
    // The consumer frees room and, with nobody counted as waiting, notifies
    // no one. Waiting on a fresh load of the tail would then sleep the whole
    // timeout (an empty ring's tail never moves again); waiting on the tail
    // tryReserve saw sees the move. The timeout is far past the test's own.
    const { producer, consumer } = ring(1024);
    const rec: Rec = { op: OP_SET, hash: 1, key: 'k', value: Buffer.alloc(94), expiresAt: 0 };
    while (tryPush(producer, rec));
    expect(producer.tryReserve(128)).toBe(-1);
    while (pop(consumer) !== undefined);
    producer.waitForRoom(60_000);
    expect(producer.tryReserve(128)).toBeGreaterThan(0);
  });

  it('wraps a record that does not fit before the end to the start (WRAP record), in order', () => {
    const { producer, consumer } = ring(1024);
    const small: Rec = { op: OP_SET, hash: 1, key: 'a', value: Buffer.alloc(300, 1), expiresAt: 0 }; // 336 bytes
    expect(tryPush(producer, small)).toBe(true);
    expect(tryPush(producer, { ...small, hash: 2 })).toBe(true); // ends at 672
    expect(pop(consumer)!.hash).toBe(1);
    expect(pop(consumer)!.hash).toBe(2);
    const tiny: Rec = { op: OP_DELETE, hash: 4, key: 'c', value: Buffer.alloc(0), expiresAt: 0 }; // 40 bytes
    expect(tryPush(producer, tiny)).toBe(true); // ends at 712
    // 312 bytes are left before the end; this one needs 400, so it goes to 0 behind a WRAP of 312.
    const big: Rec = { op: OP_SET, hash: 3, key: 'b', value: Buffer.alloc(366, 3), expiresAt: 0 };
    expect(recordBytes(1, 366)).toBe(400);
    const offset = producer.tryReserve(400);
    expect(offset).toBe(DATA_OFFSET);
    expect(producer.pending).toBe(40); // reserving publishes nothing
    producer.writeRecord(offset, big.op, big.hash, 'b', big.value, 0, 0);
    producer.publish();
    expect(producer.pending).toBe(40 + 312 + 400);
    expect(pop(consumer)).toEqual(tiny);
    expect(pop(consumer)).toEqual(big);
    expect(pop(consumer)).toBeUndefined();
    expect(producer.pending).toBe(0);
  });

  it('refuses a wrapping record when the skipped bytes plus the record do not fit', () => {
    const { producer, consumer } = ring(1024);
    const rec: Rec = { op: OP_SET, hash: 1, key: 'a', value: Buffer.alloc(300, 1), expiresAt: 0 }; // 336
    tryPush(producer, rec);
    tryPush(producer, rec); // head at 672
    pop(consumer); // tail at 336: 688 bytes free in all, 352 before the end
    // 400 bytes fit in the free total (688) but not with the 352 wrapped: 352 + 400 > 688.
    expect(producer.tryReserve(400)).toBe(-1);
    expect(producer.tryReserve(336)).toBe(DATA_OFFSET + 672); // fits before the end
  });

  it.each([
    ['0', 0],
    ['just below 2^31', 0x7fffff00],
    ['just below 2^32', -256],
  ])('survives thousands of laps with positions starting at %s, preserving order and content', (_name, start) => {
    const { producer, consumer } = ring(2048, start);
    const random = prng(11);
    const queue: Rec[] = [];
    let sent = 0;
    let received = 0;
    let refusals = 0;
    const endPositions: number[] = [];
    while (received < 5_000) {
      // Bursts of pushes until full, then a random number of pops: exercises full, empty and wrap.
      if (random() < 0.55) {
        const rec = record(sent, random);
        if (tryPush(producer, rec)) {
          queue.push(rec);
          endPositions.push(producer.head);
          sent++;
        } else {
          refusals++;
          expect(queue.length).toBeGreaterThan(0); // only a non-empty ring can be full
        }
      } else {
        const got = pop(consumer);
        if (got === undefined) {
          expect(queue.length).toBe(0);
          continue;
        }
        const want = queue.shift()!;
        if (got.hash !== want.hash || got.key !== want.key || !got.value.equals(want.value) || got.op !== want.op || got.expiresAt !== want.expiresAt) {
          expect(got).toEqual(want);
        }
        const end = endPositions.shift()!;
        if (!consumer.consumedThrough(end)) throw new Error(`record ${received} applied but not consumedThrough its end`);
        if (endPositions.length > 0 && consumer.consumedThrough(endPositions[0]!)) throw new Error('a later record reads as consumed');
        received++;
      }
      if (producer.pending > 2048) throw new Error(`pending ${producer.pending} exceeds the capacity`);
    }
    expect(refusals).toBeGreaterThan(0);
    // The positions really went around: past 2^31 or 2^32 for the offset starts, many laps for all.
    expect(((producer.head - start) >>> 0)).toBeGreaterThan(100 * 2048);
  });

  it('a consumer made later resumes at the tail (as a replacement owner does)', () => {
    const sab = createRing(1024);
    const producer = new RingProducer(sab);
    const first = new RingConsumer(sab);
    for (let n = 0; n < 4; n++) tryPush(producer, { op: OP_SET, hash: n, key: `k${n}`, value: Buffer.alloc(10), expiresAt: 0 });
    expect(pop(first)!.hash).toBe(0);
    // An owner that read record 1 but died before `done` leaves it at the tail.
    expect(first.next()).toBeGreaterThan(0);
    const second = new RingConsumer(sab);
    const hashes: number[] = [];
    for (let r = pop(second); r !== undefined; r = pop(second)) hashes.push(r.hash);
    expect(hashes).toEqual([1, 2, 3]);
  });
});
