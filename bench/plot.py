#!/usr/bin/env python3
"""Charts (PNG) of the benchmark CSVs, for bench/README.md.

    plot.py scale SCALE.csv OUTDIR      # from bench/scale.sh CSV=...
    plot.py metrics METRICS.csv OUTDIR  # from bench/metrics_run.sh

Needs matplotlib (bench/charts.sh installs it into a venv under target/).
"""
import csv
import sys
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

TARGETS = ["direct", "relay", "relaygate"]
COLOURS = {"direct": "#9e9e9e", "relay": "#4c72b0", "relaygate": "#dd8452"}


def scale(rows, out):
    cases = list(dict.fromkeys(r["case"] for r in rows))
    cores = list(dict.fromkeys(r["cores"] for r in rows))
    value = {(r["case"], r["cores"], r["target"]): r for r in rows}

    fig, axes = plt.subplots(1, len(cases), figsize=(4 * len(cases), 3.8), squeeze=False)
    for ax, case in zip(axes[0], cases):
        width = 0.8 / len(TARGETS)
        for i, target in enumerate(TARGETS):
            ys = [float(value.get((case, c, target), {}).get("msgs_per_s") or 0) for c in cores]
            xs = [x + i * width for x in range(len(cores))]
            ax.bar(xs, ys, width, label=target, color=COLOURS[target])
        ax.set_xticks([x + width for x in range(len(cores))], [f"{c} cores" if c != "all" else "unpinned" for c in cores])
        ax.set_title(case)
        ax.set_ylabel("messages / s")
    axes[0][0].legend()
    fig.suptitle("Throughput: relaygate against a bare TCP relay and direct, per proxy core count")
    fig.tight_layout()
    fig.savefig(out / "scale-throughput.png", dpi=110)

    fig, ax = plt.subplots(figsize=(8, 3.8))
    labels, relay, proxy = [], [], []
    for case in cases:
        for c in cores:
            r = value.get((case, c, "relay"))
            p = value.get((case, c, "relaygate"))
            if r and p and r["cpu_us_per_tx"] and p["cpu_us_per_tx"]:
                labels.append(f"{case}\n{c}")
                relay.append(float(r["cpu_us_per_tx"]))
                proxy.append(float(p["cpu_us_per_tx"]))
    xs = range(len(labels))
    ax.bar([x - 0.2 for x in xs], relay, 0.4, label="relay", color=COLOURS["relay"])
    ax.bar([x + 0.2 for x in xs], proxy, 0.4, label="relaygate", color=COLOURS["relaygate"])
    ax.set_xticks(list(xs), labels, fontsize=8)
    ax.set_ylabel("proxy CPU per transaction (us)")
    ax.set_title("CPU per transaction, from each proxy's own rusage")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "scale-cpu.png", dpi=110)

    latency = [r for r in rows if r["case"] == "latency" and r["p50_us"]]
    if latency:
        fig, ax = plt.subplots(figsize=(7, 3.8))
        labels = []
        for i, c in enumerate(cores):
            for j, target in enumerate(TARGETS):
                r = value.get(("latency", c, target))
                if not r or not r["p50_us"]:
                    continue
                x = i * (len(TARGETS) + 1) + j
                ax.bar(x, float(r["p99_us"]), 0.8, color=COLOURS[target], alpha=0.35)
                ax.bar(x, float(r["p50_us"]), 0.8, color=COLOURS[target], label=target if i == 0 else None)
            labels.append((i * (len(TARGETS) + 1) + 1, "unpinned" if c == "all" else f"{c} cores"))
        ax.set_xticks([x for x, _ in labels], [name for _, name in labels])
        ax.set_ylabel("us per transaction (solid p50, light p99)")
        ax.set_title("Latency per transaction, closed loop (smtp-load)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "scale-latency.png", dpi=110)


def metrics(rows, out):
    t = [float(r["t"]) for r in rows]

    def rate(key):
        values = [float(r[key]) for r in rows]
        rates = [0.0]
        for i in range(1, len(values)):
            dt = t[i] - t[i - 1]
            rates.append((values[i] - values[i - 1]) / dt if dt > 0 else 0.0)
        return rates

    call_us = [0.0]
    for i in range(1, len(rows)):
        calls = float(rows[i]["call_count"]) - float(rows[i - 1]["call_count"])
        secs = float(rows[i]["call_seconds_sum"]) - float(rows[i - 1]["call_seconds_sum"])
        call_us.append(secs / calls * 1e6 if calls > 0 else 0.0)

    fig, axes = plt.subplots(5, 1, figsize=(9, 11), sharex=True)
    axes[0].plot(t, [int(r["sessions_active"]) for r in rows], color="#4c72b0")
    axes[0].set_ylabel("sessions open")
    for key, colour in [("delivered", "#55a868"), ("rejected", "#c44e52"), ("failed", "#8172b2")]:
        axes[1].plot(t, rate(key), label=key, color=colour)
    axes[1].set_ylabel("transactions / s")
    axes[1].legend(loc="upper right")
    axes[2].plot(t, rate("policy_accept"), label="accept", color="#55a868")
    axes[2].plot(t, rate("policy_reject"), label="reject", color="#c44e52")
    axes[2].set_ylabel("policy verdicts / s")
    axes[2].legend(loc="upper right")
    axes[3].plot(t, call_us, color="#dd8452")
    axes[3].set_ylabel("mean policy call (us)")
    axes[4].plot(t, rate("upstream_opened"), label="opened", color="#c44e52")
    axes[4].plot(t, rate("upstream_reused"), label="reused (pool)", color="#55a868")
    axes[4].set_ylabel("upstream conns / s")
    axes[4].legend(loc="upper right")
    axes[4].set_xlabel("seconds")
    # Shade and name the phases.
    start = None
    for i, r in enumerate(rows + [{"phase": "idle", "t": t[-1] if t else 0}]):
        phase = r["phase"]
        if phase != "idle" and start is None:
            start, name = float(r["t"]), phase
        elif phase == "idle" and start is not None:
            for ax in axes:
                ax.axvspan(start, float(r["t"]), color="#eeeeee", zorder=0)
            axes[0].text(start, axes[0].get_ylim()[1] * 0.9, name, fontsize=8)
            start = None
    fig.suptitle("relaygate's /metrics over a benchmark run")
    fig.tight_layout()
    fig.savefig(out / "metrics-run.png", dpi=110)


def main():
    if len(sys.argv) != 4 or sys.argv[1] not in ("scale", "metrics"):
        sys.exit(__doc__)
    kind, path, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    out.mkdir(parents=True, exist_ok=True)
    with path.open() as f:
        rows = list(csv.DictReader(f))
    if not rows:
        sys.exit(f"{path}: no rows")
    (scale if kind == "scale" else metrics)(rows, out)


if __name__ == "__main__":
    main()
