"""The bitfile path: the configuration handed to FINN, and the clear stop without the Xilinx tools."""

import pytest

from flow.core.config import get_board, load_boards
from flow.core.errors import FlowError
from flow.finn.bitfile import BITFILE_TAIL_STEPS, bitfile_config, require_tools_for
from flow.finn.env import import_builder, missing_xilinx_tools
from flow.finn.steps import ESTIMATE_STEPS
from flow.options import check_outputs


@pytest.mark.parametrize("board_name", sorted(load_boards()))
def test_bitfile_steps_and_config_are_what_finns_builder_accepts(board_name, tmp_path):
    _, DataflowBuildConfig = import_builder()
    from finn.builder.build_dataflow_config import default_build_dataflow_steps
    from finn.builder.build_dataflow_steps import build_dataflow_step_lookup

    board = get_board(board_name)
    steps, extra = bitfile_config(board, ESTIMATE_STEPS)
    named = [step for step in steps if isinstance(step, str)]
    assert all(name in build_dataflow_step_lookup for name in named)
    # FINN's own steps keep FINN's order; the tail is FINN's default tail after the estimate reports
    positions = [default_build_dataflow_steps.index(name) for name in named]
    assert positions == sorted(positions)
    assert steps[-len(BITFILE_TAIL_STEPS):] == default_build_dataflow_steps[-len(BITFILE_TAIL_STEPS):]
    cfg = DataflowBuildConfig(output_dir=str(tmp_path), synth_clk_period_ns=board.clock_ns,
                              fpga_part=board.fpga_part, steps=steps, **extra)
    assert cfg._resolve_driver_platform() == board.driver_platform
    assert cfg._resolve_fpga_part() == board.fpga_part  # for an Alveo card FINN maps its board name to the part
    if board.shell_flow == "vitis_alveo":
        from finn.util.basic import alveo_default_platform

        assert cfg.vitis_platform == alveo_default_platform[board.finn_board]


def test_each_shell_has_a_board_and_alveo_boards_name_their_platform():
    boards = {name: get_board(name) for name in load_boards()}
    assert {b.shell_flow for b in boards.values()} == {"vivado_zynq", "vitis_alveo"}
    assert boards["u250"].driver_platform == "alveo" and boards["zcu104"].driver_platform == "zynq-iodma"
    assert all(bool(b.vitis_platform) == (b.shell_flow == "vitis_alveo") for b in boards.values())


def test_a_board_preset_with_a_bad_shell_is_one_clear_error(tmp_path, monkeypatch):
    import json

    import flow.core.config as config

    boards = json.loads((config.CONFIG_DIR / "boards.json").read_text())
    for edit, message in ((lambda b: b["zcu104"].update(shell_flow="vitis"), r"shell_flow 'vitis'; valid: vivado_zynq, vitis_alveo"),
                          (lambda b: b["u250"].pop("vitis_platform"), "needs a vitis_platform"),
                          (lambda b: b["zcu104"].update(platform="x"), r"unknown keys \['platform'\]")):
        edited = json.loads(json.dumps(boards))
        edit(edited)
        (tmp_path / "boards.json").write_text(json.dumps(edited))
        monkeypatch.setattr(config, "CONFIG_DIR", tmp_path)
        with pytest.raises(FlowError, match=message):
            config.load_boards()


def test_without_vivado_the_bitfile_request_names_missing_tools(tmp_path):
    if not missing_xilinx_tools():
        pytest.skip("the Xilinx tools are installed here")
    produced = [tmp_path / "summary.json"]
    with pytest.raises(FlowError, match=r"(?s)lacks: vivado.*stopped after the estimate steps.*summary.json"):
        require_tools_for("bitfile", produced)
    require_tools_for("estimates", produced)  # estimates never need them
    if missing_xilinx_tools("vitis_alveo") != missing_xilinx_tools():
        with pytest.raises(FlowError, match=r"lacks: .*vitis\b.*`v\+\+`"):
            require_tools_for("bitfile", produced, "vitis_alveo")


def test_unknown_outputs():
    with pytest.raises(FlowError, match="valid: estimates, bitfile"):
        check_outputs("bitstream")
