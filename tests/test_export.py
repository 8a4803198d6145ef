"""The BAGEL export: every file read back with pyarrow/json and checked against the format
BAGEL's trainer reads (../shared/BAGEL_FORMAT.md); images round-trip byte for byte."""

import io
import json
import os
import random
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
from cli_run import cli
from PIL import Image

from sketchloop.data.build import build
from sketchloop.data.schema import read_dataset
from sketchloop.world.vocab import BACKGROUND


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    for kind, n in (("trajectories", 10), ("inspect", 10), ("refine", 14)):
        build(kind, n, root / kind, seed=4, shard_size=n, progress=False)
    out = root / "bagel"
    r = cli(
        "data",
        "export",
        str(root / "trajectories"),
        str(root / "inspect"),
        str(root / "refine"),
        "--format",
        "bagel",
        "--out",
        str(out),
    )
    assert r.returncode == 0, r.stderr
    rows = {
        row["id"]: row
        for kind in ("trajectories", "inspect", "refine")
        for row in read_dataset(root / kind).to_pylist()
    }
    return out, rows


def _images(row):
    return [row["images"][s["image"]] for s in row["steps"] if s["type"] == "sketch"]


def _list_like_bagel(data_dir: str) -> list[str]:
    """BAGEL's data/parquet_utils.get_parquet_data_paths for a local folder."""
    return [os.path.join(data_dir, name) for name in os.listdir(data_dir) if name.endswith(".parquet")]


def test_dataset_info_and_config(exported):
    out, rows = exported
    info = json.loads((out / "dataset_info.json").read_text())
    assert set(info) == {"t2i_pretrain", "unified_edit", "vlm_sft", "interleaved"}
    t2i, edit, vlm = (
        info["t2i_pretrain"]["sketchloop_t2i"],
        info["unified_edit"]["sketchloop_edit"],
        info["vlm_sft"]["sketchloop_vlm"],
    )
    assert set(t2i) == {"data_dir", "num_files", "num_total_samples"} and t2i["num_total_samples"] == 10
    assert set(edit) == {"data_dir", "num_files", "num_total_samples", "parquet_info_path"}
    assert set(vlm) == {"data_dir", "jsonl_path", "num_total_samples"} and vlm["num_total_samples"] == 34
    for entry in (t2i, edit, vlm):
        assert all(str(v).startswith(str(out.resolve())) for k, v in entry.items() if k.endswith(("dir", "path")))
    yaml = pytest.importorskip("yaml")
    config = yaml.safe_load((out / "dataset_config.yaml").read_text())
    assert set(config) == {"t2i_pretrain", "unified_edit", "vlm_sft"}
    for kind, block in config.items():
        assert block["dataset_names"] == list(info[kind])
        assert {"image_transform_args", "is_mandatory", "num_used_data", "weight"} <= set(block)
        assert isinstance(block["num_used_data"], list) and all(n >= 1 for n in block["num_used_data"])
    assert "vit_image_transform_args" in config["unified_edit"]
    card = (out / "README.md").read_text()
    assert "What went where" in card and "| trajectories | trajectories | 10 |" in card


def test_t2i_rows_are_final_images_with_captions(exported):
    out, rows = exported
    entry = json.loads((out / "dataset_info.json").read_text())["t2i_pretrain"]["sketchloop_t2i"]
    files = _list_like_bagel(entry["data_dir"])
    assert len(files) == entry["num_files"]
    table = pq.read_table(files[0])
    assert table.schema.names == ["image", "captions"]
    finals = {_images(r)[-1]: r for r in rows.values() if r["kind"] == "trajectories"}
    for row in table.to_pylist():
        captions = json.loads(row["captions"])
        assert captions["prompt"] == finals[row["image"]]["prompt"]  # bytes identical to the dataset's


def test_edit_rows_read_as_bagel_reads_them(exported):
    out, rows = exported
    entry = json.loads((out / "dataset_info.json").read_text())["unified_edit"]["sketchloop_edit"]
    parquet_info = json.loads(open(entry["parquet_info_path"]).read())
    files = _list_like_bagel(entry["data_dir"])
    assert sorted(files) == sorted(parquet_info)  # the keys are the paths the trainer lists
    dataset_images = {img for r in rows.values() for img in r["images"]}
    n = 0
    for path in files:
        f = pq.ParquetFile(path)
        assert f.num_row_groups == parquet_info[path]["num_row_groups"]
        for g in range(f.num_row_groups):
            for row in f.read_row_group(g).to_pylist():  # as ParquetStandardIterableDataset does
                n += 1
                assert len(row["instruction_list"]) == len(row["image_list"]) - 1
                assert all(alts and all(isinstance(a, str) and a for a in alts) for alts in row["instruction_list"])
                start = random.Random(n).choice(range(len(row["image_list"]) - 1))  # UnifiedEdit's parse_row
                Image.open(io.BytesIO(row["image_list"][start])).convert("RGB")
                later = row["image_list"][1:]
                assert all(img in dataset_images for img in later)
                first = np.asarray(Image.open(io.BytesIO(row["image_list"][0])).convert("RGB"))
                if row["image_list"][0] not in dataset_images:  # the blank canvas a first step edits
                    assert (first == BACKGROUND).all()
    assert (
        n
        == entry["num_total_samples"]
        == 10 + sum(1 for r in rows.values() if r["kind"] == "refine" and r["label"] == "inconsistent")
    )


def test_vlm_lines_match_their_images(exported):
    out, rows = exported
    entry = json.loads((out / "dataset_info.json").read_text())["vlm_sft"]["sketchloop_vlm"]
    lines = [json.loads(line) for line in open(entry["jsonl_path"])]
    assert len(lines) == entry["num_total_samples"]
    for line in lines:
        files = line["image"] if isinstance(line["image"], list) else [line["image"]]
        turns = line["conversations"]
        assert [t["from"] for t in turns] == ["human", "gpt"] * (len(turns) // 2)
        assert sum(t["value"].count("<image>") for t in turns if t["from"] == "human") == len(files)
        assert all(t["value"] for t in turns if t["from"] == "gpt")
        row = rows[line["id"]]
        for file in files:
            data = open(os.path.join(entry["data_dir"], file), "rb").read()
            assert data in row["images"] or file.startswith("blank-")
        if row["kind"] == "trajectories":
            assert turns[-1]["value"] == "<end>" and len(files) == len(_images(row)) + 1
        else:
            assert turns[-1]["value"].startswith("<inspect>")
            assert ("<refine>" in turns[-1]["value"]) == (row["label"] == "inconsistent")


def test_interleaved_rows_carry_the_trainers_loss(exported):
    out, rows = exported
    info = json.loads((out / "dataset_info.json").read_text())["interleaved"]["sketchloop_interleaved"]
    for path in _list_like_bagel(info["data_dir"]):
        for row in pq.read_table(path).to_pylist():
            elements = row["elements"]
            source = rows[row["id"]]
            assert [e["image"] for e in elements if e["type"] == "image"] == _images(source)
            assert elements[0]["type"] == "text" and not elements[0]["loss"]
            if row["kind"] == "trajectories":
                assert all(e["loss"] for e in elements[1:])
            else:
                first = next(k for k, e in enumerate(elements) if e["text"].startswith("<inspect>"))
                assert not any(e["loss"] for e in elements[:first]) and all(e["loss"] for e in elements[first:])


def test_path_prefix_and_refusals(exported, tmp_path):
    out, _ = exported
    src = tmp_path / "d"
    build("trajectories", 3, src, seed=1, shard_size=3, progress=False)
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "sketchloop.cli",
            "data",
            "export",
            str(src),
            "--out",
            str(tmp_path / "e"),
            "--path-prefix",
            "/mnt/data/sl",
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    info = json.loads((tmp_path / "e" / "dataset_info.json").read_text())
    assert info["t2i_pretrain"]["sketchloop_t2i"]["data_dir"] == "/mnt/data/sl/t2i/data"
    assert list(json.loads((tmp_path / "e" / "edit" / "parquet_info.json").read_text())) == [
        "/mnt/data/sl/edit/data/edit-00000.parquet"
    ]
    for args, needle in [
        ([str(src), "--out", str(tmp_path / "e")], "not empty"),
        ([str(tmp_path / "none"), "--out", str(tmp_path / "f")], "does not exist"),
        ([str(src), "--out", str(tmp_path / "g"), "--format", "llava"], "--format 'llava'"),
    ]:
        r = subprocess.run(
            [sys.executable, "-m", "sketchloop.cli", "data", "export", *args], capture_output=True, text=True
        )
        assert r.returncode == 2 and needle in r.stderr and "Traceback" not in r.stderr
