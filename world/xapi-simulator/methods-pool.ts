import { method } from './method-table.ts';
import type { MethodTable } from './method-table.ts';
import { fieldGetters } from './methods-getters.ts';
import { hostRecord, poolRecord, srRecord } from './records.ts';
import { XapiError } from './xapi-error.ts';

/** SR, host and pool: what backup code and general XAPI clients read on connect. */
export const poolMethods: MethodTable = {
  'SR.get_by_uuid': method(1, ({ pool }, args) => pool.srByUuid(args[0]).ref),
  'SR.get_record': method(1, ({ pool }, args) => srRecord(pool, pool.sr(args[0]))),
  'SR.get_all': method(0, ({ pool }) => [...pool.srs.keys()]),
  'SR.get_all_records': method(0, ({ pool }) =>
    Object.fromEntries([...pool.srs.values()].map((sr) => [sr.ref, srRecord(pool, sr)])),
  ),
  ...fieldGetters('SR', (pool, ref) => srRecord(pool, pool.sr(ref)), [
    'uuid',
    'name_label',
    'type',
    'shared',
    'VDIs',
    'physical_size',
    'physical_utilisation',
    'virtual_allocation',
    'other_config',
  ]),
  'host.get_record': method(1, ({ pool }, args) => hostRecord(pool, pool.host(args[0]))),
  'host.get_all': method(0, ({ pool }) => pool.hosts.map((host) => host.ref)),
  'host.get_all_records': method(0, ({ pool }) =>
    Object.fromEntries(pool.hosts.map((host) => [host.ref, hostRecord(pool, host)])),
  ),
  'host.get_by_uuid': method(1, ({ pool }, args) => {
    const host = pool.hosts.find((candidate) => candidate.uuid === args[0]);
    if (host === undefined) throw new XapiError('UUID_INVALID', ['host', String(args[0])]);
    return host.ref;
  }),
  ...fieldGetters('host', (pool, ref) => hostRecord(pool, pool.host(ref)), [
    'uuid',
    'name_label',
    'address',
    'API_version_major',
    'API_version_minor',
    'software_version',
    'resident_VMs',
    'PIFs',
    'control_domain',
  ]),
  'pool.get_all': method(0, ({ pool }) => [pool.poolRef]),
  'pool.get_all_records': method(0, ({ pool }) => ({ [pool.poolRef]: poolRecord(pool) })),
  'pool.get_record': method(1, ({ pool }, args) => {
    if (args[0] !== pool.poolRef) throw new XapiError('HANDLE_INVALID', ['pool', String(args[0])]);
    return poolRecord(pool);
  }),
  'pool.get_master': method(1, ({ pool }) => pool.master.ref),
  'pool.get_default_SR': method(1, ({ pool }) => poolRecord(pool).default_SR!),
};
