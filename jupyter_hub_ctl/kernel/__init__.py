"""jupyter_hub_ctl.kernel: hubs from inside an IPython kernel.

- ``magics``: ``%hub start|stop|list|connect|status|engines|results``, ``%px`` / ``%%px`` and
  ``%pxresult`` (loaded by ``%load_ext jupyter_hub_ctl``);
- ``hubs``: ``HubConnection``, the ``hub`` object ``%hub start`` binds (``hub.client``,
  ``hub.status()``, ``hub.results()``, ``hub.progress(ar)``, ``hub.stop()``);
- ``widgets``: ``HubStatus`` (``status``), ``ResultsBrowser`` (``browser``, ``grid``),
  ``TaskProgress``, ``EngineProgress`` and ``wait_for_engines`` (``progress``) — ipywidgets kept
  live by the kernel's one updater thread (``updater``, ``live``), with text and HTML fallbacks
  rendered from ``templates/``;
- ``px``: streaming engines' output into the kernel for ``%px``.

Nothing is imported here: loading the package stays cheap.
"""
