"""Where a value may lie: `ParamRange`, the one range object of genes and strategy parameters.

Five kinds, modelled on optuna's distributions and Ray PBT's `hyperparam_mutations`:

| kind      | values                          | sampled                  | explored (PBT)            |
|-----------|---------------------------------|--------------------------|---------------------------|
| `log`     | floats in [low, high], low > 0  | log-uniformly            | x1.2 / x0.8, clipped      |
| `float`   | floats in [low, high]           | uniformly                | x1.2 / x0.8, clipped      |
| `int`     | integers in [low, high]         | uniformly                | to a neighbour (+-1)      |
| `ordered` | one of `choices`, in order      | uniformly                | to a neighbour choice     |
| `choice`  | one of `choices`                | uniformly                | to a neighbour choice     |

(Ray PBT shifts every categorical value to a list neighbour; `ordered` also requires the choices
to increase.) Sampled floats keep `SIG_DIGITS` significant digits (`round_sig`), so the value a
decision line prints is the exact value kept. Exploring lives in `evolve.operators.variation`.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

PARAM_KINDS = ("float", "log", "int", "ordered", "choice")
CHOICE_KINDS = ("ordered", "choice")
SCALED_KINDS = ("float", "log")   # explored by x1.2 / x0.8; the others step to a neighbour
SIG_DIGITS = 6   # 6 significant digits: 1e-6 relative, far below any lr/alpha effect we can measure


def round_sig(x: float, digits: int = SIG_DIGITS) -> float:
    """`x` rounded to `digits` significant digits (0 and non-finite values unchanged)."""
    if x == 0 or not math.isfinite(x):
        return float(x)
    return float(f"{x:.{digits - 1}e}")


@dataclass(frozen=True)
class ParamRange:
    """Where evolution may move one gene or strategy parameter.

    `kind` (see the module table): "float", "log" (low > 0), "int" use [low, high]; "ordered" and
    "choice" use `choices` (low/high unused).
    """

    low: float = 0.0
    high: float = 1.0
    kind: str = "float"
    choices: tuple[Any, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in PARAM_KINDS:
            raise ValueError(f"ParamRange kind {self.kind!r} is unknown; use one of {PARAM_KINDS}")
        if self.kind in CHOICE_KINDS:
            if not self.choices:
                raise ValueError(f"ParamRange kind {self.kind!r} needs a non-empty choices tuple")
            object.__setattr__(self, "choices", tuple(self.choices))
            if self.kind == "ordered" and list(self.choices) != sorted(set(self.choices)):
                raise ValueError(f"ParamRange kind 'ordered' needs increasing choices, got "
                                 f"{list(self.choices)}")
        elif not self.low <= self.high:
            raise ValueError(f"ParamRange low {self.low} > high {self.high}; swap them")
        if self.kind == "log" and self.low <= 0:
            raise ValueError(f"ParamRange kind 'log' needs low > 0, got {self.low}")

    @property
    def single(self) -> bool:
        """True when the range holds one value (nothing to sample, explore or log)."""
        return len(self.choices) == 1 if self.kind in CHOICE_KINDS else self.low == self.high

    def steps(self) -> Sequence[Any]:
        """The values a neighbour move walks along: the choices, or every integer of an int range."""
        if self.kind in CHOICE_KINDS:
            return self.choices
        if self.kind == "int":
            return range(int(self.low), int(self.high) + 1)
        raise ValueError(f"a {self.kind} range has no neighbours; it is scaled")

    def sample(self, rng: random.Random) -> Any:
        """One value drawn from the range (log-uniformly for `log`), floats at `SIG_DIGITS`."""
        if self.kind in CHOICE_KINDS:
            return rng.choice(list(self.choices))
        if self.kind == "int":
            return rng.randint(int(self.low), int(self.high))
        if self.kind == "log":
            return round_sig(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))
        return round_sig(rng.uniform(self.low, self.high))

    def contains(self, value: Any) -> bool:
        """True if `value` lies in the range (is one of the choices)."""
        if self.kind in CHOICE_KINDS:
            return value in self.choices
        if self.kind == "int" and (isinstance(value, bool) or int(value) != value):
            return False
        return self.low <= value <= self.high

    def check(self, name: str, value: Any) -> Any:
        """`value` if it is in range, else a one-line ValueError naming `name` and the range."""
        try:
            ok = self.contains(value)
        except TypeError:
            ok = False
        if not ok:
            raise ValueError(f"{name} = {value!r} is out of range; {self.describe()}")
        return int(value) if self.kind == "int" else value

    def describe(self) -> str:
        if self.kind in CHOICE_KINDS:
            return f"choose one of {', '.join(map(str, self.choices))}"
        return f"valid: {self.kind} in [{self.low:g}, {self.high:g}]"
