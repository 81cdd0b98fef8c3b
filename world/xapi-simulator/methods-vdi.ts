import { randomUUID } from 'node:crypto';
import { boolArg, intArg, method, stringArg, stringListArg, stringMapArg } from './method-table.ts';
import type { MethodTable } from './method-table.ts';
import { isImageFormat, maxVdiSize, newVdiImageFormat } from './image-format.ts';
import { newRef, NULL_REF } from './pool.ts';
import type { ImageFormat, PoolState, SrState, VdiState } from './pool.ts';
import { vdiRecord } from './records.ts';
import { fieldGetters } from './methods-getters.ts';
import { BLOCK_SIZE, SparseDisk } from './sparse-disk.ts';
import { vbdsOfVdi, vmTables } from './vm-state.ts';
import { XapiError } from './xapi-error.ts';

const VDI_TYPES = new Set([
  'system',
  'user',
  'ephemeral',
  'suspend',
  'crashdump',
  'ha_statefile',
  'metadata',
  'redo_log',
  'rrd',
  'pvs_cache',
  'cbt_metadata',
]);

export interface NewVdi {
  sr: SrState;
  virtualSize: number;
  nameLabel?: string;
  nameDescription?: string;
  type?: string;
  sharable?: boolean;
  readOnly?: boolean;
  otherConfig?: Record<string, string>;
  smConfig?: Record<string, string>;
  tags?: string[];
  disk?: SparseDisk;
  snapshotOf?: VdiState;
  /** Default: what the SR gives a disk of this size (image-format.ts); shown in sm_config["image-format"]. */
  imageFormat?: ImageFormat;
}

export function addVdiToPool(pool: PoolState, spec: NewVdi): VdiState {
  const imageFormat = newVdiImageFormat(spec.sr, spec.virtualSize, spec.imageFormat);
  const vdi: VdiState = {
    uuid: randomUUID(),
    ref: newRef(),
    sr: spec.sr,
    nameLabel: spec.nameLabel ?? '',
    nameDescription: spec.nameDescription ?? '',
    type: spec.type ?? 'user',
    sharable: spec.sharable ?? false,
    readOnly: spec.readOnly ?? false,
    otherConfig: { ...spec.otherConfig },
    smConfig: { ...spec.smConfig, 'image-format': imageFormat },
    xenstoreData: {},
    tags: [...(spec.tags ?? [])],
    isASnapshot: spec.snapshotOf !== undefined,
    snapshotOf: spec.snapshotOf?.ref ?? NULL_REF,
    snapshots: [],
    snapshotTime: spec.snapshotOf !== undefined ? new Date() : undefined,
    disk: spec.disk ?? new SparseDisk(spec.virtualSize),
    imageFormat,
    activeTransfers: 0,
  };
  pool.vdis.set(vdi.ref, vdi);
  spec.snapshotOf?.snapshots.push(vdi.ref);
  return vdi;
}

/** VDI.snapshot: shares every block with the source (copy-on-write), copies the descriptive fields. */
export function snapshotVdi(pool: PoolState, source: VdiState): VdiState {
  return addVdiToPool(pool, {
    sr: source.sr,
    virtualSize: source.disk.virtualSize,
    nameLabel: source.nameLabel,
    nameDescription: source.nameDescription,
    type: source.type,
    sharable: source.sharable,
    readOnly: source.readOnly,
    otherConfig: source.otherConfig,
    smConfig: source.smConfig,
    tags: source.tags,
    disk: source.disk.clone(),
    snapshotOf: source,
    imageFormat: source.imageFormat,
  });
}

/**
 * VDI.destroy: refused with VDI_IN_USE while a transfer holds the VDI or a VBD has it attached (a
 * running VM's disk); the VBDs of halted VMs that point at it go with it, as xapi_vdi.ml destroys them.
 */
export function destroyVdi(pool: PoolState, vdi: VdiState): void {
  const vbds = vbdsOfVdi(pool, vdi.ref);
  if (vdi.activeTransfers > 0 || vbds.some((vbd) => vbd.currently_attached)) {
    throw new XapiError('VDI_IN_USE', [vdi.ref, 'destroy']);
  }
  for (const vbd of vbds) vmTables(pool).vbds.delete(vbd.ref);
  pool.removeVdi(vdi);
}

/** VHD-based SRs round a new VDI's size up to whole 2 MiB blocks, as SM's vhdutil does. */
function roundToBlocks(size: number): number {
  return Math.ceil(size / BLOCK_SIZE) * BLOCK_SIZE;
}

function createFromRecord(pool: PoolState, value: unknown): VdiState {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new XapiError('FIELD_TYPE_ERROR', ['args']);
  }
  const record = value as Record<string, unknown>;
  // Fields without a default in xapi's datamodel must be present.
  for (const field of ['SR', 'virtual_size', 'type', 'sharable', 'read_only', 'other_config']) {
    if (!(field in record)) throw new XapiError('FIELD_TYPE_ERROR', [field]);
  }
  const sr = pool.sr(record.SR);
  const virtualSize = intArg(record.virtual_size, 'virtual_size');
  if (virtualSize < 0) throw new XapiError('FIELD_TYPE_ERROR', ['virtual_size']);
  const smConfig = record.sm_config === undefined ? {} : stringMapArg(record.sm_config, 'sm_config');
  // sm_config["image-format"] asks SM for a format; without it the SR's preference, qcow2 over 2040 GiB.
  const asked = smConfig['image-format'];
  if (asked !== undefined && !isImageFormat(asked)) {
    throw new XapiError('SR_BACKEND_FAILURE', ['', `Unsupported image format: ${asked}`, '']);
  }
  const imageFormat = newVdiImageFormat(sr, virtualSize, asked);
  if (virtualSize > maxVdiSize(imageFormat)) {
    throw new XapiError('SR_BACKEND_FAILURE_79', ['', `VDI Invalid size: ${virtualSize}`, '']);
  }
  const type = stringArg([record.type], 0, 'type');
  if (!VDI_TYPES.has(type)) throw new XapiError('ENUM_INVALID', ['type', type]);
  return addVdiToPool(pool, {
    sr,
    virtualSize: roundToBlocks(virtualSize),
    nameLabel: record.name_label === undefined ? '' : stringArg([record.name_label], 0, 'name_label'),
    nameDescription:
      record.name_description === undefined
        ? ''
        : stringArg([record.name_description], 0, 'name_description'),
    type,
    sharable: boolArg(record.sharable, 'sharable'),
    readOnly: boolArg(record.read_only, 'read_only'),
    otherConfig: stringMapArg(record.other_config, 'other_config'),
    smConfig,
    tags: record.tags === undefined ? [] : stringListArg(record.tags, 'tags'),
    imageFormat,
  });
}

const VDI_FIELDS = [
  'uuid',
  'name_label',
  'name_description',
  'allowed_operations',
  'current_operations',
  'SR',
  'VBDs',
  'virtual_size',
  'physical_utilisation',
  'type',
  'sharable',
  'read_only',
  'other_config',
  'location',
  'managed',
  'missing',
  'parent',
  'xenstore_data',
  'sm_config',
  'is_a_snapshot',
  'snapshot_of',
  'snapshots',
  'snapshot_time',
  'tags',
  'on_boot',
  'allow_caching',
  'metadata_of_pool',
  'is_tools_iso',
  'cbt_enabled',
];

export const vdiMethods: MethodTable = {
  'VDI.get_by_uuid': method(1, ({ pool }, args) => pool.vdiByUuid(args[0]).ref),
  'VDI.get_record': method(1, ({ pool }, args) => vdiRecord(pool, pool.vdi(args[0]))),
  'VDI.get_all': method(0, ({ pool }) => [...pool.vdis.keys()]),
  'VDI.get_all_records': method(0, ({ pool }) =>
    Object.fromEntries([...pool.vdis.values()].map((vdi) => [vdi.ref, vdiRecord(pool, vdi)])),
  ),
  'VDI.get_by_name_label': method(1, ({ pool }, args) =>
    [...pool.vdis.values()].filter((vdi) => vdi.nameLabel === args[0]).map((vdi) => vdi.ref),
  ),
  ...fieldGetters('VDI', (pool, ref) => vdiRecord(pool, pool.vdi(ref)), VDI_FIELDS),
  'VDI.snapshot': method(
    [1, 2], // driver_params has a default
    ({ pool }, args) => {
      const source = pool.vdi(args[0]);
      if (args[1] !== undefined) stringMapArg(args[1], 'driver_params');
      return snapshotVdi(pool, source).ref;
    },
    { writes: true },
  ),
  'VDI.destroy': method(
    1,
    ({ pool }, args) => {
      destroyVdi(pool, pool.vdi(args[0]));
      return '';
    },
    { writes: true },
  ),
  'VDI.create': method(1, ({ pool }, args) => createFromRecord(pool, args[0]).ref, { writes: true }),
  'VDI.add_to_other_config': method(
    3,
    ({ pool }, args) => {
      const vdi = pool.vdi(args[0]);
      const key = stringArg(args, 1, 'key');
      const value = stringArg(args, 2, 'value');
      if (Object.hasOwn(vdi.otherConfig, key)) {
        throw new XapiError('MAP_DUPLICATE_KEY', ['VDI', 'other_config', vdi.ref, key]);
      }
      vdi.otherConfig[key] = value;
      return '';
    },
    { writes: true },
  ),
  'VDI.remove_from_other_config': method(
    2,
    ({ pool }, args) => {
      const vdi = pool.vdi(args[0]);
      delete vdi.otherConfig[stringArg(args, 1, 'key')];
      return '';
    },
    { writes: true },
  ),
  'VDI.set_other_config': method(
    2,
    ({ pool }, args) => {
      pool.vdi(args[0]).otherConfig = stringMapArg(args[1], 'value');
      return '';
    },
    { writes: true },
  ),
  'VDI.set_name_label': method(
    2,
    ({ pool }, args) => {
      pool.vdi(args[0]).nameLabel = stringArg(args, 1, 'value');
      return '';
    },
    { writes: true },
  ),
  'VDI.set_name_description': method(
    2,
    ({ pool }, args) => {
      pool.vdi(args[0]).nameDescription = stringArg(args, 1, 'value');
      return '';
    },
    { writes: true },
  ),
  'VDI.add_tags': method(
    2,
    ({ pool }, args) => {
      const vdi = pool.vdi(args[0]);
      const tag = stringArg(args, 1, 'value');
      if (!vdi.tags.includes(tag)) vdi.tags.push(tag);
      return '';
    },
    { writes: true },
  ),
  'VDI.remove_tags': method(
    2,
    ({ pool }, args) => {
      const vdi = pool.vdi(args[0]);
      vdi.tags = vdi.tags.filter((tag) => tag !== args[1]);
      return '';
    },
    { writes: true },
  ),
};
