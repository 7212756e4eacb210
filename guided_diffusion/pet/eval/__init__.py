"""Scoring denoised volumes: metrics, quality tables, lesion quantitation, the Gaussian baseline and figures.

Inputs are (X, Y, Z) volumes in SUV compared with a full-dose reference and, for simulated data, the
noiseless reconstruction (``registry.REFERENCES``).

* ``metrics``: PSNR, SSIM, NRMSE (generic, the paper's, the UDPET challenge's);
* ``regions``: SUVmean / SUVmax / TLA per organ and lesion, liver CV, lesion contrast recovery;
* ``registry``: the table of metrics that ``scripts/evaluate.py`` scores, writes, summarises and draws (how to
  add one: its docstring); ``case_metrics``: the built-in metrics' scorers;
* ``case_reference``: a reference prepared once per case; ``case_scores``: one result against it (the rows of
  ``scripts/evaluate.py``);
* ``inputs``: label maps and the same-grid check; ``reports``: CSV tables and the Markdown summary;
* ``dose_figures``: a metric against dose per method; ``figures``: the demo figure;
* ``tables``, ``baselines``, ``scoring``: quality tables, the best Gaussian filter, a simulated case's scores;
* ``uncertainty``: whether the ensemble SD predicts the actual error;
* ``nested_noise``: what the full dose, whose noise holds a thinned low dose's, costs a perfect denoiser.
"""
