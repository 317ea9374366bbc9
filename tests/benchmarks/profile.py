"""Summarise py-spy collapsed stacks (`--format raw`): where a process spends its CPU.

python -m tests.benchmarks.profile STACKS.txt [--top 25]
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

# Inclusive buckets, first match wins (matched against every frame of a stack, outermost last).
BUCKETS = [
    ("openai SDK chunk parsing", re.compile(r"openai/(_streaming|_models|_response)|pydantic")),
    ("httpx2/httpcore transport", re.compile(r"httpx2?/|httpcore|h11")),
    ("token channel publish (redis)", re.compile(r"shared/channel\.py")),
    ("redis-py", re.compile(r"redis/")),
    ("database (SQLAlchemy/psycopg2)", re.compile(r"sqlalchemy|psycopg|shared/db\.py")),
    ("celery/kombu", re.compile(r"celery/|kombu/|billiard/")),
    ("logging", re.compile(r"logging/")),
    ("gevent hub / IO wait", re.compile(r"gevent/")),
]

# Inclusive shares: a stack counts for every key it contains (so they overlap).
INCLUSIVE = [
    ("generation task (run_generation)", "run_generation ("),
    ("  claim transaction (_claim)", "_claim (workers/generation.py"),
    ("  provider lookup per task (get_provider)", "ProviderManager.get_provider"),
    ("  provider stream (_stream_once)", "_stream_once ("),
    ("    openai SDK chunk decoding (Stream.__stream__)", "Stream.__stream__"),
    ("    pydantic/openai model construction (construct_type)", "construct_type ("),
    ("  token publish (ReplyPublisher.token)", "ReplyPublisher.token"),
    ("  Redis append script (TokenChannel.append)", "TokenChannel.append"),
    ("  finish transaction (_store)", "_store (workers/outcomes.py"),
    ("celery/kombu consumer (task intake)", "celery/worker/consumer"),
    ("logging", "logging/__init__"),
    ("API submit handler", "submit_message ("),
    ("API /v1/chat/completions handler", "chat_completions ("),
    ("API SSE generator", "reply_events ("),
    ("API auth dependency", "get_current_user ("),
    ("SQLAlchemy (any)", "sqlalchemy/"),
]

LINE = re.compile(r"^(?P<stack>.*) (?P<count>\d+)$")


def load(path: Path) -> list[tuple[list[str], int]]:
    stacks = []
    for line in path.read_text(errors="replace").splitlines():
        match = LINE.match(line.strip())
        if match:
            stacks.append((match["stack"].split(";"), int(match["count"])))
    return stacks


def summarise(path: Path, top: int = 20) -> dict[str, object]:
    stacks = load(path)
    total = sum(c for _, c in stacks) or 1
    own: Counter[str] = Counter()
    buckets: Counter[str] = Counter()
    for frames, count in stacks:
        own[_short(frames[-1])] += count
        # The innermost frame that falls in a bucket decides (e.g. redis under channel -> channel).
        label = "other"
        for frame in reversed(frames):
            hit = next((name for name, rx in BUCKETS if rx.search(frame)), None)
            if hit:
                label = hit
                break
        # A publish's redis round trip counts as the publish.
        if label == "redis-py" and any("shared/channel.py" in f for f in frames):
            label = "token channel publish (redis)"
        if label.startswith(("httpx2", "openai")) and any("openai" in f for f in frames):
            label = "openai SDK chunk parsing" if label.startswith("openai") else label
        buckets[label] += count
    inclusive = []
    for name, key in INCLUSIVE:
        count = sum(c for frames, c in stacks if any(key in f for f in frames))
        if count:
            inclusive.append((name, count, 100 * count / total))
    return {
        "samples": total,
        "inclusive": inclusive,
        "buckets": [(name, count, 100 * count / total) for name, count in buckets.most_common()],
        "own": [(name, count, 100 * count / total) for name, count in own.most_common(top)],
    }


def _short(frame: str) -> str:
    frame = re.sub(r"/[^ ]*/site-packages/", "", frame)
    return re.sub(r"/work/main/", "", frame)


def render(summary: dict[str, object]) -> str:
    lines = [f"samples: {summary['samples']}", "by area (innermost matching frame):"]
    for name, count, share in summary["buckets"]:  # type: ignore[union-attr]
        lines.append(f"  {share:5.1f}%  {name} ({count})")
    lines.append("inclusive (overlapping):")
    for name, _count, share in summary["inclusive"]:  # type: ignore[union-attr]
        lines.append(f"  {share:5.1f}%  {name}")
    lines.append("top frames by own samples:")
    for name, _count, share in summary["own"]:  # type: ignore[union-attr]
        lines.append(f"  {share:5.1f}%  {name}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("stacks", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    print(render(summarise(args.stacks, args.top)))


if __name__ == "__main__":
    main()
