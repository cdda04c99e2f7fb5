"""Docker cannot run here: check statically that the image is built by the Makefile from the same pins."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_dockerfile_installs_through_the_makefile_recipe_and_pin_files():
    dockerfile = (REPO / "Dockerfile").read_text()
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^FROM python:3\.11", dockerfile, re.M)
    assert "COPY requirements/ requirements/" in dockerfile and "COPY Makefile" in dockerfile
    # the environment layer is the Makefile's own install target, so both use the same commands
    assert "make .venv/.installed" in dockerfile
    assert "STAMP := $(VENV)/.installed" in makefile
    recipe = makefile.split("$(STAMP):", 1)[1].split("\n\n", 1)[0]
    for pin_file in ("requirements/base.txt", "requirements/constraints.txt", "requirements/finn-plus.txt"):
        assert pin_file in recipe
    # no second, diverging install in the Dockerfile
    assert "pip install" not in dockerfile
    # the entry point is the Makefile's targets
    assert 'ENTRYPOINT ["make"]' in dockerfile
    for tool in ("dataset-fashion-mnist", "verilator", "iverilog"):
        assert tool in dockerfile


def test_every_requirement_is_pinned_in_the_constraints():
    constraints = {
        line.split("==")[0].lower().replace("_", "-")
        for line in (REPO / "requirements" / "constraints.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    }
    lines = [line for name in ("base.txt", "mutation.txt") for line in (REPO / "requirements" / name).read_text().splitlines()]
    for line in lines:
        line = line.split("#")[0].strip()
        if not line:
            continue
        name = re.split(r"[<>=\[!~ ]", line, maxsplit=1)[0].lower().replace("_", "-")
        assert name in constraints, f"{name} is not pinned in requirements/constraints.txt"
    assert "torch==2.13.0" in (REPO / "requirements" / "constraints.txt").read_text()
