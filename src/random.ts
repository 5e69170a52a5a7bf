/**
 * The next state of a xorshift32 generator (Marsaglia): three shifts, a few
 * ns. Enough for sampling and coin flips in hot paths, nothing more: it is
 * neither uniform in its low bits to a statistician's taste nor secure. The
 * state must start non-zero (and then never becomes zero).
 */
export function xorshift32(state: number): number {
  let x = state;
  x ^= x << 13;
  x ^= x >>> 17;
  x ^= x << 5;
  return x;
}
