#!/usr/bin/env python3
"""p50 and p99 send->deliver against the offered rate, from loadgen reports.

    scripts/plot-rates.py out.svg docs/bench/openloop-cluster-5k.json docs/bench/openloop-cluster-10k.json ...

Each argument after the first is a loadgen JSON report of an open-loop run
(`--rate`); the plot has one point per report, a log-scale latency axis and
a dashed line at 50 ms (the issue's target). Standard library only.
"""
import json
import math
import sys

W, H, L, R, T, B = 640, 400, 70, 20, 30, 50


def main() -> int:
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    out, paths = sys.argv[1], sys.argv[2:]
    points = []
    for p in paths:
        with open(p) as f:
            r = json.load(f)
        if not r.get("rate"):
            print(f"{p}: not an open-loop report (no rate)", file=sys.stderr)
            return 1
        lat = r["latency_ms"]
        points.append((r["rate"], lat["p50"], lat["p99"]))
    points.sort()
    xmax = max(p[0] for p in points) * 1.1
    lo, hi = 1.0, max(100.0, max(p[2] for p in points) * 1.5)

    def x(rate):
        return L + (W - L - R) * rate / xmax

    def y(ms):
        ms = max(ms, lo)
        return T + (H - T - B) * (1 - (math.log10(ms) - math.log10(lo)) / (math.log10(hi) - math.log10(lo)))

    s = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
         f'<rect width="{W}" height="{H}" fill="white"/>',
         f'<text x="{W / 2}" y="18" text-anchor="middle">send→deliver against offered rate (open loop)</text>',
         f'<line x1="{L}" y1="{H - B}" x2="{W - R}" y2="{H - B}" stroke="black"/>',
         f'<line x1="{L}" y1="{T}" x2="{L}" y2="{H - B}" stroke="black"/>']
    decade = 1.0
    while decade <= hi:
        s.append(f'<line x1="{L}" y1="{y(decade):.1f}" x2="{W - R}" y2="{y(decade):.1f}" stroke="#ddd"/>')
        s.append(f'<text x="{L - 6}" y="{y(decade) + 4:.1f}" text-anchor="end">{decade:g} ms</text>')
        decade *= 10
    s.append(f'<line x1="{L}" y1="{y(50):.1f}" x2="{W - R}" y2="{y(50):.1f}" stroke="red" stroke-dasharray="6 4"/>')
    s.append(f'<text x="{W - R}" y="{y(50) - 4:.1f}" text-anchor="end" fill="red">50 ms</text>')
    for rate, *_ in points:
        s.append(f'<text x="{x(rate):.1f}" y="{H - B + 16}" text-anchor="middle">{rate / 1000:g}k</text>')
    s.append(f'<text x="{(L + W - R) / 2}" y="{H - 12}" text-anchor="middle">offered msgs/s</text>')
    for i, (name, color) in enumerate([("p50", "#1f77b4"), ("p99", "#d62728")]):
        pts = " ".join(f"{x(p[0]):.1f},{y(p[1 + i]):.1f}" for p in points)
        s.append(f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="2"/>')
        for p in points:
            s.append(f'<circle cx="{x(p[0]):.1f}" cy="{y(p[1 + i]):.1f}" r="3" fill="{color}"/>')
        s.append(f'<text x="{L + 10}" y="{T + 14 + 14 * i}" fill="{color}">{name}</text>')
    s.append("</svg>")
    with open(out, "w") as f:
        f.write("\n".join(s) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
