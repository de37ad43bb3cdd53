"""The test rigs: what tests and benches drive for real, importable by both.

- ``vpcd_card``: our virtual Thai ID card over the vsmartcard-vpcd protocol;
- ``pcsc_rig``: a private pcscd with the vpcd reader, shared machine-wide under a lock;
- ``pcsc_other_client``: another program on the same reader;
- ``nhso_server``: the NHSO contract server (stands for NHSO; keeps its own rules);
- ``robust_support``: the agent as a separate process, for load and soak runs;
- ``ports``: free loopback ports;
- ``processes``: waiting on a condition, ending a child process.

Installed with the agent's test extra (``pip install -e .[test]``), so a bench script run as
``python bench/x.py`` imports it without editing ``sys.path``.
"""
