"""Does the model know a fact, and can it say it inside a plan? Two completions per fact, text
only, greedy (a diagnostic of the planner's knowledge, never a generation path):

    python scripts/recall_in_context.py [--checkpoint CKPT] [--benchmark shapes-wise-val ...]

- alone: the fact's sentence as the facts corpus says it, cut before its answer and read
  after `<bos>` alone ("<bos> a ripe banana is" -> "yellow"), for every fact of the knowledge base;
- in a plan: the same words read as a recall clause of the first `<ins>` after a benchmark's
  knowledge prompt ("<prompt> ... </prompt> <ins> a ripe banana is" -> "yellow"), with the
  model's pointer over the prompt and without it.

Per split of the facts (seen in trajectories, only in the text corpus, held out).
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import torch

from sketchloop.backends.unified import SHIPPED_CHECKPOINT, UnifiedRoles
from sketchloop.evaluation.benchmark import load_benchmark
from sketchloop.format import BOS
from sketchloop.models.sampling import TextSession
from sketchloop.world.knowledge import load_facts
from sketchloop.world.parser import parse_with_facts


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--checkpoint", type=Path, default=SHIPPED_CHECKPOINT)
    parser.add_argument("--benchmark", nargs="+", default=["shapes-wise-val"])
    args = parser.parse_args()
    roles = UnifiedRoles.from_pretrained(args.checkpoint)
    tok, model = roles.tok, roles.model
    right: dict[tuple[str, str], list[bool]] = defaultdict(list)
    for fact in load_facts():
        session = TextSession(model, tok.token_id("<canvas>"))
        session.feed(tok.encode(f"{BOS} {fact.lead}"))
        right[(fact.split, "alone")].append(tok.vocab[int(session.next_logits().argmax())] == fact.answer_word)
    for name in args.benchmark:
        for meta in load_benchmark(name):
            _, ((fact, _), *_) = parse_with_facts(meta["prompt"])
            session = roles._session(meta["prompt"], [])
            session.feed(tok.encode(f"<ins> {fact.lead}"))
            with torch.no_grad():
                pointer = tok.vocab[int(session.next_logits().argmax())]
                plain = tok.vocab[int(model.logits(session.last, None).argmax())]
            right[(fact.split, "in a plan")].append(pointer == fact.answer_word)
            right[(fact.split, "in a plan, no pointer")].append(plain == fact.answer_word)
    print(f"| {args.checkpoint} | facts | answer right |\n|---|---|---|")
    for (split, where), hits in sorted(right.items()):
        print(f"| {split}, {where} | {len(hits)} | {sum(hits) / len(hits):.3f} |")


if __name__ == "__main__":
    main()
