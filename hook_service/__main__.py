"""``python -m hook_service`` is the ``hook-service`` CLI."""

from __future__ import annotations

from hook_service.cli import main

main()
