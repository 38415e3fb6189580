"""Classical blind deblurring baselines, for comparison with psfkit's identification.

Both functions take a blurry grey-level image and a kernel window size and
return ``(psf, restored)``:

- :func:`l0_gradient` -- l0 gradient prior, alternating minimisation (Pan et
  al. 2014/2017, as analysed and implemented in IPOL by Anger et al. 2019);
- :func:`goldstein_fattal` -- spectral kernel estimation from the power
  spectrum of the whitened image plus phase retrieval (Goldstein & Fattal
  2012, as analysed and implemented in IPOL by Anger et al. 2018).
"""

from psfkit.baselines._goldstein_fattal import goldstein_fattal
from psfkit.baselines._l0 import l0_gradient

__all__ = ["goldstein_fattal", "l0_gradient"]
