"""jupyter_hub_ctl.controller.db"""
