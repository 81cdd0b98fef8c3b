import type { RetentionPolicy } from '../catalog/retention.ts';
import {
  InputValidationError,
  isPlainObject,
  rejectUnknownFields,
  UUID_PATTERN,
} from '../shared/input-error.ts';

export type BackupMode = 'auto' | 'full';

/** What starts a backup execution (schedule, event, console or CLI). */
export interface BackupInput {
  /** Disks by uuid. At least one of vdiUuids, vmUuids and tags must select something. */
  readonly vdiUuids?: readonly string[];
  /** Whole VMs by uuid: each backed up as a VM restore point (docs/design.md § VM backups). */
  readonly vmUuids?: readonly string[];
  /** Every VM of the pool carrying one of these tags when the run starts. */
  readonly tags?: readonly string[];
  /** Default: the deployment's default pool. */
  readonly pool?: string;
  /** `auto` (default): a delta when a base exists; `full`: always a full. */
  readonly mode?: BackupMode;
  /**
   * Keep the newest `keep` restore points, forever incremental, or with a full exported every `fullEvery`
   * backups. Default: keep all.
   */
  readonly retention?: RetentionPolicy;
  /** VDIs of this execution backed up at once (1–40). Default: the deployment's concurrency. */
  readonly concurrency?: number;
  /** The job whose schedule starts the run (set by the schedule): its metrics carry the name. Default none. */
  readonly job?: string;
}

/** A job's name (the configuration's `jobs[].name`, and the backup input's `job`). */
export const JOB_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_-]{0,47}$/;

const EXAMPLE = '{"vdiUuids":["<vdi uuid>"],"mode":"auto"} or {"tags":["backup-nightly"]}';
/** At most this many VDIs, and this many VMs, per execution. */
export const MAX_UUIDS_PER_EXECUTION = 100;

export interface ParsedBackupInput {
  readonly vdiUuids: readonly string[];
  readonly vmUuids: readonly string[];
  readonly tags: readonly string[];
  readonly mode: BackupMode;
  readonly pool?: string;
  readonly retention?: RetentionPolicy;
  readonly concurrency?: number;
  readonly job?: string;
}

export function parseBackupInput(raw: unknown): ParsedBackupInput {
  if (!isPlainObject(raw)) {
    throw new InputValidationError('input', 'must be a JSON object', `Example: ${EXAMPLE}`);
  }
  rejectUnknownFields(
    raw,
    ['vdiUuids', 'vmUuids', 'tags', 'pool', 'mode', 'retention', 'concurrency', 'job'],
    'the backup input',
  );
  const { pool, mode, retention, concurrency, job } = raw;
  const vdiUuids = uuidList(raw.vdiUuids, 'vdiUuids', 'VDI', '`xe vdi-list`');
  const vmUuids = uuidList(raw.vmUuids, 'vmUuids', 'VM', '`xe vm-list`');
  const tags = tagList(raw.tags);
  if (vdiUuids.length + vmUuids.length + tags.length === 0) {
    const given = ['vdiUuids', 'vmUuids', 'tags'].filter((field) => raw[field] !== undefined);
    throw new InputValidationError(
      given.length === 1 ? given[0]! : 'vdiUuids',
      given.length ? 'selects nothing' : 'is missing: the input selects no VDI, VM or tag',
      `Give a non-empty vdiUuids, vmUuids or tags. Example: ${EXAMPLE}`,
    );
  }
  if (pool !== undefined && (typeof pool !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/.test(pool))) {
    throw new InputValidationError(
      'pool',
      `${JSON.stringify(pool)} is not a pool name`,
      'Use a configured pool name.',
    );
  }
  if (mode !== undefined && mode !== 'auto' && mode !== 'full') {
    throw new InputValidationError('mode', `${JSON.stringify(mode)} is not a mode`, 'Use "auto" or "full".');
  }
  if (
    concurrency !== undefined &&
    !(Number.isInteger(concurrency) && (concurrency as number) >= 1 && (concurrency as number) <= 40)
  ) {
    throw new InputValidationError(
      'concurrency',
      `${JSON.stringify(concurrency)} is not a number of VDIs from 1 to 40`,
      "Or leave it out for the deployment's default.",
    );
  }
  if (job !== undefined && (typeof job !== 'string' || !JOB_NAME_PATTERN.test(job))) {
    throw new InputValidationError(
      'job',
      `${JSON.stringify(job)} is not a job name`,
      "Use 1 to 48 letters, digits, dash or underscore (a job's name), or leave it out.",
    );
  }
  return {
    ...(retention !== undefined ? { retention: parseRetention(retention) } : {}),
    ...(concurrency !== undefined ? { concurrency: concurrency as number } : {}),
    vdiUuids,
    vmUuids,
    tags,
    mode: (mode as BackupMode | undefined) ?? 'auto',
    ...(pool !== undefined ? { pool: pool as string } : {}),
    ...(job !== undefined ? { job: job as string } : {}),
  };
}

/** An optional list of uuids: lower-cased, each once, at most MAX_UUIDS_PER_EXECUTION. */
function uuidList(raw: unknown, field: string, what: string, command: string): string[] {
  if (raw === undefined) return [];
  if (!Array.isArray(raw)) {
    throw new InputValidationError(field, `must be a list of ${what} uuids`, `Example: ${EXAMPLE}`);
  }
  raw.forEach((uuid: unknown, index) => {
    if (typeof uuid !== 'string' || !UUID_PATTERN.test(uuid)) {
      throw new InputValidationError(
        `${field}[${index}]`,
        `${JSON.stringify(uuid)} is not a ${what} uuid`,
        `Use the uuid ${command} shows, e.g. "3f1c2d4e-8a9b-4c5d-9e0f-112233445566".`,
      );
    }
  });
  const uuids = (raw as string[]).map((uuid) => uuid.toLowerCase());
  if (new Set(uuids).size !== uuids.length) {
    throw new InputValidationError(field, `lists a ${what} twice`, `List each ${what} once.`);
  }
  if (uuids.length > MAX_UUIDS_PER_EXECUTION) {
    throw new InputValidationError(
      field,
      `lists ${uuids.length} ${what}s`,
      `Start at most ${MAX_UUIDS_PER_EXECUTION} per execution.`,
    );
  }
  return uuids;
}

function hasControlCharacter(text: string): boolean {
  return [...text].some((character) => character.charCodeAt(0) < 0x20);
}

/** XAPI tags are free text; ours must be non-empty, printable and at most 255 characters. */
function tagList(raw: unknown): string[] {
  if (raw === undefined) return [];
  if (!Array.isArray(raw)) {
    throw new InputValidationError('tags', 'must be a list of VM tags', `Example: ${EXAMPLE}`);
  }
  raw.forEach((tag: unknown, index) => {
    if (typeof tag !== 'string' || tag.trim() === '' || tag.length > 255 || hasControlCharacter(tag)) {
      throw new InputValidationError(
        `tags[${index}]`,
        `${JSON.stringify(tag)} is not a tag`,
        'Use the tag as `xe vm-param-get param-name=tags` shows it, e.g. "backup-nightly".',
      );
    }
  });
  if (new Set(raw).size !== raw.length) {
    throw new InputValidationError('tags', 'lists a tag twice', 'List each tag once.');
  }
  if (raw.length > 20) throw new InputValidationError('tags', `lists ${raw.length} tags`, 'Use at most 20.');
  return raw as string[];
}

function parseRetention(raw: unknown): RetentionPolicy {
  const example = '{"keep": 14} (forever incremental) or {"keep": 14, "fullEvery": 7}';
  if (!isPlainObject(raw))
    throw new InputValidationError('retention', 'must be an object', `Example: ${example}`);
  rejectUnknownFields(raw, ['keep', 'fullEvery'], 'retention');
  for (const field of ['keep', 'fullEvery'] as const) {
    const value = raw[field];
    if (field === 'fullEvery' && value === undefined) continue;
    if (!Number.isInteger(value) || (value as number) < 1 || (value as number) > 1000) {
      throw new InputValidationError(
        `retention.${field}`,
        `${JSON.stringify(value)} is not a count from 1 to 1000`,
        `Example: ${example}`,
      );
    }
  }
  return {
    keep: raw.keep as number,
    ...(raw.fullEvery !== undefined ? { fullEvery: raw.fullEvery as number } : {}),
  };
}
