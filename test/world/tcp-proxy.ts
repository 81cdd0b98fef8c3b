import { createConnection, createServer, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';

/**
 * A TCP proxy on loopback in front of a server, to stop that server as the code under test sees it:
 * `stop()` resets every open connection and every new one until `start()`. Stopping the shared S3 server
 * itself would break other test files running at the same time.
 *
 * `stopAfterBytes(n)` stops it once `n` more bytes have passed in one direction (default client → server,
 * e.g. an upload's bodies), counted here where they flow: no hook into the code under test is needed, so
 * the trigger works whatever thread or process that code runs in.
 */
export interface TcpProxy {
  readonly url: string;
  /** Bytes that passed so far, each way, over all connections. */
  readonly bytes: { readonly toServer: number; readonly toClient: number };
  /** How many times the proxy has been stopped (by `stop()` or a trigger). */
  readonly stops: number;
  stop(): void;
  start(): void;
  /**
   * Arms a stop after `bytes` more bytes (exactly: the chunk that crosses the mark is cut there), and a
   * restart `restartAfterMs` later when given. One trigger at a time; arming again replaces it.
   */
  stopAfterBytes(bytes: number, options?: StopOptions): StopTrigger;
  close(): Promise<void>;
}

export interface StopOptions {
  /** Which bytes count. Default `toServer`. */
  readonly direction?: 'toServer' | 'toClient';
  readonly restartAfterMs?: number;
}

export interface StopTrigger {
  /** Whether the stop happened; `stoppedAtBytes` is the direction's byte count at that moment. */
  readonly fired: boolean;
  readonly stoppedAtBytes: number | undefined;
  /** Resolves when the proxy stopped (never, if it doesn't). */
  readonly stopped: Promise<void>;
  /** Disarms it (a pending restart still happens). */
  cancel(): void;
}

interface Armed {
  direction: 'toServer' | 'toClient';
  /** The direction's count at which to stop. */
  at: number;
  restartAfterMs: number | undefined;
  fired: boolean;
  stoppedAtBytes: number | undefined;
  resolve: () => void;
}

export async function startTcpProxy(targetUrl: string): Promise<TcpProxy> {
  const target = new URL(targetUrl);
  const sockets = new Set<Socket>();
  const counted = { toServer: 0, toClient: 0 };
  let stopped = false;
  let stops = 0;
  let armed: Armed | undefined;
  const timers = new Set<NodeJS.Timeout>();

  const stop = (): void => {
    stopped = true;
    stops++;
    for (const socket of sockets) socket.resetAndDestroy();
  };

  /** Forwards `chunk` one way, cut where an armed trigger says; returns false to pause the reader. */
  const forward = (direction: 'toServer' | 'toClient', chunk: Buffer, to: Socket): boolean => {
    if (stopped) return true;
    const trigger = armed?.direction === direction ? armed : undefined;
    const room = trigger ? trigger.at - counted[direction] : Infinity;
    const part = room < chunk.length ? chunk.subarray(0, Math.max(0, room)) : chunk;
    counted[direction] += part.length;
    const flowing = part.length ? to.write(part) : true;
    if (trigger && counted[direction] >= trigger.at) {
      armed = undefined;
      trigger.fired = true;
      trigger.stoppedAtBytes = counted[direction];
      stop();
      trigger.resolve();
      if (trigger.restartAfterMs !== undefined) {
        const timer = setTimeout(() => {
          timers.delete(timer);
          stopped = false;
        }, trigger.restartAfterMs);
        timers.add(timer);
      }
    }
    return flowing;
  };

  const server = createServer((client) => {
    if (stopped) {
      client.resetAndDestroy();
      return;
    }
    const upstream = createConnection({ host: target.hostname, port: Number(target.port) });
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      socket.on('error', () => {
        client.destroy();
        upstream.destroy();
      });
    }
    // Piped by hand so every byte is counted (and a trigger can cut inside a chunk), with back-pressure.
    const relay = (from: Socket, to: Socket, direction: 'toServer' | 'toClient') => {
      from.on('data', (chunk: Buffer) => {
        if (!forward(direction, chunk, to)) {
          from.pause();
          to.once('drain', () => from.resume());
        }
      });
      from.on('end', () => to.end());
    };
    relay(client, upstream, 'toServer');
    relay(upstream, client, 'toClient');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `${target.protocol}//127.0.0.1:${port}`,
    get bytes() {
      return { ...counted };
    },
    get stops() {
      return stops;
    },
    stop,
    start() {
      stopped = false;
    },
    stopAfterBytes(bytes, options = {}) {
      const direction = options.direction ?? 'toServer';
      let resolve!: () => void;
      const stoppedPromise = new Promise<void>((done) => (resolve = done));
      const trigger: Armed = {
        direction,
        at: counted[direction] + bytes,
        restartAfterMs: options.restartAfterMs,
        fired: false,
        stoppedAtBytes: undefined,
        resolve,
      };
      armed = trigger;
      return {
        get fired() {
          return trigger.fired;
        },
        get stoppedAtBytes() {
          return trigger.stoppedAtBytes;
        },
        stopped: stoppedPromise,
        cancel() {
          if (armed === trigger) armed = undefined;
        },
      };
    },
    async close() {
      armed = undefined;
      for (const timer of timers) clearTimeout(timer);
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
