"""From separated mel spectrograms back to audio, oracle systems, and the scores and figures of a separation.

* :mod:`separation.inversion` -- the inversion recipes: separated mel spectrograms to audio by Griffin-Lim, the
  mixture's phase or the single-channel Wiener filter (the transforms they use, NNLS, STFT and song synthesis
  without clicks at the 2.04 s seams, are :mod:`core.spectral`);
* :mod:`separation.oracles` -- oracle systems on a song folder (IBM, IRM, MWF, and the mel-inversion oracle MEL);
* :mod:`separation.bss_eval` -- BSS Eval v4 as museval 0.4.1 computes it, and the one score class ``Scores``
  (tables, ``metrics.json`` / ``metrics.csv``); ``bss_eval_v4.py`` is its command line;
* :mod:`separation.evaluation` -- scoring a separation's sources, finding and collecting score files;
* :mod:`separation.figures` -- box plots of the scores and spectrogram comparisons.

Library code only: no argument parsing, no files except where a function is asked to write one.
"""
