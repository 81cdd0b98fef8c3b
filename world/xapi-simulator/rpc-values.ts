/**
 * The values XAPI methods return, before either wire encoding. Plain JS integers are XAPI `int`s (64-bit:
 * JSON numbers, untyped XML-RPC strings); floats and datetimes need wrappers because XML-RPC types them.
 */
export type XapiValue =
  | string
  | number
  | boolean
  | XapiFloat
  | XapiDateTime
  | readonly XapiValue[]
  | { readonly [key: string]: XapiValue };

/** A `float` field such as task.progress: `<double>` in XML-RPC even when its value is whole. */
export class XapiFloat {
  readonly value: number;
  constructor(value: number) {
    this.value = value;
  }
}

/** A `datetime` field: `<dateTime.iso8601>` in XML-RPC, the same string in JSON-RPC. */
export class XapiDateTime {
  readonly value: string;
  constructor(date: Date | undefined) {
    this.value = formatXapiDateTime(date);
  }
}

/** XAPI's datetime text, e.g. `20261126T16:40:00Z`; the epoch stands for "never". */
export function formatXapiDateTime(date: Date | undefined): string {
  const iso = (date ?? new Date(0)).toISOString(); // 2026-11-26T16:40:00.000Z
  return `${iso.slice(0, 4)}${iso.slice(5, 7)}${iso.slice(8, 10)}T${iso.slice(11, 19)}Z`;
}

/** The JSON-RPC form of a value. */
export function toJsonValue(value: XapiValue): unknown {
  if (value instanceof XapiFloat || value instanceof XapiDateTime) return value.value;
  if (Array.isArray(value)) return value.map(toJsonValue);
  if (typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, toJsonValue(v)]));
  }
  return value;
}
