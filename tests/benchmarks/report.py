"""The results table (markdown) and the latency-against-concurrency plot.

Re-render from a saved run:  python -m tests.benchmarks.report RESULTS.json [--plot PATH]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _f(value: float | None, fmt: str = "{:.1f}") -> str:
    return "n/a" if value is None else fmt.format(value)


def _mark(ok: bool | None) -> str:
    return "" if ok is None else (" ✅" if ok else " ❌")


def _run(results: dict[str, Any], target: str, clients: int, tokens: int) -> dict[str, Any] | None:
    for row in results.get("throughput", []):
        if (row["target"], row["clients"], row["tokens"]) == (target, clients, tokens):
            return row
    return None


def _ttft_row(seq: dict[str, Any], name: str, label: str, reason: str | None) -> str:
    """A one-request path's TTFT overhead against the issue 16 targets: <= 5 ms p50, <= 10 ms
    p99 over direct, and below LiteLLM's overhead at both (when LiteLLM ran)."""
    d, s, p = seq["direct"], seq.get(name), seq.get("litellm")
    target = "<= 5 / <= 10 ms and below LiteLLM"
    if s is None:
        return f"| {label} | {target} | skipped: {reason or 'not measured'} | | |"
    o50 = s["ttft_ms"]["p50"] - d["ttft_ms"]["p50"]
    o99 = s["ttft_ms"]["p99"] - d["ttft_ms"]["p99"]
    met = o50 <= 5 and o99 <= 10
    if p is not None:
        met = (
            met
            and o50 < p["ttft_ms"]["p50"] - d["ttft_ms"]["p50"]
            and o99 < p["ttft_ms"]["p99"] - d["ttft_ms"]["p99"]
        )
    return (
        f"| {label} | {target} | +{o50:.1f} / +{o99:.1f} ms ({s['ttft_ms']['p50']:.1f} / "
        f"{s['ttft_ms']['p99']:.1f}){_mark(met)} | {d['ttft_ms']['p50']:.1f} / "
        f"{d['ttft_ms']['p99']:.1f} ms | {_peer_ttft(seq)} |"
    )


def _peer_ttft(seq: dict[str, Any]) -> str:
    d, p = seq["direct"], seq.get("litellm")
    if not p:
        return "skipped"
    return (
        f"+{p['ttft_ms']['p50'] - d['ttft_ms']['p50']:.1f} / "
        f"+{p['ttft_ms']['p99'] - d['ttft_ms']['p99']:.1f} ms "
        f"({p['ttft_ms']['p50']:.1f} / {p['ttft_ms']['p99']:.1f})"
    )


def _breakdown(rows: dict[str, Any], title: str) -> str:
    out = f"\n\n{title} (p50 / p99 ms; sequential run):\n\n"
    out += "| piece | p50 | p99 |\n|---|---|---|\n"
    names = {
        "submit_rtt": "POST submit round trip (client; one request: until the answer's headers)",
        "client_to_row": "client send -> reply row built in the API (auth, chat, validation)",
        "row_to_claim": "row -> worker claim (commit, enqueue, broker, task start)",
        "claim_to_first_publish": "claim -> first publish (claim txn, provider call, XADD)",
        "provider_ttft": "  of which provider TTFT in the worker (ms resolution)",
        "publish_to_client": "first publish -> SSE token at the client (ms resolution)",
        "claim_to_client": "claim -> first token at the client (both pieces above)",
    }
    for key, label in names.items():
        piece = rows.get(key) or {}
        if not piece.get("n"):
            continue  # not measurable on this path (OpenAI chunks carry no Redis entry id)
        out += f"| {label} | {_f(piece.get('p50'))} | {_f(piece.get('p99'))} |\n"
    return out


def table(results: dict[str, Any]) -> str:
    lines = [
        "| figure | target | measured (service) | direct to stub | LiteLLM |",
        "|---|---|---|---|---|",
    ]
    seq = results.get("sequential")
    peer_ok = results.get("litellm", {}).get("available")
    if seq:
        d, s, p = seq["direct"], seq["service"], seq.get("litellm")
        o50 = s["ttft_ms"]["p50"] - d["ttft_ms"]["p50"]
        o99 = s["ttft_ms"]["p99"] - d["ttft_ms"]["p99"]
        lines.append(
            f"| TTFT overhead over direct, p50 / p99 ({seq['n']} sequential), two requests "
            f"(POST, then GET the stream) | <= 5 / <= 10 ms | "
            f"+{o50:.1f} / +{o99:.1f} ms ({s['ttft_ms']['p50']:.1f} / {s['ttft_ms']['p99']:.1f})"
            f"{_mark(o50 <= 5 and o99 <= 10)} | {d['ttft_ms']['p50']:.1f} / "
            f"{d['ttft_ms']['p99']:.1f} ms | {_peer_ttft(seq)} |"
        )
        lines.append(
            _ttft_row(
                seq,
                "one_request",
                "TTFT overhead, native one request (POST `Accept: text/event-stream`, httpx)",
                None,
            )
        )
        lines.append(
            _ttft_row(
                seq,
                "openai_compat",
                "TTFT overhead, `/v1/chat/completions` (openai SDK, `stream=True`, sb_ key)",
                results.get("openai_compat", {}).get("reason"),
            )
        )
        w50 = s["total_ms"]["p50"] - d["total_ms"]["p50"]
        peer = (
            (f"+{p['total_ms']['p50'] - d['total_ms']['p50']:.1f} ms ({p['total_ms']['p50']:.1f})")
            if p
            else "skipped"
        )
        lines.append(
            f"| submit -> `done`, 25 tokens, over the direct stream, p50 | <= +10 ms | "
            f"+{w50:.1f} ms ({s['total_ms']['p50']:.1f}){_mark(w50 <= 10)} | "
            f"{d['total_ms']['p50']:.1f} ms | {peer} |"
        )
    for clients in (50, 200):
        for tokens, unit, key, goal in (
            (25, "messages/s", "msgs_per_s", 150),
            (200, "tokens/s", "tokens_per_s", 10_000),
        ):
            svc = _run(results, "service", clients, tokens)
            if svc is None:
                continue
            dr, pr = (
                _run(results, "direct", clients, tokens),
                _run(results, "litellm", clients, tokens),
            )
            target = f">= {goal:,} {unit}" if clients == 50 else "(no target)"
            met = svc[key] >= goal if clients == 50 else None

            def cell(row: dict[str, Any] | None, key: str = key, unit: str = unit) -> str:
                if row is None:
                    return "skipped"
                err = f", {row['errors']} errors" if row["errors"] else ""
                return (
                    f"{row[key]:,.0f} {unit} (TTFT p50 {_f(row['ttft_ms']['p50'], '{:.0f}')}"
                    f" ms{err})"
                )

            peer_cell = cell(pr) if peer_ok else "skipped"
            lines.append(
                f"| {clients} clients, {tokens}-token replies | {target} | "
                f"{cell(svc)}{_mark(met)} | {cell(dr)} | {peer_cell} |"
            )
    conc = results.get("concurrency")
    if conc:
        o = conc["outcome"]
        wall, ratio = o["wall_from_first_claim_s"], conc["ratio_to_direct"]
        met = (
            ratio is not None
            and ratio <= 2
            and conc["worker_peak_rss_mb"] <= 300
            and o["lost"] == 0
            and o["usage_rows_not_one"] == 0
            and o["content_exact"] == o["n"]
        )
        lines.append(
            f"| {conc['n']} x 2 s generations, one worker | wall <= 2x direct; RSS <= 300 MB; "
            f"0 lost | wall {_f(wall, '{:.2f}')} s = {_f(ratio, '{:.2f}')}x; peak RSS "
            f"{conc['worker_peak_rss_mb']:.0f} MB; CPU {conc['worker_cpu_s']:.1f} s "
            f"({conc['worker_cpu_us_per_token']:.0f} us/token); lost {o['lost']}, "
            f"usage rows != 1: {o['usage_rows_not_one']}, exact {o['content_exact']}/{o['n']}"
            f"{_mark(met)} | {conc['direct_wall_best_s']:.2f} s (AsyncOpenAI, {conc['n']} "
            f"concurrent) | n/a (no queue) |"
        )
    scale = results.get("scale_out")
    if scale:
        one, two = scale["one"], scale["two"]
        ratio = scale["ratio"]
        lines.append(
            f"| scale-out, {scale['n']} x 2 s, concurrency 50 each | two workers <= 0.6x one | "
            f"one {_f(one['wall_from_first_insert_s'], '{:.2f}')} s, two "
            f"{_f(two['wall_from_first_insert_s'], '{:.2f}')} s = {_f(ratio, '{:.2f}')}x"
            f"{_mark(ratio is not None and ratio <= 0.6)} | n/a | n/a |"
        )
    out = "\n".join(lines)
    if seq and seq.get("breakdown"):
        out += _breakdown(seq["breakdown"], "Service TTFT (two requests), piece by piece")
    if seq and seq.get("breakdown_one_request"):
        out += _breakdown(seq["breakdown_one_request"], "Native one request, piece by piece")
    if seq and seq.get("breakdown_openai_compat"):
        out += _breakdown(
            seq["breakdown_openai_compat"], "`/v1/chat/completions` (openai SDK), piece by piece"
        )
    if seq:
        counts = seq.get("text_mismatches", {})
        out += f"\nReplies whose text differs from the stub's: {counts}\n"
    upstream = results.get("litellm_upstream")
    if upstream:
        if upstream.get("ran"):
            out += (
                "\nLiteLLM proxy with Switchboard's /v1 as its OpenAI-compatible upstream: "
                f"streamed {len(upstream['text'])} chars, "
                + ("equal to" if upstream["text"] == upstream["expected"] else "**different from**")
                + f" the stub's reply (TTFT {upstream['ttft_ms']:.1f} ms); stored: "
                + ", ".join(
                    f"{r['status']} reply, "
                    f"{'exact' if r['content'] == upstream['expected'] else 'other'} content, "
                    f"{r['usage_rows']} usage row(s)"
                    for r in upstream.get("stored", [])
                )
                + _mark(upstream["ok"])
                + "\n"
            )
        else:
            out += f"\nLiteLLM -> Switchboard skipped: {upstream.get('reason')}\n"
    if not peer_ok:
        out += f"\nLiteLLM skipped: {results.get('litellm', {}).get('reason')}\n"
    return out


def plot(results: dict[str, Any], path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing (bench extra): no plot")
        return None
    seq = results["sequential"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    colours = {"service": "tab:blue", "litellm": "tab:orange", "direct": "tab:green"}
    for ax, key, title in (
        (axes[0], "ttft_ms", "time to first token, 25-token reply"),
        (axes[1], "total_ms", "whole 25-token reply"),
    ):
        for target, colour in colours.items():
            xs, p50, p99 = [], [], []
            if target in seq:
                xs.append(1)
                p50.append(seq[target][key]["p50"])
                p99.append(seq[target][key]["p99"])
            for clients in (50, 200):
                row = _run(results, target, clients, 25)
                if row and row[key]["p50"] is not None:
                    xs.append(clients)
                    p50.append(row[key]["p50"])
                    p99.append(row[key]["p99"])
            if xs:
                ax.plot(xs, p50, "o-", color=colour, label=f"{target} p50")
                ax.plot(xs, p99, "x--", color=colour, alpha=0.6, label=f"{target} p99")
            for clients in (50, 200):
                row = _run(results, target, clients, 25)
                if row and row["completed"] == 0:
                    top = ax.get_ylim()[1] if ax.has_data() else 1000
                    ax.annotate(
                        f"{target}: all {row['errors']} failed",
                        (clients, top),
                        xytext=(clients, top),
                        color=colour,
                        fontsize=8,
                        ha="right",
                        va="top",
                    )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks([1, 50, 200], ["1", "50", "200"])
        ax.set_xlabel("concurrent clients")
        ax.set_ylabel("ms")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("Switchboard vs direct SDK vs LiteLLM proxy (same stub, same run)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main() -> None:
    import argparse
    import json

    parser = argparse.ArgumentParser()
    parser.add_argument("results", type=Path)
    parser.add_argument("--plot", type=Path)
    args = parser.parse_args()
    results = json.loads(args.results.read_text())
    print(table(results))
    if args.plot:
        plot(results, args.plot)


if __name__ == "__main__":
    main()
