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
const POOL_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

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
  const { nameLabel, pool } = nameAndPool(raw);
  return {
    vdiUuid,
    restorePoint,
    srUuid,
    strategy,
    keepPartial,
    ...(nameLabel !== undefined ? { nameLabel } : {}),
    ...(pool !== undefined ? { pool } : {}),
  };
}

/**
 * A whole VM back (docs/design.md § VM restores): the restore workflow's input when it names `vmUuid`.
 * Each disk goes to `srMap[<slot or source VDI uuid>]`, else to `srUuid`.
 */
export interface VmRestoreRequest {
  readonly vmUuid: string;
  /** `latest` (default), a VM restore point id (`…Z-vm`), or an ISO time. */
  readonly restorePoint: string;
  readonly srUuid?: string;
  readonly srMap?: Readonly<Record<string, string>>;
  /** Source network uuid → target network uuid; wins over the matching by uuid or by name and VLAN. */
  readonly networkMap?: Readonly<Record<string, string>>;
  readonly nameLabel?: string;
  /** Give the VIFs new MACs (the host generates them) instead of the recorded ones. Default false. */
  readonly newMacs: boolean;
  /** Keep the partial VM and its disks after a failure (for inspection). Default false. */
  readonly keepPartial: boolean;
  readonly pool?: string;
}

const VM_EXAMPLE = '{"vmUuid":"<source VM uuid>","restorePoint":"latest","srUuid":"<target SR uuid>"}';
const VM_BACKUP_ID = /^\d{8}T\d{6}(\.\d{3})?Z-vm$/;

/** The restore input: a VM restore when it names `vmUuid`, else a disk restore. */
export function parseRestoreInput(raw: unknown): RestoreRequest | VmRestoreRequest {
  if (isPlainObject(raw) && raw.vmUuid !== undefined) return parseVmRestoreRequest(raw);
  return parseRestoreRequest(raw);
}

export function parseVmRestoreRequest(raw: unknown): VmRestoreRequest {
  if (!isPlainObject(raw))
    throw new InputValidationError('input', 'must be a JSON object', `Example: ${VM_EXAMPLE}`);
  rejectUnknownFields(
    raw,
    [
      'vmUuid',
      'restorePoint',
      'srUuid',
      'srMap',
      'networkMap',
      'nameLabel',
      'newMacs',
      'keepPartial',
      'pool',
    ],
    'the VM restore input (a disk restore names vdiUuid instead of vmUuid)',
  );
  const uuidOf = (field: string, value: unknown, what: string): string => {
    if (typeof value !== 'string' || !UUID_PATTERN.test(value)) {
      throw new InputValidationError(
        field,
        `${JSON.stringify(value)} is not a uuid`,
        `Give the ${what}, e.g. "3f1c2d4e-8a9b-4c5d-9e0f-112233445566".`,
      );
    }
    return value.toLowerCase();
  };
  const vmUuid = uuidOf('vmUuid', raw.vmUuid, 'uuid of the VM that was backed up (`vdi-vault list --vm`)');
  const restorePoint = raw.restorePoint ?? 'latest';
  if (
    typeof restorePoint !== 'string' ||
    !(restorePoint === 'latest' || VM_BACKUP_ID.test(restorePoint) || isIsoTime(restorePoint))
  ) {
    throw new InputValidationError(
      'restorePoint',
      `${JSON.stringify(restorePoint)} is neither "latest", a VM restore point id nor an ISO time`,
      'Use "latest", an id such as "20261126T164000.000Z-vm" (`vdi-vault list --vm <uuid>`), or a time such as "2026-11-26T16:40:00Z".',
    );
  }
  const srUuid =
    raw.srUuid === undefined ? undefined : uuidOf('srUuid', raw.srUuid, 'uuid of the SR to restore into');
  const uuidMap = (field: 'srMap' | 'networkMap', keys: string): Record<string, string> | undefined => {
    const value = raw[field];
    if (value === undefined) return undefined;
    if (!isPlainObject(value)) {
      throw new InputValidationError(
        field,
        'must be an object',
        field === 'srMap'
          ? 'Map each disk slot (or source VDI uuid) to an SR uuid, e.g. {"0":"<SR uuid>","1":"<SR uuid>"}.'
          : 'Map each source network uuid to a network of the target pool, e.g. {"<old uuid>":"<new uuid>"}.',
      );
    }
    const map: Record<string, string> = {};
    for (const [key, target] of Object.entries(value)) {
      if (!/^[0-9a-fA-F-]{1,36}$/.test(key)) {
        throw new InputValidationError(`${field}.${key}`, `is not ${keys}`, `Use ${keys} as keys.`);
      }
      map[key.toLowerCase()] = uuidOf(`${field}.${key}`, target, 'target uuid');
    }
    return map;
  };
  const srMap = uuidMap('srMap', 'a disk slot ("0", "1", …) or a source VDI uuid');
  const networkMap = uuidMap('networkMap', 'a source network uuid');
  if (srUuid === undefined && srMap === undefined) {
    throw new InputValidationError(
      'srUuid',
      'is missing',
      `Give the SR for every disk (srUuid), or one per disk (srMap). Example: ${VM_EXAMPLE}`,
    );
  }
  const flag = (field: 'newMacs' | 'keepPartial', fix: string): boolean => {
    const value = raw[field] ?? false;
    if (typeof value !== 'boolean') throw new InputValidationError(field, 'must be true or false', fix);
    return value;
  };
  const newMacs = flag('newMacs', 'Use true to give the VIFs new MACs (when the source VM still runs).');
  const keepPartial = flag('keepPartial', 'Use true to keep a partial VM and its disks after a failure.');
  const { nameLabel, pool } = nameAndPool(raw);
  return {
    vmUuid,
    restorePoint,
    newMacs,
    keepPartial,
    ...(srUuid !== undefined ? { srUuid } : {}),
    ...(srMap !== undefined ? { srMap } : {}),
    ...(networkMap !== undefined ? { networkMap } : {}),
    ...(nameLabel !== undefined ? { nameLabel } : {}),
    ...(pool !== undefined ? { pool } : {}),
  };
}

/** The optional `nameLabel` and `pool` both restore inputs take. */
function nameAndPool(raw: Record<string, unknown>): { nameLabel?: string; pool?: string } {
  const { nameLabel, pool } = raw;
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
  if (pool !== undefined && (typeof pool !== 'string' || !POOL_NAME.test(pool))) {
    throw new InputValidationError(
      'pool',
      `${JSON.stringify(pool)} is not a pool name`,
      'Use a configured pool name.',
    );
  }
  return {
    ...(nameLabel !== undefined ? { nameLabel: nameLabel as string } : {}),
    ...(pool !== undefined ? { pool: pool as string } : {}),
  };
}

export function isVmBackupId(text: string): boolean {
  return VM_BACKUP_ID.test(text);
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

/** The time a backup id (or VM restore point id) names (when its run started, just before the snapshot). */
export function backupIdTime(backupId: string): number {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})(\.\d{3})?Z/.exec(backupId);
  if (!m) return Number.NaN;
  return Date.parse(`${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6]}${m[7] ?? ''}Z`);
}
