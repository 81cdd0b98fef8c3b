/**
 * Every workflow step, spelled once. The infrastructure builds each Lambda (memory, timeout, handler, its
 * grants) and the workflows' state names from this table; the runtime builds each handler from it; the
 * local runner finds handlers through the template the infrastructure made from it. Pure data: no CDK,
 * no AWS SDK, so Lambda code and CDK code both import it (docs/design.md, "One step runtime").
 */

/** S3 actions a step uses on the catalog prefix (bucket-level ones on the bucket). */
export type CatalogAction =
  | 's3:ListBucket'
  | 's3:ListBucketMultipartUploads'
  | 's3:GetObject'
  | 's3:PutObject'
  | 's3:DeleteObject'
  | 's3:AbortMultipartUpload';

/**
 * Item actions a step uses on the series lock table; `UpdateItem` is a transfer's progress record
 * (docs/design.md § Progress of deployed transfers).
 */
export type LockAction =
  'dynamodb:PutItem' | 'dynamodb:GetItem' | 'dynamodb:DeleteItem' | 'dynamodb:UpdateItem';

const PROGRESS: readonly LockAction[] = ['dynamodb:UpdateItem'];

export interface StepSpec {
  /** The domain function the step runs, a key of `createBackupSteps(...)` / `createRestoreSteps(...)`. */
  readonly name: string;
  /** The construct id of its Lambda function. */
  readonly functionId: string;
  /** The workflow state(s) invoking it on Lambda. */
  readonly states: readonly string[];
  readonly memoryMiB: number;
  readonly timeoutSeconds: number;
  /**
   * May log in to the pool: Login, and any step that finds its session expired and logs in again (so it
   * reads the pool credentials too). Logout only ever ends the session it is given.
   */
  readonly logsIn: boolean;
  readonly catalog: readonly CatalogAction[];
  readonly lock: readonly LockAction[];
  /** Safe to run again after a failure of the network or of the Lambda service. */
  readonly retryable: boolean;
  /** Moves disk data: may run on Fargate instead (`TRANSFER_STEPS`), and its memory bounds part buffers. */
  readonly transfer?: boolean;
  /** Runs only in the Fargate task (no Lambda function is made for it). */
  readonly fargateOnly?: boolean;
}

const MINUTE = 60;

/** A Lambda may run 15 minutes (design.md, AWS limits). */
export const TRANSFER_TIMEOUT_SECONDS = 15 * MINUTE;
/**
 * Step Functions gives a transfer state longer than its Lambda may run, so the Lambda's own limit ends it
 * first: when the workflow moves on to Fargate, the Lambda (and its upload stream) is gone.
 */
export const TRANSFER_STATE_TIMEOUT_SECONDS = TRANSFER_TIMEOUT_SECONDS + MINUTE;
/**
 * How a transfer that outgrew its Lambda fails: Lambda's own time limit, Step Functions' backstop, or
 * memory (part buffers of a disk larger than planned). Each sends the transfer to Fargate.
 */
export const OUT_OF_LAMBDA_ERRORS = ['Sandbox.Timedout', 'States.Timeout', 'Runtime.OutOfMemory'] as const;
/** Default memory of the transfer functions: part size × parts in flight must fit (routing checks it). */
export const TRANSFER_MEMORY_MIB = 1024;

const step = (spec: Partial<StepSpec> & Pick<StepSpec, 'name' | 'functionId' | 'states'>): StepSpec => ({
  memoryMiB: 256,
  timeoutSeconds: MINUTE,
  logsIn: true,
  catalog: [],
  lock: [],
  retryable: true,
  ...spec,
});

export const BACKUP_STEPS = {
  login: step({ name: 'login', functionId: 'LoginFunction', states: ['Login'] }),
  // Selects the VMs and snapshots each (VM.snapshot): a retry could leave a twin behind.
  snapshotVms: step({
    name: 'snapshotVms',
    functionId: 'SnapshotVmsFunction',
    states: ['SnapshotVms'],
    timeoutSeconds: 5 * MINUTE,
    retryable: false,
    // Each VM's description waits under .vm-pending/ for CommitVms; a failure removes it.
    catalog: ['s3:PutObject', 's3:DeleteObject'],
  }),
  plan: step({
    name: 'plan',
    functionId: 'PlanFunction',
    states: ['Plan'],
    timeoutSeconds: 2 * MINUTE,
    // Reads the series, aborts a killed run's uploads, moves a broken chain's manifests aside.
    catalog: [
      's3:ListBucket',
      's3:ListBucketMultipartUploads',
      's3:GetObject',
      's3:PutObject',
      's3:DeleteObject',
      's3:AbortMultipartUpload',
    ],
    lock: ['dynamodb:PutItem', 'dynamodb:GetItem', 'dynamodb:DeleteItem'],
  }),
  // A retried snapshot could leave a twin behind.
  snapshot: step({
    name: 'snapshot',
    functionId: 'SnapshotFunction',
    states: ['Snapshot'],
    timeoutSeconds: 5 * MINUTE,
    retryable: false,
  }),
  createTask: step({ name: 'createTask', functionId: 'CreateTaskFunction', states: ['CreateTask'] }),
  // A stream can't be resumed.
  export: step({
    name: 'export',
    functionId: 'ExportFunction',
    states: ['Export'],
    timeoutSeconds: TRANSFER_TIMEOUT_SECONDS,
    memoryMiB: TRANSFER_MEMORY_MIB,
    catalog: ['s3:PutObject', 's3:AbortMultipartUpload'],
    retryable: false,
    transfer: true,
    lock: PROGRESS,
  }),
  prepareFargateRetry: step({
    name: 'prepareFargateRetry',
    functionId: 'PrepareFargateRetryFunction',
    states: ['PrepareFargateRetry'],
    catalog: ['s3:ListBucketMultipartUploads', 's3:AbortMultipartUpload'],
  }),
  collectExport: step({
    name: 'collectExport',
    functionId: 'CollectExportFunction',
    states: ['CollectExport'],
    logsIn: false,
    catalog: ['s3:GetObject', 's3:DeleteObject'],
  }),
  commit: step({
    name: 'commit',
    functionId: 'CommitFunction',
    states: ['Commit'],
    logsIn: false,
    catalog: ['s3:GetObject', 's3:PutObject'],
  }),
  // Forever incremental (docs/design.md § Forever incremental): builds a synthetic full by copies inside
  // S3, reads it back, rewrites the point's manifest. Routed to Fargate when the read-back is large. A
  // retry plans again from the catalog, so a repeat is safe.
  merge: step({
    name: 'merge',
    functionId: 'MergeFunction',
    states: ['Merge'],
    timeoutSeconds: TRANSFER_TIMEOUT_SECONDS,
    memoryMiB: TRANSFER_MEMORY_MIB,
    logsIn: false,
    catalog: [
      's3:ListBucket',
      's3:ListBucketMultipartUploads',
      's3:GetObject',
      's3:PutObject',
      's3:DeleteObject',
      's3:AbortMultipartUpload',
    ],
    transfer: true,
    lock: PROGRESS,
  }),
  collectMerge: step({
    name: 'collectMerge',
    functionId: 'CollectMergeFunction',
    states: ['CollectMerge'],
    logsIn: false,
    catalog: ['s3:GetObject', 's3:DeleteObject'],
  }),
  // Applies retention: lists the series, reads manifests, deletes expired points.
  cleanup: step({
    name: 'cleanup',
    functionId: 'CleanupFunction',
    states: ['Cleanup'],
    timeoutSeconds: 5 * MINUTE,
    catalog: ['s3:ListBucket', 's3:GetObject', 's3:DeleteObject'],
    lock: ['dynamodb:DeleteItem'],
  }),
  failureCleanup: step({
    name: 'failureCleanup',
    functionId: 'FailureCleanupFunction',
    states: ['FailureCleanup'],
    timeoutSeconds: 5 * MINUTE,
    catalog: ['s3:ListBucketMultipartUploads', 's3:AbortMultipartUpload', 's3:DeleteObject'],
    lock: ['dynamodb:DeleteItem'],
  }),
  // Writes each VM restore point (its manifest after every disk's), removes the VM's points whose disk
  // points retention took (lists the series), and removes the snapshot VMs.
  commitVms: step({
    name: 'commitVms',
    functionId: 'CommitVmsFunction',
    states: ['CommitVms'],
    timeoutSeconds: 2 * MINUTE,
    retryable: false,
    catalog: ['s3:ListBucket', 's3:GetObject', 's3:PutObject', 's3:DeleteObject'],
  }),
  logout: step({
    name: 'logout',
    functionId: 'LogoutFunction',
    // The second: after SnapshotVms or CommitVms failed, before the run fails with that failure.
    states: ['Logout', 'LogoutAfterFailure'],
    logsIn: false,
  }),
} as const satisfies Record<string, StepSpec>;

export const RESTORE_STEPS = {
  validate: step({
    name: 'validate',
    functionId: 'ValidateFunction',
    states: ['Validate'],
    logsIn: false,
    retryable: false,
  }),
  login: step({ name: 'login', functionId: 'LoginFunction', states: ['RestoreLogin'] }),
  resolveChain: step({
    name: 'resolveChain',
    functionId: 'ResolveChainFunction',
    // The second: each disk of a VM restore, in its disk Map (the same steps as a disk restore's merge).
    states: ['ResolveChain', 'VmDiskChain'],
    timeoutSeconds: 2 * MINUTE,
    // Writes the resolved chain where the imports (and a Fargate task) read it.
    catalog: ['s3:ListBucket', 's3:GetObject', 's3:PutObject'],
  }),
  createVdi: step({
    name: 'createVdi',
    functionId: 'CreateVdiFunction',
    states: ['CreateVdi', 'VmDiskCreate'],
    retryable: false,
  }),
  importLayer: step({
    name: 'importLayer',
    functionId: 'ImportLayerFunction',
    states: ['ImportLayer'],
    timeoutSeconds: TRANSFER_TIMEOUT_SECONDS,
    memoryMiB: TRANSFER_MEMORY_MIB,
    catalog: ['s3:GetObject'],
    retryable: false,
    transfer: true,
    lock: PROGRESS,
  }),
  importMerged: step({
    name: 'importMerged',
    functionId: 'ImportMergedFunction',
    states: ['ImportMerged', 'VmDiskImport'],
    timeoutSeconds: TRANSFER_TIMEOUT_SECONDS,
    memoryMiB: TRANSFER_MEMORY_MIB,
    catalog: ['s3:GetObject'],
    retryable: false,
    transfer: true,
    lock: PROGRESS,
  }),
  // A replay whose largest layer is too large for a Lambda: every layer in one task, in order.
  replayChain: step({
    name: 'replayChain',
    functionId: 'ReplayChainTask',
    states: ['ReplayOnFargate'],
    catalog: ['s3:GetObject'],
    retryable: false,
    transfer: true,
    lock: PROGRESS,
    fargateOnly: true,
  }),
  collectImport: step({
    name: 'collectImport',
    functionId: 'CollectImportFunction',
    states: ['CollectImportLayer', 'CollectImportMerged', 'CollectImportReplay', 'CollectVmDiskImport'],
    logsIn: false,
    catalog: ['s3:GetObject', 's3:DeleteObject'],
  }),
  // Marks the VDI complete; removes the chain document.
  cleanup: step({
    name: 'cleanup',
    functionId: 'CleanupFunction',
    states: ['RestoreCleanup', 'VmDiskDone'],
    catalog: ['s3:DeleteObject'],
  }),
  // A VM restore (docs/design.md § VM restores): the point, every disk's chain, SRs and networks checked.
  resolveVm: step({
    name: 'resolveVm',
    functionId: 'ResolveVmFunction',
    states: ['ResolveVm'],
    timeoutSeconds: 2 * MINUTE,
    catalog: ['s3:ListBucket', 's3:GetObject'],
  }),
  // Makes the VM (blocked from starting), its NVRAM, vTPM, VIFs and drives: a retry could make a twin.
  createVm: step({
    name: 'createVm',
    functionId: 'CreateVmFunction',
    states: ['CreateVm'],
    catalog: ['s3:GetObject'],
    retryable: false,
  }),
  // A retried VBD.create could fail on the slot its first attempt took.
  attachVmDisk: step({
    name: 'attachVmDisk',
    functionId: 'AttachVmDiskFunction',
    states: ['AttachVmDisk'],
    retryable: false,
  }),
  finishVm: step({ name: 'finishVm', functionId: 'FinishVmFunction', states: ['FinishVm'] }),
  vmFailureCleanup: step({
    name: 'vmFailureCleanup',
    functionId: 'VmFailureCleanupFunction',
    states: ['VmRestoreFailureCleanup'],
    timeoutSeconds: 5 * MINUTE,
    catalog: ['s3:DeleteObject'],
  }),
  logout: step({ name: 'logout', functionId: 'LogoutFunction', states: ['RestoreLogout'], logsIn: false }),
  failureCleanup: step({
    name: 'failureCleanup',
    functionId: 'FailureCleanupFunction',
    states: ['RestoreFailureCleanup'],
    timeoutSeconds: 5 * MINUTE,
    catalog: ['s3:DeleteObject'],
  }),
} as const satisfies Record<string, StepSpec>;

export const WORKFLOW_STEPS = { backup: BACKUP_STEPS, restore: RESTORE_STEPS } as const;
export type Workflow = keyof typeof WORKFLOW_STEPS;

/** Every step the Fargate task may run. */
export function transferSteps(): (StepSpec & { readonly workflow: Workflow })[] {
  return Object.entries(WORKFLOW_STEPS).flatMap(([workflow, steps]) =>
    Object.values(steps as Record<string, StepSpec>)
      .filter((spec) => spec.transfer)
      .map((spec) => ({ ...spec, workflow: workflow as Workflow })),
  );
}

/** `backup.export` → its spec. */
export function stepSpec(qualified: string): StepSpec & { readonly workflow: Workflow } {
  const [workflow, name] = qualified.split('.') as [string, string];
  const table = (WORKFLOW_STEPS as Record<string, Record<string, StepSpec>>)[workflow];
  const spec = table?.[name];
  if (!spec) throw new Error(`unknown step ${qualified}`);
  return { ...spec, workflow: workflow as Workflow };
}

/**
 * Functions a schedule runs, outside the workflows: built, granted and bundled as the steps are (in the
 * backup bundle, `lambdas/handlers/backup.ts`), invoked by no state (docs/design.md § Dashboard and metric
 * names).
 */
export const SCHEDULED_STEPS = {
  // Hourly: the age of each series' newest restore point (`NewestRestorePointAge`), read from the catalog.
  publishCatalogMetrics: step({
    name: 'publishCatalogMetrics',
    functionId: 'CatalogMetricsFunction',
    states: [],
    timeoutSeconds: 5 * MINUTE,
    logsIn: false,
    catalog: ['s3:ListBucket', 's3:GetObject'],
  }),
} as const satisfies Record<string, StepSpec>;

/** How often `publishCatalogMetrics` runs, in minutes: the dashboard's period for its metric. */
export const CATALOG_METRICS_EVERY_MINUTES = 60;
