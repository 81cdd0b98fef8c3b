/**
 * Reading a constructor's record argument (VM.create, VBD.create, VIF.create) as xapi's generated
 * dispatcher does (ocaml/idl/ocaml_backend/gen_server.ml): fields are read in datamodel order; a field
 * without a default that is absent fails with INTERNAL_ERROR
 * ["Server_helpers.Dispatcher_FieldNotFound(\"<field>\")"], before anything else is checked; present
 * fields of the wrong type fail with FIELD_TYPE_ERROR [field] (the simulator's reading of the
 * unmarshalling failure). Enum values match case-insensitively, as the generated converters do.
 */
import { boolArg, intArg, stringArg, stringListArg, stringMapArg } from './method-table.ts';
import { XapiError } from './xapi-error.ts';

export type FieldKind =
  | { readonly kind: 'string' }
  | { readonly kind: 'int' }
  | { readonly kind: 'float' }
  | { readonly kind: 'bool' }
  | { readonly kind: 'map' }
  | { readonly kind: 'set' }
  | { readonly kind: 'enum'; readonly values: readonly string[] };

export interface CtorField {
  readonly name: string;
  readonly type: FieldKind;
  /** Present: the field may be left out and takes this value. */
  readonly default?: unknown;
}

export const S: FieldKind = { kind: 'string' };
export const I: FieldKind = { kind: 'int' };
export const F: FieldKind = { kind: 'float' };
export const B: FieldKind = { kind: 'bool' };
export const M: FieldKind = { kind: 'map' };
export const L: FieldKind = { kind: 'set' };
export const E = (...values: string[]): FieldKind => ({ kind: 'enum', values });

export function fieldNotFound(name: string): XapiError {
  return new XapiError('INTERNAL_ERROR', [`Server_helpers.Dispatcher_FieldNotFound("${name}")`]);
}

function convert(name: string, type: FieldKind, value: unknown): unknown {
  switch (type.kind) {
    case 'string':
      return stringArg([value], 0, name);
    case 'int':
      return intArg(value, name);
    case 'float': {
      const number = typeof value === 'string' && value.trim() !== '' ? Number(value) : value;
      if (typeof number !== 'number' || !Number.isFinite(number))
        throw new XapiError('FIELD_TYPE_ERROR', [name]);
      return number;
    }
    case 'bool':
      return boolArg(value, name);
    case 'map':
      return stringMapArg(value, name);
    case 'set':
      return [...stringListArg(value, name)];
    case 'enum': {
      const text = stringArg([value], 0, name);
      const match = type.values.find((candidate) => candidate.toLowerCase() === text.toLowerCase());
      if (match === undefined) throw new XapiError('ENUM_INVALID', [name, text]);
      return match;
    }
  }
}

/** The record's fields, converted, with defaults filled in; unknown extra fields are ignored. */
export function readCtorRecord(value: unknown, fields: readonly CtorField[]): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new XapiError('INTERNAL_ERROR', ['bad __structure']);
  }
  const record = value as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const field of fields) {
    if (!Object.hasOwn(record, field.name)) {
      if (!Object.hasOwn(field, 'default')) throw fieldNotFound(field.name);
      out[field.name] = structuredClone(field.default);
      continue;
    }
    out[field.name] = convert(field.name, field.type, record[field.name]);
  }
  return out;
}
