"""Resolve the point-reflection ambiguity of a spectrum-based PSF estimate.

A PSF and its point reflection (all odd Zernike terms -- coma, trefoil --
negated) have the same power spectrum, so the network cannot tell them apart.
They differ in the phase of the transfer function: deconvolving with the
wrong one leaves an all-pass phase error that smears edges into oscillating
tails. Natural and biological images have sparse gradients, so the candidate
whose deconvolution has the sparser gradients (lower l1/l2 ratio, Krishnan et
al., CVPR 2011) is kept -- the criterion (:mod:`._sparsity`) that :mod:`._refine` optimises.
"""

import numpy as np


def odd_terms(indices):
    """Which Noll ``indices`` change sign under the point reflection (odd radial order: comas, trefoils, ...)."""
    from psfkit.optics.zernike import noll_to_nm

    return np.array([noll_to_nm(j)[0] % 2 == 1 for j in indices])


def choose_orientation(image, coefficients, cutoff, *, indices, threshold=0.01):
    """Return ``coefficients`` or their point-reflected variant, whichever fits ``image``.

    ``coefficients`` is (K,) with a float ``cutoff``, or (M, K) candidates
    with ``cutoff`` (M,), each oriented separately from one image spectrum.
    Odd terms smaller than ``threshold`` waves in total (RMS) make both
    candidates nearly identical; such an estimate is returned unchanged.
    """
    import torch

    from psfkit.identification._sparsity import prepare, sparsity_objective

    coefficients = np.asarray(coefficients, dtype=np.float64)
    batch = np.atleast_2d(coefficients)
    cutoffs = np.broadcast_to(np.asarray(cutoff, dtype=np.float64), batch.shape[:1])
    odd = odd_terms(indices)
    ambiguous = np.sqrt(np.sum(batch[:, odd] ** 2, axis=1)) >= threshold
    if not ambiguous.any():
        return coefficients
    reflected = np.where(odd, -batch, batch)  # the point-reflected PSFs
    spectrum, epsilon, shape = prepare(image)
    with torch.no_grad():
        scores = sparsity_objective(
            torch.from_numpy(np.concatenate([batch, reflected])), torch.from_numpy(np.concatenate([cutoffs, cutoffs])),
            spectrum, epsilon, shape, indices,
        ).numpy().reshape(2, -1)
    flip = ambiguous & (scores[1] < scores[0])
    return np.where(flip[:, None], reflected, batch).reshape(coefficients.shape)
