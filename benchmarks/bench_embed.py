"""Embedding throughput of the local model on short texts (warm model, 2 cores).

Target (issue 2): at least 400 texts/s.
"""

from __future__ import annotations

import argparse
import random
import time

from flywheel.config import EmbeddingSettings
from flywheel.embeddings import LocalEmbedder
from flywheel.sim.rules import INTENTS
from flywheel.sim.world import make_query


def main(argv: list[str] | None = None) -> bool:
    from benchmarks._util import Target, parse_args, report

    parser = argparse.ArgumentParser()
    parser.add_argument("--texts", type=int, default=5000)
    parser.add_argument("--fp32", action=argparse.BooleanOptionalAction, default=True, help="Also measure fp32.")
    args = parse_args(parser, argv, texts=64, fp32=False)
    rng = random.Random(0)
    texts = [make_query(INTENTS[i % len(INTENTS)], rng)[0] for i in range(args.texts)]  # short support questions
    figures, rates = {}, {}
    for precision in ("auto", "fp32") if args.fp32 else ("auto",):
        emb = LocalEmbedder(EmbeddingSettings(precision=precision))
        emb.embed(texts[:256])  # load and warm up
        start = time.perf_counter()
        emb.embed(texts)
        rates[precision] = len(texts) / (time.perf_counter() - start)
        figures[f"texts_per_s_{precision}"] = round(rates[precision])
    figures["texts"] = len(texts)
    figures["mean_chars"] = round(sum(map(len, texts)) / len(texts))
    return report("embed", figures, [Target.of("default (auto) texts/s", round(rates["auto"]), ">=", 400, "texts/s")])


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
