import type { RestoreStrategy } from '../restore/input.ts';

const GiB = 1024 ** 3;

/*
 * The product's defaults, one row each: what applies when the configuration, the construct's props, a
 * workflow input, an environment variable or a CLI flag says nothing. The infrastructure, the functions
 * and the CLI import them from here; no other code spells these values. Step facts (each function's
 * memory and timeout, grants) stay in the step table, `step-table.ts`. docs/design.md § Product defaults.
 */

/** Catalog key prefix in the bucket: keeps our keys apart from anything else in a shared bucket. */
export const DEFAULT_CATALOG_PREFIX = 'backups';

/**
 * The bucket's lifecycle expires what a killed execution left in the catalog's work areas (chain
 * documents, Fargate results, VM descriptions holding NVRAM and vTPM state) after this many days: longer
 * than any execution runs (a 16 TiB export at 100 MB/s takes two days).
 */
export const WORK_AREA_EXPIRY_DAYS = 7;

/** VDIs one backup execution exports at once when neither input nor configuration says: a light load. */
export const DEFAULT_BACKUP_CONCURRENCY = 2;

/** Transfers expected to reach this size go to Fargate: about what a Lambda moves in 14 min at 40 MB/s. */
export const DEFAULT_FARGATE_THRESHOLD_BYTES = 32 * GiB;

/** A transfer whose host sends (or takes) nothing for this long fails, instead of running out the clock. */
export const DEFAULT_STALL_TIMEOUT_MS = 60_000;

/** One XAPI call (JSON-RPC request and answer): a master that has not answered by then is not going to. */
export const DEFAULT_XAPI_CALL_TIMEOUT_MS = 30_000;

/** An export's task after its body ended: the host finishes the task before it closes the socket. */
export const DEFAULT_EXPORT_TASK_TIMEOUT_MS = 60_000;

/** An import's task after its body was sent: the host may still be writing the last blocks. */
export const DEFAULT_IMPORT_TASK_TIMEOUT_MS = 600_000;

/** S3 parts uploading at once: the host is read on while parts upload (measured: § Product defaults). */
export const DEFAULT_PARTS_IN_FLIGHT = 4;

/** The series lock's lifetime: no run outlives XAPI's 24 h transfer limit; only a dead run's lock expires. */
export const DEFAULT_LOCK_TTL_SECONDS = 25 * 3600;

/**
 * A running transfer records its progress this often (docs/design.md § Progress of deployed transfers): a
 * few times a minute, 240 writes an hour per transfer.
 */
export const PROGRESS_INTERVAL_MS = 15_000;

/** What a killed transfer left of its progress expires (the table's TTL) this long after its last update. */
export const PROGRESS_TTL_SECONDS = 24 * 3600;

/** How often `watch` reads a deployed execution's progress records. */
export const PROGRESS_POLL_MS = 5_000;

/** `watch` calls a transfer stalled when its progress has not moved on for this long: four missed updates. */
export const PROGRESS_STALE_AFTER_MS = 4 * PROGRESS_INTERVAL_MS;

/** The "no successful backup" alarm, when jobs are scheduled: a daily job plus two hours of slack. */
export const DEFAULT_NO_SUCCESSFUL_BACKUP_HOURS = 26;

/** How a restore imports the chain: replay measured faster than merge on loopback (README § Performance). */
export const DEFAULT_RESTORE_STRATEGY: RestoreStrategy = 'replay';

/** The CDK app's stack id, which the CLI reads outputs from unless `--stack` names another. */
export const DEFAULT_STACK_NAME = 'VdiVault';

/** `--local`: the pool name in catalog keys when `--pool` is not given. */
export const DEFAULT_LOCAL_POOL = 'local';

/** `--local`: the XAPI user, XenServer's administrator. */
export const DEFAULT_XAPI_USER = 'root';

/** `--local`: where execution logs go (`watch --local` reads them), relative to the working directory. */
export const DEFAULT_STATE_DIR = '.vdi-vault/executions';
