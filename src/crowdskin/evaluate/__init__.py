"""Evaluation of model and ensemble predictions: AUC statistics a reviewer asks for.

`stats` holds the pure, NumPy-only pieces: the ROC AUC with midranks for ties, the paired DeLong test
(the fast midrank algorithm of Sun & Xu, 2014, with a brute-force reference it must equal), stratified
paired bootstrap confidence intervals, and Holm's adjustment for several comparisons.
"""
