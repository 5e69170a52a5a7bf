// Consistency across processes sharing one real Redis: each child process
// (fixtures/consistency-proc.mjs, forked) has its own ShardCache, and some run
// an attached worker thread as well.
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { waitUntil } from '../support/poll.js';
import { isStopped, sendStopSignal } from '../support/processes.js';
import { redisCli } from '../support/redis-cli.js';
import { redisFixture } from '../support/redis-fixture.js';

const FIXTURE = fileURLToPath(new URL('./fixtures/consistency-proc.mjs', import.meta.url));

interface Reply { id?: number; ok?: boolean; value?: unknown; error?: { code?: string; message: string }; ready?: boolean }
interface Hold { start: number; end: number; fence: number; released: boolean }
interface Tried { ok: boolean; fence?: number; code?: string; acquiredAt?: number; waitedMs: number }
interface Counted { values: number[]; increasing: boolean }

class Child {
  private nextId = 1;
  private constructor(readonly process: ChildProcess) {}

  get pid(): number {
    return this.process.pid!;
  }

  static async start(init: Record<string, unknown>): Promise<Child> {
    const proc = fork(FIXTURE, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    await new Promise<void>((resolve, reject) => {
      const onReady = (message: Reply) => {
        if (!message.ready) return;
        proc.off('message', onReady);
        resolve();
      };
      proc.on('message', onReady);
      proc.once('exit', (code, signal) => reject(new Error(`child exited before ready (${code ?? signal})`)));
      proc.once('error', reject);
    });
    const child = new Child(proc);
    children.add(child);
    await child.command({ cmd: 'init', ...init });
    return child;
  }

  command<T>(message: Record<string, unknown>): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const onExit = (code: number | null, signal: string | null) => reject(new Error(`child ${this.pid} exited (${code ?? signal}) during ${String(message.cmd)}`));
      const onMessage = (reply: Reply) => {
        if (reply.id !== id) return;
        this.process.off('message', onMessage);
        this.process.off('exit', onExit);
        if (reply.ok) resolve(reply.value as T);
        else reject(Object.assign(new Error(reply.error!.message), { code: reply.error!.code }));
      };
      this.process.on('message', onMessage);
      this.process.once('exit', onExit);
      this.process.send({ id, ...message });
    });
  }

  run<T>(task: Record<string, unknown>): Promise<T> {
    return this.command<T>({ cmd: 'run', task });
  }

  runAll<T>(task: Record<string, unknown>): Promise<T[]> {
    return this.command<T[]>({ cmd: 'runAll', task });
  }

  async close(): Promise<void> {
    children.delete(this);
    if (this.process.exitCode !== null || this.process.signalCode !== null) return;
    const exited = new Promise((resolve) => this.process.once('exit', resolve));
    try {
      this.process.kill('SIGCONT');
      await this.command({ cmd: 'close' });
    } catch {
      this.process.kill('SIGKILL');
    }
    await exited;
  }
}

const children = new Set<Child>();

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

describe('consistency across processes sharing one Redis', () => {
  const redis = redisFixture();
  let prefixN = 0;
  const prefix = () => `cons${++prefixN}:`;

  afterEach(async () => {
    await Promise.allSettled([...children].map((c) => c.close()));
  });

  /** The value of `key` as a fresh process-less reader sees it in Redis. */
  async function readFresh(keyPrefix: string, key: string): Promise<unknown> {
    const { cache: reader } = await redis.cacheOn({ shards: 1, redis: { keyPrefix, writeBehind: false, invalidation: false } });
    return reader.fetch(key);
  }

  it('update from 3 processes x 2 threads, 100 rounds each, ends at exactly 600 in Redis', async () => {
    const keyPrefix = prefix();
    const procs = await Promise.all([0, 1, 2].map(() => Child.start({ url: redis.url, keyPrefix, threads: 1 })));
    const perProcess = await Promise.all(procs.map((p) => p.runAll<Counted>({
      op: 'update', key: 'counter', m: 100, numeric: true, lockOptions: { ttlMs: 5_000, waitMs: 60_000 },
    })));
    const results = perProcess.flat();
    expect(results).toHaveLength(6);
    for (const r of results) expect(r.increasing).toBe(true);
    // Each update saw the previous one's value: 1..600, each exactly once.
    expect(results.flatMap((r) => r.values).sort((a, b) => a - b)).toEqual(Array.from({ length: 600 }, (_, i) => i + 1));
    expect(await readFresh(keyPrefix, 'counter')).toBe(600);
  }, 80_000);

  it('lock from 3 processes x 2 threads: holds never overlap, fences increase in time order, a non-atomic counter ends at 600', async () => {
    const keyPrefix = prefix();
    const procs = await Promise.all([0, 1, 2].map(() => Child.start({ url: redis.url, keyPrefix, threads: 1 })));
    const plainKey = `${keyPrefix}plain-counter`;
    const perProcess = await Promise.all(procs.map((p) => p.runAll<Hold[]>({
      op: 'holds', key: 'counter', rounds: 100, ttlMs: 5_000, waitMs: 60_000, plainUrl: redis.url, plainKey,
    })));
    const holds = perProcess.flat(2).sort((a, b) => a.start - b.start);
    expect(holds).toHaveLength(600);
    for (const h of holds) expect(h.released).toBe(true);
    for (let i = 1; i < holds.length; i++) {
      const [prev, next] = [holds[i - 1]!, holds[i]!];
      expect(prev.end, `hold ${i - 1} [${prev.start}, ${prev.end}] overlaps hold ${i} [${next.start}, ${next.end}]`).toBeLessThanOrEqual(next.start);
      expect(next.fence).toBeGreaterThan(prev.fence);
    }
    expect(await redisCli(redis.port, 'GET', plainKey)).toBe('600\n');
  }, 80_000);

  it('a SIGSTOPped holder loses the lock after its TTL; on SIGCONT it can neither extend nor release it', async () => {
    const keyPrefix = prefix();
    const [a, b] = await Promise.all([0, 1].map(() => Child.start({ url: redis.url, keyPrefix })));
    const first = await a!.run<Tried>({ op: 'tryLock', key: 'job', ttlMs: 500, waitMs: 1_000, name: 'job' });
    expect(first.ok).toBe(true);
    try {
      await sendStopSignal(a!.pid, 'SIGSTOP');
      const second = await b!.run<Tried>({ op: 'tryLock', key: 'job', ttlMs: 10_000, waitMs: 5_000, name: 'job' });
      expect(second.ok).toBe(true);
      expect(second.fence).toBeGreaterThan(first.fence!);
      expect(second.acquiredAt! - first.acquiredAt!).toBeGreaterThanOrEqual(450);
      expect(isStopped(a!.pid)).toBe(true);
    } finally {
      process.kill(a!.pid, 'SIGCONT');
    }
    const holderToken = await redisCli(redis.port, 'GET', `${keyPrefix}lock:{job}`);
    expect(holderToken.trim()).toMatch(/^[0-9a-f]{32}$/);
    expect(await a!.run({ op: 'extend', name: 'job', ms: 10_000 })).toEqual({ ok: false, lost: true });
    expect(await a!.run({ op: 'release', name: 'job' })).toBe(false);
    // B still holds it: the key is unchanged and B can extend it.
    expect(await redisCli(redis.port, 'GET', `${keyPrefix}lock:{job}`)).toBe(holderToken);
    expect(await b!.run({ op: 'extend', name: 'job', ms: 10_000 })).toEqual({ ok: true, lost: false });
    expect(await b!.run({ op: 'release', name: 'job' })).toBe(true);
    expect(await redisCli(redis.port, 'EXISTS', `${keyPrefix}lock:{job}`)).toBe('0\n');
  }, 30_000);

  /**
   * Makes `child` hold local copies of `keys`. A fetch whose key's invalidation
   * (here: of the write that created it) arrives while the read is in flight
   * returns the value without caching it, by design; fetch again until cached.
   */
  async function holdLocally(child: Child, keys: string[]): Promise<void> {
    await waitUntil(`${keys.length} key(s) to be held locally`, async () => {
      const present = await child.run<boolean[]>({ op: 'present', keys });
      if (present.every(Boolean)) return true;
      await child.run({ op: 'fetchAll', keys: keys.filter((_, i) => !present[i]) });
      return false;
    }, { timeoutMs: 10_000, intervalMs: 10 });
  }

  it('a write flushed by one process invalidates the local copies of another (200 keys, delay printed)', async () => {
    const keyPrefix = prefix();
    const [p1, p2] = await Promise.all([0, 1].map(() => Child.start({ url: redis.url, keyPrefix })));
    const keys = Array.from({ length: 200 }, (_, i) => `k${i}`);
    await p1!.run({ op: 'setAll', entries: keys.map((k) => [k, `old-${k}`]) });
    expect(await p2!.run({ op: 'fetchAll', keys })).toEqual(keys.map((k) => `old-${k}`));
    await holdLocally(p2!, keys);

    const watching = p2!.run<(number | null)[]>({ op: 'watchGone', keys, timeoutMs: 30_000 });
    const flushedAt = await p1!.run<number[]>({ op: 'setEach', entries: keys.map((k) => [k, `new-${k}`]) });
    const goneAt = await watching;
    const delays = keys.map((k, i) => {
      expect(goneAt[i], `P2 still has ${k} locally`).not.toBeNull();
      return goneAt[i]! - flushedAt[i]!;
    });
    for (const d of delays) expect(d).toBeLessThanOrEqual(2_000);
    const sorted = [...delays].sort((x, y) => x - y);
    console.log(`invalidation delay after flush() resolved (ms, ${delays.length} keys): p50 ${percentile(sorted, 50).toFixed(2)}, p99 ${percentile(sorted, 99).toFixed(2)}, max ${sorted.at(-1)!.toFixed(2)}`);
    expect(await p2!.run({ op: 'fetchAll', keys })).toEqual(keys.map((k) => `new-${k}`));
  }, 60_000);

  it('a lost invalidation (pub/sub connection killed) leaves no stale value once the subscriber reconnects', async () => {
    const keyPrefix = prefix();
    const [p1, p2] = await Promise.all([0, 1].map(() => Child.start({ url: redis.url, keyPrefix })));
    await p1!.run({ op: 'setAll', entries: [['k', 'v1']] });
    expect(await p2!.run({ op: 'fetch', key: 'k' })).toBe('v1');
    await holdLocally(p2!, ['k']);

    const subscribers = async () => (await redisCli(redis.port, 'CLIENT', 'LIST', 'TYPE', 'pubsub')).split('\n').filter((l) => l.includes('sub=')).length;
    expect(await subscribers()).toBe(2);
    await redisCli(redis.port, 'CLIENT', 'KILL', 'TYPE', 'pubsub');
    // Written while the subscribers are (very likely) still away: its invalidation may be lost.
    await p1!.run({ op: 'setAll', entries: [['k', 'v2']] });
    // For the record: how many subscribers were back when the write was published.
    console.log(`subscribers connected right after the write: ${await subscribers()} of 2`);
    await waitUntil('both subscribers to reconnect', async () => (await subscribers()) === 2, { timeoutMs: 10_000, intervalMs: 20 });
    await waitUntil("P2's local copy of k to be dropped", async () => (await p2!.run({ op: 'get', key: 'k' })) === undefined, { timeoutMs: 5_000, intervalMs: 10 });
    expect(await p2!.run({ op: 'fetch', key: 'k' })).toBe('v2');
  }, 30_000);
});
