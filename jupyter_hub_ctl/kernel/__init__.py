"""jupyter_hub_ctl.kernel"""
