"""The shape of the webhook events the sandbox emits, for the tests whose outcome depends on
them: ``sandbox`` (payment events carry the sandbox's extras, ``customer_id`` and
``checkout_session_id``) and ``documented`` (exactly FastStar's documented ``payment_id``,
``amount``, ``currency``, ``status``). The engine must reach a correct end state either way;
in the documented shape it often gets there later (an event without a customer waits, then
becomes a review; a checkout is booked when the follow-up asks FastStar about the session).
"""

from __future__ import annotations

import pytest

from renewals.sandbox.testing import RunningSandbox

SANDBOX_SHAPE = "sandbox"
DOCUMENTED_SHAPE = "documented"


@pytest.fixture(params=[SANDBOX_SHAPE, DOCUMENTED_SHAPE])
def event_shape(request: pytest.FixtureRequest, sandbox: RunningSandbox) -> str:
    """Configures the (freshly reset) sandbox to emit payment events in this shape."""
    shape: str = request.param
    sandbox.configure(webhook_documented_shape=shape == DOCUMENTED_SHAPE)
    return shape
