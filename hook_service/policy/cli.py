"""``hook-service policy``: check, test and explain a policy file offline (docs/policy.md).

Exit codes: 0 good, 1 the policy is valid but fails what was asked (a lint under
``--strict``, a failing test case), 2 a file cannot be used (the message names it).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import click

from hook_service import logs
from hook_service.errors import ConfigError, HookError
from hook_service.hook.base import HookRequest
from hook_service.hook.parse import parse_hook_request
from hook_service.policy.cases import load_cases, parse_facts, run_case
from hook_service.policy.engine import Policy
from hook_service.policy.lint import lint
from hook_service.policy.trace import trace

_path = click.Path(path_type=Path)


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


def _load_policy(file: Path) -> Policy:
    try:
        return Policy.load(file)
    except ConfigError as exc:
        _fail(str(exc))


@contextmanager
def _quiet_engine() -> Iterator[None]:
    """The engine logs every on_error answer (a warning for the service's operators); here
    the command reports it itself, so the log line would only repeat it on stderr."""
    logger = logging.getLogger(logs.POLICY)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


@click.group()
def policy() -> None:
    """Check a policy file, test it, or try it on a hook request."""


@policy.command("check")
@click.argument("file", type=_path)
@click.option("--strict", is_flag=True, help="Exit 1 when there is any warning.")
def policy_check(file: Path, strict: bool) -> None:
    """Validate FILE against Prelude's limits (exit 2 with the reason if it is invalid), then
    print each lint as `file: place: warning: reason`."""
    loaded = _load_policy(file)
    warnings = lint(loaded.spec)
    for warning in warnings:
        click.echo(warning.render(str(file)))
    click.echo(
        f"{file}: ok ({len(loaded.custom_steps)} custom step(s) declared, "
        f"{len(warnings)} warning(s))"
    )
    if strict and warnings:
        click.echo(f"{file}: {len(warnings)} warning(s) with --strict", err=True)
        sys.exit(1)


def _read_json(file: Path) -> Any:
    try:
        return json.loads(file.read_bytes())
    except OSError as exc:
        _fail(f"{file}: {exc.strerror}")
    except ValueError as exc:
        _fail(f"{file}: not JSON: {exc}")


def _read_request(file: Path) -> HookRequest:
    try:
        return parse_hook_request(file.read_bytes())
    except OSError as exc:
        _fail(f"{file}: {exc.strerror}")
    except HookError as exc:
        _fail(f"{file}: {exc.detail}")


@policy.command("eval")
@click.argument("file", type=_path)
@click.argument("request", type=_path)
@click.option("--facts", "facts_file", type=_path, help="FACTS.json: the user's facts.")
@click.option("--trace", "show_trace", is_flag=True, help="Every rule's result, then the decision.")
def policy_eval(file: Path, request: Path, facts_file: Path | None, show_trace: bool) -> None:
    """Decide REQUEST.json (a hook request body) with FILE; print the decision and the rule.

    Facts not in FACTS.json take their "nothing known" values (a user with no history)."""
    loaded = _load_policy(file)
    hook_request = _read_request(request)
    facts = None
    if facts_file is not None:
        try:
            facts = parse_facts(_read_json(facts_file))
        except ValueError as exc:
            _fail(f"{facts_file}: {exc}")
    with _quiet_engine():
        decision = loaded.decide(hook_request, facts)
    if show_trace:
        for line in trace(loaded, hook_request, decision, facts).lines():
            click.echo(line)
    click.echo(json.dumps({"rule": decision.rule, "decision": decision.to_json()}, indent=2))
    if decision.error:
        click.echo(f"evaluation error: {decision.error}", err=True)


@policy.command("test")
@click.argument("file", type=_path)
@click.argument("tests", type=_path)
@click.option("--json", "as_json", is_flag=True, help="One JSON document (for CI).")
def policy_test(file: Path, tests: Path, as_json: bool) -> None:
    """Decide every case of TESTS.yaml with FILE and compare with what it expects: one line
    per case and `N passed, N failed`; exit 0 when all pass, 1 when one fails, 2 for a bad
    file."""
    loaded = _load_policy(file)
    try:
        cases = load_cases(tests)
    except ConfigError as exc:
        _fail(str(exc))
    with _quiet_engine():
        outcomes = [run_case(loaded, case) for case in cases]
    passed = sum(outcome.passed for outcome in outcomes)
    failed = len(outcomes) - passed
    if as_json:
        document = {
            "policy": str(file),
            "revision": loaded.revision,
            "tests": str(tests),
            "passed": passed,
            "failed": failed,
            "cases": [outcome.to_json() for outcome in outcomes],
        }
        click.echo(json.dumps(document, indent=2))
    else:
        for outcome in outcomes:
            detail = "" if outcome.passed else ": " + "; ".join(outcome.problems)
            click.echo(f"{'PASS' if outcome.passed else 'FAIL'}  {outcome.case.name}{detail}")
        click.echo(f"{passed} passed, {failed} failed")
    sys.exit(0 if failed == 0 else 1)
