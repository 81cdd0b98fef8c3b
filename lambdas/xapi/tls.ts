import { createHash } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import { Agent, buildConnector } from './undici-parts.ts';
import type { Log } from '../shared/log.ts';

/**
 * How to trust the pool's certificate. XCP-ng and XenServer ship self-signed certificates, so an operator
 * either supplies the CA bundle (or the host certificate itself) or pins the certificate's SHA-256
 * fingerprint. Skipping verification must be asked for explicitly.
 */
export interface XapiTlsOptions {
  /** PEM CA bundle (or the self-signed host certificate) to verify the host against. */
  readonly caPem?: string;
  /** SHA-256 fingerprint of the host certificate, hex with or without colons. */
  readonly pinnedSha256?: string;
  /** Accept any certificate. Logged as a warning on every connection setup. Default false. */
  readonly insecureSkipVerify?: boolean;
}

export function normaliseFingerprint(fingerprint: string): string {
  return fingerprint.replace(/[^0-9a-f]/gi, '').toUpperCase();
}

/** An undici Agent that enforces the TLS policy for every connection it makes (https only). */
export function createXapiAgent(tls: XapiTlsOptions, log: Log): Agent {
  const pinned = tls.pinnedSha256 ? normaliseFingerprint(tls.pinnedSha256) : undefined;
  if (pinned !== undefined && pinned.length !== 64) {
    throw new Error('tls.pinnedSha256 must be a SHA-256 fingerprint (64 hex digits); got ' + pinned.length);
  }
  if (tls.insecureSkipVerify && !pinned && !tls.caPem) {
    log.warn('TLS verification of the pool is disabled (insecureSkipVerify): use a CA bundle or a pin');
  }
  const connect = buildConnector({
    // A pin replaces chain verification (self-signed hosts fail it); we check the pin ourselves below.
    rejectUnauthorized: !(tls.insecureSkipVerify || pinned),
    // A resumed TLS session may not present the certificate again, and the pin must see it every time.
    ...(pinned ? { maxCachedSessions: 0 } : {}),
    ...(tls.caPem ? { ca: tls.caPem } : {}),
  });
  return new Agent({
    connect(options, callback) {
      connect(options, (error, socket) => {
        if (error || !pinned || options.protocol !== 'https:')
          return callback(error as Error, socket as null);
        const raw = (socket as TLSSocket).getPeerCertificate?.()?.raw;
        const actual = raw ? createHash('sha256').update(raw).digest('hex').toUpperCase() : '';
        if (actual === pinned) return callback(null, socket as TLSSocket);
        socket?.destroy();
        callback(
          new Error(`pool certificate fingerprint ${actual || '(none)'} does not match tls.pinnedSha256`),
          null,
        );
      });
    },
  });
}
