/**
 * The parts of undici the XAPI client uses, imported one by one: undici's index also loads fetch,
 * WebSocket, caches and mocks, about 700 KiB in every Lambda bundle, none of which we use.
 */
import type { Dispatcher } from 'undici';
import AgentClass from 'undici/lib/dispatcher/agent.js';
import buildConnectorFunction from 'undici/lib/core/connect.js';
import requestOnDispatcher from 'undici/lib/api/api-request.js';

export const Agent = AgentClass;
export type Agent = InstanceType<typeof AgentClass>;
export const buildConnector = buildConnectorFunction;

export type RequestOptions = Omit<Dispatcher.RequestOptions, 'origin' | 'path' | 'method'> & {
  readonly method: Dispatcher.HttpMethod;
  readonly dispatcher: Dispatcher;
};

/** `undici.request(url, options)` with an explicit dispatcher. */
export function request(url: URL | string, options: RequestOptions): Promise<Dispatcher.ResponseData> {
  const target = new URL(url);
  const { dispatcher, ...rest } = options;
  return requestOnDispatcher.call(dispatcher, {
    ...rest,
    origin: target.origin,
    path: target.pathname + target.search,
  });
}
