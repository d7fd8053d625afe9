"""A local HTTP server on 127.0.0.1 that speaks enough of the OpenAI (chat completions, files,
batches) and Anthropic (messages, message batches) wire formats for the official clients,
with injectable latency and faults, and a ledger of what it billed; and the params that
point a teacher at it."""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
import json
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from taloop.params import validate_params
from taloop.params.schema import Params

FAULTS = ("429", "500", "529", "timeout", "malformed", "drop")
FAKE_KEY = "taloop-test-key-not-a-real-one"
KEY_ENV = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}


@dataclass
class Faults:
    rate: float = 0.0  # share of requests answered with a fault
    kinds: tuple[str, ...] = FAULTS
    max_per_item: int = 2  # an item faults at most this many times, so bounded retries succeed
    latency_s: float = 0.0
    hang_s: float = 3.0  # how long a "timeout" fault stalls (longer than the client timeout)
    batch_failed_rows: float = 0.0
    batch_expired_rows: float = 0.0
    batch_polls: int = 1  # polls answered "in progress" before a batch ends
    idempotent: bool = False  # replay a repeated Idempotency-Key without billing it again
    seed: int = 0


def _words(text: str) -> int:
    return len(text.split())


@dataclass
class Ledger:
    billed: Counter[str] = field(default_factory=Counter)  # item -> times billed
    input_tokens: int = 0
    output_tokens: int = 0
    requests: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    batches_created: int = 0
    auth_headers: set[str] = field(default_factory=set)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the default backlog of 5 resets connections under concurrency 32


class FakeAPI:
    def __init__(self, faults: Faults | None = None) -> None:
        self.faults = faults or Faults()
        self.ledger = Ledger()
        self._lock = threading.Lock()
        self._rng = random.Random(self.faults.seed)
        self._item_faults: Counter[str] = Counter()
        self._replayed: dict[str, bytes] = {}
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.server = _Server(("127.0.0.1", 0), self._handler())
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def openai_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def anthropic_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> FakeAPI:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    # --- replies ---------------------------------------------------------------------------
    @staticmethod
    def answer(prompt: str) -> str:
        n = int(hashlib.sha256(prompt.encode()).hexdigest(), 16) % 50
        return f"Reasoning about the question step by step.\nThe answer is {n}."

    def _usage(self, prompt: str, max_tokens: int) -> tuple[str, int, int]:
        text = self.answer(prompt)
        words = text.split(" ")
        if len(words) > max_tokens:
            text = " ".join(words[:max_tokens])
        return text, _words(prompt) + 3, min(_words(text), max_tokens)

    def openai_completion(self, body: dict[str, Any]) -> dict[str, Any]:
        prompt = body["messages"][-1]["content"]
        text, t_in, t_out = self._usage(prompt, body.get("max_tokens") or 512)
        return {
            "id": "chatcmpl-" + hashlib.sha256(prompt.encode()).hexdigest()[:12],
            "object": "chat.completion",
            "created": 0,
            "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": "stop", "logprobs": None}],
            "usage": {"prompt_tokens": t_in, "completion_tokens": t_out, "total_tokens": t_in + t_out},
        }  # fmt: skip

    def anthropic_message(self, body: dict[str, Any]) -> dict[str, Any]:
        prompt = body["messages"][-1]["content"]
        text, t_in, t_out = self._usage(prompt, body["max_tokens"])
        return {
            "id": "msg_" + hashlib.sha256(prompt.encode()).hexdigest()[:12],
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": t_in, "output_tokens": t_out},
        }

    def bill(self, item: str, t_in: int, t_out: int) -> None:
        with self._lock:
            self.ledger.billed[item] += 1
            self.ledger.input_tokens += t_in
            self.ledger.output_tokens += t_out

    def pick_fault(self, item: str) -> str | None:
        with self._lock:
            self.ledger.requests += 1
            if self._item_faults[item] >= self.faults.max_per_item or self._rng.random() >= self.faults.rate:
                return None
            self._item_faults[item] += 1
            kind = self._rng.choice(self.faults.kinds)
            self.ledger.faults[kind] += 1
            return kind

    # --- batches ---------------------------------------------------------------------------
    def _row_fate(self) -> str:
        with self._lock:
            x = self._rng.random()
        if x < self.faults.batch_failed_rows:
            return "failed"
        if x < self.faults.batch_failed_rows + self.faults.batch_expired_rows:
            return "expired"
        return "ok"

    def openai_batch(self, input_file_id: str) -> dict[str, Any]:
        out, err, expired = [], [], 0
        for line in self.files[input_file_id].decode().splitlines():
            row = json.loads(line)
            fate = self._row_fate()
            if fate == "ok":
                completion = self.openai_completion(row["body"])
                self.bill(
                    row["custom_id"],
                    completion["usage"]["prompt_tokens"],
                    completion["usage"]["completion_tokens"],
                )
                response = {"status_code": 200, "request_id": "r", "body": completion}
                out.append({"id": "r", "custom_id": row["custom_id"], "error": None, "response": response})
            elif fate == "failed":
                err.append({"id": "r", "custom_id": row["custom_id"], "response": None,
                            "error": {"code": "server_error", "message": "row failed"}})  # fmt: skip
            else:
                expired += 1
        with self._lock:
            self.ledger.batches_created += 1
            n = len(self.batches)
        output_id, error_id = f"file-out-{n}", f"file-err-{n}"
        self.files[output_id] = "".join(json.dumps(r) + "\n" for r in out).encode()
        self.files[error_id] = "".join(json.dumps(r) + "\n" for r in err).encode()
        batch = {
            "id": f"batch_{n}", "object": "batch", "endpoint": "/v1/chat/completions",
            "completion_window": "24h", "created_at": 0, "input_file_id": input_file_id,
            "status": "in_progress",
            "output_file_id": None, "error_file_id": None,
            "request_counts": {
                "total": len(out) + len(err) + expired, "completed": len(out), "failed": len(err)
            },
            "_final": "expired" if expired else "completed", "_files": (output_id, error_id if err else None),
            "_polls": 0,
        }  # fmt: skip
        self.batches[batch["id"]] = batch
        return batch

    def anthropic_batch(self, requests: list[dict[str, Any]]) -> dict[str, Any]:
        results = []
        for req in requests:
            fate = self._row_fate()
            if fate == "ok":
                message = self.anthropic_message(req["params"])
                self.bill(
                    req["custom_id"], message["usage"]["input_tokens"], message["usage"]["output_tokens"]
                )
                result: dict[str, Any] = {"type": "succeeded", "message": message}
            elif fate == "failed":
                result = {"type": "errored", "error": {"type": "error",
                          "error": {"type": "api_error", "message": "row failed"}}}  # fmt: skip
            else:
                result = {"type": "expired"}
            results.append({"custom_id": req["custom_id"], "result": result})
        with self._lock:
            self.ledger.batches_created += 1
            n = len(self.batches)
        batch = {
            "id": f"msgbatch_{n}", "type": "message_batch", "processing_status": "in_progress",
            "request_counts": {
                "processing": len(results), "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0
            },
            "created_at": "2026-01-01T00:00:00Z", "expires_at": "2026-01-02T00:00:00Z", "ended_at": None,
            "archived_at": None, "cancel_initiated_at": None, "results_url": None,
            "_results": results, "_polls": 0,
        }  # fmt: skip
        self.batches[batch["id"]] = batch
        return batch

    def poll(self, batch_id: str) -> dict[str, Any]:
        batch = self.batches[batch_id]
        batch["_polls"] += 1
        if batch["_polls"] > self.faults.batch_polls:
            if batch.get("type") == "message_batch":
                batch["processing_status"] = "ended"
                batch["results_url"] = f"{self.anthropic_url}/v1/messages/batches/{batch_id}/results"
            else:
                batch["status"] = batch["_final"]
                batch["output_file_id"], batch["error_file_id"] = batch["_files"]
        return {k: v for k, v in batch.items() if not k.startswith("_")}

    # --- HTTP --------------------------------------------------------------------------------
    def _handler(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go in separate writes

            def log_message(self, *args: object) -> None:  # keep test output quiet
                pass

            def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _auth(self) -> None:
                key = self.headers.get("Authorization", "").removeprefix("Bearer ") or self.headers.get(
                    "x-api-key"
                )
                with api._lock:
                    api.ledger.auth_headers.add(key or "")

            def _fault(self, kind: str, anthropic: bool) -> None:
                if kind == "429":
                    self._send(429, {"error": {"type": "rate_limit_error", "message": "slow down"}},
                               {"Retry-After": "0", "retry-after-ms": "20"})  # fmt: skip
                elif kind in ("500", "529"):
                    status = 529 if kind == "529" and anthropic else 500
                    self._send(status, {"error": {"type": "overloaded_error", "message": "busy"}})
                elif kind == "timeout":
                    time.sleep(api.faults.hang_s)
                    self.close_connection = True
                elif kind == "malformed":
                    self._send(200, b'{"id": "chatcmpl-broken", "choices": [')
                else:  # drop: close the connection without a reply
                    self.close_connection = True
                    self.connection.shutdown(2)

            def _complete(self, anthropic: bool) -> None:
                raw = self._body()
                body = json.loads(raw)
                prompt = body["messages"][-1]["content"]
                item = self.headers.get("Idempotency-Key") or hashlib.sha256(prompt.encode()).hexdigest()
                time.sleep(api.faults.latency_s)
                if api.faults.idempotent and item in api._replayed:
                    self._send(200, api._replayed[item])
                    return
                kind = api.pick_fault(item)
                if kind is not None:
                    self._fault(kind, anthropic)
                    return
                reply = api.anthropic_message(body) if anthropic else api.openai_completion(body)
                data = json.dumps(reply).encode()
                self._send(200, data)
                usage = reply["usage"]
                t_in = usage.get("input_tokens", usage.get("prompt_tokens"))
                t_out = usage.get("output_tokens", usage.get("completion_tokens"))
                api.bill(item, t_in, t_out)
                if api.faults.idempotent:
                    api._replayed[item] = data

            def do_POST(self) -> None:
                self._auth()
                path = self.path.split("?")[0]
                if path == "/v1/chat/completions":
                    self._complete(anthropic=False)
                elif path == "/v1/messages":
                    self._complete(anthropic=True)
                elif path == "/v1/files":
                    raw = self._body()
                    head = f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode()
                    message = email.parser.BytesParser(policy=email.policy.default).parsebytes(head + raw)
                    part = next(p for p in message.iter_parts() if p.get_filename())
                    file_id = f"file-{len(api.files)}"
                    api.files[file_id] = part.get_payload(decode=True)
                    self._send(200, {"id": file_id, "object": "file", "bytes": len(api.files[file_id]),
                                     "created_at": 0, "filename": part.get_filename(), "purpose": "batch",
                                     "status": "processed"})  # fmt: skip
                elif path == "/v1/batches":
                    batch = api.openai_batch(json.loads(self._body())["input_file_id"])
                    self._send(200, {k: v for k, v in batch.items() if not k.startswith("_")})
                elif path == "/v1/messages/batches":
                    batch = api.anthropic_batch(json.loads(self._body())["requests"])
                    self._send(200, {k: v for k, v in batch.items() if not k.startswith("_")})
                else:
                    self._send(404, {"error": {"type": "not_found_error", "message": path}})

            def do_GET(self) -> None:
                self._auth()
                parts = self.path.split("?")[0].strip("/").split("/")
                if parts[:2] == ["v1", "batches"]:
                    self._send(200, api.poll(parts[2]))
                elif parts[:3] == ["v1", "messages", "batches"] and len(parts) == 4:
                    self._send(200, api.poll(parts[3]))
                elif parts[:3] == ["v1", "messages", "batches"] and parts[-1] == "results":
                    rows = api.batches[parts[3]]["_results"]
                    self._send(200, "".join(json.dumps(r) + "\n" for r in rows).encode())
                elif parts[:2] == ["v1", "files"] and parts[-1] == "content":
                    self._send(200, api.files[parts[2]])
                else:
                    self._send(404, {"error": {"type": "not_found_error", "message": self.path}})

        return Handler


def api_params(raw: dict[str, Any], api: FakeAPI, backend: str, queries: int, **teacher: Any) -> Params:
    """``raw`` (params.yaml) buying ``queries`` replies from ``api`` with ``backend``'s client."""
    per_task = -(-queries // len(raw["data"]["tasks"]))
    raw["data"].update(train_per_task=per_task, val_per_task=2, test_per_task=2)
    raw["budget"].update(queries=queries)
    raw["teacher"].update({
        "backend": backend, "model": f"fake-{backend}", "timeout_s": 2.0, "max_retries": 4, "concurrency": 32,
        "base_url": api.openai_url if backend == "openai" else api.anthropic_url, "batch_poll_s": 0.02,
        **teacher,
    })  # fmt: skip
    return validate_params(raw)
