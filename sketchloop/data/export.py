"""Export datasets to the formats BAGEL's trainer reads (github.com/ByteDance-Seed/Bagel,
`train/pretrain_unified_navit.py --dataset_config_file`), for all three pipelines and
both worlds. What goes where:

| our rows | BAGEL kind | what |
|---|---|---|
| trajectories | `t2i_pretrain` | the final image, captions `{"prompt", "description"}` (JSON string) |
| trajectories | `unified_edit` | blank canvas + each step's canvas, `[[<ins>]]` per transition |
| refine (negative) | `unified_edit` | `[flawed, corrected]` with `[[<refine> command]]` |
| trajectories | `vlm_sft` | one multi-turn, multi-image conversation: canvas -> next `<ins>`/`<des>`, ... -> `<end>` |
| inspect | `vlm_sft` | prompt, plan history, last canvas -> `<inspect>` (+ `<refine>`) |
| refine | `vlm_sft` | prompt, instruction, judged image -> `<inspect>` (+ `<refine>`) |
| every row | `interleaved` (ours) | prompt, then text and images in trajectory order, each with `loss` |

Output folder:

    t2i/data/*.parquet                       image (PNG bytes), captions
    edit/data/*.parquet, edit/parquet_info.json   image_list, instruction_list
    vlm/images/*.png, vlm/sketchloop.jsonl   LLaVA-style lines
    interleaved/data/*.parquet, interleaved/parquet_info.json
    dataset_info.json                        DATASET_INFO entries (merge into data/dataset_info.py)
    dataset_config.yaml                      pass as --dataset_config_file
    README.md                                the card: counts per kind and source

Images are the datasets' PNG bytes, unchanged (the blank canvas a first step edits is
written once per size). Paths in `dataset_info.json` and `parquet_info.json` start with
`path_prefix` (default: the output folder's absolute path), so an export can be moved to
the training machine and given the prefix it will have there.
"""

from __future__ import annotations

import io
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from ..errors import SketchloopError
from ..format import END, INSPECT, REFINE, plan_text, scene_text, tagged
from ..io import atomic_write_bytes, atomic_write_text, png_bytes
from ..world.vocab import BACKGROUND
from .schema import read_dataset

ROWS_PER_FILE = 1000
ROWS_PER_GROUP = 100

T2I_SCHEMA = pa.schema([("image", pa.binary()), ("captions", pa.string())])
EDIT_SCHEMA = pa.schema([("image_list", pa.list_(pa.binary())), ("instruction_list", pa.list_(pa.list_(pa.string())))])
ELEMENT = pa.struct([("type", pa.string()), ("text", pa.string()), ("image", pa.binary()), ("loss", pa.bool_())])
INTERLEAVED_SCHEMA = pa.schema(
    [("id", pa.string()), ("kind", pa.string()), ("prompt", pa.string()), ("elements", pa.list_(ELEMENT))]
)

HUMAN_PLAN_FIRST = (
    "<image>\nPrompt: {prompt}\nThis is the blank canvas. Plan the first step: <ins> the change, "
    "<des> the whole scene after it."
)
HUMAN_PLAN_NEXT = "<image>\nThe canvas after that step. Plan the next step, or answer <end> when the picture is done."
HUMAN_INSPECT = (
    "<image>\nPrompt: {prompt}\nPlan so far:\n{history}\nThis is the canvas. Inspect the last step: is its "
    "description consistent with the prompt, and does the canvas show it? Answer <inspect> and, for a "
    "conflict, a <refine> command."
)
HUMAN_REFINE = (
    "<image>\nPrompt: {prompt}\nInstruction: {ins}\nDoes this image do what the instruction says? Answer "
    "<inspect> and, when it does not, a <refine> command that fixes it."
)


def _blank_png(image: bytes) -> tuple[bytes, str]:
    """The blank canvas of the same size as `image` (what a first step edits), and its name."""
    with Image.open(io.BytesIO(image)) as img:
        size = img.size
    return png_bytes(Image.new("RGB", size, BACKGROUND)), f"blank-{size[0]}x{size[1]}.png"


def _walk(row: dict[str, Any]) -> list[dict[str, Any]]:
    """The row's steps as (type, text, image bytes) in order."""
    return [
        {"type": s["type"], "text": s["text"], "image": row["images"][s["image"]] if s["image"] >= 0 else None}
        for s in row["steps"]
    ]


def _plans(steps: list[dict[str, Any]]) -> list[tuple[str, str]]:
    plans, ins = [], ""
    for s in steps:
        if s["type"] == "ins":
            ins = s["text"]
        elif s["type"] == "des":
            plans.append((ins, s["text"]))
    return plans


def _answer(steps: list[dict[str, Any]]) -> str:
    """`<inspect> T </inspect>` and, when present, `<refine> C </refine>`."""
    inspect = [s["text"] for s in steps if s["type"] == "inspect"]
    refine = [s["text"] for s in steps if s["type"] == "refine"]
    return tagged(INSPECT, inspect[-1]) + (f" {tagged(REFINE, refine[-1])}" if refine else "")


def interleaved_elements(row: dict[str, Any]) -> list[dict[str, Any]]:
    """Prompt, then every text and image in trajectory order, with the loss the unified
    model's trainer gives them (training/sequences.py): trajectories learn everything after
    the prompt; inspect and refine rows learn from `<inspect>` on."""
    learning = row["kind"] == "trajectories"
    out = [{"type": "text", "text": f"Prompt: {row['prompt']}", "image": None, "loss": False}]
    for s in _walk(row):
        kind = s["type"]
        if kind in ("inspect", "refine"):
            learning = True
        if kind in ("ins", "des", "inspect", "refine"):
            out.append({"type": "text", "text": tagged(kind, s["text"]), "image": None, "loss": learning})
        elif kind == "end":
            out.append({"type": "text", "text": END, "image": None, "loss": learning})
        elif kind == "sketch":
            out.append({"type": "image", "text": "", "image": s["image"], "loss": learning})
    return out


class _Writer:
    """Rows into parquet files of ROWS_PER_FILE rows (row groups of ROWS_PER_GROUP)."""

    def __init__(self, folder: Path, name: str, schema: pa.Schema):
        self.folder, self.name, self.schema = folder, name, schema
        self.rows: list[dict[str, Any]] = []
        self.files: list[Path] = []
        self.count = 0

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        self.count += 1
        if len(self.rows) >= ROWS_PER_FILE:
            self.flush()

    def flush(self) -> None:
        if not self.rows:
            return
        path = self.folder / "data" / f"{self.name}-{len(self.files):05d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        pq.write_table(pa.Table.from_pylist(self.rows, schema=self.schema), tmp, row_group_size=ROWS_PER_GROUP)
        os.replace(tmp, path)
        self.files.append(path)
        self.rows = []


def export_bagel(
    datasets: Iterable[Path], out: Path, path_prefix: str | None = None, name: str = "sketchloop"
) -> dict[str, Any]:
    """Write the BAGEL export of `datasets` into `out`; returns the counts per kind."""
    datasets = [Path(d) for d in datasets]
    if not datasets:
        raise SketchloopError("give at least one dataset folder to export")
    if out.exists() and any(out.iterdir()):
        raise SketchloopError(f"{out} is not empty; export into a new folder")
    prefix = (path_prefix or str(out.resolve())).rstrip("/")
    t2i = _Writer(out / "t2i", "t2i", T2I_SCHEMA)
    edit = _Writer(out / "edit", "edit", EDIT_SCHEMA)
    inter = _Writer(out / "interleaved", "interleaved", INTERLEAVED_SCHEMA)
    images_dir = out / "vlm" / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []
    sources: Counter = Counter()
    blanks: set[str] = set()

    def save_image(data: bytes, file: str) -> str:
        atomic_write_bytes(images_dir / file, data)
        return file

    for folder in datasets:
        table = read_dataset(folder)
        for row in table.to_pylist():
            sources[(folder.name, row["kind"])] += 1
            steps = _walk(row)
            images = [s["image"] for s in steps if s["type"] == "sketch"]
            inter.add(
                {"id": row["id"], "kind": row["kind"], "prompt": row["prompt"], "elements": interleaved_elements(row)}
            )
            blank, blank_name = _blank_png(images[0]) if images else (None, "")
            if blank is not None and blank_name not in blanks:
                save_image(blank, blank_name)
                blanks.add(blank_name)
            if row["kind"] == "trajectories":
                plans = _plans(steps)
                t2i.add(
                    {
                        "image": images[-1],
                        "captions": json.dumps(
                            {
                                "prompt": row["prompt"],
                                "description": scene_text(row["prompt"]) if not plans else plans[-1][1],
                            }
                        ),
                    }
                )
                edit.add({"image_list": [blank] + images, "instruction_list": [[ins] for ins, _ in plans]})
                files = [blank_name] + [save_image(img, f"{row['id']}-{k}.png") for k, img in enumerate(images)]
                turns = []
                for k, (ins, des) in enumerate(plans):
                    human = HUMAN_PLAN_FIRST.format(prompt=row["prompt"]) if k == 0 else HUMAN_PLAN_NEXT
                    turns += [{"from": "human", "value": human}, {"from": "gpt", "value": plan_text(ins, des)}]
                turns += [{"from": "human", "value": HUMAN_PLAN_NEXT}, {"from": "gpt", "value": END}]
                lines.append(json.dumps({"id": row["id"], "image": files, "conversations": turns}))
            elif row["kind"] == "inspect":
                history = "\n".join(plan_text(i, d) for i, d in _plans(steps)) or "(nothing yet)"
                file = save_image(images[-1], f"{row['id']}-last.png") if images else blank_name
                lines.append(
                    json.dumps(
                        {
                            "id": row["id"],
                            "image": file,
                            "conversations": [
                                {"from": "human", "value": HUMAN_INSPECT.format(prompt=row["prompt"], history=history)},
                                {"from": "gpt", "value": _answer(steps)},
                            ],
                        }
                    )
                )
            elif row["kind"] == "refine":
                ins = _plans(steps)[-1][0]
                refine = [s["text"] for s in steps if s["type"] == "refine"]
                judged = next(k for k, s in enumerate(steps) if s["type"] == "inspect") - 1
                file = save_image(steps[judged]["image"], f"{row['id']}-judged.png")
                lines.append(
                    json.dumps(
                        {
                            "id": row["id"],
                            "image": file,
                            "conversations": [
                                {"from": "human", "value": HUMAN_REFINE.format(prompt=row["prompt"], ins=ins)},
                                {"from": "gpt", "value": _answer(steps)},
                            ],
                        }
                    )
                )
                if refine:  # the corrective edit: flawed -> corrected
                    edit.add({"image_list": [steps[judged]["image"], images[-1]], "instruction_list": [[refine[-1]]]})
    for writer in (t2i, edit, inter):
        writer.flush()
    atomic_write_text(out / "vlm" / f"{name}.jsonl", "".join(line + "\n" for line in lines))

    def rel(path: Path) -> str:
        return f"{prefix}/{path.relative_to(out).as_posix()}"

    def parquet_info(writer: _Writer) -> Path:
        info = {
            rel(f): {
                "num_row_groups": pq.ParquetFile(f).num_row_groups,
                "num_rows": pq.ParquetFile(f).metadata.num_rows,
            }
            for f in writer.files
        }
        path = writer.folder / "parquet_info.json"
        atomic_write_text(path, json.dumps(info, indent=1))
        return path

    info: dict[str, dict[str, Any]] = {"t2i_pretrain": {}, "unified_edit": {}, "vlm_sft": {}, "interleaved": {}}
    if t2i.count:
        info["t2i_pretrain"][f"{name}_t2i"] = {
            "data_dir": rel(out / "t2i" / "data"),
            "num_files": len(t2i.files),
            "num_total_samples": t2i.count,
        }
    if edit.count:
        info["unified_edit"][f"{name}_edit"] = {
            "data_dir": rel(out / "edit" / "data"),
            "num_files": len(edit.files),
            "num_total_samples": edit.count,
            "parquet_info_path": rel(parquet_info(edit)),
        }
    info["vlm_sft"][f"{name}_vlm"] = {
        "data_dir": rel(images_dir),
        "jsonl_path": rel(out / "vlm" / f"{name}.jsonl"),
        "num_total_samples": len(lines),
    }
    info["interleaved"][f"{name}_interleaved"] = {
        "data_dir": rel(out / "interleaved" / "data"),
        "num_files": len(inter.files),
        "num_total_samples": inter.count,
        "parquet_info_path": rel(parquet_info(inter)),
    }
    info = {k: v for k, v in info.items() if v}
    atomic_write_text(out / "dataset_info.json", json.dumps(info, indent=1))
    atomic_write_text(out / "dataset_config.yaml", _yaml(info))
    counts = {
        "t2i_pretrain": t2i.count,
        "unified_edit": edit.count,
        "vlm_sft": len(lines),
        "interleaved": inter.count,
        "images": len(list(images_dir.iterdir())),
    }
    atomic_write_text(out / "README.md", _card(datasets, sources, counts, prefix))
    return counts


def _yaml(info: dict[str, dict[str, Any]]) -> str:
    """The dataset config BAGEL's trainer reads (data/configs/example.yaml's fields), for
    the stock kinds; `interleaved` needs the dataset class the README describes."""
    vae = ["  image_transform_args:", "    image_stride: 16", "    max_image_size: 1024", "    min_image_size: 512"]
    vit = ["    image_stride: 14", "    max_image_size: 518", "    min_image_size: 224"]
    blocks = []
    for kind, entries in info.items():
        if kind == "interleaved":
            continue
        names = list(entries)
        lines = [f"{kind}:", "  dataset_names:"] + [f"  - {n}" for n in names]
        if kind == "vlm_sft":
            lines += [
                "  image_transform_args:",
                "    image_stride: 14",
                "    max_image_size: 980",
                "    min_image_size: 378",
                "  is_mandatory: true",
                "  shuffle_lines: true",
                "  shuffle_seed: 0",
            ]
            used = [entries[n]["num_total_samples"] for n in names]
        else:
            lines += vae + (["  vit_image_transform_args:"] + vit if kind == "unified_edit" else [])
            lines += [f"  is_mandatory: {'true' if kind == 't2i_pretrain' else 'false'}"]
            used = [entries[n]["num_files"] for n in names]
        lines += ["  num_used_data:  # parquet files (lines for vlm_sft); their sum must exceed GPUs x workers"]
        lines += [f"  - {u}" for u in used] + ["  weight: 1", ""]
        blocks.append("\n".join(lines))
    return "\n".join(blocks)


def _card(datasets: list[Path], sources: Counter, counts: dict[str, int], prefix: str) -> str:
    rows = "\n".join(f"| {folder} | {kind} | {n} |" for (folder, kind), n in sorted(sources.items()))
    return f"""# sketchloop export for BAGEL

From {", ".join(str(d) for d in datasets)}; paths start with `{prefix}`.

| dataset | kind | rows |
|---|---|---|
{rows}

What went where: trajectories -> `t2i_pretrain` (final image + prompt: {counts["t2i_pretrain"]} rows),
`unified_edit` (blank canvas + each step's canvas with its `<ins>`; refine negatives add
flawed -> corrected with the `<refine>` command: {counts["unified_edit"]} rows) and `vlm_sft`
(plan conversations); inspect and refine rows -> `vlm_sft` (`<inspect>` answers, with
`<refine>` for conflicts; {counts["vlm_sft"]} lines in all, {counts["images"]} image files);
every row -> `interleaved` ({counts["interleaved"]} rows, text and images in trajectory
order with their loss; see sketchloop's docs/data.md for the dataset class that reads them).

Merge `dataset_info.json` into BAGEL's `data/dataset_info.py` (`DATASET_INFO`) and pass
`dataset_config.yaml` as `--dataset_config_file`.
"""
