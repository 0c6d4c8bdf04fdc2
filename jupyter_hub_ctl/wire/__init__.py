"""jupyter_hub_ctl.wire"""
