"""Stage two, part two: the representative of each family grown to 350M / 1B / 3B spec files.

For every cluster from compose.aggregate, every scale and every method (Composer's stacking and
stretching), `models.scaling.extrapolate` turns the representative's proxy spec into a full-size
spec at the widths of Llama 3.2 of that scale (a hybrid proxy with mamba/mamba2 takes the same Llama
widths; models.scaling fills the knobs Llama lacks). Each spec is written as
RUN_DIR/extrapolated/<run>-c<cluster>-<method>-<scale>.yaml, loadable with models.presets.load_spec
and consumed by pretrain/. index.json and README.md list them all.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from compose.aggregate import Cluster, aggregate, pattern_summary
from compose.results import RunError, load_run
from models.errors import SpecError

TARGET_FAMILY = "llama3.2-"


def valid_scales() -> list[str]:
    """Scales with a Llama 3.2 preset to grow to (e.g. 350m, 1b, 3b)."""
    from models.presets import preset_names

    return [n.removeprefix(TARGET_FAMILY) for n in preset_names() if n.startswith(TARGET_FAMILY)]


def parse_scales(scales: str | Sequence[str]) -> list[str]:
    """'350m,1b' or ['350M', '1b'] -> ['350m', '1b']; RunError naming the valid scales otherwise."""
    items = scales.split(",") if isinstance(scales, str) else list(scales)
    out = [s.strip().lower() for s in items if s.strip()]
    valid = valid_scales()
    bad = [s for s in out if s not in valid]
    if bad or not out:
        raise RunError(f"unknown scale(s) {bad or scales!r}; valid scales: {', '.join(valid)}")
    return list(dict.fromkeys(out))


def extrapolate_run(run_dir: str | Path, scales: str | Sequence[str] = ("350m", "1b", "3b"), top_k: int = 20,
                    n_clusters: int = 3, methods: Sequence[str] = ("stack", "stretch"),
                    out_dir: str | Path | None = None, representative: str = "best",
                    tolerance: float = 0.05) -> list[Path]:
    """Write the full-size spec files of a run's top families; returns their paths (index files excluded)."""
    from models.accounting import count_params
    from models.presets import load_spec
    from models.scaling import extrapolate
    from models.spec import ArchSpec

    scales = parse_scales(scales)
    bad = [m for m in methods if m not in ("stack", "stretch")]
    if bad or not methods:
        raise RunError(f"unknown method(s) {bad or list(methods)}; methods: stack, stretch")
    run = load_run(run_dir)
    clusters = aggregate(run.nodes, run.metric, top_k=top_k, n_clusters=n_clusters, minimize=run.minimize,
                         representative=representative)
    out = Path(out_dir) if out_dir is not None else run.path / "extrapolated"
    out.mkdir(parents=True, exist_ok=True)
    targets = {s: load_spec(TARGET_FAMILY + s) for s in scales}
    target_params = {s: count_params(t) for s, t in targets.items()}
    test_key = run.test_metric()

    rows: list[dict[str, Any]] = []
    paths: list[Path] = []
    for c in clusters:
        node = c.representative
        if "spec" not in node.payload:
            raise RunError(f"node {node.id} has no 'spec' in its payload; cannot extrapolate it")
        proxy = ArchSpec.from_dict(node.payload["spec"])
        for scale in scales:
            for method in methods:
                name = f"{run.name}-c{c.index}-{method}-{scale}"
                row: dict[str, Any] = {
                    "name": name, "cluster": c.index, "cluster_size": c.size, "node_id": node.id,
                    "agent": node.agent_id, "metric": run.metric, "proxy_metric": node.metrics.get(run.metric),
                    "proxy_test_metric": node.metrics.get(test_key) if test_key else None,
                    "proxy_pattern": list(node.payload["pattern"]),
                    "pattern_summary": pattern_summary(node.payload["pattern"]), "method": method,
                    "scale": scale, "target": TARGET_FAMILY + scale, "target_params": target_params[scale],
                }
                try:
                    spec = extrapolate(proxy, target=targets[scale], method=method, tolerance=tolerance)
                except SpecError as e:  # e.g. no depth within tolerance: listed, not fatal for the others
                    rows.append({**row, "error": str(e), "path": None})
                    continue
                spec = spec.replace(name=name)
                path = spec.save(out / f"{name}.yaml")
                params = count_params(spec)
                rows.append({**row, "layers": len(spec.pattern), "params": params,
                             "params_vs_target": params / target_params[scale] - 1.0,
                             "full_pattern_summary": pattern_summary(spec.pattern), "spec_hash": spec.hash(),
                             "path": path.name, "error": None})
                paths.append(path)
    index = {"run": str(run.path), "metric": run.metric, "top_k": top_k, "n_clusters": n_clusters,
             "representative": representative, "tolerance": tolerance,
             "clusters": [_cluster_dict(c, run.metric) for c in clusters], "specs": rows}
    (out / "index.json").write_text(json.dumps(index, indent=2) + "\n")
    (out / "README.md").write_text(_readme(run.name, index))
    if not paths:
        raise RunError(f"no spec could be extrapolated within {tolerance:.0%}; see {out / 'README.md'}")
    return paths


def _cluster_dict(c: Cluster, metric: str) -> dict[str, Any]:
    return {"cluster": c.index, "size": c.size, "best": c.best, "mean": c.mean, "metric": metric,
            "representative": c.representative.id, "medoid": c.medoid.id,
            "members": [n.id for n in c.members], "consensus": c.consensus,
            "representative_pattern": list(c.representative.payload["pattern"])}


def _readme(run_name: str, index: dict[str, Any]) -> str:
    metric = index["metric"]
    lines = [f"# Extrapolated designs of {run_name}", "",
             (f"Top {index['top_k']} designs by {metric}, clustered into {index['n_clusters']} families "
             f"(compose/aggregate.py); the {index['representative']} member of each grown to Llama 3.2 "
             f"widths by stacking and stretching (models.scaling.extrapolate, parameters within "
             f"{index['tolerance']:.0%} of the target)."), "",
             "## Families", "",
             f"| cluster | size | best {metric} | mean {metric} | representative | pattern | consensus |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for c in index["clusters"]:
        lines.append(f"| c{c['cluster']} | {c['size']} | {c['best']:.4f} | {c['mean']:.4f} | {c['representative']} "
                     f"| {' '.join(c['representative_pattern'])} | {' '.join(c['consensus'])} |")
    lines += ["", "## Spec files", "",
              (f"| name | source node | proxy {metric} | pattern | method | scale | layers | params | "
               "vs target | file |"),
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in index["specs"]:
        value = f"{r['proxy_metric']:.4f}" if isinstance(r["proxy_metric"], (int, float)) else "-"
        if r["error"]:
            lines.append(f"| {r['name']} | {r['node_id']} | {value} | {r['pattern_summary']} | {r['method']} | "
                         f"{r['scale']} | - | - | - | not written: {r['error']} |")
            continue
        lines.append(f"| {r['name']} | {r['node_id']} | {value} | {r['pattern_summary']} | {r['method']} | "
                     f"{r['scale']} | {r['layers']} | {r['params']:,} | {r['params_vs_target']:+.1%} of "
                     f"{r['target_params']:,} | [{r['path']}]({r['path']}) |")
    return "\n".join(lines) + "\n"
