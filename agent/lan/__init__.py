"""The LAN listener room: an opt-in second listener for HIS servers (``listener.py``) and
its admin settings (``settings.py``). Built and started by ``agent.assembly``."""
