import {
  addIcon,
  closeIcon,
  ReactWidget,
  refreshIcon,
  UseSignal
} from '@jupyterlab/ui-components';
import { Message } from '@lumino/messaging';
import * as React from 'react';

import { CreateForm } from './form';
import { hubIcon } from './icons';
import { HubCtlModel } from './model';
import { watchForDrag } from './snippet';
import { IEngine, IEngineSummary, IHealth, IHub, IQueueCounts, IQueues } from './types';

/** The id of the sidebar widget (also its tab's `data-id`). */
export const PANEL_ID = 'hubctl-panel';

export interface IPanelActions {
  /** Put the hub's connect snippet into the active notebook. */
  insertSnippet(hubId: string): void;
  /** Whether a notebook is there to take a snippet. */
  canInsert(): boolean;
}

/**
 * The left-sidebar panel: hubs, the selected hub's engines and queues, and
 * the buttons that act on them.
 */
export class HubCtlPanel extends ReactWidget {
  constructor(
    readonly model: HubCtlModel,
    private _actions: IPanelActions
  ) {
    super();
    this.id = PANEL_ID;
    this.addClass('jp-HubCtl-sidebar');
    this.title.icon = hubIcon;
    this.title.caption = 'Parallel hubs';
  }

  protected render(): JSX.Element {
    return (
      <UseSignal signal={this.model.changed}>
        {() => <PanelView model={this.model} actions={this._actions} owner={this} />}
      </UseSignal>
    );
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    void this.model.refresh();
  }
}

interface IViewProps {
  model: HubCtlModel;
  actions: IPanelActions;
  owner: HubCtlPanel;
}

function PanelView({ model, actions, owner }: IViewProps): JSX.Element {
  const ready = model.status === 'ready';
  return (
    <div className="jp-HubCtl-panel" data-testid="hubctl-panel" data-status={model.status}>
      <div className="jp-HubCtl-header">
        <h2 className="jp-HubCtl-title">Parallel hubs</h2>
        <button
          className="jp-HubCtl-iconButton"
          data-testid="hubctl-new"
          title="New hub"
          disabled={!ready}
          onClick={() => model.openForm()}
        >
          <addIcon.react tag="span" />
        </button>
        <button
          className="jp-HubCtl-iconButton"
          data-testid="hubctl-refresh"
          title="Refresh"
          onClick={() => void model.refresh()}
        >
          <refreshIcon.react tag="span" />
        </button>
      </div>
      {model.actionError && (
        <div className="jp-HubCtl-actionError" data-testid="hubctl-action-error" role="alert">
          <span>{model.actionError}</span>
          <button
            className="jp-HubCtl-iconButton"
            title="Dismiss"
            onClick={() => model.dismissError()}
          >
            <closeIcon.react tag="span" />
          </button>
        </div>
      )}
      <StatusView model={model} />
      {ready && model.formOpen && (
        <CreateForm
          launchers={model.launchers}
          launchersError={model.launchersError}
          busy={model.isBusy('create')}
          onSubmit={request => void model.create(request)}
          onCancel={() => model.closeForm()}
        />
      )}
      {ready && <HubList model={model} owner={owner} />}
      {ready && model.selectedHub && (
        <HubDetail
          key={model.selectedHub.id}
          model={model}
          hub={model.selectedHub}
          actions={actions}
        />
      )}
    </div>
  );
}

function StatusView({ model }: { model: HubCtlModel }): JSX.Element | null {
  switch (model.status) {
    case 'loading':
      return (
        <div className="jp-HubCtl-message" data-testid="hubctl-loading">
          Loading hubs…
        </div>
      );
    case 'disabled':
      return (
        <div className="jp-HubCtl-message jp-HubCtl-notEnabled" data-testid="hubctl-not-enabled">
          <p>
            The hubctl server extension is not enabled on this Jupyter server, so hubs cannot
            be listed or started from here.
          </p>
          <p>
            Install <code>jupyter_hub_ctl</code> in the server's environment (or run{' '}
            <code>jupyter server extension enable jupyter_hub_ctl</code>) and restart the
            server.
          </p>
          <button
            className="jp-mod-styled"
            data-testid="hubctl-retry"
            onClick={() => void model.refresh()}
          >
            Check again
          </button>
        </div>
      );
    case 'unreachable':
      return (
        <div className="jp-HubCtl-message jp-HubCtl-unreachable" data-testid="hubctl-unreachable">
          <p>The hubs could not be listed: {model.statusMessage}</p>
          <button
            className="jp-mod-styled"
            data-testid="hubctl-retry"
            onClick={() => void model.refresh()}
          >
            Retry
          </button>
        </div>
      );
    default:
      return null;
  }
}

function HubList({ model, owner }: { model: HubCtlModel; owner: HubCtlPanel }): JSX.Element {
  if (model.hubs.length === 0) {
    return (
      <div className="jp-HubCtl-message jp-HubCtl-empty" data-testid="hubctl-empty">
        <p>No hubs yet — create one.</p>
        {!model.formOpen && (
          <button
            className="jp-mod-styled jp-mod-accept"
            data-testid="hubctl-empty-create"
            onClick={() => model.openForm()}
          >
            New hub
          </button>
        )}
      </div>
    );
  }
  return (
    <ul className="jp-HubCtl-hubList" role="listbox" aria-label="Hubs">
      {model.hubs.map(hub => (
        <HubRow
          key={hub.id}
          hub={hub}
          selected={hub.id === model.selectedId}
          onSelect={() => model.select(hub.id)}
          onDragStart={event =>
            watchForDrag(event, owner, `Connect to ${hub.name || hub.id}`, () =>
              model.snippet(hub.id)
            )
          }
        />
      ))}
    </ul>
  );
}

function HubRow(props: {
  hub: IHub;
  selected: boolean;
  onSelect: () => void;
  onDragStart: (event: PointerEvent) => void;
}): JSX.Element {
  const { hub } = props;
  const classes = ['jp-HubCtl-hubRow'];
  if (props.selected) {
    classes.push('jp-mod-selected');
  }
  return (
    <li
      className={classes.join(' ')}
      role="option"
      aria-selected={props.selected}
      tabIndex={0}
      data-hub-id={hub.id}
      data-state={hub.state}
      title={`${hub.name || hub.id}: drag into a notebook to connect`}
      onClick={props.onSelect}
      onKeyDown={e => {
        if (e.key === 'Enter' || e.key === ' ') {
          e.preventDefault();
          props.onSelect();
        }
      }}
      onPointerDown={e => props.onDragStart(e.nativeEvent)}
    >
      <span className="jp-HubCtl-hubName">{hub.name || hub.id}</span>
      <HealthBadge health={hub.health} />
      <StateBadge state={hub.state} />
      <span className="jp-HubCtl-hubEngines" title="registered / requested engines">
        {hub.engines}/{hub.n}
      </span>
      <span className="jp-HubCtl-hubLauncher">{hub.launcher}</span>
      <HealthReasons health={hub.health} />
    </li>
  );
}

function StateBadge({ state }: { state: string }): JSX.Element {
  return (
    <span className={`jp-HubCtl-state jp-mod-${state}`} data-testid="hubctl-state">
      {state}
    </span>
  );
}

/** Whether the hub's connections are encrypted; nothing while it is not known. */
function EncryptionBadge({ encrypted }: { encrypted?: boolean | null }): JSX.Element | null {
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
          : 'Connections to this hub are not encrypted (it listens on loopback only unless started with --no-curve)'
      }
    >
      {encrypted ? 'encrypted' : 'plaintext'}
    </span>
  );
}

function isDegraded(health: IHealth | null | undefined): health is IHealth {
  return !!health && health.state === 'degraded';
}

function degradedTitle(health: IHealth): string {
  const since = health.degraded_since ? new Date(health.degraded_since) : null;
  const when = since && !Number.isNaN(since.getTime()) ? ` since ${since.toLocaleTimeString()}` : '';
  return `Degraded${when}; tasks are still scheduled`;
}

/** A badge while the hub says it is degraded; nothing when it is healthy. */
function HealthBadge({ health }: { health?: IHealth | null }): JSX.Element | null {
  if (!isDegraded(health)) {
    return null;
  }
  return (
    <span
      className="jp-HubCtl-health jp-mod-degraded"
      data-testid="hubctl-health"
      data-health={health.state}
      title={[degradedTitle(health), ...health.reasons].join('\n')}
    >
      degraded
    </span>
  );
}

/** Why the hub is degraded, one line per reason; nothing when it is healthy. */
function HealthReasons({ health }: { health?: IHealth | null }): JSX.Element | null {
  if (!isDegraded(health)) {
    return null;
  }
  const reasons = health.reasons.length ? health.reasons : ['no reason given'];
  return (
    <ul
      className="jp-HubCtl-healthReasons"
      data-testid="hubctl-health-reasons"
      role="status"
      aria-label={degradedTitle(health)}
    >
      {reasons.map((reason, i) => (
        <li key={i}>{reason}</li>
      ))}
    </ul>
  );
}

const ACTIVE_STATES = new Set(['starting', 'running']);

function HubDetail(props: {
  model: HubCtlModel;
  hub: IHub;
  actions: IPanelActions;
}): JSX.Element {
  const { model, hub, actions } = props;
  const [count, setCount] = React.useState(String(hub.n));
  // Follow scaling done elsewhere (another client, the CLI).
  React.useEffect(() => setCount(String(hub.n)), [hub.n]);
  const busy = model.isBusy(hub.id);
  const active = ACTIVE_STATES.has(hub.state);
  const n = Number(count);
  const validCount = Number.isInteger(n) && n >= 1;
  const stopLabel = active || hub.state === 'stopping' ? 'Stop' : 'Remove';
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
      {hub.error && (
        <div className="jp-HubCtl-hubError" data-testid="hubctl-hub-error">
          {hub.error}
        </div>
      )}
      <div className="jp-HubCtl-controls">
        <input
          className="jp-mod-styled jp-HubCtl-scaleInput"
          data-testid="hubctl-scale-n"
          type="number"
          min={1}
          step={1}
          aria-label="Number of engines"
          value={count}
          onChange={e => setCount(e.target.value)}
        />
        <button
          className="jp-mod-styled"
          data-testid="hubctl-scale"
          disabled={busy || !active || !validCount || n === hub.n}
          onClick={() => void model.scale(hub.id, n)}
        >
          Scale
        </button>
        <button
          className="jp-mod-styled jp-mod-warn"
          data-testid="hubctl-stop"
          disabled={busy || hub.state === 'stopping'}
          onClick={() => void model.stop(hub.id)}
        >
          {stopLabel}
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
      {model.detailError && (
        <div className="jp-HubCtl-hubError" data-testid="hubctl-detail-error">
          Engines could not be read: {model.detailError}
        </div>
      )}
      <QueueTotals queues={model.queues} />
      <EngineTable
        engines={model.engines}
        queues={model.queues}
        active={active}
        total={model.engineTotal}
        summary={model.engineSummary}
        onMore={() => void model.showMoreEngines()}
      />
    </section>
  );
}

function QueueTotals({ queues }: { queues: IQueues | null }): JSX.Element | null {
  if (!queues) {
    return null;
  }
  const { totals } = queues;
  return (
    <div className="jp-HubCtl-queueTotals" data-testid="hubctl-queue-totals">
      <span data-count="queue">queued {totals.queue}</span>
      <span data-count="tasks">running {totals.tasks}</span>
      <span data-count="completed">completed {totals.completed}</span>
      <span data-count="unassigned">unassigned {queues.unassigned}</span>
    </div>
  );
}

/** Seconds since an ISO time, or null when there is none. */
export function ageSeconds(iso: string | null, now: number): number | null {
  if (!iso) {
    return null;
  }
  const then = Date.parse(iso);
  if (Number.isNaN(then)) {
    return null;
  }
  return Math.max(0, Math.round((now - then) / 1000));
}

export function formatAge(seconds: number | null): string {
  if (seconds === null) {
    return '—';
  }
  if (seconds < 60) {
    return `${seconds}s`;
  }
  if (seconds < 3600) {
    return `${Math.floor(seconds / 60)}m`;
  }
  return `${Math.floor(seconds / 3600)}h`;
}

/** From this many engines on, the panel adds them up above the table. */
const PAGE_SUMMARY_FROM = 200;

/** Engines added up, for hubs with more engines than one page shows. */
function EngineSummary(props: { summary: IEngineSummary }): JSX.Element {
  const { summary } = props;
  const states = Object.entries(summary.states)
    .map(([state, count]) => `${count.toLocaleString()} ${state}`)
    .join(', ');
  const hosts = summary.hosts
    ? ` on ${summary.hosts.toLocaleString()} host${summary.hosts === 1 ? '' : 's'}`
    : '';
  return (
    <div className="jp-HubCtl-engineSummary" data-testid="hubctl-engine-summary">
      {summary.total.toLocaleString()} engines{hosts}: {states}
    </div>
  );
}

function EngineTable(props: {
  engines: readonly IEngine[] | null;
  queues: IQueues | null;
  active: boolean;
  total: number;
  summary: IEngineSummary | null;
  onMore: () => void;
}): JSX.Element {
  const [now, setNow] = React.useState(Date.now());
  React.useEffect(() => {
    const timer = window.setInterval(() => setNow(Date.now()), 1000);
    return () => window.clearInterval(timer);
  }, []);
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
  // a hub may have thousands of engines: the table shows the pages read so far
  const hidden = props.total - props.engines.length;
  return (
    <div className="jp-HubCtl-enginesScroll">
      {props.summary && (hidden > 0 || props.total > PAGE_SUMMARY_FROM) && (
        <EngineSummary summary={props.summary} />
      )}
      <table className="jp-HubCtl-engines" data-testid="hubctl-engines">
        <thead>
          <tr>
            <th>id</th>
            <th>host</th>
            <th>state</th>
            <th title="tasks waiting on the engine">queue</th>
            <th title="tasks running on the engine">run</th>
            <th title="tasks completed by the engine">done</th>
            <th title="time since the last heartbeat">beat</th>
          </tr>
        </thead>
        <tbody>
          {props.engines.map(engine => {
            const counts: IQueueCounts =
              props.queues?.engines[String(engine.id)] ?? engine;
            const age = ageSeconds(engine.last_heartbeat, now);
            return (
              <tr
                key={String(engine.id)}
                className="jp-HubCtl-engineRow"
                data-engine-id={String(engine.id)}
                data-state={engine.state}
              >
                <td>{String(engine.id)}</td>
                <td title={engine.pid ? `pid ${engine.pid}` : undefined}>{engine.host}</td>
                <td>{engine.state}</td>
                <td>{counts.queue}</td>
                <td>{counts.tasks}</td>
                <td>{counts.completed}</td>
                <td data-age={age ?? ''}>{formatAge(age)}</td>
              </tr>
            );
          })}
        </tbody>
      </table>
      {hidden > 0 && (
        <button
          className="jp-mod-styled jp-HubCtl-moreEngines"
          data-testid="hubctl-more-engines"
          onClick={props.onMore}
        >
          Show more ({props.engines.length.toLocaleString()} of{' '}
          {props.total.toLocaleString()})
        </button>
      )}
    </div>
  );
}
