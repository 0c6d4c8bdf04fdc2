"""jupyter_hub_ctl.controller.scheduler"""
