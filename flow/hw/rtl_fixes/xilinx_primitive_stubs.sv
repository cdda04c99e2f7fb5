// Blackbox stubs of the Xilinx primitives that FINN's RTL instantiates directly.
//
// Why: the slang frontend (read_slang) must know every instantiated module's ports and
// parameters at elaboration time. Yosys's own primitive library, loaded with
// `read_verilog -lib`, gives ports but no parameters, so FINN's parameter overrides
// (e.g. `DSP48E1 #(.USE_DPORT("TRUE"))`) are rejected. flow/synth.py passes each module
// below with `--blackboxed-module NAME`: the instances are imported as black-box cells
// of the same type, which synth_xilinx then maps/counts as the real primitive.
// Port and parameter lists follow the Xilinx UNISIM interfaces (as in Yosys's
// techlibs/xilinx/cells_sim.v and cells_xtra.v). No behaviour is modelled here.

module LUT6_2 #(
    parameter [63:0] INIT = 64'h0
) (
    output O6, output O5,
    input I0, input I1, input I2, input I3, input I4, input I5
);
endmodule

module DSP48E1 #(
    parameter integer ACASCREG = 1,
    parameter integer ADREG = 1,
    parameter integer ALUMODEREG = 1,
    parameter integer AREG = 1,
    parameter AUTORESET_PATDET = "NO_RESET",
    parameter A_INPUT = "DIRECT",
    parameter integer BCASCREG = 1,
    parameter integer BREG = 1,
    parameter B_INPUT = "DIRECT",
    parameter integer CARRYINREG = 1,
    parameter integer CARRYINSELREG = 1,
    parameter integer CREG = 1,
    parameter integer DREG = 1,
    parameter integer INMODEREG = 1,
    parameter integer MREG = 1,
    parameter integer OPMODEREG = 1,
    parameter integer PREG = 1,
    parameter SEL_MASK = "MASK",
    parameter SEL_PATTERN = "PATTERN",
    parameter USE_DPORT = "FALSE",
    parameter USE_MULT = "MULTIPLY",
    parameter USE_PATTERN_DETECT = "NO_PATDET",
    parameter USE_SIMD = "ONE48",
    parameter [47:0] MASK = 48'h3FFFFFFFFFFF,
    parameter [47:0] PATTERN = 48'h000000000000,
    parameter [3:0] IS_ALUMODE_INVERTED = 4'b0,
    parameter [0:0] IS_CARRYIN_INVERTED = 1'b0,
    parameter [0:0] IS_CLK_INVERTED = 1'b0,
    parameter [4:0] IS_INMODE_INVERTED = 5'b0,
    parameter [6:0] IS_OPMODE_INVERTED = 7'b0
) (
    output [29:0] ACOUT, output [17:0] BCOUT, output CARRYCASCOUT, output [3:0] CARRYOUT,
    output MULTSIGNOUT, output OVERFLOW, output [47:0] P, output PATTERNBDETECT,
    output PATTERNDETECT, output [47:0] PCOUT, output UNDERFLOW,
    input [29:0] A, input [29:0] ACIN, input [3:0] ALUMODE, input [17:0] B, input [17:0] BCIN,
    input [47:0] C, input CARRYCASCIN, input CARRYIN, input [2:0] CARRYINSEL,
    input CEA1, input CEA2, input CEAD, input CEALUMODE, input CEB1, input CEB2, input CEC,
    input CECARRYIN, input CECTRL, input CED, input CEINMODE, input CEM, input CEP,
    input CLK, input [24:0] D, input [4:0] INMODE, input MULTSIGNIN, input [6:0] OPMODE,
    input [47:0] PCIN, input RSTA, input RSTALLCARRYIN, input RSTALUMODE, input RSTB,
    input RSTC, input RSTCTRL, input RSTD, input RSTINMODE, input RSTM, input RSTP
);
endmodule

module DSP48E2 #(
    parameter integer ACASCREG = 1,
    parameter integer ADREG = 1,
    parameter integer ALUMODEREG = 1,
    parameter AMULTSEL = "A",
    parameter integer AREG = 1,
    parameter AUTORESET_PATDET = "NO_RESET",
    parameter AUTORESET_PRIORITY = "RESET",
    parameter A_INPUT = "DIRECT",
    parameter integer BCASCREG = 1,
    parameter BMULTSEL = "B",
    parameter integer BREG = 1,
    parameter B_INPUT = "DIRECT",
    parameter integer CARRYINREG = 1,
    parameter integer CARRYINSELREG = 1,
    parameter integer CREG = 1,
    parameter integer DREG = 1,
    parameter integer INMODEREG = 1,
    parameter [3:0] IS_ALUMODE_INVERTED = 4'b0000,
    parameter [0:0] IS_CARRYIN_INVERTED = 1'b0,
    parameter [0:0] IS_CLK_INVERTED = 1'b0,
    parameter [4:0] IS_INMODE_INVERTED = 5'b00000,
    parameter [8:0] IS_OPMODE_INVERTED = 9'b000000000,
    parameter [0:0] IS_RSTALLCARRYIN_INVERTED = 1'b0,
    parameter [0:0] IS_RSTALUMODE_INVERTED = 1'b0,
    parameter [0:0] IS_RSTA_INVERTED = 1'b0,
    parameter [0:0] IS_RSTB_INVERTED = 1'b0,
    parameter [0:0] IS_RSTCTRL_INVERTED = 1'b0,
    parameter [0:0] IS_RSTC_INVERTED = 1'b0,
    parameter [0:0] IS_RSTD_INVERTED = 1'b0,
    parameter [0:0] IS_RSTINMODE_INVERTED = 1'b0,
    parameter [0:0] IS_RSTM_INVERTED = 1'b0,
    parameter [0:0] IS_RSTP_INVERTED = 1'b0,
    parameter [47:0] MASK = 48'h3FFFFFFFFFFF,
    parameter integer MREG = 1,
    parameter integer OPMODEREG = 1,
    parameter [47:0] PATTERN = 48'h000000000000,
    parameter PREADDINSEL = "A",
    parameter integer PREG = 1,
    parameter [47:0] RND = 48'h000000000000,
    parameter SEL_MASK = "MASK",
    parameter SEL_PATTERN = "PATTERN",
    parameter USE_MULT = "MULTIPLY",
    parameter USE_PATTERN_DETECT = "NO_PATDET",
    parameter USE_SIMD = "ONE48",
    parameter USE_WIDEXOR = "FALSE",
    parameter XORSIMD = "XOR24_48_96"
) (
    output [29:0] ACOUT, output [17:0] BCOUT, output CARRYCASCOUT, output [3:0] CARRYOUT,
    output MULTSIGNOUT, output OVERFLOW, output [47:0] P, output PATTERNBDETECT,
    output PATTERNDETECT, output [47:0] PCOUT, output UNDERFLOW, output [7:0] XOROUT,
    input [29:0] A, input [29:0] ACIN, input [3:0] ALUMODE, input [17:0] B, input [17:0] BCIN,
    input [47:0] C, input CARRYCASCIN, input CARRYIN, input [2:0] CARRYINSEL,
    input CEA1, input CEA2, input CEAD, input CEALUMODE, input CEB1, input CEB2, input CEC,
    input CECARRYIN, input CECTRL, input CED, input CEINMODE, input CEM, input CEP,
    input CLK, input [26:0] D, input [4:0] INMODE, input MULTSIGNIN, input [8:0] OPMODE,
    input [47:0] PCIN, input RSTA, input RSTALLCARRYIN, input RSTALUMODE, input RSTB,
    input RSTC, input RSTCTRL, input RSTD, input RSTINMODE, input RSTM, input RSTP
);
endmodule
