"""Derive ``azure-llm-conv-2023.csv`` from the Azure LLM inference trace 2023 (conversation).

Source: ``data/AzureLLMInferenceTrace_conv.csv`` of https://github.com/Azure/AzurePublicDataset
(CC-BY 4.0), columns ``TIMESTAMP,ContextTokens,GeneratedTokens``. Kept: every request, its
arrival as seconds after the first request (millisecond precision) and its total tokens
(context + generated). Nothing else is changed.

    python bench/traces/derive.py AzureLLMInferenceTrace_conv.csv > bench/traces/azure-llm-conv-2023.csv
"""

from __future__ import annotations

import csv
import datetime
import sys


def main(path: str) -> None:
    with open(path, newline="", encoding="utf-8-sig") as source:
        rows = list(csv.DictReader(source))
    stamps = [datetime.datetime.fromisoformat(row["TIMESTAMP"][:26]) for row in rows]
    first = min(stamps)
    out = csv.writer(sys.stdout, lineterminator="\n")
    out.writerow(["timestamp", "tokens"])
    for stamp, row in sorted(zip(stamps, rows, strict=True), key=lambda pair: pair[0]):
        tokens = int(row["ContextTokens"]) + int(row["GeneratedTokens"])
        out.writerow([f"{(stamp - first).total_seconds():.3f}", tokens])


if __name__ == "__main__":
    main(sys.argv[1])
