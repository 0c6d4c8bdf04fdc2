import * as React from 'react';

import { EngineTable } from './enginetable';
import { hubLoad } from './format';
import { HealthBadge, HealthReasons, StateBadge } from './hublist';
import { ACTIVE_STATES, HubCtlModel } from './model';
import { countError, parseCount } from './options';
import { IHub, IHubEnd, IQueues } from './types';

/** What the hub card asks of the panel around it. */
export interface IHubActions {
  /** Put the hub's connect snippet into the active notebook. */
  insertSnippet(hubId: string): void;
  /** Whether a notebook is there to take a snippet. */
  canInsert(): boolean;
  /** Open the hub's dashboard in the main area. */
  openDashboard(hubId: string): void;
  /** Stop the hub, after asking when clients are connected. */
  stop(hub: IHub): void;
}

/** The selected hub: its state, controls, queue counts and engines. */
export function HubCard(props: { model: HubCtlModel; hub: IHub; actions: IHubActions }): JSX.Element {
  const { model, hub, actions } = props;
  const active = ACTIVE_STATES.has(hub.state);
  const ended = hub.state === 'stopped' || hub.state === 'failed';
  return (
    <section className="jp-HubCtl-detail" data-testid="hubctl-detail" data-hub-id={hub.id}>
      <div className="jp-HubCtl-detailHeader">
        <span className="jp-HubCtl-detailName">{hub.name || hub.id}</span>
        <HealthBadge health={hub.health} />
        <EncryptionBadge encrypted={hub.health?.encrypted} />
        <StateBadge state={hub.state} />
      </div>
      <HealthReasons health={hub.health} />
      <div className="jp-HubCtl-detailMeta">
        {hub.launcher} · profile {hub.profile} · id <code>{hub.id}</code>
      </div>
      {ended && hub.ended ? (
        <EndInfo end={hub.ended} failed={hub.state === 'failed'} />
      ) : (
        hub.error && (
          <div className="jp-HubCtl-hubError" data-testid="hubctl-hub-error">
            {hub.error}
          </div>
        )
      )}
      {ended ? (
        <div className="jp-HubCtl-controls">
          <button
            className="jp-mod-styled"
            data-testid="hubctl-dismiss"
            title="Remove this hub from the list"
            disabled={model.isBusy(hub.id)}
            onClick={() => void model.dismiss(hub.id)}
          >
            Dismiss
          </button>
        </div>
      ) : (
        <Controls model={model} hub={hub} actions={actions} />
      )}
      {model.detailError && (
        <div className="jp-HubCtl-hubError" data-testid="hubctl-detail-error">
          Engines could not be read: {model.detailError}
        </div>
      )}
      {!ended && <QueueTotals queues={model.queues} />}
      {!ended && (
        <EngineTable
          engines={model.engines}
          total={model.engineTotal}
          summary={model.engineSummary}
          queues={model.queues}
          skew={model.clockSkew}
          active={active}
          onMore={() => void model.showMoreEngines()}
        />
      )}
    </section>
  );
}

/** Whether the hub's connections are encrypted; nothing while it has not said. */
function EncryptionBadge({ encrypted }: { encrypted?: boolean }): JSX.Element | null {
  if (typeof encrypted !== 'boolean') {
    return null;
  }
  return (
    <span
      className={`jp-HubCtl-encryption jp-mod-${encrypted ? 'encrypted' : 'plaintext'}`}
      data-testid="hubctl-encryption"
      title={
        encrypted
          ? 'Every connection to this hub is encrypted (CurveZMQ)'
          : 'Connections to this hub are not encrypted (the default for a hub that listens on loopback only)'
      }
    >
      {encrypted ? 'encrypted' : 'plaintext'}
    </span>
  );
}

function Controls(props: { model: HubCtlModel; hub: IHub; actions: IHubActions }): JSX.Element {
  const { model, hub, actions } = props;
  const scaling = model.scaling(hub.id);
  const target = scaling ? scaling.to : hub.n;
  const [count, setCount] = React.useState(String(target));
  const [edited, setEdited] = React.useState(false);
  // Follow the hub's count (scaled elsewhere, or a scaling that ended) unless the user is typing.
  React.useEffect(() => {
    if (!edited) {
      setCount(String(target));
    }
  }, [target, edited]);
  const busy = model.isBusy(hub.id);
  const active = ACTIVE_STATES.has(hub.state);
  const limits = model.engineLimits;
  const n = parseCount(count, limits);
  const error = n === null || n === undefined ? countError(limits) : '';
  return (
    <>
      <div className="jp-HubCtl-controls">
        <label className={`jp-HubCtl-scale${error ? ' jp-mod-error' : ''}`}>
          <span className="jp-HubCtl-scaleLabel">Engines</span>
          <input
            className="jp-mod-styled jp-HubCtl-scaleInput"
            data-testid="hubctl-scale-n"
            inputMode="numeric"
            aria-label="Number of engines"
            aria-invalid={!!error}
            value={count}
            onChange={e => {
              setCount(e.target.value);
              setEdited(true);
            }}
          />
        </label>
        <button
          className="jp-mod-styled"
          data-testid="hubctl-scale"
          disabled={busy || !active || !!error || n === target}
          onClick={() => {
            setEdited(false);
            void model.scale(hub.id, n as number);
          }}
        >
          Scale
        </button>
        <button
          className="jp-mod-styled jp-mod-warn"
          data-testid="hubctl-stop"
          disabled={busy || hub.state === 'stopping'}
          onClick={() => actions.stop(hub)}
        >
          Stop
        </button>
      </div>
      {error && (
        <div className="jp-HubCtl-fieldError" data-testid="hubctl-scale-error" role="alert">
          {error}
        </div>
      )}
      <div className="jp-HubCtl-controls">
        <button
          className="jp-mod-styled jp-mod-accept"
          data-testid="hubctl-open-dashboard"
          title="Task stream, throughput, engine load and progress of this hub"
          disabled={hub.state !== 'running'}
          onClick={() => actions.openDashboard(hub.id)}
        >
          Open dashboard
        </button>
        <button
          className="jp-mod-styled"
          data-testid="hubctl-insert-snippet"
          title={
            actions.canInsert()
              ? 'Insert code that connects to this hub into the active notebook'
              : 'Open a notebook to insert the connect snippet'
          }
          disabled={!active || !actions.canInsert()}
          onClick={() => actions.insertSnippet(hub.id)}
        >
          Insert connect snippet
        </button>
      </div>
    </>
  );
}

function exitText(codes: IHubEnd['exit_codes']): string {
  const parts: string[] = [];
  if (codes.controller !== null) {
    parts.push(`controller exited with ${codes.controller}`);
  }
  const engines = codes.engines.filter((code): code is number => code !== null);
  if (engines.length > 0) {
    parts.push(`engines exited with ${engines.join(', ')}`);
  }
  return parts.join('; ');
}

/** How a stopped or failed hub ended: when, exit codes, the end of its log. */
function EndInfo({ end, failed }: { end: IHubEnd; failed: boolean }): JSX.Element {
  const when = end.time ? new Date(end.time) : null;
  const exits = exitText(end.exit_codes);
  return (
    <div className={`jp-HubCtl-endInfo${failed ? ' jp-mod-failed' : ''}`} data-testid="hubctl-end-info">
      <div data-testid="hubctl-end-reason">
        {failed ? 'Failed' : 'Stopped'}
        {when && !Number.isNaN(when.getTime()) ? ` at ${when.toLocaleTimeString()}` : ''}
        {end.reason ? `: ${end.reason}` : ''}
      </div>
      {exits && <div data-testid="hubctl-exit-codes">{exits}</div>}
      {end.log_tail.length > 0 && (
        <details open={failed}>
          <summary>Log tail</summary>
          <pre className="jp-HubCtl-logTail" data-testid="hubctl-log-tail">
            {end.log_tail.join('\n')}
          </pre>
        </details>
      )}
    </div>
  );
}

function QueueTotals({ queues }: { queues: IQueues | null }): JSX.Element | null {
  if (!queues) {
    return null;
  }
  const load = hubLoad(queues);
  return (
    <div className="jp-HubCtl-queueTotals" data-testid="hubctl-queue-totals">
      <span data-count="running">running {load.running}</span>
      <span data-count="queued">queued {load.queued}</span>
      <span data-count="unassigned">unassigned {load.unassigned}</span>
      <span data-count="completed">done {queues.totals.completed}</span>
    </div>
  );
}
