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
