"""jupyter_hub_ctl.server"""
