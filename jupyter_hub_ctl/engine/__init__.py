"""jupyter_hub_ctl.engine"""
