import type { ExportToS3Result } from '../export/export-to-s3.ts';
import type { XapiSessionHandle } from '../xapi/index.ts';
import type { RetentionPolicy } from '../catalog/retention.ts';
import type { BackupMode } from './input.ts';
import type { TransferRoute } from '../transfer/routing.ts';

/** The state each VDI's iteration carries from step to step (only ids and sizes: payloads stay small). */
export interface BackupItemState {
  readonly vdiUuid: string;
  readonly pool: string;
  readonly mode: BackupMode;
  /** null when the input sets none (Step Functions paths need the field to exist). */
  readonly retention: RetentionPolicy | null;
  readonly session: XapiSessionHandle;
  /** The execution's name: logs carry it to tie a function's lines to their run. */
  readonly executionId?: string;
  readonly plan?: BackupPlan;
  readonly snapshot?: { readonly ref: string; readonly uuid: string };
  readonly task?: { readonly ref: string };
  readonly export?: ExportToS3Result;
  readonly commit?: { readonly manifestKey: string };
  /** Set by the workflow's Catch: the error of the step that failed. */
  readonly failure?: { readonly Error?: string; readonly Cause?: string };
}

export interface BackupPlan {
  readonly backupId: string;
  readonly kind: 'full' | 'delta';
  readonly fullReason?: string;
  readonly vdiRef: string;
  readonly vdiNameLabel: string;
  readonly virtualSize: number;
  readonly objectKey: string;
  readonly parentBackupId?: string;
  readonly baseSnapshotRef?: string;
  readonly baseSnapshotUuid?: string;
  /** The last backup's snapshot: no longer needed once this backup commits (the new snapshot is the next base). */
  readonly retiredSnapshotRef?: string;
  /** Snapshots of ours left by crashed runs, removed while planning. */
  readonly staleSnapshotsRemoved: readonly string[];
  /** Multipart uploads a killed run left open, aborted while planning. */
  readonly staleUploadsAborted: number;
  /** Where the export runs, from its expected size against the configured threshold. */
  readonly route: TransferRoute;
  readonly expectedBytes: number;
  /** Where a Fargate export writes its result for the workflow to collect. */
  readonly transferResultKey: string;
  /** Our hold on the series lock, released by Cleanup or FailureCleanup; absent when no lock table is set. */
  readonly lockOwner?: string;
  readonly startedAt: string;
}

export interface BackupOutcome {
  readonly vdiUuid: string;
  readonly status: 'succeeded' | 'failed';
  readonly backupId?: string;
  readonly kind?: 'full' | 'delta';
  readonly fullReason?: string;
  readonly bytes?: number;
  readonly sha256?: string;
  readonly presentBlocks?: number;
  readonly durationMs?: number;
  readonly error?: string;
  readonly cause?: string;
  /** What failure cleanup did (or could not do). */
  readonly cleanup?: readonly string[];
  /** What retention deleted after this backup (or why it could not). */
  readonly retention?: {
    readonly retained: readonly string[];
    readonly actions: readonly string[];
    readonly error?: string;
  };
}

export interface BackupSummary {
  readonly pool: string;
  readonly outcomes: readonly BackupOutcome[];
  readonly succeeded: number;
  readonly failed: number;
  /** Set when any VDI failed; the workflow fails with these. */
  readonly error?: string;
  readonly cause?: string;
}
