import type * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import type { Stack } from 'aws-cdk-lib';

/** A pool as the construct takes it: the credentials stay in Secrets Manager, only Login reads them. */
export interface VaultPool {
  /** Short name used in inputs, jobs and S3 keys. */
  readonly name: string;
  /** The pool master's URL, e.g. `https://xcp-master.example.com`. */
  readonly url: string;
  /** Holds JSON `{"username", "password"}`. */
  readonly secret: secretsmanager.ISecret;
  /** PEM of the pool's CA or self-signed certificate. Default: the system CA store. */
  readonly caCertificate?: string;
  /** SHA-256 fingerprint of the host certificate, instead of a CA. Default: none. */
  readonly pinnedSha256?: string;
}

/** Lambda allows 4 KiB of environment in all; leave room for the other variables. */
const POOLS_ENVIRONMENT_LIMIT = 3_000;

/**
 * `VDI_VAULT_POOLS`: the pools by name, as `lambdas/handlers/runtime-env.ts` reads them. Refuses a value
 * that would not fit in a function's environment (CA certificates are the usual cause) at synth.
 */
export function poolsEnvironment(stack: Stack, pools: readonly VaultPool[]): string {
  const value = stack.toJsonString(
    Object.fromEntries(
      pools.map((pool) => [
        pool.name,
        {
          url: pool.url,
          secretId: pool.secret.secretArn,
          ...(pool.caCertificate ? { caPem: pool.caCertificate } : {}),
          ...(pool.pinnedSha256 ? { pinnedSha256: pool.pinnedSha256 } : {}),
        },
      ]),
    ),
  );
  // Secret ARNs are tokens here: count ~150 bytes for each ARN and the JSON around it.
  const approximateLength = pools.reduce(
    (sum, pool) =>
      sum +
      150 +
      pool.name.length +
      pool.url.length +
      JSON.stringify(pool.caCertificate ?? '').length +
      (pool.pinnedSha256?.length ?? 0),
    0,
  );
  if (approximateLength > POOLS_ENVIRONMENT_LIMIT) {
    throw new Error(
      `the pools' settings take about ${approximateLength} bytes, more than the ${POOLS_ENVIRONMENT_LIMIT} a Lambda environment leaves for them: ` +
        'pin certificate fingerprints (pinnedSha256) instead of embedding CA certificates, or split the pools across deployments',
    );
  }
  return value;
}
