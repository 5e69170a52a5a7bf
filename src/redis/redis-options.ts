/** Options of the Redis tier; filled in by the Redis issue. */
export interface RedisOptions {
  url?: string;
}
