"""The operator of bench/fleet.py's kwok part: `python -m vpes_operator` itself (its
FleetUpgrade timer, controller and live gate), with the gate's SMTP/IMAP half answered
at once. kwok's nodes run no daemon (a pod is only marked Running and Ready), so on
kwok the gate's pod half (`fleet.probe.pod_verdict`: the pod runs the image, ready) is
the real one and the greetings (220 on 25, `* OK` on 143) are taken as given.

    python -m bench.fleet_gate [the operator's arguments]
"""

from __future__ import annotations

from vpes_operator import __main__ as operator_main
from vpes_operator.fleet import probe


def greetings_answer(
    host: str, timeout: float, greetings: tuple[tuple[str, int, str], ...] = probe.GREETINGS
) -> str | None:
    """The SMTP/IMAP half of the gate on kwok: every server answers at once."""
    return None


def main() -> None:
    probe.greeting_verdict = greetings_answer
    operator_main.main()


if __name__ == "__main__":
    main()
