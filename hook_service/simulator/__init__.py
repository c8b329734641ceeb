"""``hook-service simulate``: play Prelude against a running service and check the contract.

Everything here is written from ``docs/prelude-contract.md`` and imports nothing from the rest
of :mod:`hook_service` (``tests/test_simulator_imports.py`` enforces it): the simulator exists to
catch the service being wrong, so it must not share the service's verification code.
"""
