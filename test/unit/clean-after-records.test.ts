// An entry written behind to Redis stays dirty until the flusher has processed
// every change-log record of it (shard-writer.ts, applyClean): otherwise an
// older record of the key (a delete) processed after the entry became clean,
// evicted or dropped, would delete the newer value from Redis.
import { describe, expect, it } from 'vitest';
import { encode } from '../../dist/src/codec.js';
import { hashKey } from '../../dist/src/hash.js';
import { ChangeLog } from '../../dist/src/memory/change-log.js';
import { createControl } from '../../dist/src/memory/control.js';
import { FLAG_DIRTY, createShardBuffer } from '../../dist/src/memory/layout.js';
import { NOT_FOUND, Scratch } from '../../dist/src/memory/shard-view.js';
import { ShardWriter } from '../../dist/src/memory/shard-writer.js';
import {
  OP_CLEAN, OP_DELETE, OP_DROP_CLEAN, OP_SET, RingConsumer, RingProducer, createRing, recordBytes,
} from '../../dist/src/memory/write-queue.js';

function setup() {
  const writer = new ShardWriter(createShardBuffer(1024 * 1024));
  writer.changeLog = new ChangeLog(createRing(1 << 20), createControl(), 1_000_000);
  const sab = createRing(1 << 16);
  const producer = new RingProducer(sab);
  const consumer = new RingConsumer(sab);
  const apply = (op: number, key: string, value?: unknown, spare = 0, through = 0) => {
    const bytes = value === undefined ? new Uint8Array(0) : encode(value);
    const size = recordBytes(key.length, bytes.length);
    const at = producer.tryReserve(size);
    producer.writeRecord(at, op, hashKey(key), key, bytes, through, spare);
    producer.publish();
    const offset = consumer.next();
    expect(writer.apply(consumer, offset)).toBe(true);
    consumer.done(offset);
  };
  const scratch = new Scratch();
  const state = (key: string) => {
    if (writer.read(key, hashKey(key), 0, scratch) === NOT_FOUND) return 'absent';
    return (writer.foundFlags & FLAG_DIRTY) !== 0 ? 'dirty' : 'clean';
  };
  const seqOf = (key: string) => {
    expect(writer.read(key, hashKey(key), 0, scratch)).not.toBe(NOT_FOUND);
    return writer.foundSeq;
  };
  return { apply, state, seqOf };
}

describe('clean only after every record of the entry is processed', () => {
  it('keeps an acknowledged value dirty while an older delete of its key still waits in the log', () => {
    const { apply, state, seqOf } = setup();
    apply(OP_SET, 'k', 1); // record 1
    apply(OP_DELETE, 'k'); // record 2
    apply(OP_SET, 'k', 3); // record 3: the newest value
    const seq = seqOf('k');
    expect(state('k')).toBe('dirty');
    // A batch that took only record 1 sent the current value (3): Redis acknowledged it.
    apply(OP_CLEAN, 'k', undefined, seq, 1);
    expect(state('k')).toBe('dirty'); // records 2 and 3 are not processed yet
    apply(OP_DROP_CLEAN, '');
    expect(state('k')).toBe('dirty'); // so nothing may drop it
    apply(OP_CLEAN, 'k', undefined, seq, 3);
    expect(state('k')).toBe('clean');
  });

  it('never cleans an entry for a write it does not hold', () => {
    const { apply, state, seqOf } = setup();
    apply(OP_SET, 'k', 1);
    const first = seqOf('k');
    apply(OP_SET, 'k', 2);
    apply(OP_CLEAN, 'k', undefined, first, 2);
    expect(state('k')).toBe('dirty');
  });
});
