"""jupyter_hub_ctl.controller.scheduler: load-balanced and broadcast scheduling."""
