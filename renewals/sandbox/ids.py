"""Object ids: FastStar's documented prefixes plus a random suffix.

Prefixes ``cus_ seti_ pm_ pi_ price_ prod_ evt_`` are Part A; ``cs_`` for checkout sessions
is our Part B choice (FastStar does not document the session id).
"""

from __future__ import annotations

import secrets


def new_id(prefix: str) -> str:
    """``<prefix>_<24 hex chars>``, e.g. ``cus_3f9a...``."""
    return f"{prefix}_{secrets.token_hex(12)}"


def setup_intent_client_secret(setup_intent_id: str) -> str:
    """The documented ``seti_xxx_secret_xxx`` shape."""
    return f"{setup_intent_id}_secret_{secrets.token_hex(12)}"
