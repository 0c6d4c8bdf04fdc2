"""The probe's documented user-level cases (probe.py) on both clients: nothing fails but the known cases."""

from __future__ import annotations

from .probe import CASES, KNOWN_FAILURES, counts_text, run_probe, tally


def test_documented_cases_pass(stack):
    results = run_probe(stack.ipp, stack.rc)
    counts = tally(results)
    print(f"{stack.kind}: {len(CASES)} cases: {counts_text(counts)}")
    failing = {name: detail for name, (outcome, detail) in results.items() if outcome != "pass"}
    unexpected = {name: detail for name, detail in failing.items() if name not in KNOWN_FAILURES[stack.kind]}
    assert not unexpected, unexpected
    fixed = set(KNOWN_FAILURES[stack.kind]) - set(failing)
    assert not fixed, f"known failures that pass now (take them off the list): {sorted(fixed)}"
