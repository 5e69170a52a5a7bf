import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { trackDir } from './processes.js';

/** A fresh temp dir, removed when the test process exits (not on stop, so restarts can reuse it). */
export function makeTempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), `shardcache-${prefix}-`));
  trackDir(dir);
  return dir;
}
