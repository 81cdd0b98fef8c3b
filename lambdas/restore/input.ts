import {
  InputValidationError,
  isPlainObject,
  rejectUnknownFields,
  UUID_PATTERN,
} from '../shared/input-error.ts';
import { DEFAULT_RESTORE_STRATEGY } from '../runtime/defaults.ts';

// Also named here, beside the strategies it picks from.
export { DEFAULT_RESTORE_STRATEGY };

export type RestoreStrategy = 'replay' | 'merge';

/** What an operator types into the console's "Start execution" (or passes to the CLI). */
export interface RestoreRequest {
  readonly vdiUuid: string;
  /** `latest` (default), a backup id, or an ISO time (the newest restore point at or before it). */
  readonly restorePoint: string;
  readonly srUuid: string;
  readonly nameLabel?: string;
  /** Default `replay` (see the README's Performance section for how the two compare). */
  readonly strategy: RestoreStrategy;
  /** Keep a partially restored VDI after a failure (for inspection). Default false. */
  readonly keepPartial: boolean;
  /** Default: the deployment's default pool. */
  readonly pool?: string;
}

const EXAMPLE =
  '{"vdiUuid":"<source VDI uuid>","restorePoint":"latest","srUuid":"<target SR uuid>","strategy":"merge"}';
const BACKUP_ID = /^\d{8}T\d{6}(\.\d{3})?Z-(full|delta)$/;

export function parseRestoreRequest(raw: unknown): RestoreRequest {
  if (!isPlainObject(raw))
    throw new InputValidationError('input', 'must be a JSON object', `Example: ${EXAMPLE}`);
  rejectUnknownFields(
    raw,
    ['vdiUuid', 'restorePoint', 'srUuid', 'nameLabel', 'strategy', 'keepPartial', 'pool'],
    'the restore input',
  );
  const uuid = (field: 'vdiUuid' | 'srUuid', what: string): string => {
    const value = raw[field];
    if (value === undefined)
      throw new InputValidationError(field, 'is missing', `Give the ${what}. Example: ${EXAMPLE}`);
    if (typeof value !== 'string' || !UUID_PATTERN.test(value)) {
      throw new InputValidationError(
        field,
        `${JSON.stringify(value)} is not a uuid`,
        `Give the ${what}, e.g. "3f1c2d4e-8a9b-4c5d-9e0f-112233445566".`,
      );
    }
    return value.toLowerCase();
  };
  const vdiUuid = uuid('vdiUuid', 'uuid of the VDI that was backed up (`vdi-vault list` shows them)');
  const srUuid = uuid('srUuid', 'uuid of the SR to restore into (`xe sr-list`)');
  const restorePoint = raw.restorePoint ?? 'latest';
  if (
    typeof restorePoint !== 'string' ||
    !(restorePoint === 'latest' || BACKUP_ID.test(restorePoint) || isIsoTime(restorePoint))
  ) {
    throw new InputValidationError(
      'restorePoint',
      `${JSON.stringify(restorePoint)} is neither "latest", a backup id nor an ISO time`,
      'Use "latest", a backup id such as "20261126T164000.000Z-full", or a time such as "2026-11-26T16:40:00Z".',
    );
  }
  const strategy = raw.strategy ?? DEFAULT_RESTORE_STRATEGY;
  if (strategy !== 'replay' && strategy !== 'merge') {
    throw new InputValidationError(
      'strategy',
      `${JSON.stringify(strategy)} is not a strategy`,
      'Use "replay" or "merge".',
    );
  }
  const keepPartial = raw.keepPartial ?? false;
  if (typeof keepPartial !== 'boolean') {
    throw new InputValidationError(
      'keepPartial',
      'must be true or false',
      'Use true to keep a partial VDI after a failure.',
    );
  }
  const nameLabel = raw.nameLabel;
  if (
    nameLabel !== undefined &&
    (typeof nameLabel !== 'string' || nameLabel.length === 0 || nameLabel.length > 255)
  ) {
    throw new InputValidationError(
      'nameLabel',
      'must be a non-empty string of at most 255 characters',
      'Or leave it out.',
    );
  }
  const pool = raw.pool;
  if (pool !== undefined && (typeof pool !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/.test(pool))) {
    throw new InputValidationError(
      'pool',
      `${JSON.stringify(pool)} is not a pool name`,
      'Use a configured pool name.',
    );
  }
  return {
    vdiUuid,
    restorePoint,
    srUuid,
    strategy,
    keepPartial,
    ...(nameLabel !== undefined ? { nameLabel: nameLabel as string } : {}),
    ...(pool !== undefined ? { pool: pool as string } : {}),
  };
}

export function isBackupId(text: string): boolean {
  return BACKUP_ID.test(text);
}

function isIsoTime(text: string): boolean {
  return (
    /^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2}))?$/.test(text) &&
    !Number.isNaN(Date.parse(text))
  );
}

/** The time a backup id names (when its run started, just before the snapshot). */
export function backupIdTime(backupId: string): number {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})(\.\d{3})?Z/.exec(backupId);
  if (!m) return Number.NaN;
  return Date.parse(`${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6]}${m[7] ?? ''}Z`);
}
