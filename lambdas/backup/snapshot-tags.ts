import type { VdiRecord } from '../xapi/index.ts';

/**
 * Tags on our snapshots in `other_config`. They name the backup series, so the next run can find and
 * remove what a crashed run left, and never touch snapshots people made.
 */
export const SERIES_TAG = 'vdi-vault-series';
export const BACKUP_ID_TAG = 'vdi-vault-backup-id';

export function isOurSnapshot(record: VdiRecord, series: string): boolean {
  return record.is_a_snapshot && record.other_config[SERIES_TAG] === series;
}
