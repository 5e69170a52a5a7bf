// What a test reads from a server to check the traffic the cache caused:
// command counts from INFO commandstats, and the number of keys.
import { expect } from 'vitest';
import { redisCli } from './redis-cli.js';

/** `cmdstat_<command>:calls=` from INFO commandstats, 0 if the command was not called since the last CONFIG RESETSTAT. */
export async function commandCalls(port: number, command: string): Promise<number> {
  const info = await redisCli(port, 'INFO', 'commandstats');
  const match = new RegExp(`^cmdstat_${command}:calls=(\\d+)`, 'm').exec(info);
  return match ? Number(match[1]) : 0;
}

/** CONFIG RESETSTAT: command counts start again from 0. */
export async function resetStats(port: number): Promise<void> {
  expect(await redisCli(port, 'CONFIG', 'RESETSTAT')).toBe('OK\n');
}

export async function dbsize(port: number): Promise<number> {
  return Number((await redisCli(port, 'DBSIZE')).trim());
}
