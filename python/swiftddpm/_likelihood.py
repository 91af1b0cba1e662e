"""The variational bound of a model's samples (Model.nll, NoiseSchedule.vlb): its options as
a ddpm_vlb_params, one call into the library, and the result, term by term.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from . import _lib
from ._arrays import float_ptr
from ._callbacks import CallbackState
from ._enums import DECODERS, OUTPUTS, VARIANCES, enum_value
from ._scalars import INT32_MAX, as_int, as_seed
from .errors import check


@dataclasses.dataclass
class Likelihood:
    """The variational bound of each sample, term by term (see ddpm.h, ddpm_schedule_vlb).

    total: (n,) L_T + Σ L_{t-1} + L_0.  prior: (n,) L_T.  terms: (n, T), L_0 at t = 0 and
    L_{t-1} at t >= 1.  unit: "bits/dim" (discretized decoder) or "nats/dim" (continuous).
    """

    total: np.ndarray
    prior: np.ndarray
    terms: np.ndarray
    unit: str

    def mean(self) -> float:
        """The bound averaged over the samples."""
        return float(self.total.mean())


def vlb_params(variance: str, decoder: str, bits: int, seed: int, prediction_type: str) -> _lib.ddpm_vlb_params:
    """A ddpm_vlb_params from the options of Model.nll and NoiseSchedule.vlb."""
    p = _lib.lib.ddpm_vlb_params_default()
    p.variance = enum_value(VARIANCES, variance, "variance")
    p.decoder = enum_value(DECODERS, decoder, "decoder")
    p.bits = as_int(bits, "bits", minimum=1, maximum=INT32_MAX)
    p.seed = as_seed(seed)
    p.prediction_type = enum_value(OUTPUTS, prediction_type, "prediction_type")
    return p


def run_vlb(state: CallbackState, params: _lib.ddpm_vlb_params, x0: np.ndarray, num_timesteps: int, decoder: str,
            call: Callable) -> Likelihood:
    """Runs call(total_ptr, prior_ptr, terms_ptr) into new arrays; re-raises a callback's exception."""
    n = x0.shape[0]
    total, prior = np.empty(n, np.float32), np.empty(n, np.float32)
    terms = np.empty((n, num_timesteps), np.float32)
    with state:  # Ctrl-C during the call is kept and raised after it
        status = call(float_ptr(total), float_ptr(prior), float_ptr(terms))
    state.raise_pending()
    check(status)
    return Likelihood(total, prior, terms, "bits/dim" if decoder == "discretized" else "nats/dim")
