"""The dataset format: one parquet schema for every kind, and how its files are laid out.

One parquet row per example, the same schema for every kind (readable by pyarrow and
Hugging Face `datasets`):

| column  | type                 | meaning                                                      |
|---------|----------------------|--------------------------------------------------------------|
| id      | string               | `{kind}-{shard:05d}-{index:05d}`                             |
| kind    | string               | trajectories, inspect, refine, facts, corrections or plans   |
| prompt  | string               | the full prompt                                              |
| scene   | string               | its scene graph as JSON (sketchloop.SceneGraph.from_json)   |
| steps   | list<struct>         | type, text, image (index into images or -1), op (edit JSON or "") |
| images  | list<binary>         | PNG bytes, referenced by the steps                           |
| layouts | list<string>         | ShapesWorld layout JSON of each image ("" when unknown)      |
| label   | string               | inspect/refine: consistent or inconsistent; corrections:     |
|         |                      | corrected or confirmed; "" otherwise                         |
| meta    | string               | JSON: pipeline details (edit ops used, perturbation, ...)    |

Step types: `ins`, `des` (the plan), `sketch` (an image), `inspect`, `refine`, `end`, and
`text` (a facts row's one plain sentence, "a ripe banana is yellow"; its prompt and scene are
empty, its meta names the fact: world/knowledge.py). A `sketch` step with image -1 is an image
step named by its regions alone (its text, `x3 y12 s8 ...`): a corrections or plans row holds
no image.
A `rejected` step (a replan correction) is a plan the inspection rejected, as `<ins> I </ins>
<des> D </des>`; the step after it corrects it.

Output folder: `data/{kind}-{shard:05d}-of-{n:05d}.parquet`, `build.json` (the build's
parameters), `README.md` (the dataset card, data/card.py) and `contact_sheet.png`; the
build itself is data/build.py.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from ..errors import SketchloopError

KINDS = ("trajectories", "inspect", "refine", "facts", "corrections", "plans")
SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("kind", pa.string()),
        ("prompt", pa.string()),
        ("scene", pa.string()),
        (
            "steps",
            pa.list_(
                pa.struct([("type", pa.string()), ("text", pa.string()), ("image", pa.int32()), ("op", pa.string())])
            ),
        ),
        ("images", pa.list_(pa.binary())),
        ("layouts", pa.list_(pa.string())),
        ("label", pa.string()),
        ("meta", pa.string()),
    ]
)


def shard_path(out: Path, kind: str, shard: int, n_shards: int) -> Path:
    return out / "data" / f"{kind}-{shard:05d}-of-{n_shards:05d}.parquet"


def write_table(path: Path, rows: list[dict[str, Any]], state: dict[str, Any] | None = None) -> None:
    """Rows as a parquet file, written atomically; `state` goes in the schema metadata."""
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(rows, schema=SCHEMA)
    if state is not None:
        table = table.replace_schema_metadata({"sketchloop_state": json.dumps(state)})
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def read_partial(folder: Path) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """The examples a stopped run finished for one shard, and the state after the last one."""
    files = sorted(folder.glob("[0-9]*.parquet")) if folder.is_dir() else []
    files = [f for i, f in enumerate(files) if f.name == f"{i:05d}.parquet"]  # a gap ends what can be used
    if not files:
        return [], None
    tables = [pq.read_table(f) for f in files]
    state = json.loads(tables[-1].schema.metadata[b"sketchloop_state"])
    return [row for t in tables for row in t.to_pylist()], state


def read_dataset(out: Path | str) -> pa.Table:
    """Every shard of a dataset folder, as one table."""
    out = Path(out)
    files = sorted((out / "data").glob("*.parquet"))
    if not files:
        raise SketchloopError(f"{out} holds no dataset shards (data/*.parquet); build one with 'sketchloop data build'")
    return pa.concat_tables(pq.read_table(f) for f in files)


def decode_png(data: bytes) -> np.ndarray:
    """A row's PNG image as an H x W x 3 uint8 array."""
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
