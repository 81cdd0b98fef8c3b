import { readFileSync } from 'node:fs';

/** One XAPI pool the deployment backs up. */
export interface PoolConfig {
  /** Short name used in inputs and S3 keys. */
  readonly name: string;
  /** The pool master's URL, e.g. `https://xcp-master.example.com`. */
  readonly url: string;
  /** Secrets Manager secret (name or ARN) holding `{"username","password"}`. */
  readonly secret: string;
  /** PEM of the pool's CA or self-signed certificate. Default: the system CA store. */
  readonly caCertificate?: string;
  /** SHA-256 fingerprint of the host certificate, instead of a CA. */
  readonly pinnedSha256?: string;
}

export interface VdiVaultConfig {
  readonly pools: readonly PoolConfig[];
  /** Key prefix of the catalog in the bucket. Default `backups`. */
  readonly prefix?: string;
  /** VDIs backed up at once in one execution. Default 2. */
  readonly concurrency?: number;
}

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  constructor(field: string, problem: string) {
    super(`config ${field}: ${problem}`);
  }
}

/** Validates a configuration; each error names the field. */
export function parseConfig(value: unknown): VdiVaultConfig {
  const config = value as Partial<VdiVaultConfig>;
  if (typeof config !== 'object' || config === null) throw new ConfigError('(root)', 'must be an object');
  if (!Array.isArray(config.pools) || config.pools.length === 0) {
    throw new ConfigError('pools', 'list at least one pool ({name, url, secret})');
  }
  const names = new Set<string>();
  config.pools.forEach((pool: Partial<PoolConfig>, index) => {
    const at = `pools[${index}]`;
    if (typeof pool.name !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/.test(pool.name)) {
      throw new ConfigError(`${at}.name`, 'must be letters, digits, dot, dash or underscore');
    }
    if (names.has(pool.name)) throw new ConfigError(`${at}.name`, `"${pool.name}" is used twice`);
    names.add(pool.name);
    if (typeof pool.url !== 'string' || !/^https?:\/\/[^/]+\/?$/.test(pool.url)) {
      throw new ConfigError(`${at}.url`, 'must be the master URL, e.g. "https://xcp-master.example.com"');
    }
    if (typeof pool.secret !== 'string' || pool.secret === '') {
      throw new ConfigError(
        `${at}.secret`,
        'name or ARN of a Secrets Manager secret holding {"username","password"}',
      );
    }
  });
  if (
    config.concurrency !== undefined &&
    !(Number.isInteger(config.concurrency) && config.concurrency >= 1 && config.concurrency <= 40)
  ) {
    throw new ConfigError('concurrency', 'must be an integer from 1 to 40');
  }
  if (
    config.prefix !== undefined &&
    (typeof config.prefix !== 'string' || config.prefix.startsWith('/') || config.prefix.endsWith('/'))
  ) {
    throw new ConfigError('prefix', 'must be a key prefix without leading or trailing slash');
  }
  return config as VdiVaultConfig;
}

export function loadConfigFile(path: string): VdiVaultConfig {
  return parseConfig(JSON.parse(readFileSync(path, 'utf8')));
}
