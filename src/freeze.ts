/**
 * Deep-freezing the values a near cache shares: one decoded value is handed
 * to every `get` of its key on the thread, so it must be immutable. Plain
 * objects and arrays (and primitives) can be made so; values holding Buffers,
 * typed arrays, Maps, Sets, Dates or class instances cannot (freezing does
 * not protect their contents), and are refused untouched.
 */
/** Deep-freezes `value` if every part of it can be made immutable. Returns whether it did. */
export function freezeIfShareable(value: unknown): boolean {
  if (value === null || typeof value !== 'object') return true;
  // Check everything before freezing anything: a value that turns out not to
  // be shareable is returned to the caller untouched.
  if (!isPlain(value, 0)) return false;
  deepFreeze(value);
  return true;
}

const MAX_DEPTH = 32;

function isPlain(value: object, depth: number): boolean {
  if (depth > MAX_DEPTH) return false;
  const proto = Object.getPrototypeOf(value);
  // Arrays by index: for-in over an array makes a string per index, and
  // measured three times the cost of the whole check for a small object.
  if (Array.isArray(value)) {
    if (proto !== Array.prototype) return false;
    for (let i = 0; i < value.length; i++) {
      const item: unknown = value[i];
      if (item !== null && typeof item === 'object' && !isPlain(item, depth + 1)) return false;
    }
    return true;
  }
  if (proto !== Object.prototype && proto !== null) return false;
  for (const k in value) {
    const item: unknown = (value as Record<string, unknown>)[k];
    if (item !== null && typeof item === 'object' && !isPlain(item, depth + 1)) return false;
  }
  return true;
}

function deepFreeze(value: object): void {
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const item: unknown = value[i];
      if (item !== null && typeof item === 'object') deepFreeze(item);
    }
  } else {
    for (const k in value) {
      const item: unknown = (value as Record<string, unknown>)[k];
      if (item !== null && typeof item === 'object') deepFreeze(item);
    }
  }
  Object.freeze(value);
}
