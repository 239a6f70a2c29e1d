"""Noise-conditional score networks (NCSN v1, Song & Ermon 2019; NCSNv2, Song & Ermon 2020) in TensorFlow 2.

One module per concern:

* :mod:`ncsn.schedule` -- the noise levels sigma_1 > ... > sigma_L (float32 numpy, computed in float64);
* :mod:`ncsn.networks` -- the RefineNet score network (conditional instance norm++ for v1, unconditional with the
  output divided by sigma for v2), :func:`~ncsn.networks.build_score_network`, the EMA of the weights;
* :mod:`ncsn.losses` -- denoising score matching (mean and per-example);
* :mod:`ncsn.sampling` -- annealed Langevin dynamics as one compiled function over a generic update direction
  (the plain score for NCSN sampling, score + likelihood term for BASIS);
* :mod:`ncsn.techniques` -- NCSNv2's techniques 1, 2 and 4 (sigma_1, the geometric ratio and L, the step size).

Data are NHWC float32 in [0, 1] (dB spectrograms rescaled, or images); noise levels are in the same units.
The networks are tf-keras (``import tf_keras as keras``) models.
"""
