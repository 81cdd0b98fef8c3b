import { isXapiError, XapiHttpError, XapiSession, type XapiSessionHandle } from '../xapi/index.ts';
import type { Log } from './log.ts';
import type { PoolDirectory } from './pools.ts';

/** Where a step's session lives: the pool it belongs to and the handle Login passed along. */
export interface SessionState {
  readonly pool: string;
  readonly session?: XapiSessionHandle;
}

/**
 * Runs a step's XAPI work on the execution's session. A session that expired mid-run (SESSION_INVALID, or a
 * 401 on a transfer) is refused before anything happens, so the step logs in again, runs the work once
 * more, and logs that replacement session out before returning.
 */
export async function withPoolSession<T>(
  pools: PoolDirectory,
  log: Log,
  state: SessionState,
  work: (session: XapiSession) => Promise<T>,
): Promise<T> {
  if (!state.session) throw new Error('internal: the workflow reached this step without a session');
  const access = pools.get(state.pool);
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
  const replacement = await XapiSession.login({ ...access.connection, log }, await access.credentials());
  try {
    return await work(replacement);
  } finally {
    await replacement.logout().catch(() => replacement.close());
  }
}
