"""``python -m hook_service`` is the ``hook-service`` CLI."""

from __future__ import annotations

from .cli import main

main()
