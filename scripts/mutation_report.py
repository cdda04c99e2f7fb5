"""Write the mutation-testing report of `make mutation` (Markdown) from `mutmut results --all true`.

Survivors that are equivalent mutants (no input can tell them apart from the original) are listed in
EQUIVALENT with the reason; the score counts them as survivors all the same.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

EQUIVALENT = {
    "x_datatype_bound_bits__mutmut_23": "2^-a -> 3^-a: 2^a is an integer K*2^c, and ceil(log2(2^a + t)) is the same "
                                         "for every t in (0, 1]",
    "x_exact_acc_range__mutmut_20": "w > 0 -> w >= 0: zero weights add 0 to the positive sum",
    "x_exact_acc_range__mutmut_32": "w < 0 -> w <= 0: zero weights add 0 to the negative sum",
    "x_exact_acc_range__mutmut_33": "w < 0 -> w < 1: integer weights below 1 are the negative ones and zero",
    "x_signed_bits_for_range__mutmut_7": "max(..., 1) -> max(...): acc_max + 1 >= 1 for every range that contains 0",
    "x_weight_fingerprint__mutmut_8": "reshape(n, -1) -> reshape(n, -2): NumPy reads any negative size as 'infer'",
    "x_min_useful_acc_bits__mutmut_21": "the product's sign is covered by the other term of min()",
    "x_min_useful_acc_bits__mutmut_22": "the product's sign is covered by the other term of min()",
    "x_min_useful_acc_bits__mutmut_28": "the product's sign is covered by the other term of max()",
    "x_min_useful_acc_bits__mutmut_30": "the product's sign is covered by the other term of max()",
}


def main() -> int:
    out = subprocess.run([sys.executable, "-m", "mutmut", "results", "--all", "true"], capture_output=True, text=True,
                         check=True).stdout
    status = {}
    for line in out.splitlines():
        name, _, state = line.strip().rpartition(": ")
        if name:
            status[name] = state
    modules = sorted({name.rsplit(".", 1)[0] for name in status})
    killed = sum(state == "killed" for state in status.values())
    lines = ["# Mutation testing", "",
             "`make mutation` (mutmut 3, configured in pyproject.toml: the modules and the fast tests that cover them).",
             "", f"All: {len(status)} mutants, {killed} killed, score {100 * killed / max(len(status), 1):.1f} %.", "",
             "| module | mutants | killed | score | by state |", "|---|---|---|---|---|"]
    for module in modules:
        states = Counter(state for name, state in status.items() if name.rsplit(".", 1)[0] == module)
        total = sum(states.values())
        lines.append(f"| `{module}` | {total} | {states.get('killed', 0)} | "
                     f"{100 * states.get('killed', 0) / max(total, 1):.1f} % | "
                     + ", ".join(f"{state} {n}" for state, n in sorted(states.items())) + " |")
    lines += ["", "## Mutants not killed", ""]
    for name, state in sorted(status.items()):
        if state != "killed":
            short = name.rsplit(".", 1)[-1]
            lines.append(f"- `{name}` ({state}): {EQUIVALENT.get(short, 'not explained: a test is missing')}")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
