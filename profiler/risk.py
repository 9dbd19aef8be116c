"""Choosing under the estimator's uncertainty: expected throughput of a deployment that must
meet an SLA.

A prediction a few percent inside a target is a coin toss on real hardware; one half inside it
is safe. Rather than hide a margin in the model (which would make every figure it reports
wrong), the pick weighs each candidate's predicted tokens/s/GPU by the probability that it
meets the targets, taking the estimator's error as log-normal with the spreads below, raised to
a risk aversion (a missed SLA costs more than a slower deployment gains). The three numbers are
chosen by ``bench/decision`` on measured data of models the fit never saw and stored in
``data/calibration.json`` (``decision``); the reported predictions stay unbiased.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

F64 = NDArray[np.float64]


@dataclass(frozen=True)
class RiskParams:
    """Log-normal spread of TTFT and ITL (TPOT) predictions, and the risk aversion."""

    sigma_ttft: float = 0.5
    sigma_itl: float = 0.1
    aversion: float = 2.0

    @staticmethod
    def from_calibration(cal: dict[str, Any]) -> RiskParams:
        d = cal.get("decision") or {}
        base = RiskParams()
        return RiskParams(
            sigma_ttft=float(d.get("sigma_ttft", base.sigma_ttft)),
            sigma_itl=float(d.get("sigma_itl", base.sigma_itl)),
            aversion=float(d.get("aversion", base.aversion)),
        )

    def to_json(self) -> dict[str, float]:
        return {
            "sigma_ttft": self.sigma_ttft,
            "sigma_itl": self.sigma_itl,
            "aversion": self.aversion,
        }


def normal_cdf(z: ArrayLike) -> F64:
    """Standard normal CDF, vectorised (Abramowitz & Stegun 7.1.26, |error| < 1.5e-7)."""
    x = np.asarray(z, dtype=np.float64) / np.sqrt(2.0)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (
        0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429)))
    )
    erf = 1.0 - poly * np.exp(-a * a)
    out: F64 = 0.5 * (1.0 + np.sign(x) * erf)
    return out


def _p_within(pred: ArrayLike, target: float | None, sigma: float) -> F64:
    p = np.asarray(pred, dtype=np.float64)
    if target is None:
        return np.ones_like(p)
    ratio = np.log(np.maximum(target, 1e-12) / np.maximum(p, 1e-12))
    if sigma <= 0:
        sharp: F64 = (ratio >= 0).astype(np.float64)
        return sharp
    return normal_cdf(ratio / sigma)


def p_meets(
    ttft_ms: ArrayLike,
    itl_ms: ArrayLike,
    *,
    ttft_target: float | None,
    itl_target: float | None,
    e2e_target: float | None = None,
    osl: int = 1,
    params: RiskParams,
) -> F64:
    """Probability that a deployment predicted at (``ttft_ms``, ``itl_ms``) meets the SLA."""
    if e2e_target is not None:
        e2e = np.asarray(ttft_ms, dtype=np.float64) + osl * np.asarray(itl_ms, dtype=np.float64)
        return _p_within(e2e, e2e_target, params.sigma_itl)
    return _p_within(ttft_ms, ttft_target, params.sigma_ttft) * _p_within(
        itl_ms, itl_target, params.sigma_itl
    )


def expected_value(value: ArrayLike, p: ArrayLike, params: RiskParams) -> F64:
    """What the pick maximises: predicted value weighted by P(meets SLA) ** aversion."""
    out: F64 = np.asarray(value, dtype=np.float64) * np.power(
        np.asarray(p, dtype=np.float64), params.aversion
    )
    return out
