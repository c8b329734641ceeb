"""Step keys with a meaning of their own in Prelude's contract, shared by the policy and the
tokens."""

from __future__ import annotations

from typing import Final

# Prelude's SDKs read current_step == "completed" in a challenge token as "every step is done"
# and end the flow (contract sec. 6): no step may carry that key.
COMPLETED: Final = "completed"
