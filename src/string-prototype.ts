/**
 * Undoes a slowdown V8 (Node 20) falls into once any module evaluates
 * `class … extends String`, as ioredis does for RESP3 verbatim strings: from
 * then on, code it optimizes no longer inlines a method of a primitive string
 * such as `key.charCodeAt(i)`. msgpackr encodes every string under 64
 * characters with such a loop, so encoding a small object measured twice as
 * slow (957 against 516 ns), and the process's every other string loop with it.
 *
 * What restores it, measured: a property load on a String wrapper object from
 * code warm enough to have inline caches. That load makes V8 set the wrapper's
 * prototype, String.prototype, up as a fast prototype again, which is what the
 * optimizer needs to inline the method. A load on a primitive string does not
 * (its cache starts past the wrapper), and a single cold call has no cache, so
 * the loop runs a few thousand times: ~20 µs, once per thread and cache.
 *
 * Run after the String subclass exists: shard-cache.ts calls it as it loads
 * (ioredis, a dependency, has been evaluated by then) and again on every
 * create and attach, for subclasses a program loads later. It changes no
 * behaviour, only which code V8 emits; where V8 does not need it, it is a loop.
 */
const RUNS = 5000;

export function restoreStringPrototype(): void {
  const wrapper = Object('x') as { length: number };
  let sum = 0;
  for (let i = 0; i < RUNS; i++) sum += wrapper.length;
  if (sum !== RUNS) throw new Error('unreachable');
}
