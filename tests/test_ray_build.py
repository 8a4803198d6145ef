"""Data builds on Ray (a local `ray.init` on this machine): the same shards as the local
engine, and an interrupted build resumed on Ray equals an uninterrupted one, with
ShapesWorld's teachers and with scripted chat teachers."""

import subprocess
import sys

import pytest

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.xdist_group("ray")  # one pytest-xdist worker: one local Ray cluster at a time
pytest.importorskip("diffusers")
pytest.importorskip("openai")

from test_teacher_build import flux_dir, outage_then_resume  # noqa: E402,F401 - flux_dir: the fixture

from sketchloop.data.build import build  # noqa: E402
from sketchloop.data.schema import read_dataset, shard_path  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_ray_builds_the_local_engines_shards_and_resumes(tmp_path):
    build("trajectories", 24, tmp_path / "local", seed=3, shard_size=8, progress=False)
    out = tmp_path / "ray"
    summary = build("trajectories", 24, out, seed=3, shard_size=8, progress=False, engine="ray")
    assert summary["examples"] == 24 and summary["shards"] == 3
    assert read_dataset(out).equals(read_dataset(tmp_path / "local"))
    # interrupted: a shard lost, a half-written file left behind; resumed on Ray
    shard_path(out, "trajectories", 1, 3).unlink()
    (out / "data" / ".trajectories-00001-of-00003.parquet.999.tmp").write_bytes(b"partial")
    build("trajectories", 24, out, seed=3, shard_size=8, progress=False, engine="ray")
    assert read_dataset(out).equals(read_dataset(tmp_path / "local"))
    assert "| examples | 24 in 3 shards |" in (out / "README.md").read_text()


@pytest.mark.parametrize("kind", ["inspect", "refine"])
def test_every_pipeline_builds_on_ray(kind, tmp_path):
    build(kind, 8, tmp_path / "local", seed=2, shard_size=4, progress=False)
    build(kind, 8, tmp_path / "ray", seed=2, shard_size=4, progress=False, engine="ray")
    assert read_dataset(tmp_path / "ray").equals(read_dataset(tmp_path / "local"))


def test_a_chat_teacher_outage_on_ray_resumes_mid_shard(server_factory, flux_dir, tmp_path):  # noqa: F811
    outage_then_resume(server_factory, flux_dir, tmp_path, engine="ray")


def test_ray_options_fail_clearly(tmp_path):
    for args, needle in [
        (["--engine", "spark"], "--engine 'spark'"),
        (["--address", "10.0.0.1:6379"], "--engine ray"),
        (["--engine", "ray", "--address", "127.0.0.1:1"], "cannot start on the Ray cluster"),
    ]:
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "sketchloop.cli",
                "data",
                "build",
                "--kind",
                "trajectories",
                "--n",
                "2",
                "--out",
                str(tmp_path / "x"),
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.returncode == 2 and needle in r.stderr and "Traceback" not in r.stderr, r.stderr[-1500:]
