"""jupyter_hub_ctl.cluster"""
