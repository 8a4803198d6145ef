"""Running an evaluation: generate (or read) images in GenEval's layout, detect, score.

Folder layout (GenEval's): OUT/{i:05d}/metadata.jsonl holds prompt i's line and
OUT/{i:05d}/samples/{j:04d}.png its images. Beside each image, `{j:04d}.json` is its
sample record:

    {"made_by": {generator, checkpoint sha256, every option that can change the image,
                 sketchloop version, "seed"}, "stats": {flow_steps, seconds, ...},
     "failed": false, "error": ""}

A sample is reused only when its record's `made_by` equals what this run would use
(so a folder shared by two configurations is regenerated, never mixed up), and an
interrupted run resumes. A generation that raises is recorded as failed (no PNG, the
error in its record), scored as wrong and counted; the run goes on.
"""

from __future__ import annotations

import json
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from ..errors import PromptError, SketchloopError, first_line
from ..generators import Generator
from ..io import atomic_write_text, save_png
from ..world.detect import Detector
from .benchmark import parse_metadata_line
from .geneval import score_image, summarize


def image_seed(seed: int, prompt_index: int, sample_index: int) -> int:
    """The seed of sample j of prompt i: the same for every generator compared."""
    return int(np.random.SeedSequence([seed, prompt_index, sample_index]).generate_state(1)[0])


@dataclass
class Generation:
    """What `generate_images` did: each sample's record, keyed by (prompt, sample)."""

    samples: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict)
    generated: int = 0  # made by this run (failures included)
    reused: int = 0  # found on disk with a matching record

    @property
    def failed(self) -> int:
        return sum(1 for s in self.samples.values() if s.get("failed"))

    def merge(self, other: "Generation") -> None:
        self.samples.update(other.samples)
        self.generated += other.generated
        self.reused += other.reused


def _read_record(path: Path) -> dict[str, Any] | None:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and "made_by" in record else None


def _error_text(exc: BaseException) -> str:
    """`Type: first line`, or the type alone when the message is empty."""
    return f"{type(exc).__name__}: {first_line(exc)}" if str(exc).strip() else type(exc).__name__


def generate_images(
    prompts: list[dict[str, Any]],
    generator: Generator,
    out_dir: Path,
    images_per_prompt: int = 4,
    seed: int = 0,
    progress: bool = True,
    indices: list[int] | None = None,
    retry_failed: bool = False,
    pages: int = 0,
) -> Generation:
    """Write every prompt's images in GenEval's layout (only prompts `indices` if given).

    For the first `pages` prompts, a generator that runs the loop also leaves each sample's
    trajectory page in `NNNNN/trajectories/JJJJ/index.html` (see `write_gallery`).

    A sample on disk is reused when its record was made by the generator's `record` with
    the same seed; failed samples are reused as failed unless `retry_failed`."""
    made_by = dict(generator.record)
    result = Generation()
    todo = range(len(prompts)) if indices is None else indices
    bar = tqdm(
        total=len(todo) * images_per_prompt,
        desc=f"generate ({getattr(generator, 'name', '')})",
        unit="img",
        disable=not progress,
    )
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
            record_path = path.with_suffix(".json")
            wanted = {**made_by, "seed": image_seed(seed, i, j)}
            record: dict[str, Any] | None = _read_record(record_path) if same else None
            page = folder / "trajectories" / f"{j:04d}" if i < pages and hasattr(generator, "run") else None
            usable = (
                record is not None
                and record["made_by"] == wanted
                and (
                    path.is_file() and (page is None or (page / "index.html").is_file())
                    if not record.get("failed")
                    else not retry_failed
                )
            )
            if usable and record is not None:
                result.reused += 1
            else:
                record = _generate_one(generator, meta["prompt"], wanted, path, page)
                result.generated += 1
            result.samples[(i, j)] = record
            bar.update(1)
    bar.close()
    return result


def _generate_one(
    generator: Generator, prompt: str, made_by: dict[str, Any], path: Path, page: Path | None = None
) -> dict[str, Any]:
    """Generate one sample and write it with its record (and its trajectory page in `page`);
    a failure is written as a record."""
    record_path = path.with_suffix(".json")
    try:
        out = generator.generate(prompt, made_by["seed"])
    except PromptError:
        raise  # the benchmark itself is wrong: one clear line, not a thousand failed samples
    except Exception as exc:  # noqa: BLE001 - any backend failure is this sample's, the run goes on
        record = {
            "made_by": made_by,
            "stats": {},
            "failed": True,
            "error": _error_text(exc),
            "traceback": traceback.format_exc(limit=8),
        }
        path.unlink(missing_ok=True)
        atomic_write_text(record_path, json.dumps(record))
        return record
    save_png(path, out.image)
    if page is not None and out.trajectory is not None:
        from ..pages.trajectory import save_trajectory

        save_trajectory(out.trajectory, page)
    record = {"made_by": made_by, "stats": out.stats, "failed": False, "error": ""}
    atomic_write_text(record_path, json.dumps(record))
    return record


def _generate_share(
    prompts, name, kwargs, out_dir, images_per_prompt, seed, indices, progress, retry_failed, pages, worker
) -> Generation:
    import torch

    from ..generators import get_generator

    torch.set_num_threads(1)  # one process per core
    if kwargs.get("device") == "cuda" and torch.cuda.is_available():  # one GPU per worker, round robin
        kwargs = {**kwargs, "device": f"cuda:{worker % torch.cuda.device_count()}"}
    return generate_images(
        prompts,
        get_generator(name, **kwargs),
        out_dir,
        images_per_prompt,
        seed,
        progress,
        indices,
        retry_failed=retry_failed,
        pages=pages,
    )


def generate_images_parallel(
    prompts: list[dict[str, Any]],
    name: str,
    kwargs: dict[str, Any],
    out_dir: Path,
    images_per_prompt: int = 4,
    seed: int = 0,
    workers: int = 2,
    progress: bool = True,
    retry_failed: bool = False,
    pages: int = 0,
) -> Generation:
    """`generate_images` with the generator `name` built in each of `workers` processes,
    prompts dealt round-robin; the same images and records as one process (seeds are per image).
    With `kwargs["device"] == "cuda"`, worker w runs on GPU w modulo the GPUs visible."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    result = Generation()
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
        futures = [
            pool.submit(
                _generate_share,
                prompts,
                name,
                kwargs,
                out_dir,
                images_per_prompt,
                seed,
                list(range(w, len(prompts), workers)),
                progress and w == 0,
                retry_failed,
                pages,
                w,
            )
            for w in range(workers)
        ]
        for f in futures:
            result.merge(f.result())
    return result


@dataclass
class PromptFolder:
    index: int
    meta: dict[str, Any]
    images: list[Path]  # the PNG samples
    failed: dict[int | str, str]  # sample -> error, for samples whose generation failed


def read_folder(images_dir: Path, limit: int | None = None) -> list[PromptFolder]:
    """The prompt folders of a GenEval image folder, in order."""
    if not images_dir.is_dir():
        raise SketchloopError(f"image folder {images_dir} does not exist")
    folders = sorted(p for p in images_dir.iterdir() if p.is_dir() and p.name.isdigit())
    if not folders:
        raise SketchloopError(
            f"{images_dir} holds no prompt folders; expected GenEval's layout "
            f"NNNNN/metadata.jsonl and NNNNN/samples/NNNN.png"
        )
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
        failed = {}
        for record_path in sorted((folder / "samples").glob("*.json")):
            record = _read_record(record_path)
            if record and record.get("failed") and not record_path.with_suffix(".png").is_file():
                failed[_sample_key(record_path)] = record.get("error", "")
        if not samples and not failed:
            raise SketchloopError(f"{folder}/samples holds no PNG images")
        out.append(PromptFolder(int(folder.name), meta, samples, failed))
    return out


def _sample_key(path: Path) -> int | str:
    return int(path.stem) if path.stem.isdigit() else path.stem


def evaluate(
    images_dir: Path,
    detector: Detector,
    benchmark: list[dict[str, Any]] | None = None,
    limit: int | None = None,
    generation: Generation | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Score a GenEval image folder; with `benchmark`, check the folder holds its prompts
    (prompt folders past the benchmark's end are left out and counted in `n_ignored_folders`).

    A sample whose generation failed is scored as wrong; `n_failed` (overall and per task)
    counts them and `failures` lists their distinct errors."""
    entries = read_folder(images_dir, limit)
    ignored = 0
    if benchmark is not None:
        ignored = sum(1 for e in entries if e.index >= len(benchmark))
        entries = [e for e in entries if e.index < len(benchmark)]
        for e in entries:
            if benchmark[e.index]["prompt"] != e.meta["prompt"]:
                raise SketchloopError(
                    f"{images_dir}/{e.index:05d} holds prompt {e.meta['prompt']!r} but the "
                    f"benchmark's prompt {e.index} is {benchmark[e.index]['prompt']!r}"
                )
    records = []
    total = sum(len(e.images) for e in entries)
    bar = tqdm(total=total, desc=f"score ({detector.name} detector)", unit="img", disable=not progress)
    for e in entries:
        base = {"index": e.index, "tag": e.meta["tag"], "prompt": e.meta["prompt"]}
        scored: list[dict[str, Any]] = []
        for path in e.images:
            try:
                with Image.open(path) as img:
                    detections = detector.detect(img.convert("RGB"))
            except (UnidentifiedImageError, OSError) as exc:
                raise SketchloopError(f"cannot read image {path}: {exc}") from None
            correct, reason = score_image(detections, e.meta, detector.threshold, detector.counting_threshold)
            scored.append(
                {
                    **base,
                    "sample": _sample_key(path),
                    "filename": str(path.relative_to(images_dir)),
                    "correct": correct,
                    "reason": reason,
                    "failed": False,
                    "detections": [d.to_dict() for d in detections],
                }
            )
            bar.update(1)
        for sample, error in e.failed.items():
            scored.append(
                {
                    **base,
                    "sample": sample,
                    "filename": "",
                    "correct": False,
                    "reason": f"generation failed: {error}",
                    "failed": True,
                    "error": error,
                    "detections": [],
                }
            )
        for record in sorted(scored, key=lambda r: str(r["sample"]).zfill(8)):
            sample_record = generation.samples.get((e.index, record["sample"])) if generation else None
            if sample_record:
                record.update(sample_record.get("stats", {}))
            records.append(record)
    bar.close()
    results: dict[str, Any] = summarize(records)
    results["n_prompts"] = len(entries)
    results["n_images"] = len(records)
    results["n_failed"] = sum(1 for r in records if r["failed"])
    results["failed_by_task"] = {
        tag: sum(1 for r in records if r["failed"] and r["tag"] == tag) for tag in results["tasks"]
    }
    results["failures"] = dict(Counter(r["error"] for r in records if r["failed"]).most_common())
    if ignored:
        results["n_ignored_folders"] = ignored
    results["detector"] = detector.name
    compute = _mean_numeric_stats([r for r in records if not r["failed"]])
    if compute:
        results["compute"] = compute
    results["images"] = records
    return results


def _mean_numeric_stats(records: list[dict[str, Any]]) -> dict[str, float]:
    """Mean per image of every numeric cost a generator reported (flow steps, seconds...)."""
    keys = {
        k
        for r in records
        for k, v in r.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("index", "sample")
    }
    return {k: float(np.mean([r[k] for r in records if k in r])) for k in sorted(keys)}
