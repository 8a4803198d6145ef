"""Shared fixtures: a real OpenAI-compatible HTTP server on 127.0.0.1 with scripted answers."""

import json
import os
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch

# pytest-xdist runs one worker per core (pyproject's addopts): each worker, and each process a test
# starts, gets its share of the cores instead of all of them.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    _THREADS = max(1, (os.cpu_count() or 1) // _WORKERS)
    os.environ.setdefault("OMP_NUM_THREADS", str(_THREADS))
    torch.set_num_threads(_THREADS)


class ScriptedServer:
    """Speaks /v1/chat/completions; each request takes the next scripted action:
    ("json", obj) | ("text", str) | ("status", code) | ("drop",); or `script` is a function
    of the request body that returns the action."""

    def __init__(self, script):
        self.script = script if callable(script) else list(script)
        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append(body)
                if callable(outer.script):
                    action = outer.script(body)
                else:
                    action = outer.script.pop(0) if outer.script else ("status", 500)
                if action[0] == "drop":
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.connection.close()
                    return
                if action[0] == "status":
                    payload = json.dumps({"error": {"message": f"scripted {action[1]}", "type": "x"}}).encode()
                    self.send_response(action[1])
                else:
                    content = json.dumps(action[1]) if action[0] == "json" else action[1]
                    payload = json.dumps(
                        {
                            "id": "c1",
                            "object": "chat.completion",
                            "created": 0,
                            "model": body["model"],
                            "choices": [
                                {
                                    "index": 0,
                                    "finish_reason": "stop",
                                    "message": {"role": "assistant", "content": content},
                                }
                            ],
                            "usage": {"prompt_tokens": 10, "completion_tokens": 7, "total_tokens": 17},
                        }
                    ).encode()
                    self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server_factory():
    servers = []

    def make(script):
        servers.append(ScriptedServer(script))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


@pytest.fixture(scope="session")
def trajectories24(tmp_path_factory):
    """A small trajectories dataset (24 rows) for training tests."""
    from sketchloop.data.build import build

    out = tmp_path_factory.mktemp("traj")
    build("trajectories", 24, out, seed=3, shard_size=24, progress=False)
    return out
