/**
 * The dashboard's DOM parts: progress per function or label (also the task
 * stream's legend) and the figures of the totals line.
 */

import * as React from 'react';

import { readTheme } from './canvas';
import { IGroup } from './store';
import { Colours } from './taskstream';

/** Done / total per function or label, failures in the error colour; bars coloured as in the task stream. */
export function ProgressView(props: {
  groups: IGroup[];
  colours: Colours;
  node: HTMLElement | null;
}): JSX.Element {
  if (props.groups.length === 0) {
    return <div className="jp-HubCtl-note">No tasks seen yet.</div>;
  }
  const palette = props.node ? readTheme(props.node).palette : [];
  return (
    <ul className="jp-HubCtl-progress" data-testid="hubctl-progress">
      {props.groups.map(group => {
        const finished = group.done + group.failed;
        const total = Math.max(group.total, finished, 1);
        return (
          <li
            key={group.key}
            className="jp-HubCtl-progressRow"
            data-key={group.key}
            data-done={group.done}
            data-failed={group.failed}
            data-total={group.total}
          >
            <div className="jp-HubCtl-progressLabel">
              <span
                className="jp-HubCtl-swatch"
                style={{ background: palette.length ? props.colours.colour(group.key, palette) : undefined }}
              />
              <span className="jp-HubCtl-progressName" title={group.key}>
                {group.key}
              </span>
              <span className="jp-HubCtl-progressCount">
                {group.done}/{group.total}
                {group.failed > 0 && <span className="jp-HubCtl-failedCount"> · {group.failed} failed</span>}
              </span>
            </div>
            <div className="jp-HubCtl-progressTrack">
              <div
                className="jp-HubCtl-progressDone"
                style={{
                  width: `${(group.done / total) * 100}%`,
                  background: palette.length ? props.colours.colour(group.key, palette) : undefined
                }}
              />
              <div className="jp-HubCtl-progressFailed" style={{ width: `${(group.failed / total) * 100}%` }} />
            </div>
          </li>
        );
      })}
    </ul>
  );
}

/** A figure of the totals line. */
export function Figure(props: { label: string; value: string; testid: string; title?: string }): JSX.Element {
  return (
    <span className="jp-HubCtl-figure" data-testid={props.testid} title={props.title}>
      <span className="jp-HubCtl-figureValue">{props.value}</span>
      <span className="jp-HubCtl-figureLabel">{props.label}</span>
    </span>
  );
}
