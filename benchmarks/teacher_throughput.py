"""Teacher collection throughput against the local OpenAI-compatible test server.

    python benchmarks/teacher_throughput.py [--queries 500] [--latency 0.2] [--concurrency 1 8 32]
                                           [--repeats 3] [--warmup 64] [--http-client aiohttp]

Runs the real collection path (official openai client, budget ledger, durable reply cache)
once per concurrency level, each with an empty cache and the server in its own process, and
prints the replies per second achieved while requests run beside the bound concurrency /
latency, and the end-to-end figure. Each level runs --repeats times and reports the median
(with min and max): on a small shared VM one 3-second run at concurrency 32 swings by several
points. One untimed collection of --warmup queries runs first: the first requests of a process
pay one-off costs (lazy imports, the TLS context, the SDK's model classes) that are not
throughput. Results also go to --out as JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path

import yaml

from taloop.core import logs
from taloop.params import validate_params
from taloop.tasks.registry import get_task
from taloop.tasks.splits import make_splits
from taloop.teachers.cache import ReplyCache
from taloop.teachers.collect import collect, plan_queries
from taloop.teachers.factory import make_teacher

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from tests.fake_api import FakeAPI, Faults  # noqa: E402  (the test server, reused)

log = logging.getLogger("teacher_throughput")


def _serve(conn: Connection, latency: float) -> None:
    """The server in its own process, as a remote API would be: its work must not share
    the collecting process's CPU and GIL."""
    with FakeAPI(Faults(latency_s=latency)) as api:
        conn.send(api.openai_url)
        conn.recv()
        conn.send(len(api.ledger.billed))


def measure(queries: int, latency: float, concurrency: int, http_client: str) -> dict[str, float]:
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    per_task = -(-queries // len(raw["data"]["tasks"]))
    raw["data"].update(train_per_task=per_task, val_per_task=1, test_per_task=1)
    raw["budget"].update(queries=queries)
    ours, theirs = multiprocessing.Pipe()
    server = multiprocessing.Process(target=_serve, args=(theirs, latency), daemon=True)
    server.start()
    raw["teacher"].update(backend="openai", model="bench", base_url=ours.recv())
    raw["teacher"].update(concurrency=concurrency, http_client=http_client)
    params = validate_params(raw)
    pool = make_splits(params.data)["train"]
    tasks = {n: get_task(n, s) for n, s in params.data.tasks.items()}
    teacher = make_teacher(params)
    planned = plan_queries(params, pool, teacher)
    with tempfile.TemporaryDirectory() as cache_dir:
        start, cpu = time.perf_counter(), time.process_time()
        result, _ = collect(params, planned, teacher, ReplyCache(Path(cache_dir)), tasks)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    ours.send("stop")
    billed = ours.recv()
    server.join()
    assert len(result.rows) == queries and billed == queries
    bound = concurrency / latency
    # The bound is on requests, so it is compared with the request phase; the end-to-end
    # figure adds cache lookups, the cost estimate and building the reply rows.
    achieved = queries / result.buying_seconds
    return {
        "concurrency": concurrency, "bound_per_s": bound, "buying_seconds": result.buying_seconds,
        "replies_per_s": achieved, "share_of_bound": achieved / bound,
        "end_to_end_seconds": seconds, "end_to_end_share_of_bound": queries / seconds / bound,
        "client_cpu_s": cpu,
    }  # fmt: skip


def main() -> None:
    logs.setup()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--latency", type=float, default=0.2, help="server latency per request, seconds")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--repeats", type=int, default=3, help="runs per level; the median is reported")
    parser.add_argument("--http-client", choices=["aiohttp", "httpx"], default="aiohttp",
                        help="teacher.http_client: the SDK's HTTP transport")  # fmt: skip
    parser.add_argument("--warmup", type=int, default=64, help="queries of an untimed first run (0: none)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/teacher_throughput.json")
    args = parser.parse_args()
    os.environ.setdefault("OPENAI_API_KEY", "taloop-benchmark-key")  # the local server ignores it
    if args.warmup:
        measure(args.warmup, args.latency, max(args.concurrency), args.http_client)
    levels = []
    for c in args.concurrency:
        runs = [measure(args.queries, args.latency, c, args.http_client) for _ in range(args.repeats)]
        shares = sorted(r["share_of_bound"] for r in runs)
        median = statistics.median_low(shares)  # an observed run, not an average of two
        level = {**next(r for r in runs if r["share_of_bound"] == median),
                 "share_min": shares[0], "share_max": shares[-1], "repeats": runs}  # fmt: skip
        levels.append(level)
        log.info(
            "concurrency %3d: %6.1f replies/s (bound %6.1f) = %3.0f%% of bound (median of %d; %.0f-%.0f%%), "
            "%3.0f%% end to end",
            c, level["replies_per_s"], level["bound_per_s"], 100 * median, len(runs), 100 * shares[0],
            100 * shares[-1], 100 * level["end_to_end_share_of_bound"],
        )  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    settings = {"queries": args.queries, "latency_s": args.latency, "warmup_queries": args.warmup,
                "http_client": args.http_client}  # fmt: skip
    args.out.write_text(json.dumps({**settings, "runs": levels}, indent=2))


if __name__ == "__main__":
    main()
