"""Running an evaluation: generate (or read) images in GenEval's layout, detect, score.

Folder layout (GenEval's): OUT/{i:05d}/metadata.jsonl holds prompt i's line and
OUT/{i:05d}/samples/{j:04d}.png its images. Generation writes each file atomically and
skips samples already on disk for the same prompt, so an interrupted run resumes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from ..errors import SketchloopError
from ..generators import Generator
from ..io import atomic_write_text, save_png
from ..world.detect import Detector
from .benchmark import parse_metadata_line
from .geneval import score_image, summarize


def image_seed(seed: int, prompt_index: int, sample_index: int) -> int:
    """The seed of sample j of prompt i: the same for every generator compared."""
    return int(np.random.SeedSequence([seed, prompt_index, sample_index]).generate_state(1)[0])


def generate_images(prompts: list[dict[str, Any]], generator: Generator | None, out_dir: Path,
                    images_per_prompt: int = 4, seed: int = 0, progress: bool = True,
                    indices: list[int] | None = None) -> dict[tuple[int, int], dict]:
    """Write every prompt's images in GenEval's layout (only prompts `indices` if given);
    returns each sample's stats. With `generator` None every image must exist already."""
    stats: dict[tuple[int, int], dict] = {}
    todo = range(len(prompts)) if indices is None else indices
    bar = tqdm(total=len(todo) * images_per_prompt, desc=f"generate ({getattr(generator, 'name', '')})",
               unit="img", disable=not progress)
    for i in todo:
        meta = prompts[i]
        folder = out_dir / f"{i:05d}"
        line = json.dumps(meta)
        meta_path = folder / "metadata.jsonl"
        same = meta_path.is_file() and meta_path.read_text(encoding="utf-8").strip() == line
        if not same:
            atomic_write_text(meta_path, line + "\n")
        for j in range(images_per_prompt):
            path = folder / "samples" / f"{j:04d}.png"
            stats_path = folder / "samples" / f"{j:04d}.json"
            if same and path.is_file() and stats_path.is_file():
                stats[(i, j)] = json.loads(stats_path.read_text(encoding="utf-8"))
            else:
                if generator is None:
                    raise SketchloopError(f"{path} was not generated")
                result = generator.generate(meta["prompt"], image_seed(seed, i, j))
                save_png(path, result.image)
                atomic_write_text(stats_path, json.dumps(result.stats))
                stats[(i, j)] = result.stats
            bar.update(1)
    bar.close()
    return stats


def _generate_share(prompts, name, kwargs, out_dir, images_per_prompt, seed, indices, progress) -> int:
    import torch

    from ..generators import get_generator

    torch.set_num_threads(1)  # one process per core
    generate_images(prompts, get_generator(name, **kwargs), out_dir, images_per_prompt, seed, progress, indices)
    return len(indices)


def generate_images_parallel(prompts: list[dict[str, Any]], name: str, kwargs: dict[str, Any], out_dir: Path,
                             images_per_prompt: int = 4, seed: int = 0, workers: int = 2,
                             progress: bool = True) -> dict[tuple[int, int], dict]:
    """`generate_images` with the generator `name` built in each of `workers` processes,
    prompts dealt round-robin; the same images and stats as one process (seeds are per image)."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
        futures = [pool.submit(_generate_share, prompts, name, kwargs, out_dir, images_per_prompt, seed,
                               list(range(w, len(prompts), workers)), progress and w == 0) for w in range(workers)]
        for f in futures:
            f.result()
    return generate_images(prompts, None, out_dir, images_per_prompt, seed, progress=False)


def read_folder(images_dir: Path, limit: int | None = None) -> list[tuple[int, dict[str, Any], list[Path]]]:
    """(prompt index, metadata, sample paths) for each prompt folder of a GenEval image folder."""
    if not images_dir.is_dir():
        raise SketchloopError(f"image folder {images_dir} does not exist")
    folders = sorted(p for p in images_dir.iterdir() if p.is_dir() and p.name.isdigit())
    if not folders:
        raise SketchloopError(f"{images_dir} holds no prompt folders; expected GenEval's layout "
                              f"NNNNN/metadata.jsonl and NNNNN/samples/NNNN.png")
    out = []
    for folder in folders[:limit] if limit else folders:
        meta_path = folder / "metadata.jsonl"
        if not meta_path.is_file():
            raise SketchloopError(f"{folder} has no metadata.jsonl")
        first = meta_path.read_text(encoding="utf-8").strip().splitlines()
        if not first:
            raise SketchloopError(f"{meta_path} is empty")
        meta = parse_metadata_line(first[0], str(meta_path))
        samples = sorted((folder / "samples").glob("*.png"))
        if not samples:
            raise SketchloopError(f"{folder}/samples holds no PNG images")
        out.append((int(folder.name), meta, samples))
    return out


def evaluate(images_dir: Path, detector: Detector, benchmark: list[dict[str, Any]] | None = None,
             limit: int | None = None, sample_stats: dict[tuple[int, int], dict] | None = None,
             progress: bool = True) -> dict[str, Any]:
    """Score a GenEval image folder; with `benchmark`, check the folder holds its prompts."""
    entries = read_folder(images_dir, limit)
    records = []
    total = sum(len(samples) for _, _, samples in entries)
    bar = tqdm(total=total, desc=f"score ({detector.name} detector)", unit="img", disable=not progress)
    for index, meta, samples in entries:
        if benchmark is not None:
            if index >= len(benchmark):
                raise SketchloopError(f"{images_dir}/{index:05d}: the benchmark has only {len(benchmark)} prompts")
            if benchmark[index]["prompt"] != meta["prompt"]:
                raise SketchloopError(f"{images_dir}/{index:05d} holds prompt {meta['prompt']!r} but the "
                                      f"benchmark's prompt {index} is {benchmark[index]['prompt']!r}")
        for path in samples:
            try:
                with Image.open(path) as img:
                    detections = detector.detect(img.convert("RGB"))
            except (UnidentifiedImageError, OSError) as exc:
                raise SketchloopError(f"cannot read image {path}: {exc}") from None
            correct, reason = score_image(detections, meta, detector.threshold, detector.counting_threshold)
            sample = int(path.stem) if path.stem.isdigit() else path.stem
            record = {
                "index": index, "sample": sample, "filename": str(path.relative_to(images_dir)),
                "tag": meta["tag"], "prompt": meta["prompt"], "correct": correct, "reason": reason,
                "detections": [d.to_dict() for d in detections],
            }
            if sample_stats and (index, sample) in sample_stats:
                record.update(sample_stats[(index, sample)])
            records.append(record)
            bar.update(1)
    bar.close()
    results: dict[str, Any] = summarize(records)
    results["n_prompts"] = len(entries)
    results["n_images"] = len(records)
    results["detector"] = detector.name
    compute = _mean_numeric_stats(records)
    if compute:
        results["compute"] = compute
    results["images"] = records
    return results


def _mean_numeric_stats(records: list[dict[str, Any]]) -> dict[str, float]:
    """Mean per image of every numeric cost a generator reported (flow steps, seconds...)."""
    keys = {k for r in records for k, v in r.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("index", "sample")}
    return {k: float(np.mean([r[k] for r in records if k in r])) for k in sorted(keys)}
