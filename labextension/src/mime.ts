/**
 * The dashboard in notebook outputs: `hub.dashboard()` and `%hub dashboard`
 * display a bundle of `DASHBOARD_MIME` naming the hub; this renderer (loaded
 * by JupyterLab 4 and Notebook 7 alike) shows the live dashboard there, fed
 * by the server extension, so a cell that blocks cannot freeze it. Frontends
 * without it show the bundle's text/html or text/plain.
 */

import type { IRenderMime } from '@jupyterlab/rendermime-interfaces';
import { ServerConnection } from '@jupyterlab/services';
import { PanelLayout, Widget } from '@lumino/widgets';

import { HubCtlAPI } from './api';
import { DashboardWidget } from './dashboard/widget';

/** The MIME type of a dashboard bundle: `{"hub_id": "<id>"}`. */
export const DASHBOARD_MIME = 'application/vnd.jupyter-hub-ctl.dashboard+json';

export class DashboardRenderer extends Widget implements IRenderMime.IRenderer {
  constructor() {
    super();
    this.addClass('jp-HubCtl-dashboardOutput');
    this.layout = new PanelLayout();
  }

  async renderModel(model: IRenderMime.IMimeModel): Promise<void> {
    const data = model.data[DASHBOARD_MIME] as { hub_id?: unknown } | undefined;
    const hubId = typeof data?.hub_id === 'string' ? data.hub_id : '';
    const layout = this.layout as PanelLayout;
    if (this._dashboard?.hubId === hubId) {
      return;
    }
    this._dashboard?.dispose();
    if (!hubId) {
      const note = new Widget();
      note.node.textContent = 'This dashboard output names no hub.';
      note.addClass('jp-HubCtl-note');
      layout.addWidget(note);
      return;
    }
    this._dashboard = new DashboardWidget({
      api: new HubCtlAPI(ServerConnection.makeSettings()),
      hubId
    });
    layout.addWidget(this._dashboard);
  }

  private _dashboard: DashboardWidget | null = null;
}

export const rendererFactory: IRenderMime.IRendererFactory = {
  safe: true,
  mimeTypes: [DASHBOARD_MIME],
  createRenderer: () => new DashboardRenderer()
};

const extension: IRenderMime.IExtension = {
  id: 'jupyter-hub-ctl-labextension:dashboard-renderer',
  description: 'Live hub dashboards in notebook outputs.',
  rendererFactory,
  // Ahead of text/html, so the live view wins where this renderer is loaded.
  rank: 0,
  dataType: 'json'
};

export default extension;
