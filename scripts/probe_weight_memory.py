"""Where Yosys puts an MVAU's weight memory (FINN's memstream, its wrapper synthesized alone), by stream width
and depth: prints and writes a JSON table of LUT / LUTRAM / FF / BRAM18 per shape. Yosys builds a shallow
memory that would fill few BRAM18s of distributed RAM (LUTRAM), the others of block RAM (the rule:
flow.core.resource_model.weight_memory_lutram_luts); the streamer's registers follow the stream width either
way.

    .venv/bin/python scripts/probe_weight_memory.py [out.json]
"""

import sys
from pathlib import Path

from flow.core.config import WORK_ROOT
from flow.hw.calibration import WEIGHT_MEMORY_SHAPES, synthesize_grid, write_probe


def main() -> int:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("hw_reports/weight_memory_probe/probe.json")
    points = sorted(WEIGHT_MEMORY_SHAPES, key=lambda s: (s.depth * s.pe * s.simd * s.weight_bits, s.depth))
    results = synthesize_grid(points, WORK_ROOT / "probe_weight_memory", WORK_ROOT / "synth_cache", workers=2,
                              weight_memory_in_context=False)
    rows = [{"width": p.pe * p.simd * p.weight_bits, "depth": p.depth, "memory_bits": p.pe * p.simd * p.weight_bits * p.depth,
             **{key: result.get(key) for key in ("lut_synth", "lutram_synth", "ff_synth", "bram18_synth")}}
            for p, result in zip(points, results)]
    print(write_probe(rows, out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
