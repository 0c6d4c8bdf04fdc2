import { Dialog, showDialog } from '@jupyterlab/apputils';
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
import { HubCard, IHubActions } from './hubcard';
import { HubList } from './hublist';
import { hubIcon } from './icons';
import { HubCtlModel } from './model';
import { IClients, IHub } from './types';

/** The id of the sidebar widget (also its tab's `data-id`). */
export const PANEL_ID = 'hubctl-panel';

/** What the panel asks of the application around it. */
export type IPanelActions = Omit<IHubActions, 'stop'>;

/**
 * The left-sidebar panel: hubs, the selected hub's engines and queues, and
 * the buttons that act on them.
 */
export class HubCtlPanel extends ReactWidget {
  constructor(
    readonly model: HubCtlModel,
    actions: IPanelActions
  ) {
    super();
    this._actions = { ...actions, stop: hub => void this._stop(hub) };
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

  /** Stop a hub; when clients are (or may be) connected, ask first. */
  private async _stop(hub: IHub): Promise<void> {
    const clients = await this.model.connectedClients(hub.id);
    if (clients === null || clients.count) {
      const result = await showDialog({
        title: `Stop hub ${hub.name || hub.id}?`,
        body: <StopQuestion clients={clients} />,
        buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Stop hub' })]
      });
      if (!result.button.accept) {
        return;
      }
    }
    await this.model.stop(hub.id);
  }

  private _actions: IHubActions;
}

function clientName(client: IClients['clients'][number]): string {
  if (client.kernel) {
    return client.kernel.path ?? `kernel ${client.kernel.name} (${client.kernel.id.slice(0, 8)})`;
  }
  const where = client.host ? ` on ${client.host}` : '';
  return client.pid ? `process ${client.pid}${where}` : `a process${where}`;
}

/** Who would lose the hub: the connected clients, or that they could not be counted. */
function StopQuestion({ clients }: { clients: IClients | null }): JSX.Element {
  if (clients === null) {
    return (
      <div data-testid="hubctl-stop-question">
        The connected clients could not be counted. Notebooks connected to this hub lose their
        engines and any work still queued or running.
      </div>
    );
  }
  const count = clients.count ?? clients.clients.length;
  return (
    <div data-testid="hubctl-stop-question">
      <p>
        {count === 1 ? '1 client is' : `${count} clients are`} connected to this hub; they lose
        their engines and any work still queued or running:
      </p>
      <ul>
        {clients.clients.map((client, i) => (
          <li key={i}>{clientName(client)}</li>
        ))}
      </ul>
    </div>
  );
}

interface IViewProps {
  model: HubCtlModel;
  actions: IHubActions;
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
          defaultLauncher={model.defaultLauncher}
          limits={model.engineLimits}
          activeNames={model.activeNames}
          busy={model.isBusy('create')}
          onSubmit={request => void model.create(request)}
          onCancel={() => model.closeForm()}
        />
      )}
      {ready && <HubList model={model} owner={owner} />}
      {ready && model.selectedHub && (
        <HubCard
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

