"""What the node wires from the settings."""

from __future__ import annotations

import pytest

from service.node import load_services
from service.settings import Settings


@pytest.mark.parametrize(("live", "deadline"), [(True, 0.9), (False, 0.0)])
def test_only_live_calls_trade_a_late_finals_beam_for_its_deadline(
    live: bool, deadline: float
) -> None:
    """A server's finals keep CALLCUE_FINAL_DEADLINE_MS; a recording (transcribe, import) has
    no one waiting for its finals, so each gets the full beam on the finals' model."""
    env = {"CALLCUE_ASSIST": "false", "CALLCUE_CUSTOMERS": "none", "CALLCUE_REVISE": "false"}
    services = load_services(Settings.load(env=env), warmup=False, store=False, live=live)
    try:
        assert services.recognition.scheduler.final_deadline == deadline
    finally:
        services.close()
