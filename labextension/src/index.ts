import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette, MainAreaWidget, WidgetTracker } from '@jupyterlab/apputils';
import { INotebookTracker } from '@jupyterlab/notebook';
import { ISettingRegistry } from '@jupyterlab/settingregistry';

import { describe, HubCtlAPI } from './api';
import { DashboardWidget } from './dashboard/widget';
import { hubIcon } from './icons';
import { DEFAULT_POLL_INTERVAL, HubCtlModel, SnippetStyle } from './model';
import { HubCtlPanel } from './panel';
import { insertCodeCell } from './snippet';

const PLUGIN_ID = 'jupyter-hub-ctl-labextension:plugin';

namespace CommandIDs {
  export const open = 'hubctl:open';
  export const create = 'hubctl:create-hub';
  export const refresh = 'hubctl:refresh';
  export const insertSnippet = 'hubctl:insert-snippet';
  export const openDashboard = 'hubctl:open-dashboard';
}

const CATEGORY = 'Parallel Hubs';

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'A sidebar panel to start, scale and stop parallel computing hubs.',
  autoStart: true,
  optional: [ICommandPalette, INotebookTracker, ISettingRegistry, ILayoutRestorer],
  activate: (
    app: JupyterFrontEnd,
    palette: ICommandPalette | null,
    tracker: INotebookTracker | null,
    settingRegistry: ISettingRegistry | null,
    restorer: ILayoutRestorer | null
  ) => {
    const { commands, serviceManager } = app;
    const api = new HubCtlAPI(serviceManager.serverSettings);
    let panel: HubCtlPanel | null = null;
    const model = new HubCtlModel({
      api,
      events: serviceManager.events ?? null,
      isActive: () => !!panel?.isVisible
    });

    const canInsert = (): boolean => !!tracker?.currentWidget;

    const insertSnippet = async (hubId: string): Promise<void> => {
      const notebook = tracker?.currentWidget;
      if (!notebook) {
        model.reportError('Open a notebook first: the snippet goes into the active notebook.');
        return;
      }
      let text: string;
      try {
        text = await model.snippet(hubId);
      } catch (reason) {
        model.reportError(`The connect snippet could not be read: ${describe(reason)}`);
        return;
      }
      try {
        await insertCodeCell(notebook, text);
      } catch (reason) {
        model.reportError(`The snippet could not be inserted: ${describe(reason)}`);
        return;
      }
      app.shell.activateById(notebook.id);
    };

    const dashboards = new WidgetTracker<MainAreaWidget<DashboardWidget>>({
      namespace: 'hubctl-dashboard'
    });
    const openDashboard = (hubId: string): MainAreaWidget<DashboardWidget> => {
      const open = dashboards.find(widget => widget.content.hubId === hubId);
      if (open) {
        app.shell.activateById(open.id);
        return open;
      }
      const content = new DashboardWidget({ api, hubId });
      const widget = new MainAreaWidget({ content });
      widget.id = `hubctl-dashboard-${hubId}`;
      widget.title.label = `Hub ${hubId}`;
      widget.title.caption = `Dashboard of hub ${hubId}: task stream, throughput, engines, progress`;
      widget.title.icon = hubIcon;
      widget.title.closable = true;
      void dashboards.add(widget);
      app.shell.add(widget, 'main');
      app.shell.activateById(widget.id);
      return widget;
    };
    commands.addCommand(CommandIDs.openDashboard, {
      label: args => (args['hubId'] ? `Open Dashboard of Hub ${args['hubId']}` : 'Open Hub Dashboard'),
      caption: 'Task stream, throughput, queue depth, engine load and progress of a hub',
      icon: hubIcon,
      isEnabled: args => !!(args['hubId'] ?? model.selectedId),
      execute: args => {
        const hubId = (args['hubId'] as string | undefined) ?? model.selectedId;
        if (hubId) {
          return openDashboard(hubId);
        }
      }
    });
    void restorer?.restore(dashboards, {
      command: CommandIDs.openDashboard,
      args: widget => ({ hubId: widget.content.hubId }),
      name: widget => widget.content.hubId
    });

    panel = new HubCtlPanel(model, {
      insertSnippet: id => void insertSnippet(id),
      canInsert,
      openDashboard: hubId => void commands.execute(CommandIDs.openDashboard, { hubId })
    });
    app.shell.add(panel, 'left', { rank: 650 });
    restorer?.add(panel, panel.id);
    tracker?.currentChanged.connect(() => {
      panel?.update();
      commands.notifyCommandChanged(CommandIDs.insertSnippet);
    });
    model.changed.connect(() => commands.notifyCommandChanged(CommandIDs.insertSnippet));

    const showPanel = (): void => {
      if (panel) {
        app.shell.activateById(panel.id);
      }
    };

    commands.addCommand(CommandIDs.open, {
      label: 'Show Parallel Hubs',
      icon: hubIcon,
      execute: showPanel
    });
    commands.addCommand(CommandIDs.create, {
      label: 'Create Parallel Hub…',
      execute: () => {
        showPanel();
        model.openForm();
      }
    });
    commands.addCommand(CommandIDs.refresh, {
      label: 'Refresh Parallel Hubs',
      execute: () => model.refresh()
    });
    commands.addCommand(CommandIDs.insertSnippet, {
      label: 'Insert Parallel Hub Connect Snippet',
      caption: 'Insert code connecting to the selected hub into the active notebook',
      isEnabled: () => canInsert() && !!(model.selectedHub && model.selectedHub.state === 'running'),
      execute: args => {
        const id = (args['hubId'] as string | undefined) ?? model.selectedId;
        if (id) {
          return insertSnippet(id);
        }
      }
    });
    if (palette) {
      for (const command of Object.values(CommandIDs)) {
        palette.addItem({ command, category: CATEGORY });
      }
    }

    if (settingRegistry) {
      const apply = (settings: ISettingRegistry.ISettings): void => {
        const interval = settings.get('pollInterval').composite;
        model.pollInterval = typeof interval === 'number' ? interval : DEFAULT_POLL_INTERVAL;
        model.snippetStyle = settings.get('snippetStyle').composite as SnippetStyle;
      };
      settingRegistry
        .load(PLUGIN_ID)
        .then(settings => {
          apply(settings);
          settings.changed.connect(apply);
        })
        .catch(reason => {
          console.warn('jupyter-hub-ctl: settings could not be loaded', reason);
        });
    }

    model.start();
  }
};

export default plugin;
