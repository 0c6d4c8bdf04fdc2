import { LabIcon } from '@jupyterlab/ui-components';

/** A hub with engines around it. */
const HUB_SVG = `<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">
  <g class="jp-icon3" fill="#616161">
    <circle cx="12" cy="12" r="4"/>
    <circle cx="4" cy="4" r="2.5"/>
    <circle cx="20" cy="4" r="2.5"/>
    <circle cx="4" cy="20" r="2.5"/>
    <circle cx="20" cy="20" r="2.5"/>
  </g>
  <path class="jp-icon3" style="fill:none" stroke="#616161" stroke-width="1.6" d="M5.2 5.2 9.4 9.4M18.8 5.2 14.6 9.4M5.2 18.8 9.4 14.6M18.8 18.8 14.6 14.6"/>
</svg>`;

export const hubIcon = new LabIcon({
  name: 'jupyter-hub-ctl:hub',
  svgstr: HUB_SVG
});
