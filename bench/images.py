"""Images API benchmark: fractal_jupyter against fractal-server 2.6.4, same workload, same run.

From the repository root:

    .venv/bin/python bench/images.py [--sizes 1000,10000,100000] [--repeat N] [--no-peer]

For each size N and each server: a new project, a dataset imported with N images in one request
(timed), then latencies of the images query (no filter, an attribute filter matching 10 %, a type
filter matching 50 %; first and last page of 100), of reading the dataset and of adding one image,
and the server's resident memory. Every answer is checked against the expected images.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    REPO_ROOT,
    BenchError,
    Latency,
    OurServer,
    latency_dict,
    progress,
    report_header,
    stop_on_signals,
    summarize,
    tree_peak_rss_bytes,
    tree_rss_bytes,
)

DEFAULT_SIZES = (1_000, 10_000, 100_000)
DEFAULT_REPEAT = 30
WARMUP = 3
# A server whose requests take long gets fewer samples per metric, never fewer than this.
MIN_SAMPLES = 10
METRIC_BUDGET_S = 12.0
MIN_ADD_SAMPLES = 5
PAGE_SIZE = 100
ZARR_DIR = "/bench/zarr"
REQUEST_TIMEOUT_S = 900.0
RESULTS_DIR = REPO_ROOT / "bench" / "results"
MIB = 1024 * 1024

TARGET_SIZE = 100_000
TARGET_SPEEDUP = 40.0
TARGET_FILTERED_P50_MS = 10.0
TARGET_RSS_MIB = 200.0
# "Flat in N": the p50 at the largest size is at most this multiple of the p50 at the smallest.
FLAT_FACTOR = 2.0

Image = dict[str, Any]


def make_image(i: int) -> Image:
    types = {"is_3D": i % 2 == 0}
    if i % 3 == 0:
        types["illumination_corrected"] = True
    return {
        "zarr_url": f"{ZARR_DIR}/plate.zarr/B/03/{i}",
        "attributes": {"well": f"B03_{i % 100}", "plate": "plate.zarr", "row": i % 10},
        "types": types,
    }


def make_extra_image(k: int) -> Image:
    return {
        "zarr_url": f"{ZARR_DIR}/plate.zarr/C/05/{k}",
        "attributes": {"well": "C05_0", "plate": "plate.zarr", "row": 3},
        "types": {"is_3D": True},
    }


@dataclass(frozen=True)
class Query:
    key: str
    label: str
    body: dict[str, Any] | None
    matches: Callable[[Image], bool]


QUERIES = (
    Query("all", "no filter", None, lambda image: True),
    Query(
        "attribute",
        "attribute row=3",
        {"filters": {"attributes": {"row": 3}}},
        lambda image: image["attributes"].get("row") == 3,
    ),
    Query(
        "type",
        "type is_3D",
        {"filters": {"types": {"is_3D": True}}},
        lambda image: bool(image["types"].get("is_3D", False)),
    ),
)
PAGES = ("first", "last")


@dataclass(frozen=True)
class Target:
    """One server under test: where its v2 API lives, how to authenticate, which process."""

    name: str
    url: str
    headers: dict[str, str]
    pid: int


def _value_set(values: list[Any]) -> set[str]:
    # JSON text keeps 3 and "3" apart, as the API does.
    return {json.dumps(value) for value in values}


@dataclass
class Workload:
    """The images of one size, the import body, and the answers both servers must give."""

    size: int
    import_body: bytes
    matching: dict[str, list[str]]
    attributes: dict[str, set[str]] = field(default_factory=dict)
    types: set[str] = field(default_factory=set)


def make_workload(size: int) -> Workload:
    images = [make_image(i) for i in range(size)]
    body = {
        "name": f"bench-{size}",
        "zarr_dir": ZARR_DIR,
        "images": images,
        "filters": {"attributes": {}, "types": {}},
    }
    workload = Workload(
        size=size,
        import_body=json.dumps(body).encode(),
        matching={
            query.key: [image["zarr_url"] for image in images if query.matches(image)]
            for query in QUERIES
        },
    )
    values: dict[str, list[Any]] = {}
    for image in images:
        for key, value in image["attributes"].items():
            values.setdefault(key, []).append(value)
        workload.types.update(image["types"])
    workload.attributes = {key: _value_set(found) for key, found in values.items()}
    return workload


def request(
    client: httpx.Client,
    target: Target,
    method: str,
    path: str,
    body: bytes | None = None,
    expect: int = 200,
) -> tuple[float, httpx.Response]:
    """One timed request; bodies are serialized beforehand so that the client adds little."""
    headers = dict(target.headers)
    if body is not None:
        headers["Content-Type"] = "application/json"
    start = time.perf_counter()
    response = client.request(method, target.url + path, content=body, headers=headers)
    elapsed = time.perf_counter() - start
    if response.status_code != expect:
        raise BenchError(
            f"[{target.name}] {method} {path}: HTTP {response.status_code}, expected {expect}: "
            f"{response.text[:500]}"
        )
    return elapsed, response


def measure(run: Callable[[], float], repeat: int, minimum: int) -> Latency:
    warm = [run() for _ in range(WARMUP)]
    affordable = int(METRIC_BUDGET_S / max(statistics.median(warm), 1e-9))
    samples = max(minimum, min(repeat, affordable))
    return summarize([run() for _ in range(samples)])


def last_page(count: int) -> int:
    return max(1, -(-count // PAGE_SIZE))


def check_page(
    target: Target, workload: Workload, query: Query, page_number: int, page: dict[str, Any]
) -> None:
    """Fail loudly unless the answer is exactly the expected page with the dataset's summaries."""
    matching = workload.matching[query.key]
    offset = (page_number - 1) * PAGE_SIZE
    expected_urls = matching[offset : offset + PAGE_SIZE]
    got_urls = [image["zarr_url"] for image in page["images"]]
    problems = []
    if page["total_count"] != len(matching):
        problems.append(f"total_count {page['total_count']}, expected {len(matching)}")
    if page["current_page"] != page_number:
        problems.append(f"current_page {page['current_page']}, expected {page_number}")
    if got_urls != expected_urls:
        problems.append(f"{len(got_urls)} images, not the expected {len(expected_urls)}")
    attributes = {key: _value_set(values) for key, values in page["attributes"].items()}
    if attributes != workload.attributes or set(page["types"]) != workload.types:
        problems.append("attribute or type summaries differ from the dataset's")
    if problems:
        raise BenchError(
            f"[{target.name}] N={workload.size} query '{query.label}' page {page_number}: "
            + "; ".join(problems)
        )


class SizeRun:
    """The workload of one size against one server, on a project and dataset of its own."""

    def __init__(
        self, client: httpx.Client, target: Target, workload: Workload, repeat: int
    ) -> None:
        self.client = client
        self.target = target
        self.workload = workload
        self.repeat = repeat
        self.project_id = 0
        self.dataset_id = 0
        self.added = 0

    @property
    def dataset_path(self) -> str:
        return f"/api/v2/project/{self.project_id}/dataset/{self.dataset_id}/"

    def create_project(self) -> None:
        body = json.dumps({"name": f"bench-{self.workload.size}"}).encode()
        _, response = request(self.client, self.target, "POST", "/api/v2/project/", body, 201)
        self.project_id = response.json()["id"]

    def import_images(self) -> float:
        path = f"/api/v2/project/{self.project_id}/dataset/import/"
        body = self.workload.import_body
        elapsed, response = request(self.client, self.target, "POST", path, body, 201)
        self.dataset_id = response.json()["id"]
        return elapsed

    def alive(self) -> float:
        elapsed, _ = request(self.client, self.target, "GET", "/api/alive/")
        return elapsed

    def get_dataset(self) -> float:
        elapsed, response = request(self.client, self.target, "GET", self.dataset_path)
        if response.json()["id"] != self.dataset_id:
            raise BenchError(f"[{self.target.name}] GET {self.dataset_path}: wrong dataset")
        return elapsed

    def query(self, query: Query, page_number: int) -> float:
        path = f"{self.dataset_path}images/query/?page={page_number}&page_size={PAGE_SIZE}"
        body = None if query.body is None else json.dumps(query.body).encode()
        elapsed, response = request(self.client, self.target, "POST", path, body)
        check_page(self.target, self.workload, query, page_number, response.json())
        return elapsed

    def add_image(self) -> float:
        body = json.dumps(make_extra_image(self.added)).encode()
        path = f"{self.dataset_path}images/"
        elapsed, _ = request(self.client, self.target, "POST", path, body, 201)
        self.added += 1
        return elapsed

    def check_final_count(self) -> None:
        expected = self.workload.size + self.added
        path = f"{self.dataset_path}images/query/?page=1&page_size=1"
        _, response = request(self.client, self.target, "POST", path)
        if response.json()["total_count"] != expected:
            raise BenchError(
                f"[{self.target.name}] N={self.workload.size}: {response.json()['total_count']} "
                f"images after the additions, expected {expected}"
            )

    def run(self) -> dict[str, Any]:
        self.create_project()
        import_s = self.import_images()
        metrics = {
            "alive": measure(self.alive, self.repeat, MIN_SAMPLES),
            "get_dataset": measure(self.get_dataset, self.repeat, MIN_SAMPLES),
        }
        for query in QUERIES:
            for page in PAGES:
                number = 1 if page == "first" else last_page(len(self.workload.matching[query.key]))
                run = functools.partial(self.query, query, number)
                metrics[f"query_{query.key}_{page}"] = measure(run, self.repeat, MIN_SAMPLES)
        metrics["add_image"] = measure(self.add_image, self.repeat, MIN_ADD_SAMPLES)
        self.check_final_count()
        return {
            "import_s": round(import_s, 3),
            "rss_mib": round(tree_rss_bytes(self.target.pid) / MIB, 1),
            "peak_rss_mib": round(tree_peak_rss_bytes(self.target.pid) / MIB, 1),
            "latency": {name: latency_dict(latency) for name, latency in metrics.items()},
        }


METRIC_LABELS = {
    "alive": "GET alive (no database)",
    "get_dataset": "GET dataset",
    **{
        f"query_{query.key}_{page}": f"query {query.label}, {page} page"
        for query in QUERIES
        for page in PAGES
    },
    "add_image": "add one image",
}


@contextlib.contextmanager
def our_target() -> Iterator[Target]:
    with OurServer() as server:
        yield Target("ours", server.url, server.headers, server.pid)


@contextlib.contextmanager
def peer_target(venv: Path | None) -> Iterator[Target]:
    # Imported here: the peer helper is only needed (and only has to exist) with the peer.
    from tests.support.peer import PeerServer, ensure_peer_venv

    if venv is None:
        venv = ensure_peer_venv(REPO_ROOT / ".peer")
    workdir = Path(tempfile.mkdtemp(prefix="fractal-bench-peer-"))
    try:
        with PeerServer(venv, workdir) as peer:
            headers = {"Authorization": f"Bearer {peer.admin_token}"}
            yield Target("peer", peer.url, headers, peer.pid)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def run_all(targets: list[Target], sizes: list[int], repeat: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with httpx.Client(timeout=REQUEST_TIMEOUT_S) as client:
        for size in sizes:
            workload = make_workload(size)
            results[str(size)] = {}
            for target in targets:
                started = time.monotonic()
                progress(f"[{target.name}] N={size}: running")
                result = SizeRun(client, target, workload, repeat).run()
                results[str(size)][target.name] = result
                progress(
                    f"[{target.name}] N={size}: import {result['import_s']:.2f} s, "
                    f"RSS {result['rss_mib']} MiB, {time.monotonic() - started:.0f} s in all"
                )
    return results


def ratio(ours: float | None, peer: float | None) -> float | None:
    if ours is None or peer is None or ours <= 0:
        return None
    return peer / ours


def number(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:.0f}"
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"


def _latency(name: str, quantile: str) -> Callable[[dict[str, Any]], float]:
    def pick(result: dict[str, Any]) -> float:
        return float(result["latency"][name][f"{quantile}_ms"])

    return pick


def _row(
    size: str,
    by_target: dict[str, Any],
    label: str,
    pick: Callable[[dict[str, Any]], float],
    samples: str = "",
) -> list[str]:
    ours, peer = by_target.get("ours"), by_target.get("peer")
    mine = pick(ours) if ours else None
    theirs = pick(peer) if peer else None
    factor = ratio(mine, theirs)
    shown = "-" if factor is None else f"{number(factor)}x"
    return [f"{int(size):,}", label, number(mine), number(theirs), shown, samples]


def table_rows(results: dict[str, Any]) -> Iterator[list[str]]:
    for size, by_target in results.items():
        yield _row(size, by_target, f"import {int(size):,} images (s)", lambda r: r["import_s"])
        for name, label in METRIC_LABELS.items():
            counts = "/".join(str(r["latency"][name]["n"]) for r in by_target.values())
            for quantile in ("p50", "p95"):
                pick = _latency(name, quantile)
                yield _row(size, by_target, f"{label} {quantile} (ms)", pick, counts)
        yield _row(size, by_target, "RSS after the workload (MiB)", lambda r: r["rss_mib"])
        yield _row(size, by_target, "peak RSS since start (MiB)", lambda r: r["peak_rss_mib"])


def markdown_table(results: dict[str, Any]) -> str:
    header = ["N", "metric", "ours", "2.6.4", "2.6.4 / ours", "samples ours/2.6.4"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines.extend("| " + " | ".join(cells) + " |" for cells in table_rows(results))
    return "\n".join(lines)


def _p50(results: dict[str, Any], size: str, target: str, metric: str) -> float | None:
    result = results.get(size, {}).get(target)
    return None if result is None else float(result["latency"][metric]["p50_ms"])


def check_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The goals of the images work, judged at the largest size measured."""
    sizes = sorted(results, key=int)
    small, large = sizes[0], sizes[-1]
    checks: list[dict[str, Any]] = []
    for name in METRIC_LABELS:
        if not name.startswith(("query_attribute", "query_type")):
            continue
        ours = _p50(results, large, "ours", name) or 0.0
        checks.append(
            {
                "target": f"N={large}: {METRIC_LABELS[name]} p50 < {TARGET_FILTERED_P50_MS} ms",
                "value": f"{ours:.2f} ms",
                "ok": ours < TARGET_FILTERED_P50_MS,
            }
        )
        speedup = ratio(ours, _p50(results, large, "peer", name))
        if speedup is not None:
            checks.append(
                {
                    "target": f"N={large}: {METRIC_LABELS[name]} p50 >= {TARGET_SPEEDUP:.0f}x "
                    "faster than 2.6.4",
                    "value": f"{speedup:.0f}x",
                    "ok": speedup >= TARGET_SPEEDUP,
                }
            )
    for name in ("add_image", "get_dataset"):
        growth = ratio(_p50(results, small, "ours", name), _p50(results, large, "ours", name))
        checks.append(
            {
                "target": f"{METRIC_LABELS[name]} p50 flat in N (N={large} vs N={small} "
                f"<= {FLAT_FACTOR:.0f}x)",
                "value": "-" if growth is None else f"{growth:.2f}x",
                "ok": growth is not None and growth <= FLAT_FACTOR,
            }
        )
    rss = float(results[large]["ours"]["rss_mib"])
    checks.append(
        {
            "target": f"N={large}: our RSS < {TARGET_RSS_MIB:.0f} MiB",
            "value": f"{rss:.0f} MiB",
            "ok": rss < TARGET_RSS_MIB,
        }
    )
    return checks


def report(document: dict[str, Any]) -> Path:
    print()
    print(markdown_table(document["results"]))
    print()
    largest = max(int(size) for size in document["results"])
    if largest != TARGET_SIZE:
        print(f"Targets (set for N={TARGET_SIZE:,}; judged here at N={largest:,}):")
    else:
        print("Targets:")
    for check in document["targets"]:
        mark = "PASS" if check["ok"] else "FAIL"
        print(f"  [{mark}] {check['target']}: {check['value']}")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"images-{document['date']}.json"
    path.write_text(json.dumps(document, indent=2) + "\n")
    print(f"\nResults written to {path.relative_to(REPO_ROOT)}")
    return path


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes",
        type=lambda text: [int(size) for size in text.split(",")],
        default=list(DEFAULT_SIZES),
        help="comma-separated numbers of images (default: 1000,10000,100000)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=DEFAULT_REPEAT,
        help=f"timed requests per latency metric after {WARMUP} warm-ups (default: "
        f"{DEFAULT_REPEAT}; a slow server gets fewer, at least {MIN_SAMPLES})",
    )
    parser.add_argument("--no-peer", action="store_true", help="skip fractal-server 2.6.4")
    parser.add_argument(
        "--peer-venv",
        type=Path,
        default=None,
        help="an existing venv with fractal-server 2.6.4 (default: <repo>/.peer/venv, "
        "installed on first use)",
    )
    arguments = parser.parse_args(argv)
    if arguments.repeat < 1 or any(size < 1 for size in arguments.sizes):
        parser.error("--repeat and --sizes must be positive")
    return arguments


def main(argv: list[str]) -> int:
    arguments = parse_arguments(argv)
    stop_on_signals()
    document = report_header("bench/images.py", argv, "fractal-server 2.6.4")
    document["settings"] = {"repeat": arguments.repeat, "warmup": WARMUP, "page_size": PAGE_SIZE}
    try:
        with contextlib.ExitStack() as stack:
            targets = []
            if not arguments.no_peer:
                targets.append(stack.enter_context(peer_target(arguments.peer_venv)))
            targets.insert(0, stack.enter_context(our_target()))
            document["results"] = run_all(targets, sorted(arguments.sizes), arguments.repeat)
    except KeyboardInterrupt:
        progress("interrupted: servers stopped")
        return 130
    except BenchError as error:
        progress(f"FAILED: {error}")
        return 1
    document["load_average_after"] = [round(load, 2) for load in os.getloadavg()]
    document["targets"] = check_targets(document["results"])
    report(document)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
