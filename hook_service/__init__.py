"""prelude-stepup-hook: the company-side backend for Prelude step-up authentication."""

from __future__ import annotations

__version__ = "0.1.0"
