"""Any OpenAI-compatible chat / vision model (OpenAI, vLLM, Ollama, a gateway) as the
loop's planner and inspector, through the official `openai` client.

- Settings from arguments or the environment: SKETCHLOOP_BASE_URL (or OPENAI_BASE_URL),
  OPENAI_API_KEY (a placeholder for local servers that need none).
- Images go as base64 PNG data URLs; answers are JSON validated against pydantic models
  (sent as the request's JSON schema); one repair round when the JSON is invalid.
- Timeouts, bounded retries with exponential backoff on 429 / 5xx / dropped connections,
  and one clear line (SketchloopError) when the server is unreachable or the model unknown.
- Prompt templates are files (backends/prompts/*.md) a user can read and override with a
  folder of the same names.
"""

from __future__ import annotations

import base64
import io
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from PIL import Image

from ..errors import SketchloopError

try:
    from pydantic import BaseModel, ValidationError
except ImportError:
    raise SketchloopError("chat backends need the chat extra: pip install 'sketchloop[chat]'") from None
from ..loop.roles import Critique, Plan

PROMPTS = Path(__file__).resolve().parent / "prompts"
T = TypeVar("T", bound=BaseModel)


class PlanAnswer(BaseModel):
    done: bool
    ins: str = ""
    des: str = ""


class InspectAnswer(BaseModel):
    consistent: bool
    critique: str
    fix: str = ""


@dataclass
class ChatSettings:
    model: str
    base_url: str | None = None
    api_key: str | None = None
    timeout: float = 60.0
    max_retries: int = 4
    backoff: float = 1.0  # seconds before the first retry; doubles each time
    prompts_dir: Path | None = None

    def resolved_base_url(self) -> str:
        return (
            self.base_url
            or os.environ.get("SKETCHLOOP_BASE_URL")
            or os.environ.get("OPENAI_BASE_URL")
            or "https://api.openai.com/v1"
        )


def data_url(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def history_lines(history: list[Plan]) -> str:
    return "\n".join(f"{i + 1}. ins: {h.ins} | des: {h.des}" for i, h in enumerate(history)) or "(none yet)"


class ChatClient:
    """Structured questions to one model on one server."""

    def __init__(self, settings: ChatSettings):
        try:
            from openai import OpenAI
        except ImportError:
            raise SketchloopError("chat backends need the chat extra: pip install 'sketchloop[chat]'") from None
        self.settings = settings
        self.base_url = settings.resolved_base_url()
        self.client = OpenAI(
            base_url=self.base_url,
            api_key=settings.api_key or os.environ.get("OPENAI_API_KEY") or "not-needed",
            timeout=settings.timeout,
            max_retries=0,
        )
        self.usage = {"text_tokens": 0}

    def template(self, name: str) -> str:
        for folder in (self.settings.prompts_dir, PROMPTS):
            if folder is not None and (Path(folder) / f"{name}.md").is_file():
                return (Path(folder) / f"{name}.md").read_text(encoding="utf-8")
        raise SketchloopError(f"no prompt template {name}.md in {self.settings.prompts_dir or PROMPTS}")

    def ask(self, text: str, schema: type[T], images: tuple[Image.Image, ...] = ()) -> T:
        """The model's answer to `text` (+ `images`) as a validated `schema` instance."""
        import openai

        content: list[dict] = [{"type": "text", "text": text}]
        content += [{"type": "image_url", "image_url": {"url": data_url(im)}} for im in images]
        messages: list[dict] = [{"role": "user", "content": content}]
        response_format = {
            "type": "json_schema",
            "json_schema": {"name": schema.__name__, "schema": schema.model_json_schema(), "strict": False},
        }
        repaired, failures, last = False, 0, ""
        while True:
            try:
                resp = self.client.chat.completions.create(  # type: ignore[call-overload]  # plain dicts
                    model=self.settings.model, messages=messages, response_format=response_format
                )
            except (openai.RateLimitError, openai.InternalServerError, openai.APIConnectionError) as exc:
                failures += 1
                last = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                if failures > self.settings.max_retries:
                    raise SketchloopError(
                        f"{self.base_url} failed {failures} times ({last}); check that the "
                        f"server is running and --base-url is right, then re-run"
                    ) from None
                time.sleep(self.settings.backoff * 2 ** (failures - 1))
                continue
            except openai.NotFoundError:
                raise SketchloopError(
                    f"model {self.settings.model!r} is unknown to {self.base_url}; "
                    f"check the model name the server serves"
                ) from None
            except openai.AuthenticationError:
                raise SketchloopError(f"{self.base_url} refused the API key; set OPENAI_API_KEY") from None
            except openai.APIStatusError as exc:
                raise SketchloopError(
                    f"{self.base_url} answered HTTP {exc.status_code}: {str(exc).splitlines()[0][:200]}"
                ) from None
            if resp.usage is not None:
                self.usage["text_tokens"] += resp.usage.completion_tokens or 0
            answer = (resp.choices[0].message.content or "") if resp.choices else ""
            try:
                return schema.model_validate_json(_strip_fences(answer))
            except ValidationError as exc:
                if repaired:
                    raise SketchloopError(
                        f"model {self.settings.model!r} answered invalid JSON twice "
                        f"({exc.errors()[0]['msg']}); try another model or a stricter "
                        f"prompt template"
                    ) from None
                repaired = True
                messages += [
                    {"role": "assistant", "content": answer},
                    {
                        "role": "user",
                        "content": f"That was not valid JSON for the schema "
                        f"({exc.errors()[0]['msg']}). Answer again with "
                        f"the JSON object only.",
                    },
                ]


def _strip_fences(text: str) -> str:
    text = text.strip()
    if text.startswith("```"):
        text = text.strip("`")
        text = text[text.find("{") :] if "{" in text else text
    return text


class _ChatRole:
    """A loop role played by a chat model; its usage is the client's."""

    def __init__(self, client: ChatClient):
        self.client = client

    @property
    def usage(self) -> dict:
        return self.client.usage


class ChatPlanner(_ChatRole):
    """A Planner: one JSON answer per step (done, ins, des)."""

    def plan(self, prompt: str, history: list[Plan], seed: int = 0) -> Plan | None:
        text = self.client.template("planner").format(prompt=prompt, history=history_lines(history))
        answer = self.client.ask(text, PlanAnswer)
        if answer.done or not answer.ins.strip():
            return None
        return Plan(answer.ins.strip(), answer.des.strip())


class ChatInspector(_ChatRole):
    """An Inspector: the canvas as an image, a verdict, a critique and a fix."""

    def inspect(
        self, prompt: str, history: list[Plan], canvas: Image.Image, seed: int = 0, before: Image.Image | None = None
    ) -> Critique:
        text = self.client.template("inspector").format(prompt=prompt, history=history_lines(history))
        answer = self.client.ask(text, InspectAnswer, (canvas,))
        verdict = "consistent" if answer.consistent else "inconsistent"
        return Critique(answer.consistent, f"{verdict}: {answer.critique}", "" if answer.consistent else answer.fix)


def parse_role_spec(spec: str) -> tuple[str, str]:
    """'openai:MODEL' -> ('openai', 'MODEL')."""
    kind, _, name = spec.partition(":")
    if kind != "openai" or not name:
        raise SketchloopError(
            f"role {spec!r}: use openai:MODEL (e.g. openai:gpt-4o or openai:Qwen/Qwen2.5-VL-7B-Instruct)"
        )
    return kind, name
