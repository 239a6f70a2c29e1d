"""From separated mel spectrograms back to audio, oracle systems, and the scores and figures of a separation.

* :mod:`separation.inversion` -- mel power -> linear STFT magnitude (non-negative least squares), phase (Griffin-Lim,
  mixture phase, single-channel Wiener filter), batched STFT / inverse STFT, and song synthesis without clicks at
  the 2.04 s segment seams;
* :mod:`separation.oracles` -- oracle systems on a song folder (IBM, IRM, MWF, and the mel-inversion oracle MEL);
* :mod:`separation.evaluation` -- BSS Eval v4 scores (through ``bss_eval_v4.py``), tables, ``metrics.json`` /
  ``metrics.csv``;
* :mod:`separation.figures` -- box plots of the scores and spectrogram comparisons.

Library code only: no argument parsing, no files except where a function is asked to write one.
"""
