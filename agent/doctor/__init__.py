"""``thaicard-agent doctor``: the checks hospital IT runs when "the card doesn't read".

``report.py`` is the verdict model (one finding per check, Thai and English, what to do);
``checks.py`` the workstation checks (PC/SC, readers, a test read, the port, the data and
log folders, the keyring); ``browsers.py`` the browser policies; ``nhso_checks.py`` the
NHSO settings, TLS, token, clock and claims; ``bundle.py`` the support bundle.
"""
