"""Harnesses that call the agent the way the kinds of hospital code in the field do.

Written for this project from the documented behaviour of those callers (field notes §3,
docs/integration.md "Coming from the NHSO agent"); no caller's code is copied.
"""
