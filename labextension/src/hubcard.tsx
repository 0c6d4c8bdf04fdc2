import * as React from 'react';

import { engineActivity, engineLoad, formatAge, heartbeatAge, hubLoad } from './format';
import { HealthBadge, HealthReasons, StateBadge } from './hublist';
import { ACTIVE_STATES, HubCtlModel } from './model';
import { countError, parseCount } from './options';
import { IEngine, IHub, IHubEnd, IQueueCounts, IQueues } from './types';

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
          queues={model.queues}
          skew={model.clockSkew}
          active={active}
        />
      )}
    </section>
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

/** Re-render every second, so ages grow between reads. */
function useNow(): number {
  const [now, setNow] = React.useState(Date.now());
  React.useEffect(() => {
    const timer = window.setInterval(() => setNow(Date.now()), 1000);
    return () => window.clearInterval(timer);
  }, []);
  return now;
}

function EngineTable(props: {
  engines: readonly IEngine[] | null;
  queues: IQueues | null;
  skew: number;
  active: boolean;
}): JSX.Element {
  const now = useNow();
  if (props.engines === null) {
    return <div className="jp-HubCtl-note">Loading engines…</div>;
  }
  if (props.engines.length === 0) {
    return (
      <div className="jp-HubCtl-note" data-testid="hubctl-no-engines">
        {props.active ? 'No engines registered yet.' : 'No engines.'}
      </div>
    );
  }
  return (
    <table className="jp-HubCtl-engines" data-testid="hubctl-engines">
      <thead>
        <tr>
          <th title="engine id (hover for its host and pid)">id</th>
          <th className="jp-HubCtl-hostColumn">host</th>
          <th>state</th>
          <th title="tasks running on the engine">run</th>
          <th title="tasks waiting on the engine">queue</th>
          <th title="tasks the engine completed">done</th>
          <th title="time since the engine's last heartbeat">beat</th>
        </tr>
      </thead>
      <tbody>
        {props.engines.map(engine => {
          const counts: IQueueCounts = props.queues?.engines[String(engine.id)] ?? engine;
          const age = heartbeatAge(engine, now, props.skew);
          const activity = engineActivity(counts, age);
          const load = engineLoad(counts);
          const where = [engine.host, engine.pid ? `pid ${engine.pid}` : ''].filter(Boolean).join(', ');
          return (
            <tr
              key={String(engine.id)}
              className="jp-HubCtl-engineRow"
              data-engine-id={String(engine.id)}
              data-state={activity}
            >
              <td title={where || undefined}>{String(engine.id)}</td>
              <td className="jp-HubCtl-hostColumn" title={where || undefined}>
                {engine.host}
              </td>
              <td>
                <span className={`jp-HubCtl-activity jp-mod-${activity}`}>{activity}</span>
              </td>
              <td>{load.running}</td>
              <td>{load.queued}</td>
              <td>{counts.completed}</td>
              <td data-age={age === null ? '' : age.toFixed(1)}>{formatAge(age)}</td>
            </tr>
          );
        })}
      </tbody>
    </table>
  );
}
