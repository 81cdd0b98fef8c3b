import type { RetentionPolicy } from '../../lambdas/catalog/retention.ts';
import type { BackupJob } from '../constructs/backup-triggers.ts';
import { JOB_NAME_PATTERN, parseBackupInput } from '../../lambdas/backup/input.ts';
import { InputValidationError } from '../../lambdas/shared/input-error.ts';
import { readFileSync } from 'node:fs';
import { ConfigError, expectArray, expectObject, optional, rejectUnknown } from './config-fields.ts';

export { ConfigError } from './config-fields.ts';

/** One XAPI pool the deployment backs up. */
export interface PoolConfig {
  /** Short name used in inputs, jobs and S3 keys. */
  readonly name: string;
  /** The pool master's URL, e.g. `https://xcp-master.example.com`. */
  readonly url: string;
  /** Secrets Manager secret (name or complete ARN) holding `{"username","password"}`. */
  readonly secret: string;
  /** PEM of the pool's CA or self-signed certificate. Default: the system CA store. */
  readonly caCertificate?: string;
  /** SHA-256 fingerprint of the host certificate (hex, colons allowed), instead of a CA. Default: none. */
  readonly pinnedSha256?: string;
}

/** Where the functions run to reach the pools' management interfaces. Default: outside any VPC. */
export interface NetworkConfig {
  readonly vpcId: string;
  /** Private subnets with a route to the pools (and to S3, Secrets Manager, CloudWatch: NAT or endpoints). */
  readonly subnetIds: readonly string[];
  /** An existing security group for the functions. Default: a new one allowing egress to the pools' ports and 443 only. */
  readonly securityGroupId?: string;
}

/** Retention of a job's backups: passed in the job's backup input. */
export type RetentionConfig = RetentionPolicy;

/** A scheduled backup of some VDIs of one pool: the construct's own job type. */
export type JobConfig = BackupJob;

export type ObjectLockMode = 'GOVERNANCE' | 'COMPLIANCE';
export type UploadChecksum = 'CRC32' | 'SHA256';

/** The backup bucket. Default: a new bucket, SSE-KMS with the deployment's key, versioned, no Object Lock. */
export interface BucketConfig {
  /** Use this existing bucket instead of creating one. Default: a new bucket. */
  readonly existingBucketName?: string;
  /** KMS key (ARN) the existing bucket encrypts with; the functions get to use it. Default: none (SSE-S3). */
  readonly existingKeyArn?: string;
  /** Default retention with S3 Object Lock on a new bucket, making backups immutable. Default: no lock. */
  readonly objectLock?: { readonly mode: ObjectLockMode; readonly days: number };
  /** Per-part checksum on uploads (Object Lock requires one). Default: `CRC32` with Object Lock, else none. */
  readonly uploadChecksum?: UploadChecksum;
  /** Server access logs into a second bucket (new bucket only). Default true. */
  readonly accessLogs?: boolean;
}

/** Who hears about failed executions and alarms. Default: a new topic without subscriptions. */
export interface NotificationsConfig {
  /** Subscribed by e-mail (each must confirm). Default none. */
  readonly emails?: readonly string[];
  /** Publish to this existing topic instead of a new one. Default: a new, KMS-encrypted topic. */
  readonly existingTopicArn?: string;
}

export interface AlarmsConfig {
  /** Alarm when no backup execution succeeded for this many hours (1 to 168). Default 26; only with jobs. */
  readonly noSuccessfulBackupHours?: number;
}

export interface VdiVaultConfig {
  readonly pools: readonly PoolConfig[];
  /** Key prefix of the catalog in the bucket. Default `backups`. */
  readonly prefix?: string;
  /** VDIs backed up at once in one execution. Default: the largest job concurrency, else 2. */
  readonly concurrency?: number;
  readonly network?: NetworkConfig;
  /** Default: no schedules (backups start by event, console or CLI). */
  readonly jobs?: readonly JobConfig[];
  readonly bucket?: BucketConfig;
  readonly notifications?: NotificationsConfig;
  readonly alarms?: AlarmsConfig;
  /**
   * Transfers expected to reach this many GiB run as an ECS Fargate task instead of a Lambda (which stops
   * after 15 minutes). Default 32: about what a Lambda moves in 14 minutes at 40 MB/s.
   */
  readonly fargateThresholdGiB?: number;
  /** A transfer whose host sends (or takes) nothing for this long fails. Default 60. */
  readonly stallTimeoutSeconds?: number;
  /** A CloudWatch dashboard of the vault (output `DashboardUrl`); `false` leaves it out. Default true. */
  readonly dashboard?: boolean;
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;
const JOB_NAME = JOB_NAME_PATTERN;
const SCHEDULE =
  /^(cron\(.+\)|rate\(\d+ (minute|minutes|hour|hours|day|days)\)|at\(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\))$/;
const SHA256_HEX = /^([0-9a-f]{2}:?){31}[0-9a-f]{2}$/i;
const EMAIL = /^[^@\s]+@[^@\s]+\.[^@\s]+$/;

/** Validates a configuration; each error names the field. */
export function parseConfig(value: unknown): VdiVaultConfig {
  const config = expectObject(value, '(root)');
  rejectUnknown(config, '(root)', [
    'pools',
    'prefix',
    'concurrency',
    'network',
    'jobs',
    'bucket',
    'notifications',
    'alarms',
    'fargateThresholdGiB',
    'stallTimeoutSeconds',
    'dashboard',
  ]);
  const pools = expectArray(config.pools, 'pools', 'list at least one pool ({name, url, secret})');
  if (pools.length === 0) throw new ConfigError('pools', 'list at least one pool ({name, url, secret})');
  const names = new Set<string>();
  pools.forEach((raw, index) => {
    const at = `pools[${index}]`;
    const pool = expectObject(raw, at);
    rejectUnknown(pool, at, ['name', 'url', 'secret', 'caCertificate', 'pinnedSha256']);
    if (typeof pool.name !== 'string' || !NAME.test(pool.name)) {
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
    if (
      pool.secret.startsWith('arn:') &&
      !/^arn:[\w-]+:secretsmanager:[\w-]+:\d{12}:secret:.+-[A-Za-z0-9]{6}$/.test(pool.secret)
    ) {
      throw new ConfigError(`${at}.secret`, 'an ARN must be the complete secret ARN (ending in -XXXXXX)');
    }
    optional(pool.caCertificate, `${at}.caCertificate`, (pem) =>
      typeof pem === 'string' && pem.includes('-----BEGIN CERTIFICATE-----')
        ? undefined
        : 'must be a PEM certificate (-----BEGIN CERTIFICATE-----)',
    );
    optional(pool.pinnedSha256, `${at}.pinnedSha256`, (pin) =>
      typeof pin === 'string' && SHA256_HEX.test(pin) ? undefined : 'must be a SHA-256 fingerprint in hex',
    );
  });

  optional(config.concurrency, 'concurrency', concurrencyProblem);
  optional(config.fargateThresholdGiB, 'fargateThresholdGiB', (gib) =>
    typeof gib === 'number' && gib >= 0 && gib <= 2048 ? undefined : 'must be a number of GiB from 0 to 2048',
  );
  optional(config.stallTimeoutSeconds, 'stallTimeoutSeconds', (seconds) =>
    typeof seconds === 'number' && seconds > 0 && seconds <= 3600
      ? undefined
      : 'must be a number of seconds from 0 (exclusive) to 3600',
  );
  optional(config.dashboard, 'dashboard', (dashboard) =>
    typeof dashboard === 'boolean'
      ? undefined
      : `must be true or false, not ${JSON.stringify(dashboard)} ("dashboard": false leaves the dashboard out)`,
  );
  optional(config.prefix, 'prefix', (prefix) =>
    typeof prefix === 'string' && prefix !== '' && !prefix.startsWith('/') && !prefix.endsWith('/')
      ? undefined
      : 'must be a key prefix without leading or trailing slash',
  );
  if (config.network !== undefined) parseNetwork(config.network);
  if (config.jobs !== undefined) parseJobs(config.jobs, names);
  if (config.bucket !== undefined) parseBucket(config.bucket);
  if (config.notifications !== undefined) parseNotifications(config.notifications);
  if (config.alarms !== undefined) {
    const alarms = expectObject(config.alarms, 'alarms');
    rejectUnknown(alarms, 'alarms', ['noSuccessfulBackupHours']);
    optional(alarms.noSuccessfulBackupHours, 'alarms.noSuccessfulBackupHours', (hours) =>
      Number.isInteger(hours) && (hours as number) >= 1 && (hours as number) <= 168
        ? undefined
        : 'must be a whole number of hours from 1 to 168 (CloudWatch evaluates at most 7 days)',
    );
  }
  return config as unknown as VdiVaultConfig;
}

function concurrencyProblem(value: unknown): string | undefined {
  return Number.isInteger(value) && (value as number) >= 1 && (value as number) <= 40
    ? undefined
    : 'must be an integer from 1 to 40';
}

function parseNetwork(value: unknown): void {
  const network = expectObject(value, 'network');
  rejectUnknown(network, 'network', ['vpcId', 'subnetIds', 'securityGroupId']);
  if (typeof network.vpcId !== 'string' || !/^vpc-[0-9a-f]{8,17}$/.test(network.vpcId)) {
    throw new ConfigError('network.vpcId', 'must be a VPC id such as "vpc-0123456789abcdef0"');
  }
  const subnets = expectArray(network.subnetIds, 'network.subnetIds', 'list the subnets the functions use');
  if (subnets.length === 0) throw new ConfigError('network.subnetIds', 'list at least one subnet');
  subnets.forEach((subnet, index) => {
    if (typeof subnet !== 'string' || !/^subnet-[0-9a-f]{8,17}$/.test(subnet)) {
      throw new ConfigError(
        `network.subnetIds[${index}]`,
        'must be a subnet id such as "subnet-0123456789abcdef0"',
      );
    }
  });
  optional(network.securityGroupId, 'network.securityGroupId', (id) =>
    typeof id === 'string' && /^sg-[0-9a-f]{8,17}$/.test(id)
      ? undefined
      : 'must be a security group id ("sg-…")',
  );
}

function parseJobs(value: unknown, pools: ReadonlySet<string>): void {
  const jobs = expectArray(value, 'jobs', 'must be a list of jobs');
  const names = new Set<string>();
  jobs.forEach((raw, index) => {
    const at = `jobs[${index}]`;
    const job = expectObject(raw, at);
    rejectUnknown(job, at, [
      'name',
      'pool',
      'vdiUuids',
      'vmUuids',
      'tags',
      'schedule',
      'timezone',
      'mode',
      'concurrency',
      'retention',
      'enabled',
    ]);
    if (typeof job.name !== 'string' || !JOB_NAME.test(job.name)) {
      throw new ConfigError(`${at}.name`, 'must be 1 to 48 letters, digits, dash or underscore');
    }
    if (names.has(job.name)) throw new ConfigError(`${at}.name`, `"${job.name}" is used twice`);
    names.add(job.name);
    if (typeof job.pool !== 'string' || !pools.has(job.pool)) {
      throw new ConfigError(`${at}.pool`, `must name a configured pool (${[...pools].join(', ')})`);
    }
    // What the job backs up: disks, VMs by uuid and VMs by tag, checked as the backup input is.
    if (job.vdiUuids === undefined && job.vmUuids === undefined && job.tags === undefined) {
      throw new ConfigError(
        `${at}.vdiUuids`,
        'is missing: give vdiUuids, vmUuids or tags (a job must back something up)',
      );
    }
    try {
      parseBackupInput({
        ...(job.vdiUuids !== undefined ? { vdiUuids: job.vdiUuids } : {}),
        ...(job.vmUuids !== undefined ? { vmUuids: job.vmUuids } : {}),
        ...(job.tags !== undefined ? { tags: job.tags } : {}),
      });
    } catch (error) {
      if (error instanceof InputValidationError) {
        throw new ConfigError(`${at}.${error.field}`, error.message.slice(error.field.length + 2));
      }
      throw error;
    }
    if (typeof job.schedule !== 'string' || !SCHEDULE.test(job.schedule)) {
      throw new ConfigError(
        `${at}.schedule`,
        'must be an EventBridge Scheduler expression: "cron(0 2 * * ? *)", "rate(1 day)" or "at(2026-01-01T02:00:00)"',
      );
    }
    optional(job.timezone, `${at}.timezone`, (zone) =>
      isTimeZone(zone) ? undefined : 'must be an IANA time zone such as "Europe/Paris"',
    );
    optional(job.mode, `${at}.mode`, (mode) =>
      mode === 'auto' || mode === 'full' ? undefined : 'must be "auto" or "full"',
    );
    optional(job.concurrency, `${at}.concurrency`, concurrencyProblem);
    optional(job.enabled, `${at}.enabled`, (enabled) =>
      typeof enabled === 'boolean' ? undefined : 'must be true or false',
    );
    if (job.retention !== undefined) {
      const retention = expectObject(job.retention, `${at}.retention`);
      rejectUnknown(retention, `${at}.retention`, ['keep', 'fullEvery']);
      for (const field of ['keep', 'fullEvery'] as const) {
        const n = retention[field];
        if (field === 'fullEvery' && n === undefined) continue;
        if (!Number.isInteger(n) || (n as number) < 1 || (n as number) > 1000) {
          throw new ConfigError(`${at}.retention.${field}`, 'must be an integer from 1 to 1000');
        }
      }
    }
  });
}

function parseBucket(value: unknown): void {
  const bucket = expectObject(value, 'bucket');
  rejectUnknown(bucket, 'bucket', [
    'existingBucketName',
    'existingKeyArn',
    'objectLock',
    'uploadChecksum',
    'accessLogs',
  ]);
  optional(bucket.existingBucketName, 'bucket.existingBucketName', (name) =>
    typeof name === 'string' && /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(name)
      ? undefined
      : 'must be an S3 bucket name',
  );
  optional(bucket.existingKeyArn, 'bucket.existingKeyArn', (arn) =>
    typeof arn === 'string' && /^arn:[\w-]+:kms:[\w-]+:\d{12}:key\/[\w-]+$/.test(arn)
      ? bucket.existingBucketName === undefined
        ? 'only applies with existingBucketName (a new bucket uses the deployment key)'
        : undefined
      : 'must be a KMS key ARN ("arn:aws:kms:<region>:<account>:key/<id>")',
  );
  if (bucket.objectLock !== undefined) {
    const lock = expectObject(bucket.objectLock, 'bucket.objectLock');
    rejectUnknown(lock, 'bucket.objectLock', ['mode', 'days']);
    if (bucket.existingBucketName !== undefined) {
      throw new ConfigError(
        'bucket.objectLock',
        'configure Object Lock on the existing bucket itself and set bucket.uploadChecksum',
      );
    }
    if (lock.mode !== 'GOVERNANCE' && lock.mode !== 'COMPLIANCE') {
      throw new ConfigError('bucket.objectLock.mode', 'must be "GOVERNANCE" or "COMPLIANCE"');
    }
    if (!Number.isInteger(lock.days) || (lock.days as number) < 1 || (lock.days as number) > 36500) {
      throw new ConfigError('bucket.objectLock.days', 'must be a whole number of days from 1 to 36500');
    }
  }
  optional(bucket.uploadChecksum, 'bucket.uploadChecksum', (algorithm) =>
    algorithm === 'CRC32' || algorithm === 'SHA256' ? undefined : 'must be "CRC32" or "SHA256"',
  );
  optional(bucket.accessLogs, 'bucket.accessLogs', (enabled) =>
    typeof enabled !== 'boolean'
      ? 'must be true or false'
      : enabled && bucket.existingBucketName !== undefined
        ? 'only applies to a new bucket'
        : undefined,
  );
}

function parseNotifications(value: unknown): void {
  const notifications = expectObject(value, 'notifications');
  rejectUnknown(notifications, 'notifications', ['emails', 'existingTopicArn']);
  if (notifications.emails !== undefined) {
    const emails = expectArray(
      notifications.emails,
      'notifications.emails',
      'must be a list of e-mail addresses',
    );
    emails.forEach((email, index) => {
      if (typeof email !== 'string' || !EMAIL.test(email)) {
        throw new ConfigError(
          `notifications.emails[${index}]`,
          `${JSON.stringify(email)} is not an e-mail address`,
        );
      }
    });
  }
  optional(notifications.existingTopicArn, 'notifications.existingTopicArn', (arn) =>
    typeof arn === 'string' && /^arn:[\w-]+:sns:[\w-]+:\d{12}:[\w-]+(\.fifo)?$/.test(arn)
      ? undefined
      : 'must be an SNS topic ARN ("arn:aws:sns:<region>:<account>:<name>")',
  );
}

function isTimeZone(zone: unknown): boolean {
  if (typeof zone !== 'string' || zone === '') return false;
  try {
    new Intl.DateTimeFormat('en', { timeZone: zone });
    return true;
  } catch {
    return false;
  }
}

export function loadConfigFile(path: string): VdiVaultConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new ConfigError('(file)', `cannot read ${path}: ${(error as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new ConfigError('(file)', `${path} is not valid JSON: ${(error as Error).message}`);
  }
  return parseConfig(json);
}
