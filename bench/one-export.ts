import type { ImageFormat } from '../lambdas/catalog/manifest.ts';
import { exportToS3, type ExportToS3Result } from '../lambdas/export/export-to-s3.ts';
import { createS3Client, type S3Endpoint } from '../lambdas/s3/client.ts';
import { XapiSession } from '../lambdas/xapi/index.ts';

export interface OneExportInput {
  readonly xapi: { readonly url: string; readonly username: string; readonly password: string };
  readonly vdiUuid: string;
  readonly s3: S3Endpoint;
  readonly bucket: string;
  readonly key: string;
  readonly partsInFlight: number;
  /** The export's image format (exportToS3's `format`): `.vhd` or `.qcow2` keys go with it. */
  readonly format: ImageFormat;
}

export interface OneExportResult {
  readonly export: ExportToS3Result;
  /** From the exportToS3 call to its return: GET, validation, sha256, every part and the completion. */
  readonly seconds: number;
}

/**
 * One run of our export pipeline, exactly as the Export step calls it, minus the catalog: log in, create
 * the task, `exportToS3`, destroy the task, log out. Only the `exportToS3` call is timed.
 */
export async function runOneExport(input: OneExportInput): Promise<OneExportResult> {
  const s3 = createS3Client(input.s3);
  const session = await XapiSession.login({ url: input.xapi.url }, input.xapi);
  try {
    const vdiRef = await session.getVdiByUuid(input.vdiUuid);
    const record = await session.getVdiRecord(vdiRef);
    const taskRef = await session.createTask('vdi-vault bench export');
    try {
      const started = performance.now();
      const result = await exportToS3({
        session,
        s3,
        bucket: input.bucket,
        key: input.key,
        vdiRef,
        taskRef,
        virtualSize: record.virtual_size,
        partsInFlight: input.partsInFlight,
        format: input.format,
      });
      return { export: result, seconds: (performance.now() - started) / 1000 };
    } finally {
      await session.destroyTask(taskRef);
    }
  } finally {
    await session.logout();
    s3.destroy();
  }
}
