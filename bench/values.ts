/**
 * The values the scenarios store: a 20-byte string, a ~100-byte object (its
 * JSON is ~100 bytes) and a 1 KiB Buffer. Values are made before timing
 * starts; a pool of distinct values is reused across keys so the caches hold
 * many entries without the benchmark process holding one value per key.
 */

export const VALUE_KINDS = ['string', 'object', 'buffer'] as const;
export type ValueKind = (typeof VALUE_KINDS)[number];

/** Distinct values per pool: enough that values differ, few enough to stay in CPU caches' reach. */
export const POOL_SIZE = 1024;

export const VALUE_LABEL: Record<ValueKind, string> = {
  string: '20 B string',
  object: '~100 B object',
  buffer: '1 KiB Buffer',
};

export interface UserRecord {
  id: number;
  name: string;
  email: string;
  active: boolean;
  score: number;
  tags: string[];
}

/** Exactly 20 characters, different for each `i`. */
export function makeString(i: number): string {
  return `value-${String(i).padStart(14, '0')}`;
}

/** A fresh object of ~100 bytes of JSON, different for each `i`. */
export function makeObject(i: number): UserRecord {
  return {
    id: i,
    name: `user ${String(i).padStart(7, '0')}`,
    email: `u${String(i).padStart(7, '0')}@example.com`,
    active: (i & 1) === 0,
    score: (i % 1000) / 8,
    tags: ['alpha', i % 3 === 0 ? 'beta' : 'gamma'],
  };
}

/** 1024 bytes with a pattern that depends on `i`. */
export function makeBuffer(i: number): Buffer {
  const buffer = Buffer.allocUnsafe(1024);
  for (let j = 0; j < 1024; j++) buffer[j] = (i + j) & 0xff;
  return buffer;
}

export function makeValue(kind: ValueKind, i: number): unknown {
  switch (kind) {
    case 'string':
      return makeString(i);
    case 'object':
      return makeObject(i);
    case 'buffer':
      return makeBuffer(i);
  }
}

/** `POOL_SIZE` distinct values of one kind; key index `i` stores `pool[i % POOL_SIZE]`. */
export function valuePool(kind: ValueKind): unknown[] {
  return Array.from({ length: POOL_SIZE }, (_, i) => makeValue(kind, i));
}

export function parseValueKinds(text: string): ValueKind[] {
  const kinds = text.split(',').map((s) => s.trim()).filter(Boolean);
  for (const kind of kinds) {
    if (!(VALUE_KINDS as readonly string[]).includes(kind)) {
      throw new Error(`--values: unknown value kind ${JSON.stringify(kind)} (expected ${VALUE_KINDS.join(', ')})`);
    }
  }
  return kinds as ValueKind[];
}
