"""Draws bench/results.csv (from bench/run.sh) as an SVG bar chart of each
store's throughput as a share of the bare server's, and prints the table."""

import csv
import sys

src, out = sys.argv[1], sys.argv[2]
rows = list(csv.DictReader(open(src)))
bare = next(r for r in rows if r["server"] == "bare")
stores = [r for r in rows if r["server"] != "bare"]
scenarios = ["read", "write", "new"]
colors = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#b07aa1"]

print("| store | " + " | ".join(scenarios) + " |")
print("|---|" + "---:|" * len(scenarios))
ratios = {}
for r in stores:
    ratios[r["server"]] = [float(r[s]) / float(bare[s]) for s in scenarios]
    print(f"| {r['server']} | " + " | ".join(f"{x:.2f}" for x in ratios[r["server"]]) + " |")

width, height, left, top, bottom = 640, 320, 50, 40, 50
plot_h = height - top - bottom
group_w = (width - left - 20) / len(scenarios)
bar_w = group_w * 0.8 / max(len(stores), 1)
svg = [
    f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
    f'<rect width="{width}" height="{height}" fill="white"/>',
    f'<text x="{left}" y="20" font-size="14">Throughput as a share of a bare axum server (1.0 = no session cost)</text>',
]
for tick in [0, 0.25, 0.5, 0.75, 1.0]:
    y = top + plot_h * (1 - tick)
    svg.append(f'<line x1="{left}" x2="{width - 20}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
    svg.append(f'<text x="{left - 8}" y="{y + 4:.1f}" text-anchor="end">{tick:.2f}</text>')
for g, scenario in enumerate(scenarios):
    x0 = left + g * group_w + group_w * 0.1
    for i, r in enumerate(stores):
        value = min(ratios[r["server"]][g], 1.0)
        h = plot_h * value
        x = x0 + i * bar_w
        svg.append(
            f'<rect x="{x:.1f}" y="{top + plot_h - h:.1f}" width="{bar_w - 2:.1f}" height="{h:.1f}" fill="{colors[i % len(colors)]}">'
            f'<title>{r["server"]} {scenario}: {ratios[r["server"]][g]:.2f}</title></rect>'
        )
        svg.append(
            f'<text x="{x + bar_w / 2 - 1:.1f}" y="{top + plot_h - h - 3:.1f}" text-anchor="middle" font-size="10">{ratios[r["server"]][g]:.2f}</text>'
        )
    svg.append(f'<text x="{x0 + group_w * 0.4:.1f}" y="{height - bottom + 18}" text-anchor="middle">{scenario}</text>')
for i, r in enumerate(stores):
    x = left + i * 110
    svg.append(f'<rect x="{x}" y="{height - 18}" width="10" height="10" fill="{colors[i % len(colors)]}"/>')
    svg.append(f'<text x="{x + 14}" y="{height - 9}">{r["server"]}</text>')
svg.append("</svg>")
open(out, "w").write("\n".join(svg) + "\n")
