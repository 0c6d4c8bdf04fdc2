"""jupyter_hub_ctl.client"""
