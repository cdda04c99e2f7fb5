"""Where Yosys puts a Thresholding_rtl layer's threshold memory, by depth and width: one channel per PE step
(PE=1), one threshold per channel (a single pipeline stage, so one memory of depth = channels, P bits wide),
synthesized for xc7 like the resource model's calibration grid. Prints and writes a JSON table of LUT / FF /
BRAM18 per (depth, P): the memory is LUT logic up to 8,192 bits and a BRAM above, so LUT is not monotone in P
across that boundary.

    .venv/bin/python scripts/probe_threshold_memory.py [out.json]
"""

import sys
from pathlib import Path

from flow.core.config import WORK_ROOT
from flow.core.resource_model import LayerShape
from flow.hw.calibration import synthesize_grid, write_probe

DEPTHS = (64, 128, 256, 512, 1024, 2048)
ACC_BITS = (12, 16, 24, 32)


def main() -> int:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("hw_reports/threshold_memory_probe/probe.json")
    points = [LayerShape("thresholding", 1, p, channels=depth, thresholds=1) for depth in DEPTHS for p in ACC_BITS]
    results = synthesize_grid(points, WORK_ROOT / "probe_threshold_memory", WORK_ROOT / "synth_cache", workers=1)
    rows = [{"depth": point.channels, "acc_bits": point.acc_bits, "memory_bits": point.channels * point.acc_bits,
             **{key: result.get(key) for key in ("lut_synth", "ff_synth", "lutram_synth", "bram18_synth")}}
            for point, result in zip(points, results)]
    print(write_probe(rows, out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
