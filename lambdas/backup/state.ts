import type { ExportToS3Result } from '../export/export-to-s3.ts';
import type { XapiSessionHandle } from '../xapi/index.ts';
import type { RetentionPolicy } from '../catalog/retention.ts';
import type { MergeReport } from '../merge/merge-points.ts';
import type { BackupMode } from './input.ts';
import type { TransferRoute } from '../transfer/routing.ts';
import type { ImageFormat } from '../catalog/manifest.ts';

/** The state each VDI's iteration carries from step to step (only ids and sizes: payloads stay small). */
export interface BackupItemState {
  readonly vdiUuid: string;
  /** The VM this disk is backed up with (a VM restore point), or null for a disk chosen by uuid. */
  readonly vmUuid?: string | null;
  /** The disk's snapshot, taken with all of its VM's disks at once by `VM.snapshot`; null: Snapshot makes one. */
  readonly presetSnapshot?: { readonly ref: string; readonly uuid: string } | null;
  readonly pool: string;
  readonly mode: BackupMode;
  /** null when the input sets none (Step Functions paths need the field to exist). */
  readonly retention: RetentionPolicy | null;
  readonly session: XapiSessionHandle;
  /** The execution's name: logs carry it to tie a function's lines to their run. */
  readonly executionId?: string;
  /** The job whose schedule started the run (its metrics carry it); null or absent for any other start. */
  readonly job?: string | null;
  readonly plan?: BackupPlan;
  readonly snapshot?: { readonly ref: string; readonly uuid: string };
  /**
   * The task the export runs under. The Fargate retry after a Lambda timeout gets a fresh one, with
   * parts sized for the whole disk (`partSize`) since the task has the memory a Lambda lacked.
   */
  readonly task?: { readonly ref: string; readonly partSize?: number };
  readonly export?: ExportToS3Result;
  readonly commit?: { readonly manifestKey: string };
  /** What Merge did after the commit (forever incremental). */
  readonly merge?: MergeOutcome;
  /** Merge's Lambda or Fargate task failed outright (a timeout): the backup stands. */
  readonly mergeFailure?: { readonly Error?: string; readonly Cause?: string };
  /** Set by the workflow's Catch: the error of the step that failed. */
  readonly failure?: { readonly Error?: string; readonly Cause?: string };
}

export interface BackupPlan {
  readonly backupId: string;
  readonly kind: 'full' | 'delta';
  /** The image format the export travels and is stored in (`imageFormatOf`). */
  readonly format: ImageFormat;
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
  /** How many snapshots of ours crashed runs left, removed while planning (their uuids are in the log). */
  readonly staleSnapshotsRemoved: number;
  /** Multipart uploads a killed run left open, aborted while planning. */
  readonly staleUploadsAborted: number;
  /**
   * Where the export runs: by its expected size against the configured threshold, and by whether its
   * part buffers fit the export Lambda's memory (`sizeExport`). `routeReason` says which, in numbers.
   */
  readonly route: TransferRoute;
  readonly routeReason: string;
  readonly expectedBytes: number;
  /** Multipart part size of the export: at most 10,000 of them, so this bounds what it may send. */
  readonly partSize: number;
  /** Where a Fargate export writes its result for the workflow to collect. */
  readonly transferResultKey: string;
  /** Our hold on the series lock, released by Cleanup or FailureCleanup; absent when no lock table is set. */
  readonly lockOwner?: string;
  readonly startedAt: string;
}

export interface BackupOutcome {
  readonly vdiUuid: string;
  /** Set for a disk backed up with its VM. */
  readonly vmUuid?: string | null;
  readonly status: 'succeeded' | 'failed';
  readonly backupId?: string;
  readonly kind?: 'full' | 'delta';
  /** The image format the point is stored in. */
  readonly format?: ImageFormat;
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
  readonly retention?: RetentionReport;
  /** What forever incremental merged after this backup (absent when there was nothing to merge). */
  readonly merge?: MergeOutcome;
}

/**
 * Merge after a committed backup (docs/design.md § Forever incremental). `routed`: too large for a
 * Lambda, so the workflow runs it again on Fargate. `failed` never fails the backup: every kept point
 * still restores, and the next run merges again.
 */
export type MergeOutcome =
  | { readonly status: 'none' }
  | { readonly status: 'routed'; readonly backupId?: string; readonly routeReason: string }
  | ({ readonly status: 'merged' } & MergeReport)
  | { readonly status: 'failed'; readonly backupId?: string; readonly error: string };

/**
 * Retention after one backup, in counts: its output must not grow with the catalog (Step Functions passes
 * at most 256 KiB between states), so every deleted key goes to the Cleanup function's log instead.
 */
export interface RetentionReport {
  /** Restore points kept: the newest `keep` and every one they need. */
  readonly kept: number;
  /** Restore points deleted (manifest and object). */
  readonly deleted: number;
  /** Objects without a manifest that an interrupted earlier run left, deleted. */
  readonly orphansDeleted: number;
  /** S3 keys deleted in all. */
  readonly keysDeleted: number;
  /** At most 3 of the deleted restore points, newest first. */
  readonly deletedIds: readonly string[];
  /** Why retention stopped (the counts say how far it got); the backup itself is committed. */
  readonly error?: string;
}

/** One disk to back up, as the Map gets it: every field present (Step Functions paths need them). */
export interface BackupItem {
  readonly vdiUuid: string;
  readonly vmUuid: string | null;
  readonly presetSnapshot: { readonly ref: string; readonly uuid: string } | null;
}

/** A VM whose disks this run backs up, between its snapshot and its VM restore point. */
export interface VmInProgress {
  readonly vmUuid: string;
  readonly nameLabel: string;
  /** The snapshot VM `VM.snapshot` made: destroyed (its VDIs kept) once the VM point is written or has failed. */
  readonly snapshotRef: string;
  /** Where its description waits in S3 for CommitVms (states carry ids, not records). */
  readonly pendingKey: string;
  readonly disks: number;
  readonly startedAt: string;
}

/** What SelectVms hands the Map and CommitVms. */
export interface BackupSelection {
  readonly items: readonly BackupItem[];
  readonly vms: readonly VmInProgress[];
}

export interface VmOutcome {
  readonly vmUuid: string;
  readonly status: 'succeeded' | 'failed';
  /** The VM restore point, when every disk committed. */
  readonly vmBackupId?: string;
  readonly disks: number;
  /** Earlier VM points removed because retention (or a broken chain) took one of their disks' points. */
  readonly vmPointsRemoved?: number;
  readonly error?: string;
  readonly cause?: string;
}

export interface BackupSummary {
  readonly pool: string;
  readonly outcomes: readonly BackupOutcome[];
  /** One per VM of the run (absent when it chose disks only). */
  readonly vmOutcomes?: readonly VmOutcome[];
  readonly succeeded: number;
  readonly failed: number;
  /** Set when any VDI failed; the workflow fails with these. */
  readonly error?: string;
  readonly cause?: string;
}
