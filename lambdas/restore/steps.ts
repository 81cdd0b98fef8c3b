import { createHash } from 'node:crypto';
import { pipeline, Readable, Transform } from 'node:stream';
import { DeleteObjectCommand, GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import type { CatalogLocation } from '../catalog/keys.ts';
import { CatalogError } from '../catalog/manifest.ts';
import { failureMessage } from '../shared/failure.ts';
import { CleanupLog, required } from '../shared/cleanup-log.ts';
import { InputValidationError } from '../shared/input-error.ts';
import { silentLog, type Log } from '../shared/log.ts';
import { trackTransfer, type ProgressStore } from '../shared/transfer-progress.ts';
import type { PoolDirectory } from '../shared/pools.ts';
import { writeVhd } from '../vhd/index.ts';
import { readQcow2VirtualSize, writeQcow2 } from '../qcow2/index.ts';
import type { ImageFormat } from '../catalog/manifest.ts';
import { isXapiError, XapiSession, type XapiSessionHandle } from '../xapi/index.ts';
import { withPoolSession, type SessionState } from '../shared/pool-session.ts';
import {
  chainDocumentKey,
  readChainDocument,
  resolveChain,
  restoreTransferId,
  writeChainDocument,
  type RestoreLayer,
} from './chain.ts';
import { routeFor, type TransferRouting } from '../transfer/routing.ts';
import { collectTransferResult, transferResultKey } from '../transfer/transfer-task.ts';
import { importIntoVdi } from './import-vdi.ts';
import { parseRestoreInput } from './input.ts';
import {
  createVmRestoreSteps,
  RESTORE_VM_TAG,
  type VmRestoreResult,
  type VmRestoreState,
} from '../vm/restore-vm.ts';
import { mergedBlockSource, mergedClusterSource, readRange } from './merged-source.ts';
import type {
  ChainInState,
  ImportedLayer,
  ReplayItem,
  RestoreFailure,
  RestoreResult,
  RestoreState,
} from './state.ts';

import { RESTORE_STATE_TAG, RESTORED_FROM_TAG } from './state.ts';

export { RESTORE_STATE_TAG, RESTORED_FROM_TAG };

export interface RestoreDeps {
  readonly s3: S3Client;
  readonly catalog: CatalogLocation;
  readonly pools: PoolDirectory;
  readonly log?: Log;
  readonly clock?: () => Date;
  /** Which imports go to Fargate. Default: all run on Lambda. */
  readonly routing?: TransferRouting;
  /** Where imports record their progress. Without it, none is recorded. */
  readonly progress?: ProgressStore;
  /** Bytes sent so far to the host for one import (`<backup id>` or `merged`). */
  readonly onImportProgress?: (layer: string, bytes: number) => void;
}

export function createRestoreSteps(deps: RestoreDeps) {
  const log = deps.log ?? silentLog;
  const now = deps.clock ?? (() => new Date());

  const withSession = <T>(state: SessionState, work: (session: XapiSession) => Promise<T>) =>
    withPoolSession(deps.pools, log, state, work);

  /**
   * One import under a task of ours. Creating and destroying the task each go through withSession, so a
   * session that expired during a long import still gets its task destroyed.
   */
  async function importUnderOurTask(
    state: SessionState,
    label: string,
    vdiRef: string,
    format: ImageFormat,
    body: Readable,
    contentLength: number,
  ): Promise<{ host: string }> {
    const taskRef = await withSession(state, (session) => session.createTask(label, 'vdi-vault restore'));
    try {
      return await withSession(state, (session) =>
        importIntoVdi(session, { vdiRef, taskRef, format, body, contentLength }),
      );
    } finally {
      body.destroy();
      await withSession(state, (session) => session.destroyTask(taskRef)).catch((error: unknown) =>
        log.error('could not destroy the import task', { error: String(error) }),
      );
    }
  }

  /**
   * The host's qcow2 importer writes whatever the image holds without comparing sizes (clusters past the
   * VDI's end fail midway, after earlier ones were written): refuse an image larger than the VDI first.
   */
  async function checkQcow2Fits(state: SessionState, vdiRef: string, imageSize: number, what: string) {
    const vdiSize = await withSession(
      state,
      async (session) => (await session.getVdiRecord(vdiRef)).virtual_size,
    );
    if (imageSize > vdiSize) {
      throw new CatalogError(
        `${what} is a qcow2 image of ${imageSize} bytes, larger than the VDI it would be imported into (${vdiSize} bytes): not sending it`,
      );
    }
  }

  /** One layer, streamed from S3 into the VDI; its sha256 must match the manifest's. */
  async function importOneLayer(item: ReplayItem, layer: RestoreLayer): Promise<ImportedLayer> {
    const format = layer.format;
    if (format === 'qcow2') {
      const imageSize = await readQcow2VirtualSize(
        (start, length) => readRange(deps.s3, deps.catalog.bucket, layer.objectKey, start, length),
        layer.bytes,
      );
      await checkQcow2Fits(item, item.vdi.ref, imageSize, `the object ${layer.objectKey}`);
    }
    const object = await deps.s3.send(
      new GetObjectCommand({ Bucket: deps.catalog.bucket, Key: layer.objectKey }),
    );
    if (object.ContentLength !== layer.bytes) {
      throw new CatalogError(
        `the object ${layer.objectKey} holds ${String(object.ContentLength)} bytes, its manifest records ${layer.bytes}`,
      );
    }
    const hash = createHash('sha256');
    let sentBytes = 0;
    const progress = trackTransfer(deps.progress, item.execution?.name, `import ${layer.backupId}`, {
      total: layer.bytes,
      log,
    });
    // pipeline, not pipe: an S3 stream that breaks must break the PUT too, not leave it waiting.
    const body = pipeline(
      object.Body as Readable,
      new Transform({
        transform(chunk: Buffer, _encoding, callback) {
          hash.update(chunk);
          sentBytes += chunk.length;
          deps.onImportProgress?.(layer.backupId, sentBytes);
          progress.update(sentBytes);
          callback(null, chunk);
        },
      }),
      () => undefined,
    );
    const sent = await importUnderOurTask(
      item,
      `vdi-vault restore ${item.restorePoint}: ${layer.backupId}`,
      item.vdi.ref,
      format,
      body,
      layer.bytes,
    ).finally(() => progress.end());
    const sha256 = hash.digest('hex');
    if (sha256 !== layer.sha256) {
      throw new CatalogError(
        `the object ${layer.objectKey} changed since its backup: sha256 ${sha256}, its manifest records ${layer.sha256}`,
      );
    }
    return { backupId: layer.backupId, bytes: layer.bytes, host: sent.host };
  }

  /** The chain document only served this restore's imports. */
  async function removeChainDocument(state: RestoreState): Promise<void> {
    if (!state.chain) return;
    await deps.s3.send(new DeleteObjectCommand({ Bucket: deps.catalog.bucket, Key: state.chain.chainKey }));
  }

  return {
    ...createVmRestoreSteps({ ...deps, log, now, withSession }),
    /** Checks the request a person typed (a disk's, or a VM's); nothing else happens before it passes. */
    async validate(raw: unknown): Promise<RestoreState | VmRestoreState> {
      const request = parseRestoreInput(raw);
      const pool = request.pool ?? deps.pools.defaultPool;
      deps.pools.get(pool);
      const startedAt = now().toISOString();
      return 'vmUuid' in request ? { vmRequest: request, pool, startedAt } : { request, pool, startedAt };
    },

    async login(state: { readonly pool: string }): Promise<XapiSessionHandle> {
      const access = deps.pools.get(state.pool);
      const session = await XapiSession.login({ ...access.connection, log }, await access.credentials());
      await session.close();
      return session.handle;
    },

    /** Walks the catalog back to the full, checks every object, and finds the target SR. */
    async resolveChain(state: RestoreState) {
      const chain = await resolveChain(
        deps.s3,
        deps.catalog,
        state.pool,
        state.request.vdiUuid,
        state.request.restorePoint,
      );
      const srRef = await withSession(state, (session) =>
        session.getSrByUuid(state.request.srUuid).catch((error: unknown) => {
          if (isXapiError(error, 'UUID_INVALID')) {
            throw new InputValidationError(
              'srUuid',
              `no SR ${state.request.srUuid} in pool ${state.pool}`,
              'Give the uuid of an SR the pool has (`xe sr-list`).',
            );
          }
          throw error;
        }),
      );
      const id = restoreTransferId(state.pool, state.request.vdiUuid, state.startedAt);
      const chainKey = chainDocumentKey(deps.catalog, id);
      await writeChainDocument(deps.s3, deps.catalog, chainKey, chain);
      // A merge sends about the sum of the layers at most; a replay on Lambda sends each layer in its own
      // invocation, so the largest layer decides whether the replay runs in one Fargate task instead.
      const total = chain.layers.reduce((sum, layer) => sum + layer.bytes, 0);
      const largest = Math.max(...chain.layers.map((layer) => layer.bytes));
      const compact: ChainInState = {
        backupId: chain.backupId,
        virtualSize: chain.virtualSize,
        vdiNameLabel: chain.vdiNameLabel,
        format: chain.format,
        srRef,
        chainKey,
        layerCount: chain.layers.length,
        route: routeFor(deps.routing, total),
        replayRoute: routeFor(deps.routing, largest),
        transferResultKey: transferResultKey(deps.catalog, id),
        layers: chain.layers.map((layer, index) => ({ index, backupId: layer.backupId })),
      };
      return compact;
    },

    /** Reads what a Fargate import wrote (one replayed layer, or the merged stream). */
    async collectImport(state: {
      readonly transferResultKey: string;
    }): Promise<ImportedLayer | ImportedLayer[]> {
      return (await collectTransferResult(deps.s3, deps.catalog, state.transferResultKey)) as ImportedLayer;
    },

    /** Creates the target VDI with the recorded size; its name and other_config say where it came from. */
    async createVdi(state: RestoreState): Promise<{ ref: string; uuid: string }> {
      const chain = required(state.chain, 'chain');
      return withSession(state, async (session) => {
        const ref = await session.createVdi({
          name_label: state.request.nameLabel ?? `${chain.vdiNameLabel} (restored ${chain.backupId})`,
          name_description: `Restored by vdi-vault from ${state.pool}/${state.request.vdiUuid} backup ${chain.backupId}`,
          SR: chain.srRef,
          virtual_size: chain.virtualSize,
          type: 'user',
          sharable: false,
          read_only: false,
          // The host makes a VDI of the format it is asked for (the SR's preference otherwise).
          sm_config: { 'image-format': chain.format },
          other_config: {
            [RESTORED_FROM_TAG]: `${state.pool}/${state.request.vdiUuid}/${chain.backupId}`,
            [RESTORE_STATE_TAG]: 'in-progress',
            // A disk of a VM restore: the VM's failure clean-up finds it by this.
            ...(state.vm ? { [RESTORE_VM_TAG]: state.vm.uuid } : {}),
          },
        });
        const record = await session.getVdiRecord(ref);
        return { ref, uuid: record.uuid };
      });
    },

    /** Replay: one layer, streamed from S3 into the VDI; its sha256 must match the manifest's. */
    async importLayer(item: ReplayItem): Promise<ImportedLayer> {
      const chain = await readChainDocument(deps.s3, deps.catalog, item.chainKey);
      const layer = chain.layers[item.layer.index];
      if (!layer || layer.backupId !== item.layer.backupId) {
        throw new CatalogError(
          `the chain document ${item.chainKey} has no layer ${item.layer.index} (${item.layer.backupId})`,
        );
      }
      return importOneLayer(item, layer);
    },

    /** Replay in one Fargate task: every layer of the chain, oldest first. */
    async replayChain(state: RestoreState): Promise<ImportedLayer[]> {
      const inState = required(state.chain, 'chain');
      const vdi = required(state.vdi, 'vdi');
      const chain = await readChainDocument(deps.s3, deps.catalog, inState.chainKey);
      const imported: ImportedLayer[] = [];
      for (const [index, layer] of chain.layers.entries()) {
        const item = {
          layer: { index, backupId: layer.backupId },
          chainKey: inState.chainKey,
          transferResultKey: inState.transferResultKey,
          pool: state.pool,
          ...(state.session ? { session: state.session } : {}),
          vdi,
          restorePoint: chain.backupId,
          ...(state.execution ? { execution: state.execution } : {}),
        };
        imported.push(await importOneLayer(item, layer));
      }
      return imported;
    },

    /**
     * Merge: one image holding each block (vhd) or cluster (qcow2) from the newest layer that has it, in a
     * single PUT.
     */
    async importMerged(state: RestoreState): Promise<ImportedLayer[]> {
      const vdi = required(state.vdi, 'vdi');
      const chain = await readChainDocument(deps.s3, deps.catalog, required(state.chain, 'chain').chainKey);
      let merged: { readonly byteLength: number; readonly stream: AsyncIterable<Uint8Array> };
      if (chain.format === 'qcow2') {
        const source = await mergedClusterSource(
          deps.s3,
          deps.catalog.bucket,
          chain.layers,
          chain.virtualSize,
        );
        await checkQcow2Fits(state, vdi.ref, source.virtualSize, `the merged chain of ${chain.backupId}`);
        merged = writeQcow2(source);
      } else {
        merged = writeVhd(await mergedBlockSource(deps.s3, deps.catalog.bucket, chain.layers), {
          diskType: 'dynamic',
        });
      }
      const progress = trackTransfer(deps.progress, state.execution?.name, `import merged ${vdi.uuid}`, {
        total: merged.byteLength,
        log,
      });
      const body = Readable.from(
        countBytes(merged.stream, (bytes) => {
          deps.onImportProgress?.('merged', bytes);
          progress.update(bytes);
        }),
        { objectMode: false },
      );
      const sent = await importUnderOurTask(
        state,
        `vdi-vault restore ${chain.backupId} (merged ${chain.layers.length} layers)`,
        vdi.ref,
        chain.format,
        body,
        merged.byteLength,
      ).finally(() => progress.end());
      return [{ backupId: 'merged', bytes: merged.byteLength, host: sent.host }];
    },

    /** Marks the VDI complete: every layer is in. */
    async cleanup(state: RestoreState): Promise<{ completedAt: string }> {
      const vdi = required(state.vdi, 'vdi');
      await withSession(state, (session) =>
        session.addToVdiOtherConfig(vdi.ref, RESTORE_STATE_TAG, 'complete').catch(async (error: unknown) => {
          // add_to_other_config refuses an existing key on real hosts: replace it.
          if (!isXapiError(error, 'MAP_DUPLICATE_KEY')) throw error;
          await session.removeFromVdiOtherConfig(vdi.ref, RESTORE_STATE_TAG);
          await session.addToVdiOtherConfig(vdi.ref, RESTORE_STATE_TAG, 'complete');
        }),
      );
      await removeChainDocument(state);
      return { completedAt: now().toISOString() };
    },

    /** Logs out and reports what was restored (a disk, or a VM by FinishVm). */
    async logout(state: RestoreState | VmRestoreState): Promise<RestoreResult | VmRestoreResult> {
      if ('vmRequest' in state) {
        await withSession(state, (session) => session.logout());
        return required(state.vmResult, 'vmResult');
      }
      const chain = required(state.chain, 'chain');
      const vdi = required(state.vdi, 'vdi');
      const imported = state.imported ?? [];
      await withSession(state, (session) => session.logout());
      return {
        vdiUuid: vdi.uuid,
        sourceVdiUuid: state.request.vdiUuid,
        restorePoint: chain.backupId,
        strategy: state.request.strategy,
        format: chain.format,
        layersApplied: chain.layers.map((layer) => layer.backupId),
        bytesMoved: imported.reduce((sum, layer) => sum + layer.bytes, 0),
        durationMs: now().getTime() - Date.parse(state.startedAt),
      };
    },

    /** After any failure past login: destroy the partial VDI (unless asked to keep it) and log out. */
    async failureCleanup(state: RestoreState): Promise<RestoreFailure> {
      const cleanup = new CleanupLog(log);
      if (state.session) {
        // withSession logs in again if the session expired, so the partial VDI still goes.
        if (state.vdi && !state.request.keepPartial) {
          const vdiRef = state.vdi.ref;
          await cleanup.attempt('destroyed the partially restored VDI', () =>
            withSession(state, (session) => session.destroyVdi(vdiRef)),
          );
        } else if (state.vdi) {
          cleanup.note(`kept the partial VDI ${state.vdi.uuid} (keepPartial)`);
        }
        const session = XapiSession.resume({ ...deps.pools.get(state.pool).connection, log }, state.session);
        await cleanup.attempt('logged out', () => session.logout());
      }
      await cleanup.attempt('removed the chain document', () => removeChainDocument(state));
      const { error, cause } = failureMessage(state.failure);
      log.error('restore failed', { error, cause, cleanup: cleanup.actions });
      return { error, cause, cleanup: cleanup.actions };
    },
  };
}

export type RestoreSteps = ReturnType<typeof createRestoreSteps>;

async function* countBytes(source: AsyncIterable<Uint8Array>, report: (bytes: number) => void) {
  let total = 0;
  for await (const chunk of source) {
    total += chunk.length;
    report(total);
    yield chunk;
  }
}
