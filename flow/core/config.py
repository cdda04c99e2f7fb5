"""Build configuration data in ``build_configs/``: board presets, per-model defaults, foldings.

Everything is JSON, validated when loaded; errors name the file, the bad key and what is valid.
``build_configs/`` ships inside the ``flow`` package (``flow/build_configs`` links to it in a checkout),
so an installed ``a2q-flow`` finds it too. Builds write below the working directory
(:data:`REPORTS_ROOT`, :data:`WORK_ROOT`, :data:`CHECKPOINT_ROOT`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from flow.core.errors import FlowError

CONFIG_DIR = Path(__file__).resolve().parent.parent / "build_configs"
REPORTS_ROOT = Path("hw_reports")
WORK_ROOT = Path("build")
CHECKPOINT_ROOT = Path("checkpoints")
BOARD_KEYS = {"fpga_part", "finn_board", "family", "clock_ns", "shell_flow", "resources"}
# FINN's two shells: a Zynq SoC with the PYNQ image (Vivado), an Alveo card through Vitis (needs a platform)
SHELL_FLOWS = ("vivado_zynq", "vitis_alveo")
RESOURCE_KEYS = {"lut", "ff", "bram18", "uram", "dsp"}
MODEL_DEFAULT_KEYS = {"board", "folding", "target_fps", "acc_mode", "standalone_thresholds", "synth", "rtlsim"}


def read_json(path: Path, what: str) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FlowError(f"{what} {path} does not exist")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise FlowError(f"{what} {path} is not valid JSON: {err}") from err
    if not isinstance(data, dict):
        raise FlowError(f"{what} {path} must hold a JSON object")
    return data


def load_boards() -> dict[str, dict]:
    boards = read_json(CONFIG_DIR / "boards.json", "board presets")
    for name, board in boards.items():
        missing = BOARD_KEYS - set(board)
        if missing:
            raise FlowError(f"board preset {name!r} in boards.json lacks {sorted(missing)}")
        unknown = set(board) - BOARD_KEYS - {"vitis_platform"}
        if unknown:
            raise FlowError(f"board preset {name!r} in boards.json has unknown keys {sorted(unknown)}; "
                            f"valid: {sorted(BOARD_KEYS | {'vitis_platform'})}")
        if board["shell_flow"] not in SHELL_FLOWS:
            raise FlowError(f"board preset {name!r}: shell_flow {board['shell_flow']!r}; valid: {', '.join(SHELL_FLOWS)}")
        if (board["shell_flow"] == "vitis_alveo") != bool(board.get("vitis_platform")):
            raise FlowError(f"board preset {name!r}: a vitis_alveo board needs a vitis_platform, a Zynq board has none")
        if set(board["resources"]) != RESOURCE_KEYS:
            raise FlowError(f"board preset {name!r}: resources must have exactly {sorted(RESOURCE_KEYS)}")
    return boards


@dataclass(frozen=True)
class Board:
    """A board preset: FPGA part, FINN's board name, device family, clock period (ns), FINN's shell
    (``vivado_zynq`` or ``vitis_alveo`` with its Vitis platform) and the resources available (``lut``,
    ``ff``, ``bram18``, ``uram``, ``dsp``)."""

    name: str
    fpga_part: str
    finn_board: str
    family: str
    clock_ns: float
    shell_flow: str
    resources: dict
    vitis_platform: str | None = None

    @property
    def driver_platform(self) -> str:
        """The platform of FINN's PYNQ driver for this board: ``alveo`` or ``zynq-iodma``."""
        return "alveo" if self.shell_flow == "vitis_alveo" else "zynq-iodma"


def get_board(name: str) -> Board:
    boards = load_boards()
    if name not in boards:
        raise FlowError(f"unknown board {name!r}; valid: {', '.join(sorted(boards))}", option="board")
    return Board(name=name, vitis_platform=boards[name].get("vitis_platform"),
                 **{key: boards[name][key] for key in BOARD_KEYS})


def model_defaults(model: str) -> dict:
    """Per-model build defaults from ``build_configs/models.json`` (empty for unknown models)."""
    defaults = read_json(CONFIG_DIR / "models.json", "model build defaults").get(model, {})
    unknown = set(defaults) - MODEL_DEFAULT_KEYS
    if unknown:
        raise FlowError(f"models.json entry {model!r} has unknown keys {sorted(unknown)}; valid: {sorted(MODEL_DEFAULT_KEYS)}")
    return defaults


def resolve_folding(folding: str) -> Path:
    """A folding given as a file path, or as a name of ``build_configs/folding/<name>.json``."""
    path = Path(folding)
    if path.suffix == ".json" or path.exists():
        if not path.is_file():
            raise FlowError(f"folding file {path} does not exist", option="folding")
        read_json(path, "folding config")
        return path.resolve()
    named = CONFIG_DIR / "folding" / f"{folding}.json"
    if not named.is_file():
        available = sorted(p.stem for p in (CONFIG_DIR / "folding").glob("*.json"))
        raise FlowError(f"unknown folding {folding!r}; give a JSON file or one of: {', '.join(available)}",
                        option="folding")
    read_json(named, "folding config")
    return named
