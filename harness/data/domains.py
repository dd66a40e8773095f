"""Domain names and class counts of every registered suite: the one definition (no data, no imports).

The order is the suite's domain order: it fixes the domain ids of a protocol, the default target order and
the rows of the data-layer reports. (The paper's tables list Digit-Five as mt, mm, up, sv, sy, i.e. ``svhn``
before ``syn``; that is a display order, kept in :mod:`harness.paper_numbers`.)
"""

from __future__ import annotations

from harness.errors import DataError

DIGITS: tuple[str, ...] = ("mnist", "mnistm", "usps", "syn", "svhn")
DIGIT_FIVE: tuple[str, ...] = DIGITS
DOMAINNET: tuple[str, ...] = ("clipart", "infograph", "painting", "quickdraw", "real", "sketch")
SMOKE: tuple[str, ...] = ("plain", "inverse", "colour")

#: suite -> its domains, in suite order.
SUITE_DOMAINS: dict[str, tuple[str, ...]] = {
    "digits": DIGITS,
    "digit-five": DIGIT_FIVE,
    "domainnet": DOMAINNET,
    "smoke": SMOKE,
}
#: suite -> number of classes.
SUITE_NUM_CLASSES: dict[str, int] = {"digits": 10, "digit-five": 10, "domainnet": 345, "smoke": 10}


def suite_domains(suite: str) -> tuple[str, ...]:
    """The domains of ``suite`` in suite order, without touching any data root."""
    try:
        return SUITE_DOMAINS[suite]
    except KeyError:
        raise DataError(f"unknown suite {suite!r}: expected one of {sorted(SUITE_DOMAINS)}") from None


def suite_num_classes(suite: str) -> int:
    """The number of classes of ``suite``, without touching any data root."""
    try:
        return SUITE_NUM_CLASSES[suite]
    except KeyError:
        raise DataError(f"unknown suite {suite!r}: expected one of {sorted(SUITE_NUM_CLASSES)}") from None
