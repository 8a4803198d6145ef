"""The staged loop (or single mode) over any set of roles, as a generator."""

from __future__ import annotations

from typing import Any, Callable

from ..loop.roles import Roles
from ..loop.staged import DEFAULT_MAX_REFINES, Trajectory, run_single, run_staged
from ..world.render import DEFAULT_SIZE, blank_image
from .base import Generated, made_by


class LoopGenerator:
    """The staged loop (or single mode) over a set of roles; stats carry its compute.

    `roles_factory` gives the roles for one trajectory (roles keep no state between calls
    that changes their answers, so a factory may return the same objects every time)."""

    def __init__(
        self,
        name: str,
        roles_factory: Callable[[], Roles],
        mode: str = "staged",
        size: int = DEFAULT_SIZE,
        max_iters: int = 8,
        oracle: bool = False,
        max_refines: int = DEFAULT_MAX_REFINES,
        roles_record: dict[str, Any] | None = None,
        inspect: bool = True,
    ):
        self.name, self.roles_factory, self.mode, self.size = name, roles_factory, mode, size
        self.max_iters, self.oracle, self.max_refines, self.inspect = max_iters, oracle, max_refines, inspect
        self.roles_record = dict(roles_record or {})
        options: dict[str, Any] = (
            {"mode": mode, "size": size}
            if mode == "single"
            else {"mode": mode, "size": size, "max_iters": max_iters, "max_refines": max_refines}
        )
        if mode != "single" and not inspect:
            options = {**options, "max_refines": 0, "inspect": False}
        self.record = made_by(name, **options, **self.roles_record)

    def with_roles(self, roles: Roles, roles_record: dict[str, Any]) -> LoopGenerator:
        """The same loop settings with other roles."""
        return LoopGenerator(
            self.name,
            lambda: roles,
            self.mode,
            self.size,
            self.max_iters,
            self.oracle,
            self.max_refines,
            {**self.roles_record, **roles_record},
            self.inspect,
        )

    def run(self, prompt: str, seed: int, on_step: Callable[[Any], None] | None = None) -> Trajectory:
        """The trajectory for `prompt` and `seed`; `on_step` sees each step as it happens."""
        roles = self.roles_factory().fork()
        blank = blank_image(self.size)
        if self.mode == "single":
            return run_single(prompt, roles.sketcher, blank, seed, on_step)
        return run_staged(prompt, roles, blank, seed, self.max_iters, self.max_refines, on_step, self.inspect)

    def generate(self, prompt: str, seed: int) -> Generated:
        traj = self.run(prompt, seed)
        assert traj.final is not None  # the loop always ends on a canvas
        return Generated(traj.final, {**traj.stats(), "oracle": self.oracle}, traj)
