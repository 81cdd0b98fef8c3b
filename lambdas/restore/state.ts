import type { XapiSessionHandle } from '../xapi/index.ts';
import type { RestoreChain, RestoreLayer } from './chain.ts';
import type { RestoreRequest } from './input.ts';
import type { TransferRoute } from '../transfer/routing.ts';

/** What the restore workflow carries from state to state (ids and sizes only). */
export interface RestoreState {
  readonly request: RestoreRequest;
  readonly pool: string;
  readonly startedAt: string;
  readonly session?: XapiSessionHandle;
  readonly chain?: RestoreChain & {
    readonly srRef: string;
    /** Where the merged import runs and reports. */
    readonly route: TransferRoute;
    readonly transferResultKey: string;
  };
  readonly vdi?: { readonly ref: string; readonly uuid: string };
  readonly imported?: readonly ImportedLayer[];
  readonly failure?: { readonly Error?: string; readonly Cause?: string };
}

/** The replay Map's item: one layer to import into the new VDI. */
export interface ReplayItem {
  readonly layer: RestoreLayer;
  readonly pool: string;
  readonly session: XapiSessionHandle;
  readonly vdi: { readonly ref: string; readonly uuid: string };
  readonly restorePoint: string;
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
  readonly layersApplied: readonly string[];
  readonly bytesMoved: number;
  readonly durationMs: number;
}

export interface RestoreFailure {
  readonly error: string;
  readonly cause: string;
  readonly cleanup: readonly string[];
}
