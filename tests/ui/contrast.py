"""WCAG contrast of every text element under some roots of the page, from computed styles.

For each visible element with text of its own (a text node, or an input's value) the script
takes its computed colour, blends it (with the alpha of the colour and of every ancestor's
opacity) over the element's effective background (the first opaque background up the tree,
with the translucent ones in between blended over it), and computes the contrast ratio.
Disabled controls are left out, as WCAG 1.4.3 leaves out inactive user interface components.
"""

from __future__ import annotations

CONTRAST_JS = r"""
(selector) => {
  const parse = (c) => {
    const m = c.match(/rgba?\(([^)]+)\)/);
    if (!m) return null;
    const p = m[1].split(/[ ,\/]+/).filter(Boolean).map(Number);
    return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
  };
  const over = (fg, bg) => [0, 1, 2].map(i => fg[i] * fg[3] + bg[i] * (1 - fg[3])).concat([1]);
  const lum = (c) => {
    const ch = c.slice(0, 3).map(v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); });
    return 0.2126 * ch[0] + 0.7152 * ch[1] + 0.0722 * ch[2];
  };
  const background = (el) => {
    const layers = [];
    for (let e = el; e; e = e.parentElement) {
      const c = parse(getComputedStyle(e).backgroundColor);
      if (c && c[3] > 0) { layers.push(c); if (c[3] >= 1) break; }
    }
    let bg = [255, 255, 255, 1];
    for (let i = layers.length - 1; i >= 0; i--) bg = over(layers[i], bg);
    return bg;
  };
  const opacity = (el) => { let o = 1; for (let e = el; e; e = e.parentElement) o *= Number(getComputedStyle(e).opacity); return o; };
  const ownText = (el) => {
    if (el.matches('input[type=text], select, textarea')) return el.value || '';
    let t = '';
    for (const n of el.childNodes) if (n.nodeType === 3) t += n.textContent;
    return t.replace(/[\s\u2007\u00a0]+/g, ' ').trim();
  };
  const out = [];
  for (const root of document.querySelectorAll(selector)) {
    for (const el of [root, ...root.querySelectorAll('*')]) {
      if (el.closest('style, script, svg')) continue;
      const text = ownText(el);
      if (!text) continue;
      const cs = getComputedStyle(el);
      if (cs.visibility === 'hidden' || cs.display === 'none' || !el.getClientRects().length) continue;
      if (el.closest(':disabled, .mod-disabled')) continue;
      const bg = background(el);
      const c = parse(cs.color);
      const fg = over([c[0], c[1], c[2], c[3] * opacity(el)], bg);
      const l1 = lum(fg), l2 = lum(bg);
      out.push({text: text.slice(0, 60), cls: String(el.className).slice(0, 80), tag: el.tagName,
                ratio: (Math.max(l1, l2) + 0.05) / (Math.min(l1, l2) + 0.05), color: cs.color,
                background: 'rgb(' + bg.slice(0, 3).map(Math.round).join(',') + ')'});
    }
  }
  return out;
}
"""


def contrasts(page, selector: str) -> list:
    """Every text element under ``selector`` with its contrast ratio (see the module's docstring)."""
    return page.evaluate(CONTRAST_JS, selector)
