export * from './errors.ts';
export * from './records.ts';
export * from './session.ts';
export * from './tls.ts';
export * from './transfer.ts';
