"""Widths mode: each family's representative proxy spec at several widths, for a size ladder a CPU can train.

`aira compose extrapolate` grows a design to a Llama 3.2 preset (350M and up): nothing a CPU trains in
minutes. With `extrapolate.widths` the pipeline trains the design at the proxy's own depth instead, with
d_model set to each width, beside the baseline config at the same width and depth. Composer's stacking
and stretching at an unchanged depth leave the pattern as it is, so this is the extrapolation to a
target of the same depth; it needs a search space whose knobs follow d_model (mlp `expansion`, attention
and GLA `n_heads`), as configs/pipeline/cpu.yaml has. The families and their representatives are the ones
`aira compose extrapolate` chose (its index.json), so both modes train the same designs.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from pipeline.errors import PipelineError


def write_width_specs(search_dir: str | Path, index: str | Path, widths: list[int], out: str | Path) -> list[Path]:
    """OUT/c<cluster>-d<width>.yaml for every family in INDEX (compose's extrapolated/index.json) and width."""
    from compose.results import load_run

    index = Path(index)
    try:
        families = json.loads(index.read_text())["clusters"]
    except (OSError, ValueError, KeyError) as e:
        raise PipelineError(f"{index}: not the index.json of `aira compose extrapolate` ({e})") from None
    nodes = {n.id: n for n in load_run(search_dir).nodes}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for family in families:
        node = nodes.get(family["representative"])
        if node is None or "spec" not in node.payload:
            raise PipelineError(f"{index}: representative {family['representative']} of family c{family['cluster']} "
                                f"has no spec in the journal of {search_dir}")
        for width in widths:
            name = f"c{family['cluster']}-d{width}"
            spec = {**node.payload["spec"], "d_model": int(width), "name": name}
            path = out / f"{name}.yaml"
            path.write_text(yaml.safe_dump(spec, sort_keys=False))
            paths.append(path)
    return paths
