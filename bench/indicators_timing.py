"""The `indicators` process for the whole county, timed over HTTP against a running `lantu serve` (issue 11).

    lantu demo load --scale county && lantu serve &
    .venv/bin/python bench/indicators_timing.py http://127.0.0.1:8080 [--runs 5] [--truth var/demo/truth.json]

With ``--truth``, every indicator of the county and of each town, for both demo years, is then compared with
the demo's truth.json (values and planar values within 1e-6 relative, targets, statuses, changes).

A small stand-alone timing (bench/processes belongs to the conflict-check benchmark). Every indicator for the
county, computed live, synchronously; also one town and the annual report. Last line: the median against the
issue's target (under 2 s on the county demo).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path

import requests

TARGET_S = 2.0


def run(url: str, inputs: dict, output: str) -> float:
    t0 = time.perf_counter()
    resp = requests.post(f"{url}/processes/indicators/execution", json={"inputs": inputs, "outputs": {output: {}}},
                         headers={"Prefer": "respond-sync"}, timeout=600)
    elapsed = time.perf_counter() - t0
    resp.raise_for_status()
    return elapsed


def check_truth(url: str, path: Path) -> int:
    truth = json.loads(path.read_text("utf-8"))["indicators"]
    bad = checked = 0
    for year, regions in truth["years"].items():
        for key, expected in regions.items():
            resp = requests.post(f"{url}/processes/indicators/execution",
                                 json={"inputs": {"region": key, "year": int(year)}, "outputs": {"result": {}}},
                                 headers={"Prefer": "respond-sync"}, timeout=600)
            resp.raise_for_status()
            for row in resp.json()["indicators"]:
                e = expected[row["indicator"]]
                checked += 1
                for field in ("value", "value_planar", "target"):
                    a, b = row[field], e[field]
                    if (a is None) != (b is None) or (a is not None and not math.isclose(a, b, rel_tol=1e-6)):
                        bad += 1
                        print(f"MISMATCH {year} {key} {row['indicator']} {field}: {a} != {b}")
                if row["status"] != e["status"]:
                    bad += 1
                    print(f"MISMATCH {year} {key} {row['indicator']} status: {row['status']} != {e['status']}")
    print(f"truth: {checked} indicator values checked (county and towns, {len(truth['years'])} years), "
          f"{bad} mismatches")
    return bad


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--truth", type=Path, default=None, help="the demo's truth.json to compare with first")
    args = parser.parse_args()
    url = args.url.rstrip("/")
    # The first request computes the layer sums (cached per server process until the change log moves):
    # run it against a freshly started server to see the cold time.
    print(f"{'county, first request':28s} {run(url, {}, 'result'):.3f} s (cold if the server just started)")
    cases = {"county, every indicator": ({}, "result"), "one town": ({"region": "430121116000"}, "result"),
             "county, annual report PDF": ({"report": "annual"}, "report_pdf")}
    medians = {}
    for name, (inputs, output) in cases.items():
        times = [run(url, inputs, output) for _ in range(args.runs)]
        medians[name] = statistics.median(times)
        print(f"{name:28s} median {medians[name]:.3f} s  (runs: {', '.join(f'{t:.3f}' for t in times)})")
    if args.truth and check_truth(url, args.truth):
        raise SystemExit(1)
    county = medians["county, every indicator"]
    print(f"indicators: county {county:.3f} s warm (target < {TARGET_S:g} s) {'PASS' if county < TARGET_S else 'FAIL'}")


if __name__ == "__main__":
    main()
