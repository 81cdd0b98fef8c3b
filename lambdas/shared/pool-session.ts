import { isXapiError, XapiHttpError, XapiSession, type XapiSessionHandle } from '../xapi/index.ts';
import type { Log } from './log.ts';
import type { PoolAccess, PoolDirectory } from './pools.ts';

/** Where a step's session lives: the pool it belongs to and the handle Login passed along. */
export interface SessionState {
  readonly pool: string;
  readonly session?: XapiSessionHandle;
}

/**
 * Runs a step's XAPI work on the execution's session. A session that expired mid-run (SESSION_INVALID, or a
 * 401 on a transfer) is refused before anything happens, so the step logs in again, runs the work once
 * more, and logs that replacement session out before returning. A state without a session (the Fargate
 * task's) works in a session of its own.
 */
export async function withPoolSession<T>(
  pools: PoolDirectory,
  log: Log,
  state: SessionState,
  work: (session: XapiSession) => Promise<T>,
): Promise<T> {
  const access = pools.get(state.pool);
  // The Fargate task gets no session (a RunTask's parameters are logged): it logs in for itself.
  if (!state.session) return withOwnSession(access, log, work);
  const session = XapiSession.resume({ ...access.connection, log }, state.session);
  try {
    return await work(session);
  } catch (error) {
    const expired =
      isXapiError(error, 'SESSION_INVALID') || (error instanceof XapiHttpError && error.status === 401);
    if (!expired) throw error;
    log.warn('the session expired; logging in again for this step', { pool: state.pool });
  } finally {
    await session.close();
  }
  return withOwnSession(access, log, work);
}

/** A session of the step's own, logged out when the work is done. */
async function withOwnSession<T>(
  access: PoolAccess,
  log: Log,
  work: (session: XapiSession) => Promise<T>,
): Promise<T> {
  const own = await XapiSession.login({ ...access.connection, log }, await access.credentials());
  try {
    return await work(own);
  } finally {
    await own.logout().catch(() => own.close());
  }
}
