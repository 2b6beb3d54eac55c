"""Tactic selection (`kiln compile --tune`), in the spirit of TensorRT: where a layer has several
correct kernels (its tactics, see codegen.ops.Tactics), time each on this machine and keep the fastest.

Build i uses every layer's i-th tactic (a layer with fewer keeps its default; build 0 is the
default build), so k builds time all of them, k being the most tactics any layer has; each build is the profiling build of
`kiln bench --layers`, and a layer's time is its median over the runs. A layer's time depends a
little on what ran before it (caches), which differs between builds: the choice is per layer,
greedy. The choices and their times go into the report (NAME.json "tactics"), and
compile(tactics=...) / `--tactics FILE` replays them without timing: the same C bytes.
"""
from __future__ import annotations

import json
from pathlib import Path

from .errors import KilnError


def tactic_names(tactics) -> dict[str, str]:
    """{layer: tactic} from None, such a mapping, a report (NAME.json's dict, whose "tactics" are
    {layer: {"chosen": tactic, ...}}), or the path of a JSON file holding either."""
    if tactics is None:
        return {}
    if isinstance(tactics, (str, Path)):
        try:
            tactics = json.loads(Path(tactics).read_text())
        except OSError as err:
            raise KilnError(f"cannot read the tactics file {str(tactics)!r}: {err.strerror}.") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise KilnError(f"the tactics file {str(tactics)!r} is not JSON ({err}).") from None
    if isinstance(tactics, dict) and "layers" in tactics and isinstance(tactics.get("tactics"), dict):
        tactics = tactics["tactics"]            # a NAME.json report
    if not isinstance(tactics, dict):
        raise KilnError("tactics must map layer names to tactic names (or be a NAME.json report).")
    names = {}
    for layer, choice in tactics.items():
        name = choice.get("chosen") if isinstance(choice, dict) else choice
        if not isinstance(name, str):
            raise KilnError(f"the tactic of layer {layer!r} must be a tactic name, not {json.dumps(choice)}.")
        names[layer] = name
    return names


def tune(model, cflags=None, measure=None, progress=None, **options):
    """Compile `model` (compile()'s options) with each layer's fastest tactic on this machine.
    measure(compiled, cflags) -> every layer's time in ms (default: bench.layer_times's medians);
    progress(message) is told of each build."""
    from .bench import layer_times
    from .compiler import compile
    measure = measure or (lambda compiled, flags: layer_times(compiled, flags, shipped=False)[0])
    base = compile(model, **options)
    candidates = {layer: t["candidates"] for layer, t in base.tactics.items()}
    builds = max(map(len, candidates.values()), default=0)
    ms = {layer: {} for layer in candidates}
    for i in range(builds):
        pick = {layer: names[i] for layer, names in candidates.items() if i < len(names)}
        if progress:
            progress(f"tactics build {i + 1}/{builds}: {len(pick)} layer(s)")
        trial = compile(model, tactics=pick, **options)
        times = measure(trial, cflags)
        step = {node.name: s for s, node in enumerate(trial.graph.nodes)}
        for layer, tactic in pick.items():
            ms[layer][tactic] = round(float(times[step[layer]]), 6)     # ms to the ns
    chosen = {layer: min(times, key=times.get) for layer, times in ms.items()}
    tuned = compile(model, tactics=chosen, **options)
    tuned.tactic_ms = ms
    return tuned
