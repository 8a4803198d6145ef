"""Rectified flow matching, in one place: the path from noise (t=0) to data (t=1), the
velocity the image expert learns, the times training draws, and the Euler sampler.
The trainer and the sampler both use `FLOW`, so they cannot drift apart."""

from __future__ import annotations

from typing import Callable

import torch


class FlowMatching:
    """x_t = (1 - t) * noise + t * data; the velocity along the path is data - noise."""

    def sample_times(self, n: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """Training times, uniform in [0, 1)."""
        return torch.rand(n, device=device)

    def add_noise(self, data: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The point at time `t` (one per item) on the path from `noise` to `data`."""
        t = t.view(-1, *([1] * (data.dim() - 1)))
        return (1 - t) * noise + t * data

    def velocity_target(self, data: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return data - noise

    def timesteps(self, steps: int) -> list[float]:
        """The Euler grid from noise: 0, 1/steps, ..., (steps - 1)/steps."""
        return [i / steps for i in range(steps)]

    def step(self, x: torch.Tensor, velocity: torch.Tensor, steps: int) -> torch.Tensor:
        """One Euler step of size 1/steps."""
        return x + velocity / steps

    @torch.no_grad()
    def sample(
        self, velocity: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], noise: torch.Tensor, steps: int
    ) -> torch.Tensor:
        """Integrate `velocity(x, t)` from `noise` to data in `steps` Euler steps, clamped to [-1, 1]."""
        x = noise
        for t in self.timesteps(steps):
            x = self.step(x, velocity(x, torch.full((x.shape[0],), t, device=x.device)), steps)
        return x.clamp(-1, 1)


FLOW = FlowMatching()
