"""Risk facts from a user's history (issue 11): values and interface in
:mod:`~hook_service.facts.base`, semantics in :mod:`~hook_service.facts.logic`, stores in
:mod:`~hook_service.facts.memory` and :mod:`~hook_service.facts.redis`."""
