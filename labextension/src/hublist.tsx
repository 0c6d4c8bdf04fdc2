import { Widget } from '@lumino/widgets';
import * as React from 'react';

import { HubCtlModel, IScaling } from './model';
import { watchForDrag } from './snippet';
import { IHealth, IHub } from './types';

/** The engine count of a hub row: `3 engines`, `1/3 engines`, `scaling 2 → 3`. */
export function engineCountText(hub: IHub, scaling: IScaling | null): string {
  if (scaling) {
    return `scaling ${scaling.from} → ${scaling.to}`;
  }
  if (hub.state === 'running' || hub.state === 'starting') {
    const noun = hub.n === 1 ? 'engine' : 'engines';
    return hub.engines === hub.n ? `${hub.n} ${noun}` : `${hub.engines}/${hub.n} ${noun}`;
  }
  return '';
}

export function HubList({ model, owner }: { model: HubCtlModel; owner: Widget }): JSX.Element {
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
          scaling={model.scaling(hub.id)}
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
  scaling: IScaling | null;
  selected: boolean;
  onSelect: () => void;
  onDragStart: (event: PointerEvent) => void;
}): JSX.Element {
  const { hub } = props;
  const classes = ['jp-HubCtl-hubRow'];
  if (props.selected) {
    classes.push('jp-mod-selected');
  }
  const running = hub.state === 'running' || hub.state === 'starting';
  return (
    <li
      className={classes.join(' ')}
      role="option"
      aria-selected={props.selected}
      tabIndex={0}
      data-hub-id={hub.id}
      data-state={hub.state}
      title={running ? `${hub.name || hub.id}: drag into a notebook to connect` : undefined}
      onClick={props.onSelect}
      onKeyDown={e => {
        if (e.key === 'Enter' || e.key === ' ') {
          e.preventDefault();
          props.onSelect();
        }
      }}
      onPointerDown={e => running && props.onDragStart(e.nativeEvent)}
    >
      <span className="jp-HubCtl-hubName">{hub.name || hub.id}</span>
      <HealthBadge health={hub.health} />
      <StateBadge state={hub.state} />
      <span
        className="jp-HubCtl-hubEngines"
        data-testid="hubctl-hub-engines"
        data-scaling={props.scaling ? `${props.scaling.from}-${props.scaling.to}` : undefined}
        title="registered / requested engines"
      >
        {engineCountText(hub, props.scaling)}
      </span>
      <span className="jp-HubCtl-hubLauncher">{hub.launcher}</span>
      {hub.state === 'failed' && hub.error && (
        <span className="jp-HubCtl-hubReason" data-testid="hubctl-hub-reason" title={hub.error}>
          {hub.error}
        </span>
      )}
      <HealthReasons health={hub.health} />
    </li>
  );
}

export function StateBadge({ state }: { state: string }): JSX.Element {
  return (
    <span className={`jp-HubCtl-state jp-mod-${state}`} data-testid="hubctl-state">
      {state}
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
export function HealthBadge({ health }: { health?: IHealth | null }): JSX.Element | null {
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
export function HealthReasons({ health }: { health?: IHealth | null }): JSX.Element | null {
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
