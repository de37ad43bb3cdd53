"""Talking to NHSO (สปสช.) with the hospital's token: close-claim outbox, coverage, authen codes.

``routes.setup_nhso(app, config)`` mounts the HTTP side; ``cli.add_token_commands`` the
``token`` and ``nhso`` commands. See docs/nhso.md.
"""
