"""Turn a pytest-benchmark JSON into a small markdown table with ratios to the group's baseline.

Usage: python benchmarks/record.py RESULTS.json BASELINE_TEST_NAME > benchmarks/results/NAME.md
"""

from __future__ import annotations

import json
import platform
import sys


def main(path: str, baseline: str) -> None:
    with open(path) as handle:
        report = json.load(handle)
    rows = {b["name"]: b["stats"] for b in report["benchmarks"]}
    base = rows[baseline]["median"]
    machine = report["machine_info"]
    print(
        f"Recorded {report['datetime']} on {machine.get('cpu', {}).get('brand_raw', platform.processor())}, "
        f"Python {machine['python_version']}; medians of one run (ratios are what to compare).\n"
    )
    print("| benchmark | median (ms) | rounds | ratio to baseline |")
    print("|---|---:|---:|---:|")
    for name, stats in rows.items():
        print(f"| {name} | {stats['median'] * 1e3:.1f} | {stats['rounds']} | {stats['median'] / base:.3f} |")


if __name__ == "__main__":
    main(*sys.argv[1:3])
