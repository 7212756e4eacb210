"""Scoring denoised volumes: metrics, quality tables, lesion quantitation, the Gaussian baseline and figures.

Inputs are (X, Y, Z) volumes in SUV compared with a full-dose reference.

* ``metrics``: PSNR, SSIM, NRMSE (generic, the paper's, the UDPET challenge's);
* ``regions``: SUVmean / SUVmax / TLA per organ and lesion, liver CV, lesion contrast recovery;
* ``case_scores``: one result against its prepared reference (the rows of ``scripts/evaluate.py``);
* ``inputs``: label maps and the same-grid check; ``reports``: CSV tables and the Markdown summary;
* ``dose_figures``: a metric against dose per method; ``figures``: the demo figure;
* ``tables``, ``baselines``, ``scoring``: quality tables, the best Gaussian filter, a simulated case's scores;
* ``uncertainty``: whether the ensemble SD predicts the actual error.
"""
