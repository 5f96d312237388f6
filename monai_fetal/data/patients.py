"""Patient identity from case ids, for splits that keep each patient on one side."""

from __future__ import annotations

import re

__all__ = ["patient_of"]

_PATIENT_PATTERNS = (
    re.compile(r"^(?P<patient>\d{3})_\d*HC$"),  # HC18: 010_HC, 010_2HC, ... are one patient
    re.compile(r"^(?P<patient>Patient\d+)_Plane\d+_\d+_of_\d+$", re.IGNORECASE),  # FETAL_PLANES_DB
)


def patient_of(case_id: str) -> str:
    """Patient id encoded in ``case_id`` (HC18 and FETAL_PLANES_DB names), else the id itself."""
    for pattern in _PATIENT_PATTERNS:
        match = pattern.match(case_id)
        if match:
            return match.group("patient")
    return case_id
