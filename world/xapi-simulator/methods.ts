import { method } from './method-table.ts';
import type { MethodTable } from './method-table.ts';
import { poolMethods } from './methods-pool.ts';
import { sessionMethods } from './methods-session.ts';
import { taskMethods } from './methods-task.ts';
import { vdiMethods } from './methods-vdi.ts';
import { deviceMethods } from './methods-devices.ts';
import { vmMethods } from './methods-vm.ts';

const apiMethods: MethodTable = {
  ...sessionMethods,
  ...vdiMethods,
  ...taskMethods,
  ...poolMethods,
  ...vmMethods,
  ...deviceMethods,
};

/** Every method the simulated host answers; anything else is MESSAGE_METHOD_UNKNOWN. */
export const methodTable: MethodTable = {
  ...apiMethods,
  'system.listMethods': method(0, () => Object.keys(methodTable).sort(), { takesSession: false }),
};
