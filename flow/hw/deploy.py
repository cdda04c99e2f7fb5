"""PYNQ deployment folder of a build: the driver settings of finn-plus' runtime driver
(``finn-plus-driver``), validation data and an on-board check script.

Without a bitfile (no Vivado) the folder is complete except for ``bitfile/``; with a bitfile build,
FINN's own deployment package is the one to copy, and this folder adds the validation data.
The I/O description follows FINN's ``io_shape_dict`` (datatypes, normal/folded/packed shapes), derived
here from the first and last HW layer of the final graph, since an estimate-only graph has no IODMAs.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from finn.util.data_packing import finnpy_to_packed_bytearray
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import getCustomOp

from flow.core.config import Board

# a Zynq bitstream, or the container of an Alveo card's (Vitis)
BITFILE_PATTERNS = ("*.bit", "*.xclbin")


def bitfiles_in(folder: Path) -> list[Path]:
    """The bitfiles in ``folder``, Zynq bitstreams first."""
    return [path for pattern in BITFILE_PATTERNS for path in sorted(Path(folder).glob(pattern))]


VALIDATE_SCRIPT = '''"""On-board check: run the accelerator on validation/input.npy and compare with expected_output.npy."""
import json
import sys
from pathlib import Path

import numpy as np

BITFILE_PATTERNS = @BITFILE_PATTERNS@


def count_mismatches(execute, inputs, expected) -> int:
    """How many of ``inputs`` (batch first) give an output other than ``expected`` under ``execute``."""
    mismatches = 0
    for x, y in zip(inputs, expected):
        out = np.asarray(execute(x[None]))
        mismatches += int(out.size != y.size or not np.array_equal(out.reshape(y.shape), y))
    return mismatches


def main() -> int:
    from finn_plus_driver import get_driver_class

    here = Path(__file__).resolve().parent
    settings = json.loads((here / "driver" / "settings.json").read_text())["driver_information"]
    bitfiles = [path for pattern in BITFILE_PATTERNS for path in sorted((here / "bitfile").glob(pattern))]
    if not bitfiles:
        print("no bitfile in " + str(here / "bitfile") + ": build with the bitfile outputs (make build OUTPUTS=bitfile) first")
        return 1
    overlay = get_driver_class(settings["driver_type"])(
        bitfile_name=str(bitfiles[0]), platform=settings["platform"], io_shape_dict=settings["io_shape_dict"],
        fclk_mhz=settings.get("fclk_mhz", 100.0), runtime_weight_dir=str(here / "driver" / "runtime_weights"))
    inputs = np.load(here / "validation" / "input.npy")
    expected = np.load(here / "validation" / "expected_output.npy")
    mismatches = count_mismatches(overlay.execute, inputs, expected)
    print(f"{len(inputs) - mismatches}/{len(inputs)} outputs match the FINN Python execution")
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
'''


def io_shape_dict(model) -> dict:
    """FINN's driver I/O description for a final (single-partition) FINN graph."""
    first = getCustomOp(model.find_consumer(model.graph.input[0].name))
    last = getCustomOp(model.find_producer(model.graph.output[0].name))

    def packed_shape(folded, dtype):
        return list(finnpy_to_packed_bytearray(np.zeros(folded, dtype=np.float32), dtype, reverse_endian=True,
                                               reverse_inner=True).shape)

    idt = model.get_tensor_datatype(model.graph.input[0].name)
    odt = model.get_tensor_datatype(model.graph.output[0].name)
    ishape_folded = list(first.get_folded_input_shape())
    oshape_folded = list(last.get_folded_output_shape())
    return {
        "idt": [idt.get_canonical_name() if hasattr(idt, "get_canonical_name") else idt.name],
        "idma_names": ["idma0"],
        "ishape_normal": [list(model.get_tensor_shape(model.graph.input[0].name))],
        "ishape_folded": [ishape_folded],
        "ishape_packed": [packed_shape(ishape_folded, idt)],
        "odt": [odt.get_canonical_name() if hasattr(odt, "get_canonical_name") else odt.name],
        "odma_names": ["odma0"],
        "oshape_normal": [list(model.get_tensor_shape(model.graph.output[0].name))],
        "oshape_folded": [oshape_folded],
        "oshape_packed": [packed_shape(oshape_folded, odt)],
        "num_inputs": 1,
        "num_outputs": 1,
        "number_of_external_weights": 0,
        "external_weights_input_shapes": {},
    }


def write_deployment(final_model_path: Path, graph_inputs: np.ndarray, finn_outputs: np.ndarray, deploy_dir: Path,
                     board: Board, bitfile: Path | None = None) -> Path:
    """Write ``deploy_dir`` (driver settings for ``board``'s platform, validation data, check script); returns
    its path.

    ``graph_inputs`` are inputs of the final graph (integers of its input datatype) and ``finn_outputs``
    the graph's Python-execution outputs for them, batch first.
    """
    model = ModelWrapper(str(final_model_path))
    shapes = io_shape_dict(model)
    settings = {
        "driver_information": {
            "driver_type": "FINNDMAOverlay",
            "io_shape_dict": shapes,
            "external_weights": False,
            "runtime_weights": False,
            "platform": board.driver_platform,
            "fclk_mhz": 1e3 / board.clock_ns,
        },
        "experiment_information": {},
    }
    if deploy_dir.exists():
        shutil.rmtree(deploy_dir)
    (deploy_dir / "driver").mkdir(parents=True)
    (deploy_dir / "validation").mkdir()
    (deploy_dir / "bitfile").mkdir()
    (deploy_dir / "driver" / "settings.json").write_text(json.dumps(settings, indent=2))
    normal = tuple(shapes["ishape_normal"][0])
    inputs = np.stack([np.asarray(x, dtype=np.float32).reshape(normal) for x in graph_inputs])
    outputs = np.stack([np.asarray(y).reshape(shapes["oshape_normal"][0]) for y in finn_outputs])
    np.save(deploy_dir / "validation" / "input.npy", inputs)
    np.save(deploy_dir / "validation" / "expected_output.npy", outputs)
    (deploy_dir / "validate.py").write_text(VALIDATE_SCRIPT.replace("@BITFILE_PATTERNS@", repr(BITFILE_PATTERNS)))
    if bitfile is not None and Path(bitfile).is_file():
        shutil.copy(bitfile, deploy_dir / "bitfile" / Path(bitfile).name)
    where = ("On the host of the Alveo card (XRT and PYNQ installed, the card flashed with the shell of "
             f"`{board.vitis_platform}`)" if board.driver_platform == "alveo" else "On the board (PYNQ image)")
    (deploy_dir / "README.md").write_text(
        f"# Deployment package ({board.name})\n\n{where}: `pip install finn-plus-driver==1.6.1`, then "
        "`sudo python3 validate.py` runs the accelerator on `validation/input.npy` and compares with the "
        "FINN Python execution in `validation/expected_output.npy`.\n"
        + ("" if any((deploy_dir / "bitfile").iterdir()) else
           "\n`bitfile/` is empty: this build had no Xilinx tools. Rebuild with `OUTPUTS=bitfile` on a machine "
           "with them.\n")
    )
    return deploy_dir
