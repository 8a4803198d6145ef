"""Data builds on Ray: shards built by Ray actors, on one machine or a cluster.

Each actor makes its teachers once (a chat client; a diffusers editor on a GPU of its own
when the build draws with one) and builds the shards given to it with `make_shard`, so
shards, the card and resume semantics are the local engine's: shard k is a pure function
of (seed, kind, k), and finished examples are kept under `data/.partial/`. The output
folder must be one every node sees (a shared file system).
"""

from __future__ import annotations

from typing import Any, Iterator

from ..errors import SketchloopError, first_line


def _ray():
    try:
        import ray
    except ImportError:
        raise SketchloopError("--engine ray needs Ray: pip install 'sketchloop[ray]'") from None
    return ray


def _uses_gpu(teacher: dict[str, Any] | None) -> bool:
    """An editing pipeline draws, and not on the CPU."""
    return bool(teacher and teacher.get("editor") and (teacher.get("image") or {}).get("device") != "cpu")


class ShardBuilder:
    """A Ray actor: teachers made once, then one shard per call."""

    def __init__(self, teacher: dict[str, Any] | None):
        import torch

        torch.set_num_threads(1)  # one actor per core already
        self.teacher = teacher
        self.teachers: Any = None

    def build(self, args: tuple) -> dict[str, Any]:
        from ..backends.wiring import make_teachers
        from .shards import make_shard

        if self.teachers is None:
            self.teachers = make_teachers(self.teacher)
        return make_shard(*args, teachers=self.teachers)


def _check_reachable(address: str | None, timeout: float = 5.0) -> None:
    """Fail fast, with one line, when a cluster address (host:port or ray://host:port) does not answer."""
    import socket

    if not address or address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return
    except (OSError, ValueError) as exc:
        raise SketchloopError(
            f"cannot start on the Ray cluster at {address} ({exc}); start the head with "
            f"'ray start --head' and pass its address, or leave --address out"
        ) from None


def build_shards(
    args: list[tuple], teacher: dict[str, Any] | None, workers: int, address: str | None
) -> Iterator[dict[str, Any]]:
    """Build the shards `args` (make_shard's arguments) on Ray; yields each shard's
    statistics as it finishes. `workers` > 1 sets the number of actors; else one per GPU
    (a GPU editor) or per CPU of the cluster."""
    ray = _ray()
    if not args:
        return
    if not ray.is_initialized():
        _check_reachable(address)
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        except Exception as exc:  # noqa: BLE001 - an unreachable cluster: one clear line
            line = first_line(exc)
            where = f"the Ray cluster at {address}" if address else "a local Ray"
            raise SketchloopError(
                f"cannot start on {where} ({line[:160]}); start the head with 'ray start --head' "
                f"and pass its address, or leave --address out"
            ) from None
    resources = ray.cluster_resources()
    gpu = _uses_gpu(teacher) and resources.get("GPU", 0) >= 1
    if _uses_gpu(teacher) and not gpu and ((teacher or {}).get("image") or {}).get("device") == "cuda":
        raise SketchloopError("the editor is set to --device cuda but the Ray cluster has no GPU")
    available = int(resources.get("GPU" if gpu else "CPU", 1))
    n_actors = max(1, min(len(args), workers if workers > 1 else available))
    actor = ray.remote(num_gpus=1 if gpu else 0, num_cpus=0 if gpu else 1)(ShardBuilder)
    actors = [actor.remote(teacher) for _ in range(n_actors)]
    pending = {}
    queue = list(args)
    try:
        for a in actors:
            if queue:
                pending[a.build.remote(queue.pop(0))] = a
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            a = pending.pop(done[0])
            try:
                result = ray.get(done[0])
            except Exception as exc:  # noqa: BLE001 - a worker's error, as the local engine would raise it
                cause = getattr(exc, "cause", None)
                raise (cause if isinstance(cause, SketchloopError) else exc) from None
            if queue:
                pending[a.build.remote(queue.pop(0))] = a
            yield result
    finally:
        for a in actors:
            ray.kill(a)
