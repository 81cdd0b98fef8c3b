import { method, stringArg } from './method-table.ts';
import type { MethodTable } from './method-table.ts';
import { failTask } from './pool.ts';
import { taskRecord } from './records.ts';
import { fieldGetters } from './methods-getters.ts';
import { XapiError } from './xapi-error.ts';

export const taskMethods: MethodTable = {
  'task.create': method(
    2,
    ({ pool, session }, args) =>
      pool.createTask(session!.ref, stringArg(args, 0, 'label'), stringArg(args, 1, 'description')).ref,
    { writes: false },
  ),
  'task.get_record': method(1, ({ pool }, args) => taskRecord(pool, pool.task(args[0]))),
  'task.get_by_uuid': method(1, ({ pool }, args) => {
    for (const task of pool.tasks.values()) if (task.uuid === args[0]) return task.ref;
    throw new XapiError('UUID_INVALID', ['task', String(args[0])]);
  }),
  'task.get_all': method(0, ({ pool }) => [...pool.tasks.keys()]),
  'task.get_all_records': method(0, ({ pool }) =>
    Object.fromEntries([...pool.tasks.values()].map((task) => [task.ref, taskRecord(pool, task)])),
  ),
  ...fieldGetters('task', (pool, ref) => taskRecord(pool, pool.task(ref)), [
    'uuid',
    'name_label',
    'name_description',
    'status',
    'progress',
    'result',
    'error_info',
    'created',
    'finished',
    'other_config',
    'allowed_operations',
    'resident_on',
  ]),
  'task.destroy': method(1, ({ pool }, args) => {
    const task = pool.task(args[0]);
    task.cancel?.(); // a transfer still running under it is cut short, as on a real host
    pool.tasks.delete(task.ref);
    return '';
  }),
  'task.cancel': method(1, ({ pool }, args) => {
    const task = pool.task(args[0]);
    if (task.status !== 'pending') {
      throw new XapiError('OPERATION_NOT_ALLOWED', [`task ${task.ref} is ${task.status}, not pending`]);
    }
    if (task.cancel !== undefined) {
      task.status = 'cancelling';
      task.cancel();
    } else {
      failTask(task, ['TASK_CANCELLED', task.ref]);
    }
    return '';
  }),
};
