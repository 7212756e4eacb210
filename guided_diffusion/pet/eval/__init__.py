"""Scoring denoised volumes: metrics, quality tables, lesion quantitation, the Gaussian baseline and figures.

Inputs are (X, Y, Z) volumes in SUV compared with a full-dose reference.
"""
