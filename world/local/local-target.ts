import type { S3Endpoint } from '../../lambdas/s3/client.ts';
import type { XapiTlsOptions } from '../../lambdas/xapi/index.ts';
import type { TransferRouting } from '../../lambdas/transfer/routing.ts';

/** A pool and an S3 endpoint to run the deployed workflows against, with no AWS account. */
export interface LocalTarget {
  readonly xapi: {
    readonly url: string;
    readonly username: string;
    readonly password: string;
    readonly tls?: XapiTlsOptions;
    readonly timeoutMs?: number;
  };
  /** Default pool name `local`. */
  readonly pool?: string;
  /** S3: Swift, the embedded server, or (no endpoint) AWS itself. */
  readonly s3: S3Endpoint;
  readonly bucket: string;
  /** Default `backups`. */
  readonly prefix?: string;
  /** The series lock table on a DynamoDB-compatible server. Default: a dynalite of the deployment's own. */
  readonly lockTable?: { readonly endpoint: string; readonly tableName: string };
  /** Which transfers go to the (local) Fargate task (the configuration's `fargateThresholdGiB`). */
  readonly routing?: TransferRouting;
  /** The configuration's `stallTimeoutSeconds`, in ms. */
  readonly stallTimeoutMs?: number;
  /** Bytes of one export uploaded so far, counted at the S3 gateway. */
  readonly onExportProgress?: (vdiUuid: string, bytes: number) => void;
  /** Bytes of one layer read for import so far, counted at the S3 gateway. */
  readonly onImportProgress?: (backupId: string, bytes: number) => void;
  /** Each log line of a function or of the transfer task. Default: dropped. */
  readonly onLog?: (source: string, line: string) => void;
  /** Tests: one Lambda transfer step is killed as by its time limit when `killWhen` resolves. */
  readonly simulateLambdaTimeout?: SimulatedLambdaTimeout;
}

/** A Lambda step killed by its time limit (its environment is discarded: no clean-up runs, as in Lambda). */
export interface SimulatedLambdaTimeout {
  /** e.g. `backup.export`. */
  readonly step: string;
  readonly killWhen: () => Promise<void>;
}
