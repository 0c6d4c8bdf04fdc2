import * as React from 'react';

import {
  checkForm,
  defaultValues,
  FieldValue,
  fieldKind,
  helpPieces,
  IErrors,
  IValues,
  preferredLauncher
} from './options';
import { ICreateHubRequest, IEngineLimits, ILauncher, IOptionSchema } from './types';

export interface ICreateFormProps {
  launchers: readonly ILauncher[] | null;
  launchersError: string | null;
  /** The server's default launcher. */
  defaultLauncher?: string;
  limits: IEngineLimits;
  /** Names of hubs that are starting or running (a new hub cannot take them). */
  activeNames: ReadonlySet<string>;
  busy: boolean;
  onSubmit: (request: ICreateHubRequest) => void;
  onCancel: () => void;
}

/**
 * The form that starts a new hub. Fields are checked as the user types (a
 * field's problem shows next to it once it was edited, or after a submit);
 * options most people leave alone are folded under "Advanced options".
 */
export function CreateForm(props: ICreateFormProps): JSX.Element {
  const launchers = props.launchers ?? [];
  const [name, setName] = React.useState('');
  const [count, setCount] = React.useState('');
  const [launcherName, setLauncherName] = React.useState(() =>
    preferredLauncher(launchers, props.defaultLauncher)
  );
  const launcher = launchers.find(l => l.name === launcherName);
  const [values, setValues] = React.useState<IValues>(() => defaultValues(launcher?.schema));
  const [touched, setTouched] = React.useState<ReadonlySet<string>>(new Set());
  const [submitted, setSubmitted] = React.useState(false);

  // Launchers may arrive after the form opened.
  React.useEffect(() => {
    if (!launcherName && launchers.length > 0) {
      const first = preferredLauncher(launchers, props.defaultLauncher);
      setLauncherName(first);
      setValues(defaultValues(launchers.find(l => l.name === first)?.schema));
    }
  }, [props.launchers]);

  const { errors, request } = checkForm(
    { name, count, launcher, values },
    props.limits,
    props.activeNames
  );
  const shown: IErrors = {};
  for (const [key, error] of Object.entries(errors)) {
    if (submitted || touched.has(key)) {
      shown[key] = error;
    }
  }
  const touch = (key: string): void => {
    if (!touched.has(key)) {
      setTouched(new Set([...touched, key]));
    }
  };

  const chooseLauncher = (next: string): void => {
    setLauncherName(next);
    setValues(defaultValues(launchers.find(l => l.name === next)?.schema));
    setTouched(new Set([...touched].filter(key => !key.startsWith('option:'))));
  };

  const submit = (event: React.FormEvent): void => {
    event.preventDefault();
    setSubmitted(true);
    if (Object.keys(errors).length === 0) {
      props.onSubmit(request);
    }
  };

  const properties = Object.entries(launcher?.schema?.properties ?? {});
  const basic = properties.filter(([, prop]) => !prop.advanced);
  const advanced = properties.filter(([, prop]) => prop.advanced);
  const optionField = ([key, prop]: [string, IOptionSchema]): JSX.Element => (
    <OptionField
      key={`${launcherName}:${key}`}
      name={key}
      schema={prop}
      value={values[key]}
      error={shown[`option:${key}`]}
      onChange={value => {
        setValues({ ...values, [key]: value });
        touch(`option:${key}`);
      }}
    />
  );
  const advancedErrors = advanced.some(([key]) => shown[`option:${key}`]);
  const { limits } = props;
  return (
    <form className="jp-HubCtl-createForm" data-testid="hubctl-form" onSubmit={submit} noValidate>
      <Field label="Name" error={shown['name']} help="Optional; a random id is used without one.">
        <input
          className="jp-mod-styled"
          data-testid="hubctl-form-name"
          placeholder="e.g. analysis"
          value={name}
          aria-invalid={!!shown['name']}
          onChange={e => {
            setName(e.target.value);
            touch('name');
          }}
        />
      </Field>
      <Field
        label="Engines"
        error={shown['n']}
        help={
          `${limits.minimum} to ${limits.maximum}; ${limits.default} when left empty. ` +
          (limits.minimum === 0 ? '0 starts only the controller: scale up later.' : '')
        }
      >
        <input
          className="jp-mod-styled"
          data-testid="hubctl-form-n"
          inputMode="numeric"
          placeholder={`${limits.default} (default)`}
          value={count}
          aria-invalid={!!shown['n']}
          onChange={e => {
            setCount(e.target.value);
            touch('n');
          }}
        />
      </Field>
      {props.launchers === null && !props.launchersError && (
        <div className="jp-HubCtl-note">Loading launchers…</div>
      )}
      {props.launchersError && (
        <div className="jp-HubCtl-note" data-testid="hubctl-launchers-error">
          Launchers could not be listed ({props.launchersError}); the server's default launcher
          will be used.
        </div>
      )}
      {launchers.length > 0 && (
        <Field label="Where engines run" help={launcher?.description}>
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
      {basic.map(optionField)}
      {advanced.length > 0 && (
        <details
          className="jp-HubCtl-advanced"
          data-testid="hubctl-form-advanced"
          open={advancedErrors || undefined}
        >
          <summary>Advanced options ({advanced.length})</summary>
          <div className="jp-HubCtl-advancedFields">{advanced.map(optionField)}</div>
        </details>
      )}
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

/** Help text with its code spans (``x``) shown as code, never as raw markup. */
export function HelpText({ text }: { text: string }): JSX.Element {
  return (
    <>
      {helpPieces(text).map((piece, i) =>
        piece.code ? <code key={i}>{piece.text}</code> : <React.Fragment key={i}>{piece.text}</React.Fragment>
      )}
    </>
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
      {props.error && (
        <span className="jp-HubCtl-fieldError" data-testid="hubctl-field-error" role="alert">
          {props.error}
        </span>
      )}
      {props.help && (
        <span className="jp-HubCtl-fieldHelp">
          <HelpText text={props.help} />
        </span>
      )}
    </label>
  );
}

function placeholderOf(schema: IOptionSchema, kind: string): string {
  const example = schema.examples?.[0];
  if (example !== undefined) {
    return typeof example === 'string' ? example : JSON.stringify(example);
  }
  if (kind === 'list') {
    return 'comma separated';
  }
  return kind === 'json' ? 'JSON' : '';
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
            <span className="jp-HubCtl-fieldHelp">
              <HelpText text={schema.description} />
            </span>
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
    default:
      input = (
        <input
          className="jp-mod-styled"
          data-testid={testid}
          inputMode={kind === 'integer' || kind === 'number' ? 'decimal' : undefined}
          placeholder={placeholderOf(schema, kind)}
          value={text}
          aria-invalid={!!props.error}
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
