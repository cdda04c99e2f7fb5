# The flow's environment, built by the same Makefile recipe and pin files as a local `make setup`.
#   docker build -t a2q-finn .
#   docker run --rm -v $PWD/hw_reports:/workspace/a2q-finn/hw_reports a2q-finn build MODEL=linear P=16
# With the Xilinx tools (for bitfiles), mount an installation and point FINN's variables at it, as FINN's
# own docker flow does:
#   docker run --rm -v /tools/Xilinx:/tools/Xilinx -e XILINX_VIVADO=/tools/Xilinx/Vivado/2024.2 \
#       -e XILINX_HLS=/tools/Xilinx/Vitis_HLS/2024.2 -e PATH=/tools/Xilinx/Vivado/2024.2/bin:... a2q-finn build ...
FROM python:3.11-slim-bookworm

RUN apt-get update \
 && apt-get install -y --no-install-recommends make git dataset-fashion-mnist iverilog verilator \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /workspace/a2q-finn
# Only the pin files and the Makefile first, so the (large) environment layer is cached across code changes.
COPY Makefile ./
COPY requirements/ requirements/
RUN make .venv/.installed PYTHON=python3

COPY . .
RUN make .venv/.project PYTHON=python3
ENTRYPOINT ["make"]
CMD ["build"]
