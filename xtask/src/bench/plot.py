"""Plots of a conntrackd benchmark report (report.json): per load mode, CPU
per 100k kernel events vs achieved rate, and loss vs achieved rate, one line
per consumer, median points with min-max error bars. Usage: plot.py DIR"""
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

STYLE = {
    "conntrackd ebpf": ("tab:blue", "o", "-"),
    "conntrackd netlink": ("tab:cyan", "s", "-"),
    "conntrackd ebpf no-prefilter": ("tab:purple", "D", "--"),
    "conntrack -E": ("tab:red", "^", "-"),
    "ulogd2": ("tab:orange", "v", "-"),
    "Go original 1.4.1": ("tab:green", "P", "-"),
}


def rates(runs):
    """The rates in run order, each with its tick label (the median achieved rate for max)."""
    order = list(dict.fromkeys(r["rate"] for r in runs))
    labels = []
    for rate in order:
        achieved = sorted(r["achieved_rate"] for r in runs if r["rate"] == rate)
        mid = achieved[len(achieved) // 2] / 1000
        labels.append(f"{rate}\n(achieved {mid:.0f}k/s)")
    return order, labels


def series(runs, consumer, field, order):
    """A consumer's points; CPU per kernel event is left out for runs in which it exited (cheap only because it stopped)."""
    mine = (r for r in runs if r["consumer"] == consumer and not (field == "cpu_s_per_100k" and r.get("exited_early")))
    rows = sorted(mine, key=lambda r: order.index(r["rate"]))
    x = [order.index(r["rate"]) for r in rows]
    y = [r[field] for r in rows]
    lo = [r[field] - r["spread"].get(field, {"min": r[field]})["min"] for r in rows]
    hi = [r["spread"].get(field, {"max": r[field]})["max"] - r[field] for r in rows]
    return x, y, [lo, hi]


def axis(ax, runs, field, ylabel, title, log):
    order, labels = rates(runs)
    for consumer in dict.fromkeys(r["consumer"] for r in runs):
        x, y, err = series(runs, consumer, field, order)
        color, marker, line = STYLE.get(consumer, ("black", "x", "-"))
        ax.errorbar(x, y, yerr=err, label=consumer, color=color, marker=marker, linestyle=line, capsize=3, linewidth=1.8, markersize=6)
    ax.set_title(title, fontsize=12)
    ax.set_xticks(range(len(order)), labels)
    ax.set_xlim(-0.3, len(order) - 0.7)
    ax.set_xlabel("target rate of new connections (2 kernel events each: NEW, DESTROY)")
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    else:
        ax.set_ylim(bottom=-0.5)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=9)


def main():
    out = Path(sys.argv[1])
    report = json.loads((out / "report.json").read_text())
    runs = report["runs"]
    repeats = max((r["repeats"] for r in runs), default=1)
    written = []
    for mode in dict.fromkeys(r["mode"] for r in runs):
        mine = [r for r in runs if r["mode"] == mode]
        fig, (cpu, loss) = plt.subplots(1, 2, figsize=(14, 5.5))
        axis(cpu, mine, "cpu_s_per_100k", "consumer CPU s (user+sys) per 100k kernel events, log", "CPU cost (lower is better)", True)
        axis(loss, mine, "loss_pct", "events lost, % of those it should log", "Loss (lower is better)", False)
        fig.suptitle(f"conntrackd benchmark, load '{mode}' (median of {repeats} run(s), bars: min-max)", fontsize=14)
        fig.tight_layout()
        path = out / f"bench-{mode}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(str(path))
    print("\n".join(written))


main()
