/**
 * The create form's logic, apart from its looks: fields from a launcher's
 * option schema, their values as text, and the checks run as the user types.
 */

import { ICreateHubRequest, IEngineLimits, ILauncher, IOptionSchema } from './types';

/** How an option of a launcher is edited. */
export type FieldKind = 'string' | 'enum' | 'integer' | 'number' | 'boolean' | 'list' | 'json';

export type FieldValue = string | boolean;

export interface IValues {
  [name: string]: FieldValue;
}

export interface IErrors {
  [field: string]: string;
}

/** What the form holds: the fixed fields and the launcher's options. */
export interface IFormState {
  name: string;
  count: string;
  launcher: ILauncher | undefined;
  values: IValues;
}

/** Hub names the server accepts (its `NAME_RE`). */
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

/** Used when the server does not say (an older server). */
export const FALLBACK_LIMITS: IEngineLimits = { default: 2, minimum: 0, maximum: 64 };

function schemaType(schema: IOptionSchema): string | undefined {
  const type = schema.type;
  if (Array.isArray(type)) {
    return type.find(t => t !== 'null');
  }
  return type;
}

export function fieldKind(schema: IOptionSchema): FieldKind {
  if (Array.isArray(schema.enum) && schema.enum.length > 0) {
    return 'enum';
  }
  switch (schemaType(schema)) {
    case 'string':
      return 'string';
    case 'integer':
      return 'integer';
    case 'number':
      return 'number';
    case 'boolean':
      return 'boolean';
    case 'array':
      return schema.items && schemaType(schema.items) === 'string' ? 'list' : 'json';
    default:
      return 'json';
  }
}

/** The form's starting values: each option's default, as the form shows it. */
export function defaultValues(schema: IOptionSchema | undefined): IValues {
  const values: IValues = {};
  for (const [name, prop] of Object.entries(schema?.properties ?? {})) {
    const kind = fieldKind(prop);
    const value = prop.default;
    if (kind === 'boolean') {
      values[name] = value === true;
    } else if (value === undefined || value === null) {
      values[name] = '';
    } else if (kind === 'list' && Array.isArray(value)) {
      values[name] = value.join(', ');
    } else if (kind === 'json') {
      values[name] = isEmptyObject(value) ? '' : JSON.stringify(value);
    } else {
      values[name] = String(value);
    }
  }
  return values;
}

function isEmptyObject(value: unknown): boolean {
  return !!value && typeof value === 'object' && Object.keys(value as object).length === 0;
}

/** Check one option's text against its schema: [value, error]; undefined value: left out. */
function parseOption(prop: IOptionSchema, raw: FieldValue | undefined): [unknown, string] {
  const kind = fieldKind(prop);
  if (kind === 'boolean') {
    return [raw === true, ''];
  }
  const text = typeof raw === 'string' ? raw.trim() : '';
  if (text === '') {
    return [undefined, ''];
  }
  switch (kind) {
    case 'enum': {
      const match = (prop.enum ?? []).find(v => String(v) === text);
      return match === undefined ? [undefined, 'not one of the choices'] : [match, ''];
    }
    case 'integer':
    case 'number':
      return parseNumber(text, prop, kind === 'integer');
    case 'list':
      return [
        text
          .split(',')
          .map(item => item.trim())
          .filter(item => item !== ''),
        ''
      ];
    case 'json':
      return parseJson(text, prop);
    default:
      return [text, ''];
  }
}

function parseNumber(text: string, prop: IOptionSchema, integer: boolean): [unknown, string] {
  const number = Number(text);
  if (!Number.isFinite(number) || (integer && !Number.isInteger(number))) {
    return [undefined, integer ? 'a whole number' : 'a number'];
  }
  if (prop.minimum !== undefined && number < prop.minimum) {
    return [undefined, `at least ${prop.minimum}`];
  }
  if (prop.maximum !== undefined && number > prop.maximum) {
    return [undefined, `at most ${prop.maximum}`];
  }
  return [number, ''];
}

function parseJson(text: string, prop: IOptionSchema): [unknown, string] {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return [undefined, 'not valid JSON'];
  }
  if (schemaType(prop) === 'object') {
    if (!value || typeof value !== 'object' || Array.isArray(value)) {
      return [undefined, 'a JSON object, e.g. {"NAME": "value"}'];
    }
    const itemType = typeof prop.additionalProperties === 'object'
      ? schemaType(prop.additionalProperties)
      : undefined;
    const wrong = Object.values(value as object).some(v =>
      itemType === 'integer' ? !Number.isInteger(v) : itemType === 'string' && typeof v !== 'string'
    );
    if (wrong) {
      return [undefined, itemType === 'integer' ? 'every value a whole number' : 'every value a string'];
    }
  }
  return [value, ''];
}

/**
 * Turn the form's values into launcher options, checking them against the
 * schema. Empty fields are left out, so the server applies its defaults.
 */
export function collectOptions(
  schema: IOptionSchema | undefined,
  values: IValues
): { options: { [name: string]: unknown }; errors: IErrors } {
  const options: { [name: string]: unknown } = {};
  const errors: IErrors = {};
  const required = new Set(schema?.required ?? []);
  for (const [name, prop] of Object.entries(schema?.properties ?? {})) {
    const [value, error] = parseOption(prop, values[name]);
    if (error) {
      errors[name] = error;
    } else if (value !== undefined) {
      options[name] = value;
    } else if (required.has(name)) {
      errors[name] = 'required';
    }
  }
  return { options, errors };
}

/** Parse the requested engine count; undefined: empty (the server's default), null: invalid. */
export function parseCount(text: string, limits: IEngineLimits): number | undefined | null {
  const trimmed = text.trim();
  if (trimmed === '') {
    return undefined;
  }
  const n = Number(trimmed);
  return Number.isInteger(n) && n >= limits.minimum && n <= limits.maximum ? n : null;
}

export function countError(limits: IEngineLimits): string {
  return `a whole number from ${limits.minimum} to ${limits.maximum}`;
}

/** Why a hub name cannot be used ('' when it can). */
export function nameError(name: string, activeNames: ReadonlySet<string>): string {
  const trimmed = name.trim();
  if (trimmed === '') {
    return '';
  }
  if (!NAME_RE.test(trimmed)) {
    return "letters, digits, '_', '.' or '-' (at most 64), starting with a letter or digit";
  }
  if (activeNames.has(trimmed)) {
    return `a hub named ${trimmed} is already running`;
  }
  return '';
}

/**
 * Every problem of the form, keyed `name`, `n` or `option:<name>`, and the
 * request it makes when there is none.
 */
export function checkForm(
  form: IFormState,
  limits: IEngineLimits,
  activeNames: ReadonlySet<string>
): { errors: IErrors; request: ICreateHubRequest } {
  const errors: IErrors = {};
  const collected = collectOptions(form.launcher?.schema, form.values);
  for (const [key, error] of Object.entries(collected.errors)) {
    errors[`option:${key}`] = error;
  }
  const n = parseCount(form.count, limits);
  if (n === null) {
    errors['n'] = countError(limits);
  }
  const badName = nameError(form.name, activeNames);
  if (badName) {
    errors['name'] = badName;
  }
  const request: ICreateHubRequest = {};
  if (form.name.trim()) {
    request.name = form.name.trim();
  }
  if (form.launcher) {
    request.launcher = form.launcher.name;
  }
  if (typeof n === 'number') {
    request.n = n;
  }
  if (Object.keys(collected.options).length > 0) {
    request.options = collected.options;
  }
  return { errors, request };
}

/** The launcher a new form starts with: the server's default, else `local`, else the first. */
export function preferredLauncher(launchers: readonly ILauncher[], serverDefault?: string): string {
  const preferred =
    launchers.find(l => l.name === serverDefault) ?? launchers.find(l => l.name === 'local');
  return (preferred ?? launchers[0])?.name ?? '';
}

/** Help text in pieces: plain text, and code spans (written ``x`` or `x`). */
export function helpPieces(text: string): { code: boolean; text: string }[] {
  const pieces: { code: boolean; text: string }[] = [];
  const pattern = /``(.+?)``|`([^`]+)`/g;
  let last = 0;
  for (let match = pattern.exec(text); match; match = pattern.exec(text)) {
    if (match.index > last) {
      pieces.push({ code: false, text: text.slice(last, match.index) });
    }
    pieces.push({ code: true, text: match[1] ?? match[2] });
    last = match.index + match[0].length;
  }
  if (last < text.length) {
    pieces.push({ code: false, text: text.slice(last) });
  }
  return pieces;
}
