"""The risk-weighted pick: probabilities, and what it prefers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from profiler.risk import RiskParams, expected_value, normal_cdf, p_meets


def test_normal_cdf_matches_erf() -> None:
    z = np.linspace(-5, 5, 101)
    exact = [0.5 * (1 + math.erf(x / math.sqrt(2))) for x in z]
    assert np.allclose(normal_cdf(z), exact, atol=2e-7)


def test_on_target_is_a_coin_toss_and_far_inside_is_safe() -> None:
    rp = RiskParams(sigma_ttft=0.3, sigma_itl=0.1, aversion=2.0)
    p = p_meets([100.0, 50.0], [10.0, 10.0], ttft_target=100.0, itl_target=20.0, params=rp)
    assert p[0] == pytest.approx(0.5, abs=1e-3)
    assert p[1] > 0.98
    # e2e targets price TTFT + OSL x ITL as one figure.
    e2e = p_meets(
        [100.0], [10.0], ttft_target=None, itl_target=None, e2e_target=1100.0, osl=100, params=rp
    )
    assert e2e[0] == pytest.approx(0.5, abs=1e-3)


def test_a_safe_deployment_beats_a_slightly_faster_one_on_the_edge() -> None:
    rp = RiskParams(sigma_ttft=0.3, sigma_itl=0.1, aversion=2.0)
    tput = np.asarray([1000.0, 900.0])
    itl = np.asarray([29.5, 20.0])  # target 30: the first is predicted just inside it
    p = p_meets([100.0, 100.0], itl, ttft_target=1000.0, itl_target=30.0, params=rp)
    assert int(np.argmax(expected_value(tput, p, rp))) == 1
    # Without uncertainty the plain rule (fastest predicted-feasible) comes back.
    sharp = RiskParams(sigma_ttft=0.0, sigma_itl=0.0, aversion=1.0)
    p0 = p_meets([100.0, 100.0], itl, ttft_target=1000.0, itl_target=30.0, params=sharp)
    assert int(np.argmax(expected_value(tput, p0, sharp))) == 0


def test_parameters_come_from_the_calibration_with_defaults() -> None:
    assert RiskParams.from_calibration({}) == RiskParams()
    rp = RiskParams.from_calibration({"decision": {"sigma_ttft": 0.4, "aversion": 3}})
    assert (rp.sigma_ttft, rp.sigma_itl, rp.aversion) == (0.4, RiskParams().sigma_itl, 3.0)
