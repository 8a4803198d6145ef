"""GenEval on real photos without mmdet: OWLv2 + CLIP through transformers, tested offline
with tiny random-weight models built from configs; GenEval's verdicts on synthetic
detections; and evaluation spread over worker processes with a device each."""

import json
import string
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from cli_run import cli
from PIL import Image

from sketchloop.evaluation.benchmark import load_benchmark
from sketchloop.evaluation.geneval import score_image
from sketchloop.world.detect import Detection

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    """A random OWLv2 detector and CLIP model, small, saved as a hub model would be."""
    from transformers import (
        CLIPConfig,
        CLIPImageProcessor,
        CLIPModel,
        CLIPProcessor,
        CLIPTokenizer,
        Owlv2Config,
        Owlv2ForObjectDetection,
        Owlv2ImageProcessorPil,
        Owlv2Processor,
    )

    root = tmp_path_factory.mktemp("tiny-photo-models")
    torch.manual_seed(0)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in string.ascii_lowercase + "-":
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    tok = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)
    text = dict(
        vocab_size=len(vocab),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=77,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )
    vision = dict(
        hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=32, patch_size=8
    )
    Owlv2ForObjectDetection(Owlv2Config(text_config=text, vision_config=vision, projection_dim=16)).save_pretrained(
        root / "owl"
    )
    Owlv2Processor(
        image_processor=Owlv2ImageProcessorPil(size={"height": 32, "width": 32}), tokenizer=tok
    ).save_pretrained(root / "owl")
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)).save_pretrained(root / "clip")
    CLIPProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
        tokenizer=tok,
    ).save_pretrained(root / "clip")
    return root


def test_eval_scores_a_folder_of_photos_on_genevals_prompts(tiny_models, tmp_path):
    prompts = load_benchmark("geneval")
    assert len(prompts) == 553 and prompts[0]["prompt"] == "a photo of a bench"
    rng = np.random.default_rng(0)
    for i in range(3):
        folder = tmp_path / "imgs" / f"{i:05d}"
        (folder / "samples").mkdir(parents=True)
        (folder / "metadata.jsonl").write_text(json.dumps(prompts[i]) + "\n")
        Image.fromarray((rng.random((48, 64, 3)) * 255).astype("uint8")).save(folder / "samples" / "0000.png")
    r = cli(
        "eval",
        "--images",
        str(tmp_path / "imgs"),
        "--benchmark",
        "geneval",
        "--detector",
        f"owlv2:{tiny_models / 'owl'}",
        "--clip",
        str(tiny_models / "clip"),
        "--threshold",
        "0.0",
        "--out",
        str(tmp_path / "r.json"),
    )
    assert r.returncode == 0, r.stderr[-2000:]
    results = json.loads((tmp_path / "r.json").read_text())
    assert results["n_images"] == 3 and results["detector"] == f"owlv2:{tiny_models / 'owl'}"
    found = [d for rec in results["images"] for d in rec["detections"]]
    assert found and all(
        d["color"] in ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white")
        for d in found
    )
    assert all(0 <= d["box"][0] <= d["box"][2] <= 64 and 0 <= d["box"][1] <= d["box"][3] <= 48 for d in found)


def test_owlv2_boxes_become_pixels_merged_per_class(tiny_models):
    """OWLv2's boxes are relative to the padded square input: a 64x48 photo pads to 64x64."""
    from sketchloop.evaluation.photo_detector import OpenVocabDetector, PhotoDetectorSettings

    det = OpenVocabDetector.from_spec(
        f"owlv2:{tiny_models / 'owl'}", str(tiny_models / "clip"), PhotoDetectorSettings(threshold=0.2)
    )
    det.classes = ["dog", "cat"]
    logits = torch.full((1, 4, 2), -9.0)
    logits[0, 0, 0], logits[0, 1, 0], logits[0, 2, 1], logits[0, 3, 0] = 3.0, 2.0, 1.0, -3.0
    boxes = torch.tensor(
        [[[0.5, 0.25, 0.25, 0.25], [0.52, 0.26, 0.25, 0.25], [0.1, 0.6, 0.2, 0.2], [0.9, 0.9, 0.1, 0.1]]]
    )
    det.model = lambda **_: SimpleNamespace(logits=logits, pred_boxes=boxes)
    found = det.detect(Image.new("RGB", (64, 48), (200, 30, 30)))
    assert [d.shape for d in found] == ["dog", "cat"]  # the two dog boxes overlap: one dog; the low score is out
    assert found[0].box == pytest.approx((24.0, 8.0, 40.0, 24.0), abs=1e-4)
    assert found[1].box == pytest.approx((0.0, 32.0, 12.8, 44.8), abs=1e-4)
    assert found[0].confidence == pytest.approx(float(torch.sigmoid(torch.tensor(3.0))))


def box(cx, cy, s=10):
    return (cx - s / 2, cy - s / 2, cx + s / 2, cy + s / 2)


@pytest.mark.parametrize(
    "index_of,detections,correct,needle",
    [
        # counting: exactly the count, with the counting threshold (0.9), and the exclude (count + 1) must not hold
        (
            "a photo of two clocks",
            [("clock", "white", box(20, 20), 0.95), ("clock", "black", box(60, 20), 0.92)],
            True,
            "",
        ),
        (
            "a photo of two clocks",
            [("clock", "white", box(20, 20), 0.95), ("clock", "black", box(60, 20), 0.5)],
            False,
            "clock>=2",
        ),
        ("a photo of two clocks", [("clock", "white", box(20 + 20 * k, 20), 0.95) for k in range(3)], False, "clock"),
        # colour attribution: each group its own colour
        (
            "a photo of a purple wine glass and a black apple",
            [("wine glass", "purple", box(20, 20), 0.8), ("apple", "black", box(60, 60), 0.7)],
            True,
            "",
        ),
        (
            "a photo of a purple wine glass and a black apple",
            [("wine glass", "black", box(20, 20), 0.8), ("apple", "purple", box(60, 60), 0.7)],
            False,
            "purple",
        ),
        # position: GenEval's rule on box centres
        (
            "a photo of a dog right of a teddy bear",
            [("teddy bear", "brown", box(20, 50), 0.9), ("dog", "white", box(80, 50), 0.9)],
            True,
            "",
        ),
        (
            "a photo of a dog right of a teddy bear",
            [("teddy bear", "brown", box(80, 50), 0.9), ("dog", "white", box(20, 50), 0.9)],
            False,
            "right of",
        ),
        # below the detection threshold (0.3) an object is not there
        ("a photo of a bench", [("bench", "brown", box(50, 50), 0.2)], False, "bench"),
    ],
)
def test_synthetic_detections_get_genevals_verdicts(index_of, detections, correct, needle):
    meta = next(m for m in load_benchmark("geneval") if m["prompt"] == index_of)
    found = [Detection(c, col, b, conf) for c, col, b, conf in detections]
    ok, reason = score_image(found, meta, threshold=0.3, counting_threshold=0.9)
    assert ok == correct, reason
    assert needle in reason


def test_the_geneval_benchmark_is_refused_for_shapesworld_generators_and_its_licence_ships():
    from importlib import resources

    r = cli("eval", "--benchmark", "geneval", "--generator", "staged")
    assert r.returncode == 2 and "COCO objects" in r.stderr
    notice = (resources.files("sketchloop") / "benchmarks" / "GENEVAL_LICENSE.md").read_text()
    assert "MIT License" in notice and "djghosh13/geneval" in notice
    r = cli("eval", "--images", "x", "--detector", "yolo:v8")
    assert r.returncode == 2 and "owlv2:MODEL_ID_OR_PATH" in r.stderr


def test_workers_with_a_device_each_give_the_same_results_as_one_process(tmp_path):
    lines = load_benchmark("shapes-geneval")[::100]
    bench = tmp_path / "b.jsonl"
    bench.write_text("".join(json.dumps(m) + "\n" for m in lines))
    results = []
    for workers in ("1", "2"):
        out = tmp_path / f"r{workers}.json"
        r = cli(
            "eval",
            "--benchmark",
            str(bench),
            "--generator",
            "staged",
            "--images-per-prompt",
            "2",
            "--workers",
            workers,
            "--device",
            "cpu",
            "--images-out",
            str(tmp_path / f"i{workers}"),
            "--out",
            str(out),
        )
        assert r.returncode == 0, r.stderr[-2000:]
        results.append(json.loads(out.read_text()))
    one, two = results
    assert one["made_by"] == two["made_by"] and one["made_by"]["device"] == "cpu"
    assert [r["detections"] for r in one["images"]] == [r["detections"] for r in two["images"]]
    assert one["overall"] == two["overall"]
    r = cli("eval", "--benchmark", str(bench), "--generator", "staged", "--device", "cuda:7")
    assert r.returncode == 2 and "no such CUDA device" in r.stderr
