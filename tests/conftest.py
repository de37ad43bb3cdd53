"""Suite-wide hooks: in CI a skip is a failure unless allowlisted (tests/skip_policy.py)."""

pytest_plugins = ("tests.skip_policy",)
