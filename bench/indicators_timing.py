"""The `indicators` process for the whole county, timed over HTTP against a running `lantu serve` (issue 11).

    lantu demo load --scale county && lantu serve &
    .venv/bin/python bench/indicators_timing.py http://127.0.0.1:8080 [--runs 5]

A small stand-alone timing (bench/processes belongs to the conflict-check benchmark). Every indicator for the
county, computed live, synchronously; also one town and the annual report. Last line: the median against the
issue's target (under 2 s on the county demo).
"""

from __future__ import annotations

import argparse
import statistics
import time

import requests

TARGET_S = 2.0


def run(url: str, inputs: dict, output: str) -> float:
    t0 = time.perf_counter()
    resp = requests.post(f"{url}/processes/indicators/execution", json={"inputs": inputs, "outputs": {output: {}}},
                         headers={"Prefer": "respond-sync"}, timeout=600)
    elapsed = time.perf_counter() - t0
    resp.raise_for_status()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--runs", type=int, default=5)
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
    county = medians["county, every indicator"]
    print(f"indicators: county {county:.3f} s warm (target < {TARGET_S:g} s) {'PASS' if county < TARGET_S else 'FAIL'}")


if __name__ == "__main__":
    main()
