import { GetObjectCommand, DeleteObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { WORK_AREAS, workAreaPrefix, type CatalogLocation } from '../catalog/keys.ts';
import { InputValidationError } from '../shared/input-error.ts';

/** The steps that move disk data and so may run on Fargate. */
export const TRANSFER_STEPS = [
  'backup.export',
  'backup.merge',
  'restore.importLayer',
  'restore.importMerged',
  'restore.replayChain',
] as const;
export type TransferStep = (typeof TRANSFER_STEPS)[number];

/** What the workflow hands the container (as environment variables of its container override). */
export interface TransferParameters {
  readonly step: TransferStep;
  /** The state the step's Lambda would have received. */
  readonly input: unknown;
  /** Where the result goes: the workflow's next state reads it from there. */
  readonly resultKey: string;
}

/** The environment variable that carries one field (`chain.chainKey`) of a transfer's input. */
export function transferFieldVariable(field: string): string {
  return `${TRANSFER_ENV.fieldPrefix}${field.replaceAll('.', '__')}`;
}

export const TRANSFER_ENV = {
  step: 'VDI_VAULT_TRANSFER_STEP',
  /** One variable per field of the step's input, its value the field as JSON: `<prefix><field>`. */
  fieldPrefix: 'VDI_VAULT_TRANSFER_INPUT_',
  resultKey: 'VDI_VAULT_TRANSFER_RESULT_KEY',
} as const;

/** Reads the container's parameters; each missing or malformed one is named with its fix. */
export function parseTransferParameters(
  env: Readonly<Record<string, string | undefined>>,
): TransferParameters {
  const step = env[TRANSFER_ENV.step];
  if (!step)
    throw new InputValidationError(
      TRANSFER_ENV.step,
      'is missing',
      `Set it to one of ${TRANSFER_STEPS.join(', ')}.`,
    );
  if (!(TRANSFER_STEPS as readonly string[]).includes(step)) {
    throw new InputValidationError(
      TRANSFER_ENV.step,
      `"${step}" is not a transfer step`,
      `Use one of ${TRANSFER_STEPS.join(', ')}.`,
    );
  }
  const input: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith(TRANSFER_ENV.fieldPrefix) || value === undefined) continue;
    try {
      // `chain__chainKey` is the field `chain.chainKey`.
      const path = name.slice(TRANSFER_ENV.fieldPrefix.length).split('__');
      let at = input;
      for (const part of path.slice(0, -1)) at = (at[part] ??= {}) as Record<string, unknown>;
      at[path.at(-1)!] = JSON.parse(value);
    } catch {
      throw new InputValidationError(name, 'is not JSON', 'Set it to the field of the step input as JSON.');
    }
  }
  if (Object.keys(input).length === 0) {
    throw new InputValidationError(
      `${TRANSFER_ENV.fieldPrefix}*`,
      'is missing',
      'Set one variable per field of the step input, each holding the field as JSON.',
    );
  }
  const resultKey = env[TRANSFER_ENV.resultKey];
  if (!resultKey) {
    throw new InputValidationError(
      TRANSFER_ENV.resultKey,
      'is missing',
      'Set it to the S3 key the result is written to.',
    );
  }
  return { step: step as TransferStep, input, resultKey };
}

/** Where a transfer's result goes: outside every VDI's series prefix, so the catalog never lists it. */
export function transferResultKey(catalog: CatalogLocation, id: string): string {
  return `${workAreaPrefix(catalog, WORK_AREAS.transfers)}${id}.result`;
}

/** The container's answer, as the collecting state reads it. */
export type TransferResult =
  | {
      readonly status: 'succeeded';
      readonly step: TransferStep;
      readonly output: unknown;
      readonly endedAt: string;
    }
  | {
      readonly status: 'failed';
      readonly step: TransferStep;
      readonly error: string;
      readonly cause: string;
      readonly endedAt: string;
    };

export async function writeTransferResult(
  s3: S3Client,
  catalog: CatalogLocation,
  key: string,
  result: TransferResult,
) {
  await s3.send(
    new PutObjectCommand({
      Bucket: catalog.bucket,
      Key: key,
      Body: JSON.stringify(result),
      ContentType: 'application/json',
    }),
  );
}

/** A failure the container reported, raised again under the same name so the workflow's Catch sees it. */
export class TransferFailure extends Error {
  constructor(name: string, message: string) {
    super(message);
    this.name = name;
  }
}

/** Reads (and removes) the container's result; a failed transfer is raised as its original error. */
export async function collectTransferResult(
  s3: S3Client,
  catalog: CatalogLocation,
  key: string,
): Promise<unknown> {
  const object = await s3
    .send(new GetObjectCommand({ Bucket: catalog.bucket, Key: key }))
    .catch((error: unknown) => {
      throw new TransferFailure(
        'TransferResultMissing',
        `the Fargate transfer left no result at ${key}: ${String(error)}`,
      );
    });
  const result = JSON.parse((await object.Body?.transformToString('utf8')) ?? '{}') as TransferResult;
  await s3.send(new DeleteObjectCommand({ Bucket: catalog.bucket, Key: key }));
  if (result.status === 'succeeded') return result.output;
  throw new TransferFailure(result.error, result.cause);
}
