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
  readonly vdiUuids: readonly string[];
  /** Default: the deployment's default pool. */
  readonly pool?: string;
  /** `auto` (default): a delta when a base exists; `full`: always a full. */
  readonly mode?: BackupMode;
  /** Keep the newest `keep` restore points; take a full every `fullEvery` backups. Default: keep all. */
  readonly retention?: RetentionPolicy;
  /** VDIs of this execution backed up at once (1–40). Default: the deployment's concurrency. */
  readonly concurrency?: number;
}

const EXAMPLE = '{"vdiUuids":["<vdi uuid>"],"mode":"auto"}';

export interface ParsedBackupInput {
  readonly vdiUuids: readonly string[];
  readonly mode: BackupMode;
  readonly pool?: string;
  readonly retention?: RetentionPolicy;
  readonly concurrency?: number;
}

export function parseBackupInput(raw: unknown): ParsedBackupInput {
  if (!isPlainObject(raw)) {
    throw new InputValidationError('input', 'must be a JSON object', `Example: ${EXAMPLE}`);
  }
  rejectUnknownFields(raw, ['vdiUuids', 'pool', 'mode', 'retention', 'concurrency'], 'the backup input');
  const { vdiUuids, pool, mode, retention, concurrency } = raw;
  if (!Array.isArray(vdiUuids) || vdiUuids.length === 0) {
    throw new InputValidationError(
      'vdiUuids',
      'must be a non-empty list of VDI uuids',
      `Example: ${EXAMPLE}`,
    );
  }
  vdiUuids.forEach((uuid, index) => {
    if (typeof uuid !== 'string' || !UUID_PATTERN.test(uuid)) {
      throw new InputValidationError(
        `vdiUuids[${index}]`,
        `${JSON.stringify(uuid)} is not a VDI uuid`,
        'Use the uuid `xe vdi-list` shows, e.g. "3f1c2d4e-8a9b-4c5d-9e0f-112233445566".',
      );
    }
  });
  if (new Set(vdiUuids.map((uuid: string) => uuid.toLowerCase())).size !== vdiUuids.length) {
    throw new InputValidationError('vdiUuids', 'lists a VDI twice', 'List each VDI once.');
  }
  if (vdiUuids.length > 100) {
    throw new InputValidationError(
      'vdiUuids',
      `lists ${vdiUuids.length} VDIs`,
      'Start at most 100 per execution.',
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
  return {
    ...(retention !== undefined ? { retention: parseRetention(retention) } : {}),
    ...(concurrency !== undefined ? { concurrency: concurrency as number } : {}),
    vdiUuids: vdiUuids.map((uuid: string) => uuid.toLowerCase()),
    mode: (mode as BackupMode | undefined) ?? 'auto',
    ...(pool !== undefined ? { pool: pool as string } : {}),
  };
}

function parseRetention(raw: unknown): RetentionPolicy {
  const example = '{"keep": 14, "fullEvery": 7}';
  if (!isPlainObject(raw))
    throw new InputValidationError('retention', 'must be an object', `Example: ${example}`);
  rejectUnknownFields(raw, ['keep', 'fullEvery'], 'retention');
  for (const field of ['keep', 'fullEvery'] as const) {
    const value = raw[field];
    if (!Number.isInteger(value) || (value as number) < 1 || (value as number) > 1000) {
      throw new InputValidationError(
        `retention.${field}`,
        `${JSON.stringify(value)} is not a count from 1 to 1000`,
        `Example: ${example}`,
      );
    }
  }
  return { keep: raw.keep as number, fullEvery: raw.fullEvery as number };
}
