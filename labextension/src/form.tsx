import * as React from 'react';

import { ICreateHubRequest, ILauncher, IOptionSchema } from './types';

/** How an option of a launcher is edited. */
type FieldKind = 'string' | 'enum' | 'integer' | 'number' | 'boolean' | 'list' | 'json';

type FieldValue = string | boolean;

interface IValues {
  [name: string]: FieldValue;
}

interface IErrors {
  [name: string]: string;
}

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
      values[name] = JSON.stringify(value);
    } else {
      values[name] = String(value);
    }
  }
  return values;
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
    const kind = fieldKind(prop);
    const raw = values[name];
    if (kind === 'boolean') {
      options[name] = raw === true;
      continue;
    }
    const text = typeof raw === 'string' ? raw.trim() : '';
    if (text === '') {
      if (required.has(name)) {
        errors[name] = 'required';
      }
      continue;
    }
    switch (kind) {
      case 'enum': {
        const match = (prop.enum ?? []).find(v => String(v) === text);
        if (match === undefined) {
          errors[name] = 'not one of the choices';
        } else {
          options[name] = match;
        }
        break;
      }
      case 'integer':
      case 'number': {
        const number = Number(text);
        if (!Number.isFinite(number) || (kind === 'integer' && !Number.isInteger(number))) {
          errors[name] = kind === 'integer' ? 'a whole number' : 'a number';
        } else if (prop.minimum !== undefined && number < prop.minimum) {
          errors[name] = `at least ${prop.minimum}`;
        } else if (prop.maximum !== undefined && number > prop.maximum) {
          errors[name] = `at most ${prop.maximum}`;
        } else {
          options[name] = number;
        }
        break;
      }
      case 'list':
        options[name] = text
          .split(',')
          .map(item => item.trim())
          .filter(item => item !== '');
        break;
      case 'json':
        try {
          options[name] = JSON.parse(text);
        } catch {
          errors[name] = 'not valid JSON';
        }
        break;
      default:
        options[name] = text;
    }
  }
  return { options, errors };
}

/** Parse the requested engine count; empty means the server's default. */
export function parseCount(text: string): number | undefined | null {
  const trimmed = text.trim();
  if (trimmed === '') {
    return undefined;
  }
  const n = Number(trimmed);
  return Number.isInteger(n) && n >= 1 ? n : null;
}

function preferredLauncher(launchers: readonly ILauncher[]): string {
  const local = launchers.find(l => l.name === 'local');
  return (local ?? launchers[0])?.name ?? '';
}

export interface ICreateFormProps {
  launchers: readonly ILauncher[] | null;
  launchersError: string | null;
  busy: boolean;
  onSubmit: (request: ICreateHubRequest) => void;
  onCancel: () => void;
}

/** The form that starts a new hub; options come from the launcher's schema. */
export function CreateForm(props: ICreateFormProps): JSX.Element {
  const launchers = props.launchers ?? [];
  const [name, setName] = React.useState('');
  const [count, setCount] = React.useState('');
  const [launcherName, setLauncherName] = React.useState(() =>
    preferredLauncher(launchers)
  );
  const launcher = launchers.find(l => l.name === launcherName);
  const [values, setValues] = React.useState<IValues>(() =>
    defaultValues(launcher?.schema)
  );
  const [errors, setErrors] = React.useState<IErrors>({});

  // Launchers may arrive after the form opened.
  React.useEffect(() => {
    if (!launcherName && launchers.length > 0) {
      const first = preferredLauncher(launchers);
      setLauncherName(first);
      setValues(defaultValues(launchers.find(l => l.name === first)?.schema));
    }
  }, [props.launchers]);

  const chooseLauncher = (next: string): void => {
    setLauncherName(next);
    setValues(defaultValues(launchers.find(l => l.name === next)?.schema));
    setErrors({});
  };

  const submit = (event: React.FormEvent): void => {
    event.preventDefault();
    const collected = collectOptions(launcher?.schema, values);
    const n = parseCount(count);
    const found: IErrors = {};
    for (const [key, error] of Object.entries(collected.errors)) {
      found[`option:${key}`] = error;
    }
    if (n === null) {
      found['n'] = 'a whole number, at least 1';
    }
    setErrors(found);
    if (Object.keys(found).length > 0) {
      return;
    }
    const request: ICreateHubRequest = {};
    if (name.trim()) {
      request.name = name.trim();
    }
    if (launcher) {
      request.launcher = launcher.name;
    }
    if (typeof n === 'number') {
      request.n = n;
    }
    if (Object.keys(collected.options).length > 0) {
      request.options = collected.options;
    }
    props.onSubmit(request);
  };

  const properties = Object.entries(launcher?.schema?.properties ?? {});
  return (
    <form className="jp-HubCtl-createForm" data-testid="hubctl-form" onSubmit={submit}>
      <Field label="Name">
        <input
          className="jp-mod-styled"
          data-testid="hubctl-form-name"
          placeholder="optional"
          value={name}
          onChange={e => setName(e.target.value)}
        />
      </Field>
      {props.launchers === null && !props.launchersError && (
        <div className="jp-HubCtl-note">Loading launchers…</div>
      )}
      {props.launchersError && (
        <div className="jp-HubCtl-note" data-testid="hubctl-launchers-error">
          Launchers could not be listed ({props.launchersError}); the server's
          default launcher will be used.
        </div>
      )}
      {launchers.length > 0 && (
        <Field label="Launcher" help={launcher?.description}>
          <select
            className="jp-mod-styled"
            data-testid="hubctl-form-launcher"
            value={launcherName}
            onChange={e => chooseLauncher(e.target.value)}
          >
            {launchers.map(l => (
              <option key={l.name} value={l.name}>
                {l.name}
              </option>
            ))}
          </select>
        </Field>
      )}
      <Field label="Engines" error={errors['n']}>
        <input
          className="jp-mod-styled"
          data-testid="hubctl-form-n"
          type="number"
          min={1}
          step={1}
          placeholder="server default"
          value={count}
          onChange={e => setCount(e.target.value)}
        />
      </Field>
      {properties.map(([key, prop]) => (
        <OptionField
          key={`${launcherName}:${key}`}
          name={key}
          schema={prop}
          value={values[key]}
          error={errors[`option:${key}`]}
          onChange={value => setValues({ ...values, [key]: value })}
        />
      ))}
      <div className="jp-HubCtl-formButtons">
        <button
          type="submit"
          className="jp-mod-styled jp-mod-accept"
          data-testid="hubctl-create"
          disabled={props.busy}
        >
          {props.busy ? 'Starting…' : 'Create hub'}
        </button>
        <button
          type="button"
          className="jp-mod-styled jp-mod-reject"
          data-testid="hubctl-cancel"
          onClick={props.onCancel}
        >
          Cancel
        </button>
      </div>
    </form>
  );
}

function Field(props: {
  label: string;
  help?: string;
  error?: string;
  children: React.ReactNode;
}): JSX.Element {
  return (
    <label className={`jp-HubCtl-field${props.error ? ' jp-mod-error' : ''}`}>
      <span className="jp-HubCtl-fieldLabel">{props.label}</span>
      {props.children}
      {props.error && <span className="jp-HubCtl-fieldError">{props.error}</span>}
      {props.help && <span className="jp-HubCtl-fieldHelp">{props.help}</span>}
    </label>
  );
}

function OptionField(props: {
  name: string;
  schema: IOptionSchema;
  value: FieldValue | undefined;
  error?: string;
  onChange: (value: FieldValue) => void;
}): JSX.Element {
  const { name, schema } = props;
  const kind = fieldKind(schema);
  const label = schema.title || name;
  const testid = `hubctl-option-${name}`;
  const text = typeof props.value === 'string' ? props.value : '';
  let input: JSX.Element;
  switch (kind) {
    case 'boolean':
      return (
        <label className="jp-HubCtl-field jp-HubCtl-checkField">
          <input
            type="checkbox"
            data-testid={testid}
            checked={props.value === true}
            onChange={e => props.onChange(e.target.checked)}
          />
          <span className="jp-HubCtl-fieldLabel">{label}</span>
          {schema.description && (
            <span className="jp-HubCtl-fieldHelp">{schema.description}</span>
          )}
        </label>
      );
    case 'enum':
      input = (
        <select
          className="jp-mod-styled"
          data-testid={testid}
          value={text}
          onChange={e => props.onChange(e.target.value)}
        >
          {schema.default === undefined && <option value="">(default)</option>}
          {(schema.enum ?? []).map(v => (
            <option key={String(v)} value={String(v)}>
              {String(v)}
            </option>
          ))}
        </select>
      );
      break;
    case 'integer':
    case 'number':
      input = (
        <input
          className="jp-mod-styled"
          data-testid={testid}
          type="number"
          step={kind === 'integer' ? 1 : 'any'}
          min={schema.minimum}
          max={schema.maximum}
          value={text}
          onChange={e => props.onChange(e.target.value)}
        />
      );
      break;
    default:
      input = (
        <input
          className="jp-mod-styled"
          data-testid={testid}
          placeholder={kind === 'list' ? 'comma separated' : kind === 'json' ? 'JSON' : ''}
          value={text}
          onChange={e => props.onChange(e.target.value)}
        />
      );
  }
  return (
    <Field label={label} help={schema.description} error={props.error}>
      {input}
    </Field>
  );
}
