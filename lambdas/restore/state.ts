import type { XapiSessionHandle } from '../xapi/index.ts';
import type { RestoreRequest } from './input.ts';
import type { TransferRoute } from '../transfer/routing.ts';
import type { ImageFormat } from '../catalog/manifest.ts';

/** Marks a VDI (or VM) as ours while the restore runs; `complete` once every layer (every disk) is in. */
export const RESTORE_STATE_TAG = 'vdi-vault-restore';
/** Where a restored VDI (or VM) came from: `<pool>/<vdi>/<backup id>` (`<pool>/vms/<vm>/<id>`). */
export const RESTORED_FROM_TAG = 'vdi-vault-restored-from';

/**
 * The resolved chain as the workflow carries it: ids and counts only. The layers' details (keys, sizes,
 * digests) stay in the chain document in S3 (`chainKey`), so a state stays far under Step Functions'
 * 256 KiB and a Fargate task's overrides under ECS's 8,192 characters however long the chain.
 */
export interface ChainInState {
  readonly backupId: string;
  readonly virtualSize: number;
  readonly vdiNameLabel: string;
  /** The chain's image format: the new VDI's `sm_config["image-format"]` and every import's. */
  readonly format: ImageFormat;
  readonly srRef: string;
  readonly chainKey: string;
  readonly layerCount: number;
  /** Where the merged import runs. */
  readonly route: TransferRoute;
  /** Where a replay runs: each layer on Lambda, or every layer in one Fargate task. */
  readonly replayRoute: TransferRoute;
  /** Where a Fargate import (merged, replayed, or one layer) writes its result. */
  readonly transferResultKey: string;
  /** The replay Map's items, oldest (the full) first. */
  readonly layers: readonly ReplayLayer[];
}

export interface ReplayLayer {
  readonly index: number;
  readonly backupId: string;
}

/** What the restore workflow carries from state to state (ids and sizes only). */
export interface RestoreState {
  readonly request: RestoreRequest;
  readonly pool: string;
  readonly startedAt: string;
  /** Set by the workflow after Validate: names the execution's progress records. */
  readonly execution?: RestoreExecution;
  readonly session?: XapiSessionHandle;
  readonly chain?: ChainInState;
  readonly vdi?: { readonly ref: string; readonly uuid: string };
  /** A disk of a VM restore: the VM being restored (its disk Map's items carry it). */
  readonly vm?: { readonly ref: string; readonly uuid: string };
  readonly imported?: readonly ImportedLayer[];
  readonly failure?: { readonly Error?: string; readonly Cause?: string };
}

/** The replay Map's item: one layer to import into the new VDI. */
export interface ReplayItem {
  readonly layer: ReplayLayer;
  readonly chainKey: string;
  readonly transferResultKey: string;
  readonly pool: string;
  /** Absent in the Fargate task, which logs in itself. */
  readonly session?: XapiSessionHandle;
  readonly vdi: { readonly ref: string; readonly uuid: string };
  readonly restorePoint: string;
  readonly execution?: RestoreExecution;
}

/** The Step Functions execution a restore runs in (`$$.Execution.Name`). */
export interface RestoreExecution {
  readonly name: string;
}

export interface ImportedLayer {
  /** The backup applied, or `merged` for the single merged stream. */
  readonly backupId: string;
  readonly bytes: number;
  readonly host: string;
}

export interface RestoreResult {
  readonly vdiUuid: string;
  readonly sourceVdiUuid: string;
  readonly restorePoint: string;
  readonly strategy: 'replay' | 'merge';
  /** The image format of the chain, and of what was sent to the host. */
  readonly format: ImageFormat;
  readonly layersApplied: readonly string[];
  readonly bytesMoved: number;
  readonly durationMs: number;
}

export interface RestoreFailure {
  readonly error: string;
  readonly cause: string;
  readonly cleanup: readonly string[];
}
