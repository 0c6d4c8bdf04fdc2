import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';
import { INotebookTracker } from '@jupyterlab/notebook';
import { ISettingRegistry } from '@jupyterlab/settingregistry';

import { describe, HubCtlAPI } from './api';
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

    panel = new HubCtlPanel(model, {
      insertSnippet: id => void insertSnippet(id),
      canInsert
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
