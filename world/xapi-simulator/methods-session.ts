import { method, stringArg } from './method-table.ts';
import type { MethodTable } from './method-table.ts';
import { sessionRecord } from './records.ts';
import { XapiError } from './xapi-error.ts';

export const sessionMethods: MethodTable = {
  // version and originator have defaults in xapi's datamodel, so 2 to 4 arguments are accepted.
  'session.login_with_password': method(
    [2, 4],
    ({ pool, host }, args) => {
      // A member refuses every login and names the master. Real xapi gives the master's IP; both
      // simulated hosts share 127.0.0.1, so the address carries the master's port.
      if (host.role !== 'master') throw new XapiError('HOST_IS_SLAVE', [pool.master.address]);
      const username = stringArg(args, 0, 'uname');
      const password = stringArg(args, 1, 'pwd');
      const originator = typeof args[3] === 'string' ? args[3] : '';
      const user = pool.users.find((candidate) => candidate.username === username);
      if (user === undefined || user.password !== password) {
        throw new XapiError('SESSION_AUTHENTICATION_FAILED', [username, 'Authentication failure']);
      }
      pool.sessionCounts.logins += 1;
      return pool.createSession(user, originator).ref;
    },
    { takesSession: false },
  ),
  'session.logout': method(0, ({ pool, session }) => {
    pool.endSession(session!.ref, 'logout');
    pool.sessionCounts.logouts += 1;
    return '';
  }),
  'session.get_record': method(1, ({ pool }, args) => {
    const ref = stringArg(args, 0, 'self');
    const session = pool.sessions.get(ref);
    if (session === undefined) throw new XapiError('HANDLE_INVALID', ['session', ref]);
    return sessionRecord(pool, session);
  }),
  'session.get_this_host': method(1, ({ pool }) => pool.master.ref),
  'session.get_uuid': method(1, ({ pool }, args) => {
    const ref = stringArg(args, 0, 'self');
    const session = pool.sessions.get(ref);
    if (session === undefined) throw new XapiError('HANDLE_INVALID', ['session', ref]);
    return session.uuid;
  }),
};
